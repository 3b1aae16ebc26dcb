"""Running one rerank job by id: the plain function every executor calls.

``execute_job`` claims the job, runs ``pipeline.rerank.rerank`` with a progress
callback that refreshes the heartbeat and honours cancellation between stages,
writes the final state once, then notifies the webhook. The in-process backend
calls it from a thread pool; the Celery task in ``rerank_workers`` calls it with
the job id it was given.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum

from imagescope.errors import BackendError, ImageScopeError, ModelOutputError
from imagescope.jobs.base import JobCancelled, JobRecord, JobStore
from imagescope.pipeline.context import Components
from imagescope.pipeline.rerank import rerank
from imagescope.schemas import JobState

log = logging.getLogger(__name__)

Notify = Callable[[JobRecord], None]


class Outcome(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    #: Not run: already final, or running on another worker.
    SKIPPED = "skipped"


def is_transient(exc: BaseException) -> bool:
    """Backend failures that may pass on retry (not a model's unusable output)."""
    return isinstance(exc, BackendError) and not isinstance(exc, ModelOutputError)


@contextmanager
def heartbeats(store: JobStore, job_id: str, *, every_s: float) -> Iterator[None]:
    """Refreshes the job's heartbeat from a thread while the block runs."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(every_s):
            try:
                store.heartbeat(job_id)
            except ImageScopeError as exc:
                log.warning("job %s: heartbeat failed: %s", job_id, exc)

    thread = threading.Thread(target=beat, name=f"heartbeat-{job_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=every_s + 1.0)


def _progress(store: JobStore, job_id: str) -> Callable[[float], None]:
    def report(fraction: float) -> None:
        if fraction >= 1.0:
            # The final write follows at once (progress 1, and never over a
            # cancelled record): a heartbeat here would be one more round trip.
            return
        if store.heartbeat(job_id, fraction) is JobState.CANCELLED:
            raise JobCancelled(f"job {job_id} was cancelled")

    return report


def _fail(store: JobStore, job_id: str, reason: str) -> Outcome:
    written = store.finish(job_id, state=JobState.FAILED, error=reason)
    return Outcome.FAILED if written else Outcome.SKIPPED


def _notify(store: JobStore, job_id: str, notify: Notify | None) -> None:
    if notify is None:
        return
    try:
        notify(store.get(job_id))
    except Exception:  # a webhook never fails the job
        log.exception("job %s: completion notification failed", job_id)


def _run_claimed(
    store: JobStore, components: Components, record: JobRecord, *, lease_s: float, retry: bool
) -> Outcome:
    """Runs a claimed job and writes its final state (re-raises a transient error
    after releasing the job when ``retry``)."""
    job_id = record.id
    try:
        with heartbeats(store, job_id, every_s=lease_s / 3):
            result = rerank(components, record.request, progress=_progress(store, job_id))
    except JobCancelled:
        log.info("job %s: cancelled", job_id)
        return Outcome.CANCELLED
    except ImageScopeError as exc:
        if retry and is_transient(exc):
            log.warning("job %s: transient failure, will retry: %s", job_id, exc)
            store.release(job_id)
            raise
        return _fail(store, job_id, f"{type(exc).__name__}: {exc}")
    except Exception as exc:
        log.exception("job %s: unexpected error", job_id)
        return _fail(store, job_id, f"internal error ({type(exc).__name__}): {exc}")
    written = store.finish(job_id, state=JobState.SUCCEEDED, result=result)
    return Outcome.SUCCEEDED if written else Outcome.SKIPPED


def execute_job(
    store: JobStore,
    components: Components,
    job_id: str,
    *,
    worker: str,
    lease_s: float,
    retry: bool = False,
    notify: Notify | None = None,
) -> Outcome:
    """Run job ``job_id`` unless it is final or running elsewhere.

    Transient backend errors (``is_transient``) are re-raised after releasing
    the job when ``retry`` is true (the caller schedules the retry); otherwise,
    and for every other error, the job ends FAILED with the reason. Running a
    job twice writes its final state once. ``notify`` hears of SUCCEEDED and
    FAILED, once.
    """
    record = store.claim(job_id, worker=worker, lease_s=lease_s)
    if record is None:
        log.info("job %s: not run (final or running elsewhere)", job_id)
        return Outcome.SKIPPED
    log.info("job %s: attempt %d on %s", job_id, record.attempts, worker)
    outcome = _run_claimed(store, components, record, lease_s=lease_s, retry=retry)
    if outcome is Outcome.SKIPPED:
        log.info("job %s: already final; nothing written", job_id)
    elif outcome is not Outcome.CANCELLED:
        _notify(store, job_id, notify)
    return outcome


def fail_job(store: JobStore, job_id: str, reason: str, *, notify: Notify | None = None) -> bool:
    """Ends a job FAILED (e.g. after its retries ran out); returns whether it wrote."""
    written = store.finish(job_id, state=JobState.FAILED, error=reason)
    if written:
        _notify(store, job_id, notify)
    return written
