"""Stored image vectors for the judges of stages 2 and 3.

A judge that scores image embeddings (the CLIP verifier and evaluator) names
the embedder whose vectors it accepts (``image_vector_model``). When that is
the pipeline's embedder, the one whose image vectors the catalog holds (stage
1 searches them with its text vectors, so they must agree), the candidates'
vectors are read from the store and passed with the items instead of being
encoded from the pixels again.
"""

from __future__ import annotations

from collections.abc import Sequence

from imagescope.models.base import Vector
from imagescope.pipeline.context import Components


def reuses_vectors(components: Components, judge_model: str | None) -> bool:
    """Whether a judge accepting ``judge_model``'s vectors can use the catalog's."""
    return judge_model is not None and judge_model == components.embedder.model_id


def stored_image_vectors(
    components: Components, ids: Sequence[str], *, judge_model: str | None
) -> dict[str, Vector]:
    """Image vectors of the catalog ids that have one ({} when the judge cannot use them)."""
    wanted = list(dict.fromkeys(i for i in ids if i))
    if not wanted or not reuses_vectors(components, judge_model):
        return {}
    records = components.store.get(wanted, with_vectors=True)
    return {r.id: r.image_vector for r in records if r.image_vector is not None}
