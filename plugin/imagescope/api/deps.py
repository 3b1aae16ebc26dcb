"""Request dependencies: the engine, the job backend, settings, API-key check.

``create_app`` puts the injected objects on ``app.state``; routes take them
through these ``Annotated`` aliases, so tests inject fakes by building the app.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyHeader

from imagescope.api.metrics import Metrics
from imagescope.engine import Engine
from imagescope.jobs.base import JobBackend
from imagescope.settings import Settings

API_KEY_HEADER = "X-API-Key"
_api_key_header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False)


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


def require_api_key(
    settings: SettingsDep, key: Annotated[str | None, Security(_api_key_header)]
) -> None:
    """When ``settings.api.api_keys`` is non-empty, X-API-Key must be one of them."""
    allowed = settings.api.api_keys
    if not allowed:
        return
    given = (key or "").encode()
    if not any(hmac.compare_digest(given, k.get_secret_value().encode()) for k in allowed):
        raise HTTPException(
            status_code=401,
            detail=f"missing or unknown API key; send a valid key in the {API_KEY_HEADER} header",
            headers={"WWW-Authenticate": "APIKey"},
        )
