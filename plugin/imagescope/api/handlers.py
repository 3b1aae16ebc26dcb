"""What the routes do, as plain functions over the engine and the job backend."""

from __future__ import annotations

import io
import logging

from PIL.Image import Image

from imagescope.api.schemas import Health, RerankJobRequest, SearchMode, SearchRequest
from imagescope.engine import Engine, check_rerank_stages, check_stages
from imagescope.errors import ImageScopeError, InputError
from imagescope.ingest.images import thumbnail
from imagescope.jobs.base import JobBackend
from imagescope.jobs.webhook import check_webhook_url
from imagescope.schemas import JobRef, JobState, JobStatus, SearchResult
from imagescope.settings import Settings

log = logging.getLogger(__name__)


def _check_webhook(url: str | None, settings: Settings) -> None:
    if url is None:
        return
    if settings.jobs.webhook_secret is None:
        raise InputError(
            "webhooks are signed and no secret is configured; set "
            "IMAGESCOPE_JOBS__WEBHOOK_SECRET on the server, or poll GET /v1/rerank-jobs/{id}"
        )
    check_webhook_url(url, allow_private=settings.jobs.webhook_allow_private)


def _with_job(result: SearchResult, status: JobStatus | JobRef) -> SearchResult:
    return result.model_copy(update={"job": JobRef(id=status.id, state=status.state)})


def _submit(
    engine: Engine,
    jobs: JobBackend,
    body: SearchRequest | RerankJobRequest,
    first: SearchResult,
    stages: list[int],
) -> JobRef:
    request = engine.rerank_request(
        body.query,
        first,
        stages=stages,
        top_k=body.top_k,
        alpha=body.alpha,
        webhook_url=body.webhook_url,
    )
    return jobs.submit(request, job_id=getattr(body, "job_id", None))


def search(
    engine: Engine, jobs: JobBackend, settings: Settings, body: SearchRequest
) -> SearchResult:
    """Stage 1 inline; stages 2-3 as a job that ``mode`` says whether to wait for."""
    wanted = check_stages(body.stages)
    engine.request_settings(limit=body.limit, top_k=body.top_k, alpha=body.alpha)
    _check_webhook(body.webhook_url, settings)
    first = engine.stage1(body.query, limit=body.limit)
    if body.mode is SearchMode.FAST or wanted == [1]:
        return first
    ref = _submit(engine, jobs, body, first, wanted)
    if body.mode is SearchMode.ASYNC:
        return _with_job(first, ref)
    status = jobs.wait(ref.id, body.deadline_s or settings.jobs.sync_deadline_s)
    if status.state is JobState.SUCCEEDED and status.result is not None:
        return _with_job(status.result, status)
    if status.state is JobState.FAILED:
        first.trace.notes.append(f"rerank job failed: {status.error}")
    return _with_job(first, status)


def submit_rerank_job(
    engine: Engine, jobs: JobBackend, settings: Settings, body: RerankJobRequest
) -> JobRef:
    """A rerank job for ``body.query``; stage 1 is run now unless given."""
    stages = check_rerank_stages(body.stages)
    engine.request_settings(limit=body.limit, top_k=body.top_k, alpha=body.alpha)
    _check_webhook(body.webhook_url, settings)
    first = body.stage1 or engine.stage1(body.query, limit=body.limit)
    return _submit(engine, jobs, body, first, stages)


def _encode_jpeg(image: Image, *, quality: int = 85) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def image_jpeg(engine: Engine, settings: Settings, image_id: str, *, size: int | None) -> bytes:
    """A catalog image as JPEG, its longer side at most ``size`` (or the API's cap)."""
    cap = settings.api.max_image_side
    if size is not None:
        limit = settings.api.max_thumbnail_side
        if not 16 <= size <= limit:
            raise InputError(f"thumbnail size must be between 16 and {limit}; got {size}")
        cap = size
    image = engine.image(image_id)
    return _encode_jpeg(thumbnail(image, cap))


def health(engine: Engine, jobs: JobBackend) -> tuple[Health, bool]:
    """The service's state and whether it is fit to serve."""
    store_state, jobs_state, size = "ok", "ok", None
    try:
        size = engine.count()
    except ImageScopeError as exc:
        store_state = f"unavailable: {exc}"
    try:
        jobs.ping()
    except ImageScopeError as exc:
        jobs_state = f"unavailable: {exc}"
    ok = store_state == "ok" and jobs_state == "ok"
    report = Health(
        status="ok" if ok else "degraded",
        store=store_state,
        jobs=jobs_state,
        catalog_size=size,
        models=engine.model_ids(),
    )
    return report, ok
