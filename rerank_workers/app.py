"""The Celery app of the rerank workers.

Configuration comes from the ImageScope settings (``IMAGESCOPE_JOBS__*``),
read when Celery first needs it, through ``imagescope.jobs.celery_config``
(the same function the API's client uses). Delivery is at-least-once (late
acks, a dead worker's message redelivered, prefetch 1); jobs are idempotent by
job id, and a reconciler thread in every worker re-sends lost jobs.

Running workers::

    # GPU node, models in-process (vLLM): one process per GPU, the solo pool
    # (CUDA cannot be initialised again in a forked child).
    CUDA_VISIBLE_DEVICES=0 celery -A rerank_workers.app worker \\
        -Q imagescope-rerank --pool solo -n gpu0@%h --loglevel INFO

    # Models behind an OpenAI-compatible server (vllm serve): threads, so that
    # concurrent jobs share verifier batches (jobs.batch_size, batch_window_ms).
    celery -A rerank_workers.app worker -Q imagescope-rerank \\
        --pool threads --concurrency 16 --loglevel INFO

The queue name is ``settings.jobs.queue``.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, signals

from imagescope.jobs.celery_backend import celery_config
from imagescope.jobs.reconciler import Reconciler
from imagescope.settings import get_settings

log = logging.getLogger(__name__)

app = Celery("rerank_workers", include=["rerank_workers.tasks"])
app.add_defaults(lambda: celery_config(get_settings().jobs))

_reconciler: Reconciler | None = None


def _preload() -> None:
    from rerank_workers.runtime import get_runtime

    try:
        get_runtime()
    except Exception:  # the first job reports it as its failure reason
        log.exception("loading the models failed")


def _load_in_child(**_: Any) -> None:
    """Prefork pool: every child loads the models once, after the fork."""
    _preload()


def _load_in_main(sender: Any = None, **_: Any) -> None:
    """Solo and threads pools run jobs in the main process: load the models there."""
    pool = str(getattr(sender, "pool_cls", "")).lower()
    if "solo" in pool or "thread" in pool:
        _preload()


def _start_reconciler(**_: Any) -> None:
    global _reconciler
    from imagescope.jobs.base import RERANK_TASK_NAME
    from rerank_workers.runtime import job_store

    settings = get_settings()
    jobs = settings.jobs

    def send(job_id: str) -> None:
        app.send_task(RERANK_TASK_NAME, args=[job_id], queue=jobs.queue)

    _reconciler = Reconciler(
        job_store(settings), send, requeue_after_s=jobs.requeue_after_s, lease_s=jobs.lease_s
    )
    try:
        _reconciler.run_once()
    except Exception:
        log.exception("first reconciler pass failed")
    _reconciler.start(jobs.reconcile_interval_s)


def _stop_reconciler(**_: Any) -> None:
    if _reconciler is not None:
        _reconciler.stop()


signals.worker_process_init.connect(_load_in_child, weak=False)
signals.worker_init.connect(_load_in_main, weak=False)
signals.worker_ready.connect(_start_reconciler, weak=False)
signals.worker_shutdown.connect(_stop_reconciler, weak=False)
