"""Stage 3: global pairwise evaluation of the first alpha candidates.

In stage-2 order, the evaluator sees the reference (or nothing) beside each
candidate with the instruction. Accepted candidates move to the front in
their order; the others keep the stage-2 order. With early exit the
evaluation stops at the first accepted candidate (the paper's setting).

Each candidate is judged alone (``Evaluator.evaluate_each``). An evaluator
that judges in bulk cheaply (``judges_in_bulk``, the CLIP evaluator) gets
the whole shortlist in one call and early exit cuts its answers at the first
acceptance, which gives the same result as asking one by one; the others are
asked one candidate at a time, so early exit saves their calls.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from functools import partial

from PIL.Image import Image

from imagescope.errors import ImageScopeError
from imagescope.models.base import EvaluationItem, Vector
from imagescope.pipeline.context import Components
from imagescope.pipeline.trace import costed
from imagescope.pipeline.vectors import stored_image_vectors
from imagescope.schemas import Candidate, Evaluation, Trace

log = logging.getLogger(__name__)


def _item(
    components: Components,
    candidate: Candidate,
    *,
    instruction: str,
    reference: Image | None,
    vectors: Mapping[str, Vector],
    reference_id: str | None,
) -> EvaluationItem | None:
    """The evaluator's item for ``candidate``; None when its image cannot be read."""
    try:
        image = components.images.by_id(candidate.id)
    except ImageScopeError as exc:
        log.warning("candidate %s cannot be evaluated: %s", candidate.id, exc)
        return None
    return EvaluationItem(
        candidate_id=candidate.id,
        candidate=image,
        instruction=instruction,
        reference=reference,
        candidate_vector=vectors.get(candidate.id),
        reference_vector=None
        if reference is None or not reference_id
        else vectors.get(reference_id),
    )


def _judge(
    components: Components, items: Sequence[EvaluationItem | None], *, trace: Trace
) -> list[Evaluation | None]:
    """Every readable item judged alone, all in one evaluator call."""
    evaluator = components.evaluator
    assert evaluator is not None
    readable = [item for item in items if item is not None]
    if not readable:
        return [None] * len(items)
    with costed(trace, "evaluator", evaluator):
        found = iter(evaluator.evaluate_each(readable))
    return [None if item is None else next(found) for item in items]


def evaluate_top(
    components: Components,
    ranked: Sequence[Candidate],
    *,
    alpha: int,
    instruction: str,
    reference: Image | None,
    early_exit: bool,
    trace: Trace,
    reference_id: str | None = None,
) -> list[Candidate]:
    """Returns ``ranked`` reordered: accepted among the first ``alpha`` go first.

    ``reference_id``: the catalog id of the reference image, if it has one
    (its stored vector is then used where the evaluator can).
    """
    evaluator = components.evaluator
    if evaluator is None or alpha <= 0:
        return list(ranked)
    shortlist = list(ranked[:alpha])
    ids = [c.id for c in shortlist] + ([reference_id] if reference_id else [])
    vectors = stored_image_vectors(components, ids, judge_model=evaluator.image_vector_model)
    make = partial(
        _item,
        components,
        instruction=instruction,
        reference=reference,
        vectors=vectors,
        reference_id=reference_id,
    )
    # In bulk: the whole shortlist at once, cut below at the first acceptance.
    bulk = (
        _judge(components, [make(c) for c in shortlist], trace=trace)
        if evaluator.judges_in_bulk
        else None
    )
    judged: list[Candidate] = []
    for index, candidate in enumerate(shortlist):
        if bulk is not None:
            evaluation = bulk[index]
        else:
            evaluation = _judge(components, [make(candidate)], trace=trace)[0]
        judged.append(candidate.model_copy(update={"evaluation": evaluation}))
        if early_exit and evaluation is not None and evaluation.accepted:
            break
    accepted = [c for c in judged if c.evaluation is not None and c.evaluation.accepted]
    rejected = [c for c in judged if c.evaluation is None or not c.evaluation.accepted]
    return accepted + rejected + list(ranked[len(judged) :])
