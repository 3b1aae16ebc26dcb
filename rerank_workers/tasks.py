"""The rerank task: a thin wrapper around ``imagescope.jobs.runner.execute_job``.

It takes a job id, nothing else; the request, the progress and the result live
in the job record. Transient backend errors are retried with exponential
backoff up to ``jobs.max_retries``; any other error, or the last transient one,
ends the job FAILED with its reason.
"""

from __future__ import annotations

import logging
from typing import Any

from imagescope.errors import ImageScopeError, UnknownIdError
from imagescope.jobs.base import RERANK_TASK_NAME
from imagescope.jobs.runner import execute_job, fail_job, is_transient
from imagescope.settings import get_settings
from rerank_workers.app import app
from rerank_workers.runtime import get_runtime, job_store

log = logging.getLogger(__name__)


def _give_up(job_id: str, reason: str) -> str:
    """Ends the job FAILED with ``reason`` (best effort: the store may be down too)."""
    log.error("job %s failed: %s", job_id, reason)
    try:
        fail_job(job_store(get_settings()), job_id, reason)
    except ImageScopeError as exc:
        log.error("job %s: could not record the failure (%s); the reconciler retries", job_id, exc)
    return "failed"


def _attempt(job_id: str, *, may_retry: bool) -> str:
    runtime = get_runtime()
    outcome = execute_job(
        runtime.store,
        runtime.components,
        job_id,
        worker=runtime.worker_name,
        lease_s=runtime.settings.jobs.lease_s,
        retry=may_retry,
        notify=runtime.notify,
    )
    return outcome.value


def run_rerank(self: Any, job_id: str) -> str:
    """Runs rerank job ``job_id``; returns the outcome ('succeeded', 'skipped', ...)."""
    jobs = get_settings().jobs
    retries = int(self.request.retries or 0)
    try:
        return _attempt(job_id, may_retry=retries < jobs.max_retries)
    except UnknownIdError:
        log.warning("job %s has no record (expired or never created); dropped", job_id)
        return "unknown"
    except ImageScopeError as exc:
        reason = f"{type(exc).__name__}: {exc}"
        if not is_transient(exc):
            return _give_up(job_id, reason)
        if retries >= jobs.max_retries:
            return _give_up(job_id, f"{reason} (after {retries + 1} attempts)")
        log.warning("job %s: transient failure, retry %d: %s", job_id, retries + 1, exc)
        raise self.retry(exc=exc, countdown=jobs.retry_backoff_s * 2**retries) from exc
    except Exception as exc:  # a worker bug must not leave the job hanging
        log.exception("job %s: unexpected worker error", job_id)
        return _give_up(job_id, f"worker error ({type(exc).__name__}): {exc}")


#: Registered by name; the API sends ``RERANK_TASK_NAME`` without importing this package.
rerank_task = app.task(name=RERANK_TASK_NAME, bind=True, max_retries=None)(run_rerank)
