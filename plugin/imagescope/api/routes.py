"""The routers: thin wrappers that hand over to ``imagescope.api.handlers``.

Handlers block (models, stores), so the routes are plain ``def``: FastAPI runs
them in its thread pool.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response, status
from fastapi.responses import JSONResponse

from imagescope.api import handlers
from imagescope.api.deps import EngineDep, JobsDep, MetricsDep, SettingsDep, require_api_key
from imagescope.api.schemas import (
    ERROR_RESPONSES,
    Health,
    ImageToken,
    RerankJobRequest,
    SearchRequest,
    WebhookReplay,
)
from imagescope.api.tenancy import TenantDep, require_image_access, set_image_cookie
from imagescope.jobs.factory import webhook_sender
from imagescope.schemas import JobRef, JobStatus, SearchResult

v1 = APIRouter(prefix="/v1", dependencies=[Depends(require_api_key)], responses=ERROR_RESPONSES)
#: Image routes also accept an image token (cookie or ?token=), for <img> elements.
images = APIRouter(
    prefix="/v1", dependencies=[Depends(require_image_access)], responses=ERROR_RESPONSES
)
ops = APIRouter(tags=["operations"])

JobId = Annotated[str, Path(description="The id returned when the job was submitted.")]
ImageId = Annotated[str, Path(description="A catalog image id.")]
_JPEG: dict[int | str, dict[str, Any]] = {
    200: {"content": {"image/jpeg": {}}, "description": "The image as JPEG."}
}


@v1.post("/search", tags=["search"], summary="Search (stage 1, and the rerank per mode)")
def search(
    body: SearchRequest,
    tenant: TenantDep,
    engine: EngineDep,
    jobs: JobsDep,
    settings: SettingsDep,
    metrics: MetricsDep,
) -> SearchResult:
    """``fast``: stage 1. ``async``: stage 1 and a job id at once. ``sync``: waits for the
    rerank up to ``deadline_s`` (default ``jobs.sync_deadline_s``), else stage 1 + job id."""
    result = handlers.search(engine, jobs, settings, body, tenant)
    metrics.searches.labels(mode=body.mode.value).inc()
    metrics.observe_stages(result.trace.timings)
    return result


@v1.post(
    "/rerank-jobs",
    tags=["jobs"],
    status_code=status.HTTP_202_ACCEPTED,
    summary="Submit a rerank job (stages 2-3)",
)
def submit_job(
    body: RerankJobRequest,
    tenant: TenantDep,
    response: Response,
    engine: EngineDep,
    jobs: JobsDep,
    settings: SettingsDep,
    metrics: MetricsDep,
) -> JobRef:
    ref = handlers.submit_rerank_job(engine, jobs, settings, body, tenant)
    metrics.jobs_submitted.inc()
    response.headers["Location"] = f"/v1/rerank-jobs/{ref.id}"
    return ref


@v1.get("/rerank-jobs/{job_id}", tags=["jobs"], summary="A job's state, progress and results")
def get_job(job_id: JobId, jobs: JobsDep, tenant: TenantDep) -> JobStatus:
    """``result`` is the best ranking so far: stage 1 while the job runs
    (``result.stages == [1]``), the reranked one once it succeeded. Jobs of
    other API keys are 404."""
    return jobs.get(job_id, owner=tenant.id, admin=tenant.admin)


@v1.delete("/rerank-jobs/{job_id}", tags=["jobs"], summary="Delete a job (cancelling it)")
def delete_job(job_id: JobId, jobs: JobsDep, tenant: TenantDep) -> JobStatus:
    """Cancels the job unless it is finished (a running job stops at its next stage
    boundary) and deletes it: afterwards it is 404. Returns its last status."""
    return jobs.delete(job_id, owner=tenant.id, admin=tenant.admin)


@v1.post("/rerank-jobs/{job_id}/cancel", tags=["jobs"], summary="Cancel a job, keep it")
def cancel_job(job_id: JobId, jobs: JobsDep, tenant: TenantDep) -> JobStatus:
    """Like DELETE, but the cancelled job stays readable until it expires."""
    return jobs.cancel(job_id, owner=tenant.id, admin=tenant.admin)


@v1.post("/rerank-jobs/{job_id}/webhook", tags=["jobs"], summary="Send the webhook again")
def replay_webhook(
    job_id: JobId, jobs: JobsDep, tenant: TenantDep, settings: SettingsDep
) -> WebhookReplay:
    """POSTs the finished job's signed status to its ``webhook_url`` once more."""
    outcome = handlers.replay_webhook(
        jobs, webhook_sender(settings.jobs), job_id, owner=tenant.id, admin=tenant.admin
    )
    return WebhookReplay(id=job_id, outcome=outcome)


@v1.post("/image-token", tags=["images"], summary="A short-lived token for <img> requests")
def issue_image_token(request: Request, response: Response, tenant: TenantDep) -> ImageToken:
    """Sets an HttpOnly cookie that image routes accept instead of X-API-Key, and
    returns the token for signed URLs (``?token=``). Request a new one before
    ``expires_at``."""
    token, expires = set_image_cookie(request, response, tenant)
    return ImageToken(token=token, expires_at=expires)


@images.get("/images/{image_id}", tags=["images"], response_class=Response, responses=_JPEG)
def get_image(image_id: ImageId, engine: EngineDep, settings: SettingsDep) -> Response:
    """The catalog image as JPEG, scaled down to ``api.max_image_side``."""
    content = handlers.image_jpeg(engine, settings, image_id, size=None)
    return Response(content, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})


@images.get(
    "/images/{image_id}/thumbnail", tags=["images"], response_class=Response, responses=_JPEG
)
def get_thumbnail(
    image_id: ImageId,
    engine: EngineDep,
    settings: SettingsDep,
    size: Annotated[int, Query(ge=16, description="Longest side in pixels.")] = 256,
) -> Response:
    content = handlers.image_jpeg(engine, settings, image_id, size=size)
    return Response(content, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})


@ops.get("/healthz", responses={503: {"model": Health}})
def healthz(engine: EngineDep, jobs: JobsDep) -> JSONResponse:
    report, ok = handlers.health(engine, jobs)
    return JSONResponse(report.model_dump(), status_code=200 if ok else 503)


@ops.get("/metrics", response_class=Response)
def metrics_endpoint(metrics: MetricsDep) -> Response:
    from prometheus_client import CONTENT_TYPE_LATEST

    return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)
