"""CPU fallbacks for stages 2 and 3 that need no language model, on any Embedder.

Both judges score *contrasts* (:mod:`~imagescope.models.clip_contrast`): a
claimed caption against the same caption with the asked value swapped for the
other values of its class ("a blue square" against "a red square", "a green
square"...), which CLIP ranks far more reliably than it understands "not".
An alternative whose text embedding is very close to the claim's (cosine at
least ``max_alternative_similarity``: a word the model barely reads, or a
near-synonym) is no evidence either way and is left out.

``ClipVerifier`` says no only when another value clearly beats the claim;
questions with nothing to swap ("Is there a dog?") are judged against the
other images of the same call. ``ClipEvaluator`` accepts only with evidence:
a candidate judged alone must fit the instruction's checkable claims by a
margin and, with a reference image, show the requested change more than the
reference does; candidates judged together for one reference are compared,
and the one closest to the reference among those showing the change wins.
Both are far weaker than a vision-language model, and honest about it: every
answer carries the similarities it was decided on.

Cost: each judge embeds every distinct text of a call in one batch, through
an LRU text-vector cache shared by the judges of one embedder object
(:mod:`~imagescope.models.text_cache`), and uses the images' stored vectors
(``image_vector`` of the items) instead of encoding the pixels again when the
pipeline passes them (it does when ``image_vector_model`` is the embedder
that wrote the catalog).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import median

import numpy as np

from imagescope.errors import ConfigError
from imagescope.models.base import (
    Embedder,
    EvaluationItem,
    Evaluator,
    Reasoner,
    Verifier,
    VerifyItem,
)
from imagescope.models.clip_contrast import (
    Contrast,
    StatementPair,
    question_to_contrast,
    question_to_statements,
)
from imagescope.models.clip_scoring import (
    Scoring,
    Texts,
    all_texts,
    embed_unique,
    sigmoid,
)
from imagescope.models.text_cache import TextVectorCache, cache_for
from imagescope.schemas import Answer, Evaluation, Proposition

__all__ = [
    "ClipEvaluator",
    "ClipVerifier",
    "Contrast",
    "StatementPair",
    "question_to_contrast",
    "question_to_statements",
]


class ClipVerifier(Verifier):
    """Zero-shot yes/no answers from image-text similarity.

    With alternatives: the lead of the claim over the best alternative that
    the model can tell from it (text similarity below
    ``max_alternative_similarity``), plus ``tolerance`` times the spread of
    the similarities, less ``margin``; yes when positive, ``p_yes`` its sigmoid
    at ``temperature``. So the answer is no only when another value clearly
    wins; when no alternative can be told apart the answer is yes at
    ``p_yes`` 0.5. Without alternatives, asked about at least ``min_batch``
    distinct images in the call: yes when the image's presence score
    (similarity to the caption less similarity to "a photo") reaches the
    median of those images; with fewer images, the caption must beat its
    negation by ``margin``. An answer can therefore depend on the other
    images in the call. Each distinct text is embedded once per call, each
    image once per ``image_id``.
    """

    def __init__(
        self,
        embedder: Embedder,
        *,
        margin: float = 0.0,
        temperature: float = 100.0,
        tolerance: float = 0.1,
        max_alternative_similarity: float = 0.96,
        min_batch: int = 3,
        text_cache: TextVectorCache | None = None,
    ):
        if temperature <= 0:
            raise ConfigError(f"temperature must be positive, got {temperature}")
        if min_batch < 2:
            raise ConfigError(f"min_batch must be at least 2, got {min_batch}")
        self.embedder = embedder
        self.text_cache = cache_for(embedder) if text_cache is None else text_cache
        self.image_vector_model = embedder.model_id
        self.margin = margin
        self.temperature = temperature
        self.min_batch = min_batch
        self.tolerance = tolerance
        self.scoring = Scoring(max_alternative_similarity)
        self.model_id = (
            f"clip-verifier:{embedder.model_id}:m{margin:g}:t{temperature:g}:tol{tolerance:g}"
            f":s{max_alternative_similarity:g}"
        )

    def verify(self, items: Sequence[VerifyItem]) -> list[Answer]:
        if not items:
            return []
        contrasts = [question_to_contrast(item.question) for item in items]
        texts = Texts(self.embedder, all_texts(contrasts), self.text_cache)
        images = embed_unique(
            list(items),
            lambda item: item.image_id,
            lambda u: self.embedder.embed_images([i.image for i in u]),
            stored=lambda item: item.image_vector,
        )
        medians = self._presence_medians(items, contrasts, texts=texts, images=images)
        return [
            self._answer(texts, image, contrast=contrast, batch_median=medians.get(item.question))
            for item, contrast, image in zip(items, contrasts, images, strict=True)
        ]

    def _presence_medians(
        self,
        items: Sequence[VerifyItem],
        contrasts: Sequence[Contrast],
        *,
        texts: Texts,
        images: Sequence[np.ndarray],
    ) -> dict[str, float]:
        """Per question without alternatives: the median presence score of its images."""
        scores: dict[str, dict[str, float]] = defaultdict(dict)
        for item, contrast, image in zip(items, contrasts, images, strict=True):
            if not contrast.alternatives:
                scores[item.question][item.image_id] = texts.presence(image, contrast)
        return {
            question: median(by_image.values())
            for question, by_image in scores.items()
            if len(by_image) >= self.min_batch
        }

    def _answer(
        self,
        texts: Texts,
        image: np.ndarray,
        *,
        contrast: Contrast,
        batch_median: float | None,
    ) -> Answer:
        if contrast.alternatives:
            scored = self.scoring.lead(texts, image, contrast=contrast)
            if scored is None:
                raw = f"no alternative to {contrast.positive!r} can be told apart; yes by default"
                return Answer(yes=True, p_yes=0.5, raw=raw)
            lead = scored[0] + self.tolerance * scored[1] - self.margin
            raw = f"lead of {contrast.positive!r} over {len(contrast.alternatives)} alternatives"
        elif batch_median is not None:
            lead = texts.presence(image, contrast) - batch_median
            raw = f"presence of {contrast.positive!r} vs the batch median {batch_median:.4f}"
        else:
            sim_yes, sim_no = texts.sims(image, [contrast.positive, contrast.negative])
            lead = sim_yes - sim_no - self.margin
            raw = (
                f"sim({contrast.positive!r})={sim_yes:.4f} sim({contrast.negative!r})={sim_no:.4f}"
            )
        yes = lead > 0 or (batch_median is not None and lead == 0)
        p_yes = sigmoid(self.temperature * lead)
        return Answer(yes=yes, p_yes=p_yes, raw=f"{raw}: {lead:+.4f} (margin={self.margin:g})")


@dataclass(frozen=True)
class _Claim:
    """A checkable claim of an instruction: a contrast and the answer a match gives."""

    proposition: Proposition
    contrast: Contrast


@dataclass(frozen=True)
class _Evidence:
    """What the claims say about one candidate."""

    fit: float | None  # mean fit over the checkable claims; None: none checkable
    gain: float | None  # mean fit gained over the reference (claims expected true)
    retention: float | None  # image similarity to the reference
    shown: str  # every claim's fit, for the record


class ClipEvaluator(Evaluator):
    """Stage-3 judge: accepts a candidate only when there is evidence for it.

    The instruction's claims are the propositions ``reasoner`` (default: the
    rule reasoner) makes for it, restated as contrasts; only claims with an
    alternative the model can tell apart count, and without any the candidate
    is rejected. A claim's *fit* on an image is its lead over the best
    alternative divided by the spread of the similarities (-1 to 1), signed by
    the expected answer.

    A candidate judged alone is accepted when its mean fit is above
    ``margin`` and, with a reference image, the change shows: the mean fit of
    the claims expected true beats the reference's by more than ``margin``.
    Candidates judged together (one call, same instruction and reference
    image) are compared instead: of those on which the change shows at all
    (gain over the reference above zero, or nothing checkable), only the one
    closest to the reference image (image similarity) is accepted, since a
    composed query wants the reference with the edit and everything else kept.
    """

    def __init__(
        self,
        embedder: Embedder,
        *,
        margin: float = 0.1,
        max_alternative_similarity: float = 0.96,
        reasoner: Reasoner | None = None,
        text_cache: TextVectorCache | None = None,
    ):
        if reasoner is None:
            from imagescope.models.rule_reasoner import RuleReasoner

            reasoner = RuleReasoner()
        self.embedder = embedder
        self.text_cache = cache_for(embedder) if text_cache is None else text_cache
        self.image_vector_model = embedder.model_id
        self.judges_in_bulk = True
        self.margin = margin
        self.reasoner = reasoner
        self.scoring = Scoring(max_alternative_similarity)
        self.model_id = (
            f"clip-evaluator:{embedder.model_id}:{reasoner.model_id}:m{margin:g}"
            f":s{max_alternative_similarity:g}"
        )

    def claims(self, instruction: str) -> list[_Claim]:
        """The propositions of ``instruction`` that have alternatives to contrast."""
        if not instruction.strip():
            return []
        intent = self.reasoner.synthesize_intent(instruction, reference_caption=None)
        propositions = self.reasoner.make_propositions(
            instruction,
            edits=intent.edits,
            descriptions=intent.descriptions,
            reference_caption=None,
        )
        found = [_Claim(p, question_to_contrast(p.question)) for p in propositions]
        return [c for c in found if c.contrast.alternatives]

    def evaluate(self, items: Sequence[EvaluationItem]) -> list[Evaluation]:
        if not items:
            return []
        evidence = self._all_evidence(items)
        groups: dict[tuple[str, int], list[int]] = defaultdict(list)
        for index, item in enumerate(items):
            if item.reference is not None:
                groups[(item.instruction, id(item.reference))].append(index)
        verdicts = [self._alone(e) for e in evidence]
        for members in groups.values():
            if len(members) > 1:
                for index, verdict in self._together([evidence[i] for i in members]):
                    verdicts[members[index]] = verdict
        return verdicts

    def evaluate_each(self, items: Sequence[EvaluationItem]) -> list[Evaluation]:
        """Each item judged alone (as ``evaluate([item])``), with one text batch for all."""
        return [self._alone(e) for e in self._all_evidence(items)] if items else []

    def _all_evidence(self, items: Sequence[EvaluationItem]) -> list[_Evidence]:
        claims = {text: self.claims(text) for text in dict.fromkeys(i.instruction for i in items)}
        contrasts = [c.contrast for found in claims.values() for c in found]
        texts = Texts(self.embedder, all_texts(contrasts), self.text_cache)
        pairs = [(item.candidate, item.candidate_vector) for item in items]
        pairs += [(i.reference, i.reference_vector) for i in items if i.reference is not None]
        rows = embed_unique(
            pairs,
            lambda pair: id(pair[0]),
            lambda unique: self.embedder.embed_images([image for image, _ in unique]),
            stored=lambda pair: pair[1],
        )
        vector = {id(image): row for (image, _), row in zip(pairs, rows, strict=True)}
        return [
            self._evidence(
                texts,
                claims[item.instruction],
                candidate=vector[id(item.candidate)],
                reference=None if item.reference is None else vector[id(item.reference)],
            )
            for item in items
        ]

    def _fits(
        self, texts: Texts, claims: Sequence[_Claim], *, image: np.ndarray
    ) -> dict[int, float]:
        """Claim index -> fit on ``image`` (claims that cannot be compared left out)."""
        fits = {}
        for index, claim in enumerate(claims):
            scored = self.scoring.lead(texts, image, contrast=claim.contrast)
            if scored is not None:
                lead, spread = scored
                fit = lead / spread if spread > 0 else 0.0
                fits[index] = fit if claim.proposition.expected else -fit
        return fits

    def _evidence(
        self,
        texts: Texts,
        claims: Sequence[_Claim],
        *,
        candidate: np.ndarray,
        reference: np.ndarray | None,
    ) -> _Evidence:
        fits = self._fits(texts, claims, image=candidate)
        shown = "; ".join(f"{claims[i].proposition.question} {f:+.2f}" for i, f in fits.items())
        fit = sum(fits.values()) / len(fits) if fits else None
        if reference is None:
            return _Evidence(fit, None, None, shown)
        before = self._fits(texts, claims, image=reference)
        wanted = [i for i in fits if i in before and claims[i].proposition.expected]
        gain = sum(fits[i] - before[i] for i in wanted) / len(wanted) if wanted else None
        return _Evidence(fit, gain, float(candidate @ reference), shown)

    def _alone(self, evidence: _Evidence) -> Evaluation:
        if evidence.fit is None:
            reason = "no claim of the instruction can be checked by contrast"
            return Evaluation(accepted=False, reason=reason)
        reason = f"mean fit {evidence.fit:+.3f} of the instruction's claims"
        if evidence.fit <= self.margin:
            reason += f" is not above {self.margin:g}"
            return Evaluation(accepted=False, reason=reason, raw=evidence.shown)
        if evidence.retention is not None:
            gain = evidence.gain if evidence.gain is not None else 0.0
            if gain <= self.margin:
                reason += f", but the change does not show: gain {gain:+.3f} over the reference"
                return Evaluation(accepted=False, reason=reason, raw=evidence.shown)
            reason += f", gain {gain:+.3f} over the reference"
        return Evaluation(accepted=True, reason=reason, raw=evidence.shown)

    def _together(self, group: Sequence[_Evidence]) -> list[tuple[int, Evaluation]]:
        """Candidates of one reference judged together: the closest eligible one wins."""
        eligible = [i for i, e in enumerate(group) if e.gain is None or e.gain > 0]
        best = max((group[i].retention or 0.0 for i in eligible), default=None)
        out = []
        for index, evidence in enumerate(group):
            retention = evidence.retention or 0.0
            if index not in eligible:
                gain = evidence.gain or 0.0
                reason = f"the requested change does not show: gain {gain:+.3f}"
            elif best is not None and retention < best:
                reason = (
                    f"another candidate is closer to the reference ({retention:.3f} < {best:.3f})"
                )
            else:
                reason = f"the closest to the reference ({retention:.3f}) of {len(group)} judged"
                out.append((index, Evaluation(accepted=True, reason=reason, raw=evidence.shown)))
                continue
            out.append((index, Evaluation(accepted=False, reason=reason, raw=evidence.shown)))
        return out


def clip_judges(
    embedder: Embedder, *, reuse: bool = True, text_cache: TextVectorCache | None = None
) -> tuple[ClipVerifier, ClipEvaluator]:
    """The CLIP verifier and evaluator over one embedder, sharing one text cache.

    ``reuse=False`` is the path that re-encodes every candidate image and text
    and judges the shortlist one candidate at a time: the baseline that the
    vector-reuse path is measured (``benchmarks/bench_query.py``) and tested
    (``tests/unit/test_vector_reuse.py``) against.
    """
    cache = text_cache if reuse else TextVectorCache(max_items=0)
    verifier = ClipVerifier(embedder, text_cache=cache)
    evaluator = ClipEvaluator(embedder, text_cache=cache)
    if not reuse:
        verifier.image_vector_model = None
        evaluator.image_vector_model = None
        evaluator.judges_in_bulk = False
    return verifier, evaluator
