"""Pydantic models shared by the engine, the API, the workers and the CLI."""

from __future__ import annotations

from collections.abc import Collection
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# --------------------------------------------------------------------------- queries

#: A metadata filter: exact value, any of several values, or a numeric range.
FilterValue = str | int | float | bool | list[str | int | float | bool] | dict[str, float]
Filters = dict[str, FilterValue]


class ImageRef(BaseModel):
    """Where a query's reference image comes from: exactly one of the fields."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(default=None, description="A catalog image id.")
    path: str | None = Field(default=None, description="A file under an allowed root.")
    url: str | None = Field(default=None, description="An http(s) URL (public hosts only).")
    data: str | None = Field(default=None, description="Base64 image bytes (an upload).")

    @model_validator(mode="after")
    def _exactly_one(self) -> ImageRef:
        given = [n for n in ("id", "path", "url", "data") if getattr(self, n)]
        if len(given) != 1:
            raise ValueError("give exactly one of id, path, url, data for the reference image")
        return self


class _QueryBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    filters: Filters = Field(default_factory=dict)


class TextQuery(_QueryBase):
    kind: Literal["text"] = "text"
    text: str = Field(min_length=1, examples=["a man walking on a street at night"])


class ComposedQuery(_QueryBase):
    kind: Literal["composed"] = "composed"
    reference: ImageRef
    instruction: str = Field(min_length=1, examples=["same dress, but red with long sleeves"])


class DialogTurn(BaseModel):
    question: str
    answer: str


class DialogQuery(_QueryBase):
    kind: Literal["dialog"] = "dialog"
    caption: str = Field(min_length=1)
    turns: list[DialogTurn] = Field(default_factory=list)


Query = Annotated[TextQuery | ComposedQuery | DialogQuery, Field(discriminator="kind")]

# --------------------------------------------------------------------------- reasoning


class EditKind(StrEnum):
    ADDITION = "addition"
    REMOVAL = "removal"
    MODIFICATION = "modification"
    COMPARISON = "comparison"
    RETENTION = "retention"


class AtomicEdit(BaseModel):
    kind: EditKind
    element: str
    detail: str = ""


class Intent(BaseModel):
    """Stage 1a output: the atomic edits and the target descriptions."""

    edits: list[AtomicEdit] = Field(default_factory=list)
    #: Coarse to fine: core elements; elements + key attributes; full synthesis.
    descriptions: list[str] = Field(min_length=1)
    #: True when the reasoner's output could not be used and the raw text stood in.
    fallback: bool = False
    reasoning: str = ""


class Proposition(BaseModel):
    """A yes/no question about a candidate image and the answer a match gives."""

    statement: str = ""
    question: str
    expected: bool = True


# --------------------------------------------------------------------------- results


class Answer(BaseModel):
    """A verifier's answer to one (image, question) pair."""

    yes: bool
    #: P(yes) from token log-probabilities or a similarity margin, when known.
    p_yes: float | None = None
    raw: str = ""


class Verdict(BaseModel):
    """One proposition checked on one candidate."""

    question: str
    expected: bool
    answer: bool
    p_yes: float | None = None
    satisfied: bool
    cached: bool = False


class Evaluation(BaseModel):
    """Stage 3: the evaluator's verdict on one candidate."""

    accepted: bool
    reason: str = ""
    raw: str = ""


class Candidate(BaseModel):
    id: str
    #: Stage-1 fused score, averaged over descriptions.
    score: float
    image_score: float = 0.0
    caption_score: float = 0.0
    stage1_rank: int = Field(ge=1)
    caption: str = ""
    uri: str = ""
    metadata: dict[str, Any] = Field(default_factory=dict)
    verdicts: list[Verdict] = Field(default_factory=list)
    satisfied: int | None = None
    evaluation: Evaluation | None = None
    #: Why the candidate moved, in words (filled by stages 2-3).
    reason: str = ""


class StageName(StrEnum):
    INTENT = "intent"
    RETRIEVE = "retrieve"
    PROPOSITIONS = "propositions"
    VERIFY = "verify"
    EVALUATE = "evaluate"


class CostRecord(BaseModel):
    calls: int = 0
    tokens: int = 0
    cache_hits: int = 0
    seconds: float = 0.0


class Trace(BaseModel):
    """Everything a reviewer needs to see why the ranking is what it is."""

    descriptions: list[str] = Field(default_factory=list)
    edits: list[AtomicEdit] = Field(default_factory=list)
    intent_fallback: bool = False
    reference_caption: str | None = None
    propositions: list[Proposition] = Field(default_factory=list)
    #: Per-stage wall seconds, keyed by StageName value.
    timings: dict[str, float] = Field(default_factory=dict)
    #: Model id per role: embedder, reasoner, verifier, evaluator, captioner.
    models: dict[str, str] = Field(default_factory=dict)
    costs: dict[str, CostRecord] = Field(default_factory=dict)
    stages_run: list[int] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    dialog_rounds: list[list[str]] = Field(default_factory=list)


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class JobRef(BaseModel):
    id: str
    state: JobState


class RerankNote(BaseModel):
    """Why a search result carries no rerank job: ``state`` is ``unavailable`` when
    the job backend could not take or report on the job (the result is stage 1)."""

    state: Literal["unavailable"] = "unavailable"
    detail: str = ""


class SearchResult(BaseModel):
    candidates: list[Candidate]
    trace: Trace
    #: Which stages produced this order (1, 2, 3).
    stages: list[int] = Field(default_factory=lambda: [1])
    job: JobRef | None = None
    #: Set when stages 2-3 were asked for but could not be run (stage 1 is returned).
    rerank: RerankNote | None = None

    def rank_of(self, ids: Collection[str], *, by_stage1: bool = False) -> int | None:
        """1-based rank of the first candidate whose id is in ``ids`` (None: none is).

        ``by_stage1``: the rank in the stage-1 order instead of this result's.
        """
        order = sorted(self.candidates, key=lambda c: c.stage1_rank) if by_stage1 else None
        ranked = order if order is not None else self.candidates
        return next((rank for rank, c in enumerate(ranked, start=1) if c.id in ids), None)


class RerankRequest(BaseModel):
    """What a rerank job needs: the query, its stage-1 outcome, the knobs."""

    query: Query
    stage1: SearchResult
    stages: list[int] = Field(default_factory=lambda: [2, 3])
    #: The knobs come from ``PipelineSettings`` (``Engine.rerank_request`` fills them).
    top_k: int = Field(ge=1)
    alpha: int = Field(ge=0)
    early_exit: bool = True
    webhook_url: str | None = None

    @model_validator(mode="after")
    def _alpha_within_top_k(self) -> RerankRequest:
        if self.alpha > self.top_k:
            raise ValueError(f"alpha ({self.alpha}) must not exceed top_k ({self.top_k})")
        return self


class JobStatus(BaseModel):
    id: str
    state: JobState
    progress: float = Field(default=0.0, ge=0.0, le=1.0)
    result: SearchResult | None = None
    error: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
