"""Stage 1: reason about the query, then retrieve with the fused CLIP score.

Every query kind becomes an instruction plus, for composed queries, the
reference image's caption; a dialog reaches the reasoner as its caption and
turns, one round at a time (round r: the caption and the first r turns).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from imagescope.errors import EmptyQueryError, ModelBackendError
from imagescope.models.base import dialog_text
from imagescope.pipeline.context import Components
from imagescope.pipeline.fusion import fused_search
from imagescope.pipeline.trace import costed, timed
from imagescope.schemas import (
    Candidate,
    ComposedQuery,
    DialogQuery,
    DialogTurn,
    Intent,
    Query,
    SearchResult,
    StageName,
    TextQuery,
    Trace,
)
from imagescope.settings import PipelineSettings

log = logging.getLogger(__name__)


def fallback_intent(instruction: str, reference_caption: str | None) -> Intent:
    """The raw instruction (with the reference caption) as the only description."""
    text = f"{reference_caption.strip()}, {instruction}" if reference_caption else instruction
    return Intent(descriptions=[text], fallback=True)


def synthesize(
    components: Components,
    instruction: str,
    *,
    reference_caption: str | None,
    num_descriptions: int,
    trace: Trace,
    turns: Sequence[DialogTurn] | None = None,
) -> Intent:
    """Stage 1a with the method's robustness rule: unusable output -> fallback.

    ``turns``: a dialog's rounds, ``instruction`` then being its caption."""
    reasoner = components.reasoner
    try:
        with costed(trace, "reasoner", reasoner):
            intent = reasoner.synthesize_intent(
                instruction,
                reference_caption=reference_caption,
                num_descriptions=num_descriptions,
                turns=turns,
            )
        descriptions = [d.strip() for d in intent.descriptions if d and d.strip()]
        if not descriptions:
            raise ModelBackendError("the reasoner returned no description")
        return intent.model_copy(update={"descriptions": descriptions})
    except ModelBackendError as exc:
        log.warning("intent synthesis failed (%s); using the raw instruction", exc)
        trace.notes.append(f"intent fallback: {exc}")
        text = dialog_text(instruction, turns) if turns else instruction
        return fallback_intent(text, reference_caption)


def reference_caption(components: Components, query: ComposedQuery, trace: Trace) -> str | None:
    """The reference image enters as its caption (catalog caption, or made now)."""
    ref = query.reference
    if ref.id is not None:
        records = components.store.get([ref.id])
        if records and records[0].caption:
            return records[0].caption
    image = components.images.load(ref)
    if components.captioner is not None:
        with costed(trace, "captioner", components.captioner):
            return components.captioner.caption([image])[0]
    # No captioner: borrow the caption of the catalog image nearest to the reference.
    vector = components.embedder.embed_images([image])
    hits = components.store.knn("image", vector, k=1)[0]
    neighbours = components.store.get([h.id for h in hits])
    if neighbours and neighbours[0].caption:
        trace.notes.append(f"reference caption borrowed from nearest catalog image {hits[0].id}")
        return neighbours[0].caption
    trace.notes.append("reference image has no caption; searching by the instruction alone")
    return None


def dialog_intents(
    components: Components,
    caption: str,
    turns: list[DialogTurn],
    *,
    num_descriptions: int,
    trace: Trace,
) -> list[Intent]:
    """One intent per round: round r is the caption with the first r turns."""
    return [
        synthesize(
            components,
            caption,
            reference_caption=None,
            num_descriptions=num_descriptions,
            trace=trace,
            turns=turns[:rounds] or None,
        )
        for rounds in range(len(turns) + 1)
    ]


def instruction_of(query: Query) -> str:
    """The instruction stages 2 and 3 check candidates against."""
    if isinstance(query, TextQuery):
        return query.text.strip()
    if isinstance(query, ComposedQuery):
        return query.instruction.strip()
    return dialog_text(query.caption, query.turns)


def _check_not_empty(query: Query) -> None:
    text = instruction_of(query)
    if not text.strip(" ."):
        raise EmptyQueryError("the query has no text: give a text, an instruction or a caption")


def understand(
    components: Components, query: Query, *, params: PipelineSettings, trace: Trace
) -> Intent:
    """Stage 1a for any query kind; fills the trace's reasoning fields."""
    _check_not_empty(query)
    with timed(trace, StageName.INTENT):
        if isinstance(query, DialogQuery):
            rounds = dialog_intents(
                components,
                query.caption,
                query.turns,
                num_descriptions=params.num_descriptions,
                trace=trace,
            )
            trace.dialog_rounds = [r.descriptions for r in rounds]
            intent = rounds[-1]
        else:
            ref_caption = None
            if isinstance(query, ComposedQuery):
                ref_caption = reference_caption(components, query, trace)
                trace.reference_caption = ref_caption
            intent = synthesize(
                components,
                instruction_of(query),
                reference_caption=ref_caption,
                num_descriptions=params.num_descriptions,
                trace=trace,
            )
    trace.descriptions = intent.descriptions
    trace.edits = intent.edits
    trace.intent_fallback = intent.fallback
    return intent


def retrieve(
    components: Components,
    descriptions: list[str],
    *,
    params: PipelineSettings,
    filters: dict[str, object] | None = None,
    exclude: frozenset[str] = frozenset(),
) -> list[Candidate]:
    """Stage 1b: fused k-NN over image and caption vectors, averaged over descriptions."""
    vectors = components.embedder.embed_texts(descriptions)
    hits = fused_search(
        components.store,
        np.asarray(vectors, dtype=np.float32),
        limit=params.limit + len(exclude),
        tau=params.tau,
        num_candidates=params.num_candidates,
        filters=filters,  # type: ignore[arg-type]
    )
    kept = [h for h in hits if h.id not in exclude][: params.limit]
    return [
        Candidate(
            id=h.id,
            score=h.score,
            image_score=h.image_score,
            caption_score=h.caption_score,
            stage1_rank=rank,
            caption=h.record.caption,
            uri=h.record.uri,
            metadata=h.record.metadata,
        )
        for rank, h in enumerate(kept, start=1)
    ]


def run_stage1(components: Components, query: Query, *, params: PipelineSettings) -> SearchResult:
    trace = Trace(models=components.model_ids(), stages_run=[1])
    intent = understand(components, query, params=params, trace=trace)
    exclude: frozenset[str] = frozenset()
    if isinstance(query, ComposedQuery) and query.reference.id and params.exclude_reference:
        exclude = frozenset({query.reference.id})
    with timed(trace, StageName.RETRIEVE):
        candidates = retrieve(
            components,
            intent.descriptions,
            params=params,
            filters=dict(query.filters),
            exclude=exclude,
        )
    return SearchResult(candidates=candidates, trace=trace, stages=[1])
