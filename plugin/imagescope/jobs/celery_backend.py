"""Rerank jobs on Celery workers, with records in Redis.

The API side only records the job (``RedisJobStore``) and sends the task BY
NAME (``RERANK_TASK_NAME``) with the job id as its only argument; it never
imports the worker package. ``celery_config`` is the one Celery configuration,
shared with ``rerank_workers`` so both ends agree on queue, serializer and
delivery guarantees (at-least-once: late acks, redelivery of a lost worker's
message, prefetch 1; the job id makes re-runs idempotent).
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from celery import Celery
from kombu.exceptions import OperationalError

from imagescope.jobs.base import RERANK_TASK_NAME, StoreJobBackend
from imagescope.jobs.reconciler import Reconciler
from imagescope.jobs.redis_store import RedisJobStore
from imagescope.settings import JobSettings

log = logging.getLogger(__name__)


def broker_url(settings: JobSettings) -> str:
    if settings.broker_url is None:
        raise ValueError("jobs.broker_url is not set (IMAGESCOPE_JOBS__BROKER_URL)")
    return settings.broker_url


def records_url(settings: JobSettings) -> str:
    """Where job records and the answer cache live: the result URL, else the broker."""
    return settings.result_url or broker_url(settings)


def celery_config(settings: JobSettings) -> dict[str, Any]:
    """Celery settings for the API client and the workers alike."""
    transport = {"visibility_timeout": settings.visibility_timeout_s}
    return {
        "broker_url": broker_url(settings),
        "result_backend": records_url(settings),
        "broker_transport_options": transport,
        "result_backend_transport_options": transport,
        "broker_connection_retry_on_startup": True,
        "task_default_queue": settings.queue,
        "task_routes": {RERANK_TASK_NAME: {"queue": settings.queue}},
        "task_serializer": "json",
        "accept_content": ["json"],
        "result_serializer": "json",
        # Job records hold the results; Celery's own result entries would duplicate them.
        "task_ignore_result": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_publish_retry": True,
        "task_publish_retry_policy": {
            "max_retries": 3,
            "interval_start": 0.0,
            "interval_step": 0.2,
            "interval_max": 1.0,
        },
    }


def celery_client(settings: JobSettings) -> Celery:
    """A Celery app that only sends tasks (no task is registered in it)."""
    app = Celery("imagescope-client", set_as_current=False)
    app.conf.update(celery_config(settings))
    # The API answers within a deadline: a broker that does not answer costs ~1 s,
    # and the job stays QUEUED for the reconciler to send.
    app.conf.broker_connection_timeout = 1.0
    app.conf.task_publish_retry_policy = {
        "max_retries": 1,
        "interval_start": 0.0,
        "interval_step": 0.2,
        "interval_max": 0.2,
    }
    return app


class CeleryJobBackend(StoreJobBackend):
    """Jobs recorded in Redis and executed by ``rerank_workers`` processes.

    When the broker cannot be reached at submit time, the job stays QUEUED and
    the reconciler (here, in the workers, or both) sends it later.
    """

    def __init__(self, store: RedisJobStore, app: Celery, *, queue: str, max_open: int = 0) -> None:
        super().__init__(store, max_open=max_open)
        self.app = app
        self.queue = queue
        self.reconciler: Reconciler | None = None

    @classmethod
    def from_settings(
        cls, settings: JobSettings, *, reconcile: bool = True, max_open: int = 0
    ) -> CeleryJobBackend:
        """The API's backend: its Redis client fails fast (~1 s, circuit breaker)."""
        store = RedisJobStore.from_url(
            records_url(settings),
            prefix=settings.key_prefix,
            result_ttl_s=settings.result_ttl_s,
            fail_fast=True,
        )
        backend = cls(store, celery_client(settings), queue=settings.queue, max_open=max_open)
        if reconcile:
            backend.start_reconciler(settings)
        return backend

    def dispatch(self, job_id: str) -> None:
        try:
            # ignore_result: the job record holds the result, so the client must not
            # subscribe to Celery's result channel for every task it sends.
            self.app.send_task(
                RERANK_TASK_NAME, args=[job_id], queue=self.queue, ignore_result=True
            )
        except (OperationalError, redis.RedisError, OSError) as exc:
            log.warning(
                "job %s recorded but not sent (%s); the reconciler will send it", job_id, exc
            )

    def start_reconciler(self, settings: JobSettings) -> Reconciler:
        reconciler = Reconciler(
            self.store,
            self.dispatch,
            requeue_after_s=settings.requeue_after_s,
            lease_s=settings.lease_s,
        )
        reconciler.start(settings.reconcile_interval_s)
        self.reconciler = reconciler
        return reconciler

    def close(self) -> None:
        if self.reconciler is not None:
            self.reconciler.stop()
        super().close()
