"""Job records in process memory (the in-process backend; lost on exit).

Final records expire ``result_ttl_s`` after they were last written, as they do
in Redis; expired ones are swept out at most once a second, on writes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

from imagescope.jobs.base import (
    FINAL_STATES,
    JobRecord,
    JobStore,
    TooManyJobsError,
    too_many,
    unknown_job,
)
from imagescope.schemas import JobState, SearchResult


class MemoryJobStore(JobStore):
    """A thread-safe dict of records; ``wait`` sleeps on a condition, not a poll."""

    def __init__(self, *, result_ttl_s: float = 7 * 24 * 3600) -> None:
        self._records: dict[str, JobRecord] = {}
        self._changed = threading.Condition()
        self._ttl = result_ttl_s
        self._swept_at = 0.0

    def _expired(self, record: JobRecord, now: float) -> bool:
        return record.final and record.updated_at < now - self._ttl

    def _sweep(self) -> None:
        """Drops expired final records (caller holds the lock)."""
        now = time.time()
        if now - self._swept_at < 1.0:
            return
        self._swept_at = now
        for key in [k for k, r in self._records.items() if self._expired(r, now)]:
            del self._records[key]

    def _record(self, job_id: str) -> JobRecord:
        record = self._records.get(job_id)
        if record is None or self._expired(record, time.time()):
            raise unknown_job(job_id)
        return record

    def __len__(self) -> int:
        with self._changed:
            return len(self._records)

    def _update(self, job_id: str, **fields: object) -> JobRecord:
        """Replace the record with ``fields`` changed (caller holds the lock)."""
        fields.setdefault("updated_at", time.time())
        record = self._record(job_id).model_copy(update=fields)
        self._records[job_id] = record
        self._changed.notify_all()
        return record

    def create(self, record: JobRecord, *, max_open: int = 0) -> tuple[JobRecord, bool]:
        with self._changed:
            self._sweep()
            existing = self._records.get(record.id)
            if existing is not None and not self._expired(existing, time.time()):
                return existing, False
            if max_open > 0:
                mine = [r for r in self._records.values() if r.owner == record.owner]
                if sum(1 for r in mine if not r.final) >= max_open:
                    raise TooManyJobsError(too_many(max_open))
            self._records[record.id] = record
            return record, True

    def get(self, job_id: str) -> JobRecord:
        with self._changed:
            return self._record(job_id)

    def claim(self, job_id: str, *, worker: str, lease_s: float) -> JobRecord | None:
        with self._changed:
            record = self._record(job_id)
            now = time.time()
            stale = record.state is JobState.RUNNING and record.heartbeat_at < now - lease_s
            if record.state is not JobState.QUEUED and not stale:
                return None
            return self._update(
                job_id,
                state=JobState.RUNNING,
                attempts=record.attempts + 1,
                heartbeat_at=now,
                worker=worker,
            )

    def heartbeat(self, job_id: str, progress: float | None = None) -> JobState:
        with self._changed:
            record = self._record(job_id)
            if record.state is JobState.RUNNING:
                fields: dict[str, object] = {"heartbeat_at": time.time()}
                if progress is not None:
                    fields["progress"] = min(1.0, max(record.progress, progress))
                record = self._update(job_id, **fields)
            return record.state

    def finish(
        self,
        job_id: str,
        *,
        state: JobState,
        result: SearchResult | None = None,
        error: str | None = None,
    ) -> bool:
        if state not in FINAL_STATES:
            raise ValueError(f"{state} is not a final state")
        with self._changed:
            record = self._record(job_id)
            if record.final:
                return False
            progress = 1.0 if state is JobState.SUCCEEDED else record.progress
            self._update(
                job_id,
                state=state,
                result=result,
                error=error,
                progress=progress,
                result_writes=record.result_writes + 1,
            )
            return True

    def cancel(self, job_id: str) -> JobRecord:
        with self._changed:
            record = self._record(job_id)
            if record.final:
                return record
            return self._update(
                job_id,
                state=JobState.CANCELLED,
                error="cancelled by request",
                result_writes=record.result_writes + 1,
            )

    def delete(self, job_id: str) -> JobRecord:
        with self._changed:
            record = self._record(job_id)
            fields: dict[str, object] = {"deleted": True}
            if not record.final:
                fields.update(
                    state=JobState.CANCELLED,
                    error="deleted by request",
                    result_writes=record.result_writes + 1,
                )
            return self._update(job_id, **fields)

    def release(self, job_id: str) -> None:
        with self._changed:
            if self._record(job_id).state is JobState.RUNNING:
                self._update(job_id, state=JobState.QUEUED, enqueued_at=time.time())

    def open_ids(self) -> Iterator[str]:
        with self._changed:
            ids = [i for i, r in self._records.items() if not r.final]
        return iter(ids)

    def requeue_if_stale(self, job_id: str, *, queued_for_s: float, silent_for_s: float) -> bool:
        with self._changed:
            record = self._record(job_id)
            now = time.time()
            queued = record.state is JobState.QUEUED and record.enqueued_at < now - queued_for_s
            running = record.state is JobState.RUNNING and record.heartbeat_at < now - silent_for_s
            if not (queued or running):
                return False
            self._update(job_id, state=JobState.QUEUED, enqueued_at=time.time())
            return True

    def set_webhook(self, job_id: str, outcome: str) -> None:
        with self._changed:
            self._update(job_id, webhook=outcome)

    def wait(self, job_id: str, timeout_s: float) -> JobRecord:
        deadline = time.monotonic() + max(0.0, timeout_s)
        with self._changed:
            while True:
                record = self._record(job_id)
                left = deadline - time.monotonic()
                if record.final or left <= 0:
                    return record
                self._changed.wait(left)
