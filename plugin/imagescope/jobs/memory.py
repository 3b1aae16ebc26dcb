"""Job records in process memory (the in-process backend; lost on exit)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

from imagescope.jobs.base import FINAL_STATES, JobRecord, JobStore, unknown_job
from imagescope.schemas import JobState, SearchResult


class MemoryJobStore(JobStore):
    """A thread-safe dict of records; ``wait`` sleeps on a condition, not a poll."""

    def __init__(self) -> None:
        self._records: dict[str, JobRecord] = {}
        self._changed = threading.Condition()

    def _record(self, job_id: str) -> JobRecord:
        try:
            return self._records[job_id]
        except KeyError:
            raise unknown_job(job_id) from None

    def _update(self, job_id: str, **fields: object) -> JobRecord:
        """Replace the record with ``fields`` changed (caller holds the lock)."""
        fields.setdefault("updated_at", time.time())
        record = self._record(job_id).model_copy(update=fields)
        self._records[job_id] = record
        self._changed.notify_all()
        return record

    def create(self, record: JobRecord) -> tuple[JobRecord, bool]:
        with self._changed:
            existing = self._records.get(record.id)
            if existing is not None:
                return existing, False
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
