"""Rerank jobs: stages 2-3 run asynchronously, in-process or on Celery workers.

``JobBackend`` (``base``) is the interface; ``build_job_backend`` picks the
in-process backend (no broker) or the Celery backend (``jobs.broker_url``).
"""

from imagescope.jobs.base import (
    RERANK_TASK_NAME,
    JobBackend,
    JobConflictError,
    JobRecord,
    JobStore,
)
from imagescope.jobs.batching import BatchingVerifier
from imagescope.jobs.factory import build_job_backend, job_components, webhook_sender
from imagescope.jobs.inprocess import InProcessJobBackend
from imagescope.jobs.runner import Outcome, execute_job

__all__ = [
    "RERANK_TASK_NAME",
    "BatchingVerifier",
    "InProcessJobBackend",
    "JobBackend",
    "JobConflictError",
    "JobRecord",
    "JobStore",
    "Outcome",
    "build_job_backend",
    "execute_job",
    "job_components",
    "webhook_sender",
]
