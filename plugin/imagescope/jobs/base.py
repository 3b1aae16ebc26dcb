"""Rerank jobs: the interface the API talks to, and the record store behind it.

A rerank job runs stages 2-3 (``pipeline.rerank.rerank``) on a stage-1 result.
Its life, whatever executes it::

    QUEUED ──claim──> RUNNING ──finish──> SUCCEEDED | FAILED
       │                 │ (heartbeat, progress)
       └──── cancel ─────┴──────────────> CANCELLED

SUCCEEDED, FAILED and CANCELLED are final: a final record is never written again,
so a job that runs twice (a redelivered message, a re-enqueue by the reconciler)
writes its result once.

``JobBackend`` is what callers use. ``JobStore`` keeps the records (in memory
for the in-process backend, in Redis for Celery workers); every state change is
one atomic store operation.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Iterator

from pydantic import BaseModel, Field

from imagescope.errors import InputError, JobError, UnknownIdError
from imagescope.jobs.ids import (
    PUBLIC_OWNER,
    input_digest,
    new_job_id,
    owner_of,
    public_id,
    request_digest,
    resolve_key,
    store_key,
    too_many,
    unknown_job,
)
from imagescope.schemas import JobRef, JobState, JobStatus, RerankRequest, SearchResult

#: The Celery task name the workers register and the API sends (by name only).
RERANK_TASK_NAME = "imagescope.rerank"
FINAL_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})


class JobConflictError(InputError):
    """A job id that is already taken by a different request."""

    status_code = 409


class TooManyJobsError(InputError):
    """The owner already has as many unfinished jobs as allowed."""

    status_code = 429


class JobCancelled(JobError):
    """Raised inside a running job when its record says it was cancelled."""


class JobRecord(BaseModel):
    """Everything stored about one job."""

    id: str
    request: RerankRequest
    digest: str = ""
    state: JobState = JobState.QUEUED
    progress: float = Field(default=0.0, ge=0.0, le=1.0)
    result: SearchResult | None = None
    error: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    #: Last time a message for this job was sent to the workers.
    enqueued_at: float = 0.0
    #: Last sign of life from the worker running it.
    heartbeat_at: float = 0.0
    #: How many times a worker started it.
    attempts: int = 0
    #: How many times a final state was written (1 for every finished job).
    result_writes: int = 0
    worker: str = ""
    webhook: str = ""
    #: Deleted by its owner: kept (cancelled) until it expires, but no longer readable.
    deleted: bool = False

    @classmethod
    def new(cls, job_id: str, request: RerankRequest, *, digest: str | None = None) -> JobRecord:
        """A QUEUED record; ``digest`` identifies the client's input (idempotent resubmit)."""
        now = time.time()
        return cls(
            id=job_id,
            request=request,
            digest=digest or request_digest(request),
            created_at=now,
            updated_at=now,
            enqueued_at=now,
        )

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES

    @property
    def owner(self) -> str:
        return owner_of(self.id)

    @property
    def public_id(self) -> str:
        return public_id(self.id)

    def status(self) -> JobStatus:
        """The public view. ``result`` is the best ranking known now: the final one
        once the job succeeded, else the stage-1 ranking (``result.stages == [1]``)."""
        result = self.result
        if result is None and self.state is not JobState.FAILED:
            result = self.request.stage1
        ref = JobRef(id=self.public_id, state=self.state)
        return JobStatus(
            id=self.public_id,
            state=self.state,
            progress=1.0 if self.state is JobState.SUCCEEDED else self.progress,
            result=None if result is None else result.model_copy(update={"job": ref}),
            error=self.error,
            created_at=self.created_at,
            updated_at=self.updated_at,
        )


