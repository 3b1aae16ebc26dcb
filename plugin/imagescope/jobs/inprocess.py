"""Rerank jobs in this process: a thread pool over in-memory records.

The embedded default (no broker): jobs run on ``workers`` threads next to the
API. Records are lost when the process exits; use the Celery backend when jobs
must survive restarts.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from imagescope.jobs.base import StoreJobBackend
from imagescope.jobs.memory import MemoryJobStore
from imagescope.jobs.runner import Notify, execute_job
from imagescope.jobs.webhook import WebhookSender
from imagescope.pipeline.context import Components


class InProcessJobBackend(StoreJobBackend):
    def __init__(
        self,
        components: Components,
        *,
        workers: int = 2,
        lease_s: float = 30.0,
        webhooks: WebhookSender | None = None,
        store: MemoryJobStore | None = None,
        max_open: int = 0,
        result_ttl_s: float = 7 * 24 * 3600,
    ) -> None:
        super().__init__(store or MemoryJobStore(result_ttl_s=result_ttl_s), max_open=max_open)
        self.components = components
        self.lease_s = lease_s
        self.notify: Notify | None = None if webhooks is None else webhooks.notifier(self.store)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rerank-job")

    def dispatch(self, job_id: str) -> None:
        self._pool.submit(
            execute_job,
            self.store,
            self.components,
            job_id,
            worker="in-process",
            lease_s=self.lease_s,
            notify=self.notify,
        )

    def close(self) -> None:
        """Waits for running jobs, drops queued ones."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        super().close()
