"""Stage 3: global pairwise evaluation of the first alpha candidates.

In stage-2 order, the evaluator sees the reference (or nothing) beside each
candidate with the instruction. Accepted candidates move to the front in
their order; the others keep the stage-2 order. With early exit the
evaluation stops at the first accepted candidate (the paper's setting).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from PIL.Image import Image

from imagescope.errors import ImageScopeError
from imagescope.models.base import EvaluationItem
from imagescope.pipeline.context import Components
from imagescope.pipeline.trace import costed
from imagescope.schemas import Candidate, Evaluation, Trace

log = logging.getLogger(__name__)


def _evaluate_one(
    components: Components,
    candidate: Candidate,
    *,
    instruction: str,
    reference: Image | None,
    trace: Trace,
) -> Evaluation | None:
    evaluator = components.evaluator
    assert evaluator is not None
    try:
        image = components.images.by_id(candidate.id)
    except ImageScopeError as exc:
        log.warning("candidate %s cannot be evaluated: %s", candidate.id, exc)
        return None
    item = EvaluationItem(
        candidate_id=candidate.id, candidate=image, instruction=instruction, reference=reference
    )
    with costed(trace, "evaluator", evaluator):
        return evaluator.evaluate([item])[0]


def evaluate_top(
    components: Components,
    ranked: Sequence[Candidate],
    *,
    alpha: int,
    instruction: str,
    reference: Image | None,
    early_exit: bool,
    trace: Trace,
) -> list[Candidate]:
    """Returns ``ranked`` reordered: accepted among the first ``alpha`` go first."""
    if components.evaluator is None or alpha <= 0:
        return list(ranked)
    judged: list[Candidate] = []
    for candidate in ranked[:alpha]:
        evaluation = _evaluate_one(
            components, candidate, instruction=instruction, reference=reference, trace=trace
        )
        judged.append(candidate.model_copy(update={"evaluation": evaluation}))
        if early_exit and evaluation is not None and evaluation.accepted:
            break
    accepted = [c for c in judged if c.evaluation is not None and c.evaluation.accepted]
    rejected = [c for c in judged if c.evaluation is None or not c.evaluation.accepted]
    return accepted + rejected + list(ranked[len(judged) :])
