"""What the routes do, as plain functions over the engine and the job backend."""

from __future__ import annotations

import io
import logging

from PIL.Image import Image

from imagescope.api.schemas import Health, RerankJobRequest, SearchMode, SearchRequest
from imagescope.engine import Engine, check_stages
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


def search(
    engine: Engine, jobs: JobBackend, settings: Settings, body: SearchRequest
) -> SearchResult:
    """Stage 1 inline; stages 2-3 as a job that ``mode`` says whether to wait for."""
    wanted = check_stages(body.stages)
    _check_webhook(body.webhook_url, settings)
    first = engine.stage1(body.query, limit=body.limit)
    if body.mode is SearchMode.FAST or wanted == [1]:
        return first
    request = engine.rerank_request(
        body.query,
        first,
        stages=wanted,
        top_k=body.top_k,
        alpha=body.alpha,
        webhook_url=body.webhook_url,
    )
    ref = jobs.submit(request)
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
    stages = [s for s in body.stages if s != 1]
    if not stages or any(s not in (2, 3) for s in stages):
        raise InputError(f"a rerank job runs stages 2 and/or 3; got {body.stages}")
    _check_webhook(body.webhook_url, settings)
    first = body.stage1 or engine.stage1(body.query, limit=body.limit)
    request = engine.rerank_request(
        body.query,
        first,
        stages=stages,
        top_k=body.top_k,
        alpha=body.alpha,
        webhook_url=body.webhook_url,
    )
    return jobs.submit(request, job_id=body.job_id)


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
    image = engine.components.images.by_id(image_id)
    return _encode_jpeg(thumbnail(image, cap))


def health(engine: Engine, jobs: JobBackend) -> tuple[Health, bool]:
    """The service's state and whether it is fit to serve."""
    store_state, jobs_state, size = "ok", "ok", None
    try:
        size = engine.components.store.count()
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
        models=engine.components.model_ids(),
    )
    return report, ok
