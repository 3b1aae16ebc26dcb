"""Request and response bodies of the HTTP API (the shared models live in imagescope.schemas)."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from imagescope.schemas import Query, SearchResult

_TEXT_EXAMPLE: dict[str, JsonValue] = {"kind": "text", "text": "a man walking on a street at night"}
_COMPOSED_EXAMPLE: dict[str, JsonValue] = {
    "kind": "composed",
    "reference": {"id": "img-00042"},
    "instruction": "same dress, but red with long sleeves",
    "filters": {"category": "dress"},
}


class SearchMode(StrEnum):
    #: Stage 1 only.
    FAST = "fast"
    #: Stage 1 now, plus a rerank job id to poll (or a webhook).
    ASYNC = "async"
    #: Wait for the rerank up to a deadline; on time-out, stage 1 plus the job id.
    SYNC = "sync"


class SearchRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"query": _TEXT_EXAMPLE, "mode": "fast", "limit": 20},
                {"query": _COMPOSED_EXAMPLE, "mode": "sync", "top_k": 20, "alpha": 3},
            ]
        },
    )

    query: Query
    mode: SearchMode = SearchMode.SYNC
    stages: list[int] = Field(default_factory=lambda: [1, 2, 3], description="Among 1, 2, 3.")
    limit: int | None = Field(default=None, ge=1, le=1000, description="Stage-1 list length.")
    top_k: int | None = Field(default=None, ge=1, le=500, description="Candidates verified.")
    alpha: int | None = Field(default=None, ge=0, le=100, description="Candidates evaluated.")
    webhook_url: str | None = Field(
        default=None, description="POSTed the signed job status when the rerank finishes."
    )
    deadline_s: float | None = Field(
        default=None, gt=0, le=600, description="mode=sync: how long to wait for the rerank."
    )


class RerankJobRequest(BaseModel):
    """A rerank job for a query; its stage-1 result is given or computed now."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"query": _TEXT_EXAMPLE, "stages": [2, 3], "top_k": 20}]},
    )

    query: Query
    stage1: SearchResult | None = Field(
        default=None, description="A stage-1 result from POST /v1/search (mode=fast)."
    )
    stages: list[int] = Field(default_factory=lambda: [2, 3], description="Among 2, 3.")
    limit: int | None = Field(default=None, ge=1, le=1000)
    top_k: int | None = Field(default=None, ge=1, le=500)
    alpha: int | None = Field(default=None, ge=0, le=100)
    webhook_url: str | None = None
    job_id: str | None = Field(
        default=None, description="Your own id (idempotent submit); a new one when absent."
    )


class WebhookReplay(BaseModel):
    id: str
    outcome: str = Field(examples=["delivered"])


class ImageToken(BaseModel):
    """Sent as ``?token=`` (or set as a cookie) to load images without X-API-Key."""

    token: str
    expires_at: int = Field(description="Unix seconds; ask for a new token before then.")


class ErrorBody(BaseModel):
    """Every error response: a machine-readable kind and a sentence that says what to fix."""

    error: str = Field(examples=["UnknownIdError"])
    detail: str = Field(examples=["unknown job id: 'f3a9'"])


class Health(BaseModel):
    status: str = Field(examples=["ok"])
    store: str
    jobs: str
    catalog_size: int | None = None
    models: dict[str, str] = Field(default_factory=dict)


ERROR_RESPONSES: dict[int | str, dict[str, object]] = {
    400: {"model": ErrorBody, "description": "Bad input; the detail says how to fix it."},
    401: {"model": ErrorBody, "description": "Missing or wrong X-API-Key."},
    404: {"model": ErrorBody, "description": "Unknown image or job id (or another key's job)."},
    409: {"model": ErrorBody, "description": "A job id already used by another request."},
    413: {"model": ErrorBody, "description": "Request body or image too large."},
    422: {"model": ErrorBody, "description": "Invalid input; the detail names the field."},
    429: {"model": ErrorBody, "description": "Too many unfinished jobs for this API key."},
    503: {"model": ErrorBody, "description": "A backend (store, model, broker) failed."},
}
