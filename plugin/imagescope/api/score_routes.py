"""``POST /v1/score``: ImageScope's verdict on hits another search found.

OpenSearch's search pipeline calls this (see ``store/opensearch_pipeline.py``)
with the client's query object and the hits' uris (or ids), in the hits'
order. The answer has one score, one explanation and one ``reranked`` flag per
hit, in the same order; sorting by the score gives ImageScope's order for those
hits after the requested stages (2 by default; 3 optional): the hits are
ImageScope's candidates in the order given, the query's descriptions and
propositions come from stage 1 on the query text.

Where the query text comes from: ``match``, ``match_phrase`` (``{"title": "..."}``
or ``{"title": {"query": "..."}}``), ``multi_match`` (``query``), ``neural`` and
``knn`` clauses with a ``query_text``, and the first of those inside a ``bool``
(must, should, filter); a plain string is the text itself. Anything else is an
HTTP 400 naming what is supported.

Deadline (``deadline_ms``): when scoring takes longer, the answer keeps the
original order (descending scores in the order given) with ``reranked: false``
for every hit; it is never an error.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from imagescope.api.deps import EngineDep, require_api_key
from imagescope.api.schemas import ERROR_RESPONSES
from imagescope.engine import Engine, check_rerank_stages
from imagescope.errors import InputError
from imagescope.schemas import Candidate, SearchResult

router = APIRouter(
    prefix="/v1",
    tags=["opensearch"],
    dependencies=[Depends(require_api_key)],
    responses=ERROR_RESPONSES,
)
#: Scoring runs here so a request can stop waiting at its deadline.
_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="score")
MAX_HITS = 200
TEXT_CLAUSES = ("match", "match_phrase", "match_phrase_prefix")
VECTOR_CLAUSES = ("neural", "knn")
SUPPORTED = "match, match_phrase, multi_match, neural or knn (with query_text), or a bool of those"


class ScoreRequest(BaseModel):
    #: The query text, or an OpenSearch query object (or a list of copies of one).
    query: str | dict[str, Any] | list[Any]
    ids: list[str] | None = Field(default=None, max_length=MAX_HITS)
    #: Values of the catalog's uri field (what the OpenSearch pipeline sends).
    uris: list[str | None] | None = Field(default=None, max_length=MAX_HITS)
    deadline_ms: int = Field(default=3000, ge=1, le=600_000)
    stages: list[int] = Field(default_factory=lambda: [2])


class ScoreResponse(BaseModel):
    query_text: str
    scores: list[float]
    explanations: list[str]
    reranked: list[bool]
    timed_out: bool = False
    took_ms: float


# --------------------------------------------------------------------------- query text


def _clause_text(kind: str, body: Any) -> str | None:
    if not isinstance(body, Mapping):
        return None
    if kind == "multi_match":
        text = body.get("query")
        return text if isinstance(text, str) else None
    for value in body.values():
        if kind in TEXT_CLAUSES and isinstance(value, str):
            return value
        if isinstance(value, Mapping):
            key = "query" if kind in TEXT_CLAUSES else "query_text"
            text = value.get(key)
            if isinstance(text, str):
                return text
    return None


def _bool_text(body: Any) -> str | None:
    if not isinstance(body, Mapping):
        return None
    for occur in ("must", "should", "filter"):
        clauses = body.get(occur) or []
        for clause in clauses if isinstance(clauses, list) else [clauses]:
            text = find_query_text(clause)
            if text:
                return text
    return None


def find_query_text(query: Any) -> str | None:
    """The text of an OpenSearch query object (``None`` when it has none we read)."""
    if isinstance(query, str):
        return query
    if isinstance(query, list):
        return find_query_text(query[0]) if query else None
    if not isinstance(query, Mapping):
        return None
    for kind, body in query.items():
        if kind == "bool":
            text = _bool_text(body)
        elif kind in (*TEXT_CLAUSES, "multi_match", *VECTOR_CLAUSES):
            text = _clause_text(kind, body)
        else:
            text = None
        if text:
            return text
    return None


def query_text(query: Any) -> str:
    """:func:`find_query_text`, or ``InputError`` saying which queries are read."""
    text = find_query_text(query)
    if text is None or not text.strip():
        shown = next(iter(query), "?") if isinstance(query, Mapping) else type(query).__name__
        raise InputError(f"no query text found in a {shown!r} query; ImageScope reads {SUPPORTED}")
    return text.strip()


# --------------------------------------------------------------------------- scoring


def rerank_given(
    engine: Engine, text: str, ids: Sequence[str], stages: Sequence[int]
) -> SearchResult:
    """ImageScope's later stages on ``ids`` in the order given, for the query ``text``."""
    first = engine.stage1(text)
    candidates = [Candidate(id=i, score=0.0, stage1_rank=n + 1) for n, i in enumerate(ids)]
    given = SearchResult(candidates=candidates, trace=first.trace, stages=[1])
    alpha = min(engine.request_settings().alpha, len(ids))
    request = engine.rerank_request(text, given, stages=stages, top_k=len(ids), alpha=alpha)
    return engine.rerank(request)


