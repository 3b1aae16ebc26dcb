"""Building the job layer from settings: backend, webhooks, job-side components."""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from typing import cast

from imagescope.errors import ConfigError
from imagescope.jobs.base import JobBackend
from imagescope.jobs.batching import BatchingVerifier
from imagescope.jobs.bounded import BoundedReasoner
from imagescope.jobs.webhook import WebhookSender
from imagescope.pipeline.context import Components
from imagescope.settings import JobSettings, Settings

ComponentsHook = Callable[[Components, Settings], Components]


def webhook_sender(settings: JobSettings) -> WebhookSender | None:
    """The completion-webhook sender, or None when no secret is configured."""
    if settings.webhook_secret is None:
        return None
    return WebhookSender(
        settings.webhook_secret,
        timeout_s=settings.webhook_timeout_s,
        attempts=settings.webhook_attempts,
        allow_private=settings.webhook_allow_private,
    )


def load_components_hook(path: str) -> ComponentsHook:
    """Imports ``module:function`` (``settings.jobs.components_hook``)."""
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"components hook {path!r} must look like 'package.module:function'")
    try:
        hook = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"components hook {path!r} cannot be loaded: {exc}") from exc
    if not callable(hook):
        raise ConfigError(f"components hook {path!r} is not callable")
    return cast(ComponentsHook, hook)


def with_components_hook(components: Components, settings: Settings) -> Components:
    """``components`` passed through ``jobs.components_hook`` when one is set.

    Every process applies it once, right after loading the models (the API for
    stage 1, workers for stages 2-3), so all of them run the same backends.
    """
    hook = settings.jobs.components_hook
    return load_components_hook(hook)(components, settings) if hook else components


def job_components(components: Components, settings: Settings) -> Components:
    """The components rerank jobs run over (give it the hooked components).

    Wraps the verifier in a ``BatchingVerifier`` (concurrent jobs share backend
    calls), caps the reasoner's propositions at ``limits.max_propositions`` and,
    when a broker is configured, swaps the answer cache for the shared Redis cache.
    """
    jobs = settings.jobs
    verifier = components.verifier
    if verifier is not None and not isinstance(verifier, BatchingVerifier):
        verifier = BatchingVerifier(
            verifier, max_batch=jobs.batch_size, window_ms=jobs.batch_window_ms
        )
    cache = components.cache
    if jobs.broker_url is not None:
        from imagescope.jobs.cache import RedisAnswerCache
        from imagescope.jobs.celery_backend import records_url
        from imagescope.jobs.redis_store import connect

        cache = RedisAnswerCache(
            connect(records_url(jobs)), ttl_s=jobs.cache_ttl_s, prefix=jobs.key_prefix
        )
    reasoner = components.reasoner
    if not isinstance(reasoner, BoundedReasoner):
        reasoner = BoundedReasoner(reasoner, max_propositions=settings.limits.max_propositions)
    return dataclasses.replace(components, verifier=verifier, cache=cache, reasoner=reasoner)


def build_job_backend(settings: Settings, components: Components) -> JobBackend:
    """In-process jobs when ``jobs.broker_url`` is unset, else Celery workers on Redis.

    ``components`` are used by the in-process backend only (pass ``job_components``).
    """
    jobs = settings.jobs
    if jobs.broker_url is None:
        from imagescope.jobs.inprocess import InProcessJobBackend

        return InProcessJobBackend(
            components,
            workers=jobs.in_process_workers,
            lease_s=jobs.lease_s,
            webhooks=webhook_sender(jobs),
            max_open=settings.limits.max_open_jobs,
            result_ttl_s=jobs.result_ttl_s,
        )
    from imagescope.jobs.celery_backend import CeleryJobBackend

    return CeleryJobBackend.from_settings(jobs, max_open=settings.limits.max_open_jobs)
