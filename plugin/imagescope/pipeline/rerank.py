"""Stages 2-3 over a stage-1 result, and the merge back.

``rerank`` is the plain function a rerank job runs (in-process or on a Celery
worker). Merge-back: the reranked top-k, then the rest of the stage-1 ranking
unchanged. Running it twice on the same request gives the same result
(deterministic backends), which makes jobs idempotent by job id.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cache, partial

from PIL.Image import Image

from imagescope.pipeline.context import Components
from imagescope.pipeline.stage1 import instruction_of
from imagescope.pipeline.stage2 import make_propositions, rank_by_satisfied, verify_candidates
from imagescope.pipeline.stage3 import evaluate_top
from imagescope.pipeline.trace import timed
from imagescope.schemas import (
    Candidate,
    ComposedQuery,
    RerankRequest,
    SearchResult,
    StageName,
    Trace,
)

Progress = Callable[[float], None]


def _explain(candidates: Sequence[Candidate], *, total_props: int) -> list[Candidate]:
    out = []
    for new_rank, cand in enumerate(candidates, start=1):
        parts = []
        if cand.satisfied is not None and total_props:
            parts.append(f"{cand.satisfied}/{total_props} propositions hold")
        if cand.evaluation is not None:
            verdict = "accepted" if cand.evaluation.accepted else "rejected"
            parts.append(f"evaluator {verdict}: {cand.evaluation.reason}".rstrip(": "))
        if new_rank != cand.stage1_rank:
            direction = "up" if new_rank < cand.stage1_rank else "down"
            parts.append(f"moved {direction} from #{cand.stage1_rank} to #{new_rank}")
        if cand.reason:
            parts.append(cand.reason)
        out.append(cand.model_copy(update={"reason": "; ".join(parts)}))
    return out


def _reference_image(components: Components, request: RerankRequest) -> Image | None:
    query = request.query
    if isinstance(query, ComposedQuery):
        return components.images.load(query.reference)
    return None


def _reference_id(request: RerankRequest) -> str | None:
    query = request.query
    return query.reference.id if isinstance(query, ComposedQuery) else None


def rerank(
    components: Components,
    request: RerankRequest,
    *,
    progress: Progress | None = None,
) -> SearchResult:
    """Run the requested stages (2 and/or 3) on ``request.stage1``'s top-k."""
    report = progress or (lambda _fraction: None)
    stage1 = request.stage1
    trace: Trace = stage1.trace.model_copy(deep=True)
    trace.models.update(components.model_ids())
    ranked = list(stage1.candidates[: request.top_k])
    rest = list(stage1.candidates[request.top_k :])
    instruction = instruction_of(request.query)
    # Loaded once, and only when a stage asks for it (stage 2 only with a
    # verifier that reads the reference).
    reference = cache(partial(_reference_image, components, request))
    stages = [1]
    if 2 in request.stages:
        with timed(trace, StageName.PROPOSITIONS):
            trace.propositions = make_propositions(
                components,
                instruction,
                edits=trace.edits,
                descriptions=trace.descriptions,
                reference_caption=trace.reference_caption,
                trace=trace,
                reference=reference,
            )
        report(0.2)
        with timed(trace, StageName.VERIFY):
            ranked = rank_by_satisfied(
                verify_candidates(components, ranked, trace.propositions, trace=trace)
            )
        stages.append(2)
        report(0.7)
    if 3 in request.stages:
        with timed(trace, StageName.EVALUATE):
            ranked = evaluate_top(
                components,
                ranked,
                alpha=request.alpha,
                instruction=instruction,
                reference=reference(),
                early_exit=request.early_exit,
                trace=trace,
                reference_id=_reference_id(request),
            )
        stages.append(3)
    report(1.0)
    trace.stages_run = stages
    merged = _explain(ranked, total_props=len(trace.propositions)) + rest
    return SearchResult(candidates=merged, trace=trace, stages=stages, job=stage1.job)