def explain(candidate: Candidate) -> str:
    """One line: how many propositions hold, the answers, the evaluator's reason."""
    parts = []
    if candidate.verdicts:
        held = sum(v.satisfied for v in candidate.verdicts)
        answers = "; ".join(
            f"{v.question} {'yes' if v.answer else 'no'}" for v in candidate.verdicts
        )
        parts.append(f"{held}/{len(candidate.verdicts)} propositions hold ({answers})")
    if candidate.evaluation is not None:
        verdict = "accepted" if candidate.evaluation.accepted else "rejected"
        parts.append(f"evaluator {verdict}: {candidate.evaluation.reason}".rstrip(": "))
    return ". ".join(parts) or "not verified"


def _resolve_ids(engine: Engine, body: ScoreRequest) -> list[str | None]:
    if body.ids is not None:
        present = {r.id for r in engine.records(list(dict.fromkeys(body.ids)))}
        return [i if i in present else None for i in body.ids]
    uris = list(body.uris or [])
    found = engine.ids_by_uri([u for u in uris if u])
    return [found.get(u) if u else None for u in uris]


def _scored(result: SearchResult, ids: Sequence[str | None]) -> tuple[list[float], list[str]]:
    n = len(ids)
    rank = {c.id: r for r, c in enumerate(result.candidates)}
    by_id = {c.id: c for c in result.candidates}
    scores, notes = [], []
    for position, image_id in enumerate(ids):
        if image_id is None or image_id not in rank:
            scores.append(-float(position))  # unknown hits keep their order, after the rest
            notes.append("not in the ImageScope catalog; not verified")
        else:
            scores.append(float(n - rank[image_id]))
            notes.append(explain(by_id[image_id]))
    return scores, notes


def _answer(
    text: str,
    scores: list[float],
    notes: list[str],
    flags: list[bool],
    started: float,
    *,
    timed_out: bool = False,
) -> ScoreResponse:
    return ScoreResponse(
        query_text=text,
        scores=scores,
        explanations=notes,
        reranked=flags,
        timed_out=timed_out,
        took_ms=round((time.monotonic() - started) * 1000, 1),
    )


def _original_order(n: int) -> list[float]:
    return [float(n - position) for position in range(n)]


@router.post("/score", response_model=ScoreResponse)
def score(body: ScoreRequest, engine: EngineDep) -> ScoreResponse:
    """Score the given hits for a query (used by OpenSearch's search pipeline)."""
    started = time.monotonic()
    text = query_text(body.query)
    if body.ids is None and body.uris is None:
        raise InputError("send the hits as ids or uris")
    stages = check_rerank_stages(body.stages)
    ids = _resolve_ids(engine, body)
    known = list(dict.fromkeys(i for i in ids if i))
    n = len(ids)
    if not known:
        return _answer(text, _original_order(n), ["not verified"] * n, [False] * n, started)
    future = _pool.submit(rerank_given, engine, text, known, stages)
    remaining = body.deadline_ms / 1000 - (time.monotonic() - started)
    try:
        result = future.result(timeout=max(remaining, 0.0))
    except FutureTimeout:
        note = f"deadline of {body.deadline_ms} ms passed; original order kept"
        flags = [False] * n
        return _answer(text, _original_order(n), [note] * n, flags, started, timed_out=True)
    scores, notes = _scored(result, ids)
    return _answer(text, scores, notes, [i is not None and i in known for i in ids], started)
