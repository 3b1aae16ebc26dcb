"""Request dependencies: the engine, the job backend, settings, API-key check.

``require_api_key`` is ``tenancy.require_tenant``: it checks the key and returns
the calling tenant (routes that own data take ``TenantDep``).

``create_app`` puts the injected objects on ``app.state``; routes take them
through these ``Annotated`` aliases, so tests inject fakes by building the app.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from imagescope.api.metrics import Metrics
from imagescope.api.tenancy import API_KEY_HEADER, Tenant, TenantDep, require_tenant
from imagescope.engine import Engine
from imagescope.jobs.base import JobBackend
from imagescope.settings import Settings


def get_engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def get_jobs(request: Request) -> JobBackend:
    jobs: JobBackend = request.app.state.jobs
    return jobs


def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


EngineDep = Annotated[Engine, Depends(get_engine)]
JobsDep = Annotated[JobBackend, Depends(get_jobs)]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]


#: When ``settings.api.api_keys`` (or ``admin_keys``) is non-empty, X-API-Key must be one.
require_api_key = require_tenant

__all__ = [
    "API_KEY_HEADER",
    "EngineDep",
    "JobsDep",
    "MetricsDep",
    "SettingsDep",
    "Tenant",
    "TenantDep",
    "require_api_key",
]
