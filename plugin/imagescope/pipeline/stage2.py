"""Stage 2: local verification of predicate propositions.

Propositions (yes/no questions with expected answers) are asked about each of
the top-k candidates alone; the top-k is re-sorted by how many answers match,
stably, so ties keep the stage-1 order. Candidates below k are not touched.
All questions about all candidates go to the verifier in one call, with the
candidates' stored image vectors when it can use them (``pipeline.vectors``).

For a composed query, a verifier that ``reads_details`` is first asked about
the reference image itself: the details its caption leaves out
(:mod:`~imagescope.models.reference_details`), when the reasoner is a
``ReferenceReader``. The propositions then describe the target from the
fuller reference description and the edit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from PIL.Image import Image

from imagescope.errors import ImageScopeError, ModelBackendError
from imagescope.models.base import VerifyItem
from imagescope.models.reference_details import ReferenceReader, confirmed
from imagescope.pipeline.context import Components, cache_key
from imagescope.pipeline.trace import costed
from imagescope.pipeline.vectors import stored_image_vectors
from imagescope.schemas import (
    Answer,
    AtomicEdit,
    Candidate,
    CostRecord,
    Proposition,
    Trace,
    Verdict,
)

log = logging.getLogger(__name__)

Progress = Callable[[float], None]


def make_propositions(
    components: Components,
    instruction: str,
    *,
    edits: Sequence[AtomicEdit],
    descriptions: Sequence[str],
    reference_caption: str | None,
    trace: Trace,
    reference: Callable[[], Image | None] | None = None,
) -> list[Proposition]:
    """Stage 2a; a reasoner failure leaves stage 2 without propositions (noted).

    ``reference``: loads a composed query's reference image, read for details
    its caption leaves out (see the module docstring); called only when the
    verifier and the reasoner can use it."""
    try:
        fuller = reference_details(components, reference, reference_caption, trace=trace)
        if fuller is not None:
            with costed(trace, "reasoner", components.reasoner):
                intent = components.reasoner.synthesize_intent(
                    instruction, reference_caption=fuller, num_descriptions=len(descriptions) or 3
                )
            edits, descriptions, reference_caption = intent.edits, intent.descriptions, fuller
        with costed(trace, "reasoner", components.reasoner):
            props = components.reasoner.make_propositions(
                instruction,
                edits=edits,
                descriptions=descriptions,
                reference_caption=reference_caption,
            )
    except ModelBackendError as exc:
        log.warning("proposition generation failed: %s", exc)
        trace.notes.append(f"no propositions: {exc}")
        return []
    seen: set[str] = set()
    unique = []
    for p in props:
        key = p.question.strip().lower()
        if key and key not in seen:
            seen.add(key)
            unique.append(p)
    return unique


def reference_details(
    components: Components,
    reference: Callable[[], Image | None] | None,
    caption: str | None,
    *,
    trace: Trace,
) -> str | None:
    """The reference caption with the details the verifier confirms on the reference
    image (``reference`` loads it); None when nothing was asked or confirmed, or the
    image cannot be read (noted in the trace)."""
    reasoner, verifier = components.reasoner, components.verifier
    if reference is None or not caption or verifier is None:
        return None
    if not getattr(verifier, "reads_details", False) or not isinstance(reasoner, ReferenceReader):
        return None
    asked = reasoner.reference_probes(caption)
    if not asked:
        return None
    try:
        image = reference()
    except ImageScopeError as exc:  # stage 2 goes on with the caption alone
        log.warning("reference image not readable: %s", exc)
        return None
    if image is None:
        return None
    items = [VerifyItem("reference", image, p.question) for p in asked]
    try:
        with costed(trace, "verifier", verifier):
            found = confirmed(asked, verifier.verify(items))
    except ModelBackendError as exc:
        log.warning("reading the reference failed: %s", exc)
        trace.notes.append(f"reference not read: {exc}")
        return None
    if not found:
        return None
    fuller = reasoner.with_reference_details(caption, found)
    trace.notes.append(
        f"reference read by the verifier ({len(asked)} questions): {caption!r} -> {fuller!r}"
    )
    return fuller


def _lookup_cached(
    components: Components, pairs: list[tuple[str, str]], model_id: str
) -> dict[tuple[str, str], Answer]:
    if components.cache is None:
        return {}
    keys = {cache_key(i, q, model_id): (i, q) for i, q in pairs}
    hits = components.cache.get_many(keys)
    return {keys[k]: answer for k, answer in hits.items()}


def _ask(
    components: Components,
    pairs: list[tuple[str, str]],
    *,
    trace: Trace,
) -> tuple[dict[tuple[str, str], Answer], set[tuple[str, str]], set[str]]:
    """Answers for (image id, question) pairs, the pairs served from the cache,
    and the ids whose image could not be read."""
    verifier = components.verifier
    assert verifier is not None
    answers = _lookup_cached(components, pairs, verifier.model_id)
    trace.costs.setdefault("verifier", CostRecord()).cache_hits += len(answers)
    cached = set(answers)
    missing = [p for p in pairs if p not in answers]
    images, unreadable = {}, set()
    for image_id in dict.fromkeys(i for i, _ in missing):
        try:
            images[image_id] = components.images.by_id(image_id)
        except ImageScopeError as exc:
            log.warning("candidate %s cannot be verified: %s", image_id, exc)
            unreadable.add(image_id)
    stored = stored_image_vectors(components, list(images), judge_model=verifier.image_vector_model)
    items = [VerifyItem(i, images[i], q, stored.get(i)) for i, q in missing if i in images]
    if items:
        with costed(trace, "verifier", verifier, calls=1):
            fresh = verifier.verify(items)
        new = {(it.image_id, it.question): a for it, a in zip(items, fresh, strict=True)}
        answers.update(new)
        if components.cache is not None:
            components.cache.put_many(
                {cache_key(i, q, verifier.model_id): a for (i, q), a in new.items()}
            )
    return answers, cached, unreadable


def verify_candidates(
    components: Components,
    candidates: Sequence[Candidate],
    propositions: Sequence[Proposition],
    *,
    trace: Trace,
) -> list[Candidate]:
    """Fills ``verdicts`` and ``satisfied`` for each candidate (same order)."""
    if components.verifier is None or not propositions:
        return list(candidates)
    pairs = [(c.id, p.question) for c in candidates for p in propositions]
    answers, cached, unreadable = _ask(components, pairs, trace=trace)
    out = []
    for cand in candidates:
        verdicts = []
        for prop in propositions:
            answer = answers.get((cand.id, prop.question))
            if answer is None:
                continue
            verdicts.append(
                Verdict(
                    question=prop.question,
                    expected=prop.expected,
                    answer=answer.yes,
                    p_yes=answer.p_yes,
                    satisfied=answer.yes == prop.expected,
                    cached=(cand.id, prop.question) in cached,
                )
            )
        note = "image unreadable; not verified" if cand.id in unreadable else cand.reason
        out.append(
            cand.model_copy(
                update={
                    "verdicts": verdicts,
                    "satisfied": sum(v.satisfied for v in verdicts),
                    "reason": note,
                }
            )
        )
    return out


def rank_by_satisfied(candidates: Sequence[Candidate]) -> list[Candidate]:
    """Stable sort by the number of satisfied propositions, most first."""
    return sorted(candidates, key=lambda c: -(c.satisfied or 0))
