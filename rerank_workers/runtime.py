"""What a worker process loads once: settings, models, the job store, webhooks.

``get_runtime()`` builds it lazily on first use and caches it for the process
(the Celery signals in ``rerank_workers.app`` call it early so the first job
does not pay for model loading). Models come from ``imagescope.open`` (the one
wiring, hook included), so a worker runs exactly the backends the settings name.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from dataclasses import dataclass

from imagescope.jobs.celery_backend import records_url
from imagescope.jobs.factory import webhook_sender
from imagescope.jobs.redis_store import RedisJobStore
from imagescope.jobs.runner import Notify
from imagescope.pipeline.context import Components
from imagescope.settings import Settings, get_settings
from imagescope.wiring import job_components
from imagescope.wiring import open as open_engine

log = logging.getLogger(__name__)


@dataclass
class WorkerRuntime:
    settings: Settings
    components: Components
    store: RedisJobStore
    notify: Notify | None
    worker_name: str


_lock = threading.Lock()
_runtime: WorkerRuntime | None = None


def job_store(settings: Settings) -> RedisJobStore:
    jobs = settings.jobs
    return RedisJobStore.from_url(
        records_url(jobs), prefix=jobs.key_prefix, result_ttl_s=jobs.result_ttl_s
    )


def build_runtime(settings: Settings) -> WorkerRuntime:
    """Loads the models (``imagescope.open``) and connects to the job store."""
    engine = open_engine(settings)
    store = job_store(settings)
    sender = webhook_sender(settings.jobs)
    runtime = WorkerRuntime(
        settings=settings,
        components=job_components(engine, settings),
        store=store,
        notify=None if sender is None else sender.notifier(store),
        worker_name=f"{socket.gethostname()}:{os.getpid()}",
    )
    log.info("worker %s loaded models: %s", runtime.worker_name, engine.model_ids())
    return runtime


def get_runtime() -> WorkerRuntime:
    """The process's runtime, built once (thread-safe)."""
    global _runtime
    with _lock:
        if _runtime is None:
            _runtime = build_runtime(get_settings())
        return _runtime
