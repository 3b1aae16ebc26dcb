"""What the routes do, as plain functions over the engine and the job backend."""

from __future__ import annotations

import io
import logging

from PIL.Image import Image

from imagescope.api.bounds import check_query, check_stage1
from imagescope.api.errors import client_text
from imagescope.api.schemas import Health, RerankJobRequest, SearchMode, SearchRequest
from imagescope.api.tenancy import PUBLIC, Tenant
from imagescope.engine import Engine, check_rerank_stages, check_stages
from imagescope.errors import ImageScopeError, InputError, JobBackendError
from imagescope.ingest.images import thumbnail
from imagescope.jobs.base import JobBackend, input_digest
from imagescope.jobs.webhook import WebhookSender, check_webhook_url
from imagescope.schemas import JobRef, JobState, JobStatus, RerankNote, SearchResult
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
    *,
    owner: str,
    digest: str | None = None,
) -> JobRef:
    request = engine.rerank_request(
        body.query,
        first,
        stages=stages,
        top_k=body.top_k,
        alpha=body.alpha,
        webhook_url=body.webhook_url,
    )
    job_id = getattr(body, "job_id", None)
    return jobs.submit(request, job_id=job_id, owner=owner, digest=digest)


def _unavailable(first: SearchResult, exc: JobBackendError, job: JobRef | None) -> SearchResult:
    """Stage 1 with the rerank marked unavailable (the job backend is down)."""
    log.warning("rerank unavailable, returning stage 1: %s", exc)
    note = RerankNote(detail=client_text(str(exc), status=503))
    first.trace.notes.append("rerank unavailable: the job backend did not answer")
    return first.model_copy(update={"rerank": note, "job": job})


def search(
    engine: Engine,
    jobs: JobBackend,
    settings: Settings,
    body: SearchRequest,
    tenant: Tenant = PUBLIC,
) -> SearchResult:
    """Stage 1 inline; stages 2-3 as a job that ``mode`` says whether to wait for.

    When the job backend is down, the stage-1 result comes back at once with
    ``rerank.state == "unavailable"`` instead of an error.
    """
    wanted = check_stages(body.stages)
    check_query(body.query, settings.limits)
    engine.request_settings(limit=body.limit, top_k=body.top_k, alpha=body.alpha)
    _check_webhook(body.webhook_url, settings)
    first = engine.stage1(body.query, limit=body.limit)
    if body.mode is SearchMode.FAST or wanted == [1]:
        return first
    try:
        ref = _submit(engine, jobs, body, first, wanted, owner=tenant.id)
    except JobBackendError as exc:
        return _unavailable(first, exc, None)
    if body.mode is SearchMode.ASYNC:
        return _with_job(first, ref)
    deadline = body.deadline_s or settings.jobs.sync_deadline_s
    try:
        status = jobs.wait(ref.id, deadline, owner=tenant.id)
    except JobBackendError as exc:
        return _unavailable(first, exc, JobRef(id=ref.id, state=ref.state))
    if status.state is JobState.SUCCEEDED and status.result is not None:
        return _with_job(status.result, status)
    if status.state is JobState.FAILED:
        first.trace.notes.append(f"rerank job failed: {status.error}")
    return _with_job(first, status)


def submit_rerank_job(
    engine: Engine,
    jobs: JobBackend,
    settings: Settings,
    body: RerankJobRequest,
    tenant: Tenant = PUBLIC,
) -> JobRef:
    """A rerank job for ``body.query``; stage 1 is run now unless given.

    With ``job_id``, the same client input (the body without ``job_id``) gets
    the first submit's answer again (202, the id, ``queued``: GET the job for its
    state now) without running stage 1 again; other input under that id is a 409.
    """
    stages = check_rerank_stages(body.stages)
    check_query(body.query, settings.limits)
    if body.stage1 is not None:
        check_stage1(body.stage1, settings.limits)
    engine.request_settings(limit=body.limit, top_k=body.top_k, alpha=body.alpha)
    _check_webhook(body.webhook_url, settings)
    digest = input_digest(body.model_dump(mode="json", exclude={"job_id"}))
    if body.job_id is not None:
        existing = jobs.find(body.job_id, owner=tenant.id, digest=digest)
        if existing is not None:
            return JobRef(id=existing.id, state=JobState.QUEUED)
    first = body.stage1 or engine.stage1(body.query, limit=body.limit)
    ref = _submit(engine, jobs, body, first, stages, owner=tenant.id, digest=digest)
    return JobRef(id=ref.id, state=JobState.QUEUED)  # a concurrent twin: the same answer


def replay_webhook(
    jobs: JobBackend, sender: WebhookSender | None, job_id: str, *, owner: str, admin: bool
) -> str:
    """Delivers a finished job's webhook again; returns the outcome in words."""
    record = jobs.record(job_id, owner=owner, admin=admin)
    if not record.request.webhook_url:
        raise InputError(f"job {job_id!r} has no webhook_url; nothing to send")
    if record.state not in (JobState.SUCCEEDED, JobState.FAILED):
        raise JobNotFinishedError(
            f"job {job_id!r} is {record.state.value}; webhooks are sent for finished jobs"
        )
    if sender is None:
        raise InputError("no webhook secret is configured (IMAGESCOPE_JOBS__WEBHOOK_SECRET)")
    outcome = sender.deliver(record.request.webhook_url, record.status().model_dump_json().encode())
    jobs.set_webhook(record, outcome)
    return outcome


class JobNotFinishedError(InputError):
    status_code = 409


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
        store_state = f"unavailable: {client_text(str(exc), status=503)}"
    try:
        jobs.ping()
    except ImageScopeError as exc:
        jobs_state = f"unavailable: {client_text(str(exc), status=503)}"
    ok = store_state == "ok" and jobs_state == "ok"
    report = Health(
        status="ok" if ok else "degraded",
        store=store_state,
        jobs=jobs_state,
        catalog_size=size,
        models=engine.model_ids(),
    )
    return report, ok
