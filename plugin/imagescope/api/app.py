"""The FastAPI app: ``create_app`` (inject the engine and the job backend) and ``serve``.

Errors: every ``ImageScopeError`` becomes JSON ``{"error": <class>, "detail": <message>}``
with the status its class names (``InputError.status_code``: 400/403/404/413/422,
``BackendError``: 503); HTTP errors (401, 413 from the body limit) and request
validation (422, ``RequestValidationError``, naming the fields) use the same shape.
JSON bodies with NaN, Infinity, out-of-range numbers, lone surrogates or deep
nesting are 422 before any route runs (``json_guard``). Server-side failures
never show internal addresses (``errors.client_text``).
Request bodies larger than ``api.max_request_bytes`` get 413, whether the size is
announced in Content-Length or only found while the body streams in.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

import imagescope
from imagescope.api import catalog_routes, page_routes, score_routes
from imagescope.api.errors import client_text, validation_error
from imagescope.api.json_guard import JsonGuard
from imagescope.api.limits import BodySizeLimit
from imagescope.api.metrics import Metrics, MetricsMiddleware
from imagescope.api.routes import images, ops, v1
from imagescope.engine import Engine
from imagescope.errors import ImageScopeError
from imagescope.jobs.base import JobBackend
from imagescope.settings import Settings

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
_DESCRIPTION = """Language-guided image search (text, reference image + edit, dialog)
over a CLIP catalog, reranked by multimodal models that verify each candidate.

Stage 1 (reasoning + fused k-NN) runs inline; stages 2-3 (proposition
verification, pairwise evaluation) run as rerank jobs. Send `X-API-Key` when the
server has API keys configured."""


async def _imagescope_error(_request: Request, exc: Exception) -> JSONResponse:
    status = int(getattr(type(exc), "status_code", 500))
    if status >= 500:
        log.warning("request failed: %s: %s", type(exc).__name__, exc)
    detail = client_text(str(exc), status=status)
    return JSONResponse({"error": type(exc).__name__, "detail": detail}, status_code=status)


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    try:
        kind = HTTPStatus(exc.status_code).phrase
    except ValueError:
        kind = "HTTP error"
    return JSONResponse(
        {"error": kind, "detail": client_text(str(exc.detail), status=exc.status_code)},
        status_code=exc.status_code,
        headers=getattr(exc, "headers", None),
    )


def create_app(engine: Engine, jobs: JobBackend, settings: Settings) -> FastAPI:
    """The API over ``engine`` (stage 1, images) and ``jobs`` (reranks).

    The caller owns ``engine`` and ``jobs`` and closes them after the app stops.
    """
    app = FastAPI(
        title="ImageScope for OpenSearch",
        version=imagescope.__version__,
        description=_DESCRIPTION,
    )
    app.state.engine = engine
    app.state.jobs = jobs
    app.state.settings = settings
    app.state.metrics = Metrics()
    app.add_middleware(JsonGuard)  # inside BodySizeLimit: bodies are bounded first
    app.add_middleware(BodySizeLimit, max_bytes=settings.api.max_request_bytes)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    app.add_exception_handler(ImageScopeError, _imagescope_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.include_router(v1)
    app.include_router(images)
    app.include_router(ops)
    app.include_router(catalog_routes.router)
    app.include_router(score_routes.router)
    app.include_router(page_routes.router)
    if (STATIC_DIR / "index.html").is_file():
        from fastapi.staticfiles import StaticFiles

        app.mount("/", StaticFiles(directory=STATIC_DIR, html=True), name="static")
    return app


def serve(settings: Settings) -> None:
    """Opens the engine and the job backend (``imagescope.wiring``) and runs uvicorn."""
    import uvicorn

    from imagescope.wiring import open as open_engine
    from imagescope.wiring import open_jobs

    with open_engine(settings) as engine:
        jobs = open_jobs(engine, settings)
        try:
            app = create_app(engine, jobs, settings)
            log.info("serving on http://%s:%d", settings.api.host, settings.api.port)
            uvicorn.run(app, host=settings.api.host, port=settings.api.port, log_level="info")
        finally:
            jobs.close()