class JobStore(ABC):
    """Durable job records with atomic state transitions.

    Contract (every method is one atomic step; ``job_id`` unknown ->
    ``UnknownIdError`` unless stated):

    - ``create(record, max_open=0)`` inserts the record unless the id exists;
      returns the stored record and whether it was created (idempotent by id).
      With ``max_open`` > 0, raises ``TooManyJobsError`` when the record's owner
      already has that many jobs that are not final.
    - ``get(job_id)`` the record.
    - ``claim(job_id, worker=..., lease_s=...)`` QUEUED -> RUNNING (attempts + 1,
      heartbeat now), also taking over a RUNNING job whose heartbeat is older
      than ``lease_s``; returns the record, or None when the job is final or
      running elsewhere.
    - ``heartbeat(job_id, progress)`` refreshes a RUNNING job's heartbeat (and
      progress); returns the current state, so a runner sees cancellation.
    - ``finish(job_id, state=..., result=..., error=...)`` writes a final state
      unless the job is already final; returns whether it wrote.
    - ``cancel(job_id)`` QUEUED/RUNNING -> CANCELLED; returns the record.
    - ``delete(job_id)`` cancels the job unless final and marks it deleted (kept
      until it expires so a running worker still sees the cancellation);
      returns the record.
    - ``release(job_id)`` RUNNING -> QUEUED (a retry is on its way).
    - ``open_ids()`` ids of jobs not final.
    - ``requeue_if_stale(job_id, queued_for_s=..., silent_for_s=...)`` marks a job
      re-enqueued (enqueued_at now; a RUNNING one back to QUEUED) when it has been
      QUEUED since more than ``queued_for_s`` seconds, or RUNNING without a
      heartbeat for more than ``silent_for_s``; returns whether it did, so that
      one caller re-sends it.
    - ``set_webhook(job_id, outcome)`` records the webhook delivery outcome.
    Backend failures raise ``JobBackendError``.
    """

    @abstractmethod
    def create(self, record: JobRecord, *, max_open: int = 0) -> tuple[JobRecord, bool]: ...

    @abstractmethod
    def get(self, job_id: str) -> JobRecord: ...

    @abstractmethod
    def claim(self, job_id: str, *, worker: str, lease_s: float) -> JobRecord | None: ...

    @abstractmethod
    def heartbeat(self, job_id: str, progress: float | None = None) -> JobState: ...

    @abstractmethod
    def finish(
        self,
        job_id: str,
        *,
        state: JobState,
        result: SearchResult | None = None,
        error: str | None = None,
    ) -> bool: ...

    @abstractmethod
    def cancel(self, job_id: str) -> JobRecord: ...

    @abstractmethod
    def delete(self, job_id: str) -> JobRecord: ...

    @abstractmethod
    def release(self, job_id: str) -> None: ...

    @abstractmethod
    def open_ids(self) -> Iterator[str]: ...

    @abstractmethod
    def requeue_if_stale(
        self, job_id: str, *, queued_for_s: float, silent_for_s: float
    ) -> bool: ...

    @abstractmethod
    def set_webhook(self, job_id: str, outcome: str) -> None: ...

    def wait(self, job_id: str, timeout_s: float) -> JobRecord:
        """Polls until the job is final or ``timeout_s`` passed; returns the record."""
        deadline = time.monotonic() + max(0.0, timeout_s)
        delay = 0.005
        while True:
            record = self.get(job_id)
            left = deadline - time.monotonic()
            if record.final or left <= 0:
                return record
            time.sleep(min(delay, left))
            delay = min(delay * 1.5, 0.2)

    def ping(self) -> None:  # noqa: B027 - optional hook
        """Raise ``JobBackendError`` when the store cannot be reached."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""


class JobBackend(ABC):
    """Submits rerank jobs and reports on them.

    Every job belongs to an ``owner`` (the API key that submitted it; one
    ``PUBLIC_OWNER`` when the server has no keys). Ids are scoped per owner: two
    owners may both use ``order-1``, and a job is invisible to other owners
    (``UnknownIdError``, 404). ``admin=True`` reads any job, by its own id or by
    its full key ``<owner>~<id>``.

    Contract:
    - ``submit(request, job_id=None, owner=..., digest=None)`` records the job
      and hands it to an executor; returns at once with state QUEUED. Idempotent
      by ``job_id``: the same id with the same input (``digest``, else the
      request's) returns the existing job; another input raises
      ``JobConflictError`` (409). ``TooManyJobsError`` (429) when the owner has
      ``max_open`` unfinished jobs. An accepted job is never lost: if the
      executor cannot be reached now, it is sent later.
    - ``find(job_id, owner=..., digest=...)`` the existing job under that id
      (None when there is none), with the same conflict rule as ``submit``.
    - ``get(job_id)`` the status: state, progress, the best result so far, the
      failure reason. Unknown and deleted ids raise ``UnknownIdError`` (404).
    - ``cancel(job_id)`` stops a queued or running job (a running one stops at
      the next stage boundary); cancelling a final job changes nothing. Returns
      the status.
    - ``delete(job_id)`` cancels the job and makes it unreadable (404 after).
    - ``wait(job_id, timeout_s)`` blocks until the job is final or the timeout
      passes; returns the status either way.
    Backend failures raise ``JobBackendError`` (503).
    """

    @abstractmethod
    def submit(
        self,
        request: RerankRequest,
        *,
        job_id: str | None = None,
        owner: str = PUBLIC_OWNER,
        digest: str | None = None,
    ) -> JobRef: ...

    @abstractmethod
    def find(self, job_id: str, *, owner: str, digest: str) -> JobRef | None: ...

    @abstractmethod
    def get(self, job_id: str, *, owner: str = PUBLIC_OWNER, admin: bool = False) -> JobStatus: ...

    @abstractmethod
    def cancel(
        self, job_id: str, *, owner: str = PUBLIC_OWNER, admin: bool = False
    ) -> JobStatus: ...

    @abstractmethod
    def delete(
        self, job_id: str, *, owner: str = PUBLIC_OWNER, admin: bool = False
    ) -> JobStatus: ...

    @abstractmethod
    def wait(
        self, job_id: str, timeout_s: float, *, owner: str = PUBLIC_OWNER, admin: bool = False
    ) -> JobStatus: ...

    def record(self, job_id: str, *, owner: str = PUBLIC_OWNER, admin: bool = False) -> JobRecord:
        """The full record of a readable job (for webhook replay); 404 like ``get``."""
        raise InputError("this job backend does not expose job records")

    def set_webhook(self, record: JobRecord, outcome: str) -> None:  # noqa: B027 - optional
        """Records a webhook delivery outcome on the job."""

    def ping(self) -> None:  # noqa: B027 - optional hook
        """Raise ``JobBackendError`` when jobs cannot be accepted now."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Stop background threads and release connections."""


def _existing(record: JobRecord, digest: str) -> JobRef:
    """The ref of an already stored job, when ``digest`` is the input it was made from."""
    if record.deleted:
        raise JobConflictError(
            f"job id {record.public_id!r} belonged to a deleted job; choose a new id"
        )
    if record.digest != digest:
        raise JobConflictError(
            f"job id {record.public_id!r} is already used by another request; "
            "choose a new id or leave it out"
        )
    return JobRef(id=record.public_id, state=record.state)


class StoreJobBackend(JobBackend):
    """A JobBackend over a JobStore; subclasses say how a job id is dispatched.

    ``max_open`` (0: no limit) caps the unfinished jobs of one owner.
    """

    def __init__(self, store: JobStore, *, max_open: int = 0) -> None:
        self.store = store
        self.max_open = max_open

    @abstractmethod
    def dispatch(self, job_id: str) -> None:
        """Hand the job (its store key) to an executor (may raise; the job stays QUEUED)."""

    def submit(
        self,
        request: RerankRequest,
        *,
        job_id: str | None = None,
        owner: str = PUBLIC_OWNER,
        digest: str | None = None,
    ) -> JobRef:
        digest = digest or request_digest(request)
        key = store_key(owner, new_job_id(job_id))
        record, created = self.store.create(
            JobRecord.new(key, request, digest=digest), max_open=self.max_open
        )
        if not created:
            return _existing(record, digest)
        self.dispatch(record.id)
        return JobRef(id=record.public_id, state=record.state)

    def find(self, job_id: str, *, owner: str, digest: str) -> JobRef | None:
        try:
            record = self.store.get(store_key(owner, new_job_id(job_id)))
        except UnknownIdError:
            return None
        return _existing(record, digest)

    def _readable(self, job_id: str, owner: str, admin: bool) -> JobRecord:
        try:
            record = self.store.get(resolve_key(job_id, owner=owner, admin=admin))
        except UnknownIdError:
            raise unknown_job(job_id) from None  # the id as the caller wrote it
        if record.deleted:
            raise unknown_job(job_id)
        return record

    def get(self, job_id: str, *, owner: str = PUBLIC_OWNER, admin: bool = False) -> JobStatus:
        return self._readable(job_id, owner, admin).status()

    def record(self, job_id: str, *, owner: str = PUBLIC_OWNER, admin: bool = False) -> JobRecord:
        return self._readable(job_id, owner, admin)

    def set_webhook(self, record: JobRecord, outcome: str) -> None:
        self.store.set_webhook(record.id, outcome)

    def cancel(self, job_id: str, *, owner: str = PUBLIC_OWNER, admin: bool = False) -> JobStatus:
        return self.store.cancel(self._readable(job_id, owner, admin).id).status()

    def delete(self, job_id: str, *, owner: str = PUBLIC_OWNER, admin: bool = False) -> JobStatus:
        return self.store.delete(self._readable(job_id, owner, admin).id).status()

    def wait(
        self, job_id: str, timeout_s: float, *, owner: str = PUBLIC_OWNER, admin: bool = False
    ) -> JobStatus:
        record = self._readable(job_id, owner, admin)
        if record.final or timeout_s <= 0:
            return record.status()
        return self.store.wait(record.id, timeout_s).status()

    def ping(self) -> None:
        self.store.ping()

    def close(self) -> None:
        self.store.close()


__all__ = [
    "FINAL_STATES",
    "PUBLIC_OWNER",
    "RERANK_TASK_NAME",
    "JobBackend",
    "JobCancelled",
    "JobConflictError",
    "JobRecord",
    "JobStore",
    "StoreJobBackend",
    "TooManyJobsError",
    "input_digest",
    "new_job_id",
    "owner_of",
    "public_id",
    "request_digest",
    "resolve_key",
    "store_key",
    "too_many",
    "unknown_job",
]
