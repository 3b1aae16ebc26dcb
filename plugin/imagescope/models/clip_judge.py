"""CPU fallbacks for stages 2 and 3 that need no language model, on any Embedder.

``ClipVerifier`` answers a yes/no question by zero-shot classification: the
question becomes a statement and its negation ("Is there a fridge?" ->
"a photo with a fridge" / "a photo without a fridge") and the image picks the
closer one. ``ClipEvaluator`` accepts a candidate that matches the instruction
better than the reference image does (or, without a reference, well enough in
absolute terms). Both are far weaker than a vision-language model, and
honest about it: every answer carries the similarities it was decided on.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Hashable, Sequence
from typing import NamedTuple, TypeVar

import numpy as np

from imagescope.errors import ConfigError, InputError
from imagescope.models.base import (
    Embedder,
    EvaluationItem,
    Evaluator,
    Vectors,
    Verifier,
    VerifyItem,
)
from imagescope.schemas import Answer, Evaluation

_Item = TypeVar("_Item")

_DETERMINERS = frozenset(
    "the a an this that these those his her its their my your our some any every each "
    "one two three four five several many".split()
)
_PREPOSITIONS = frozenset(
    "on in at under over above below behind beside near next inside outside into onto "
    "around against between by with without from along across through toward towards "
    "underneath beneath".split()
)
_PARTICIPLES = frozenset("made worn held shown seen built torn broken written hung lit".split())
_PREDICATE_OPENERS = _PREPOSITIONS | _PARTICIPLES | {"a", "an"}
_MODIFIERS = frozenset("very dark light bright pale deep fully partly mostly completely".split())
_CONJUNCTIONS = frozenset({"and", "or"})
_PHOTO_OF = r"(?:(?:a|an) (?:photo|picture|image) of )?"
_QUANTIFIER = r"(?:any |some )?"


class StatementPair(NamedTuple):
    """A yes/no question restated as what a "yes" image shows, and a "no" image."""

    positive: str
    negative: str


def _clean(question: str) -> str:
    return re.sub(r"\s+", " ", question).strip().rstrip("?.! ").strip()


def _presence(match: re.Match[str]) -> StatementPair:
    thing = match["x"]
    return StatementPair(f"a photo with {thing}", f"a photo without {thing}")


def _identity(match: re.Match[str]) -> StatementPair:
    thing = match["x"]
    return StatementPair(f"a photo of {thing}", f"a photo that is not of {thing}")


def _possession(match: re.Match[str]) -> StatementPair:
    subject, thing = match["subj"], match["x"]
    return StatementPair(
        f"a photo of {subject} with {thing}", f"a photo of {subject} without {thing}"
    )


def _subject_end(words: list[str]) -> int:
    """Index of the first word after a simple subject (determiner + head noun)."""
    return 2 if words[0].lower() in _DETERMINERS and len(words) > 2 else 1


def _predicate_start(words: list[str]) -> int:
    """Where "<subject> <predicate>" splits in the words after "is/are"."""
    first = _subject_end(words)
    for index in range(first, len(words)):
        word = words[index].lower()
        if word in _PREDICATE_OPENERS or word.endswith(("ing", "ed")):
            return index
    index = len(words) - 1
    while index - 1 >= first and words[index - 1].lower() in _CONJUNCTIONS:
        index = max(index - 2, first)
    if index - 1 >= first and words[index - 1].lower() in _MODIFIERS:
        index -= 1
    return index


def _state(match: re.Match[str]) -> StatementPair | None:
    words = match["rest"].split()
    if len(words) < 2:
        return None
    split = _predicate_start(words)
    subject, predicate = " ".join(words[:split]), " ".join(words[split:])
    verb = "are" if match["aux"].lower() in {"are", "were"} else "is"
    return StatementPair(
        f"a photo where {subject} {verb} {predicate}",
        f"a photo where {subject} {verb} not {predicate}",
    )


def _third_person(verb: str) -> str:
    lower = verb.lower()
    if lower == "have":
        return "has"
    if lower.endswith(("s", "sh", "ch", "x", "z", "o")):
        return verb + "es"
    if len(lower) > 1 and lower.endswith("y") and lower[-2] not in "aeiou":
        return verb[:-1] + "ies"
    return verb + "s"


def _action(match: re.Match[str]) -> StatementPair | None:
    words = match["rest"].split()
    split = _subject_end(words)
    if len(words) <= split:
        return None
    subject, verb, tail = " ".join(words[:split]), words[split], words[split + 1 :]
    aux = match["aux"].lower()
    acted = _third_person(verb) if aux == "does" else verb
    rest = " ".join(tail)
    return StatementPair(
        f"a photo where {subject} {acted} {rest}".rstrip(),
        f"a photo where {subject} {aux} not {verb} {rest}".rstrip(),
    )


_RULES: list[tuple[re.Pattern[str], Callable[[re.Match[str]], StatementPair | None]]] = [
    (re.compile(rf"^(?:is|are) there {_QUANTIFIER}(?P<x>.+)$", re.I), _presence),
    (re.compile(rf"^(?:can|do) (?:you|we|i) see {_QUANTIFIER}(?P<x>.+)$", re.I), _presence),
    (re.compile(rf"^is (?:it|this|that) {_PHOTO_OF}(?P<x>(?:a|an) .+)$", re.I), _identity),
    (
        re.compile(r"^(?:does|do) (?P<subj>.+?) (?:have|has|contain|include) (?P<x>.+)$", re.I),
        _possession,
    ),
    (re.compile(r"^(?P<aux>is|are|was|were) (?P<rest>.+)$", re.I), _state),
    (re.compile(r"^(?P<aux>does|do) (?P<rest>.+)$", re.I), _action),
]


def question_to_statements(question: str) -> StatementPair:
    """Restate a yes/no question as two captions a CLIP model can compare.

    Handles "Is/Are there X?", "Can you see X?", "Is this a X?", "Does the X
    have Y?", "Is/Are the X Y?", "Is X ...?" and "Does the X <verb> ...?";
    anything else becomes "a photo showing ..." / "a photo not showing ...".
    An empty question raises ``InputError``.
    """
    text = _clean(question)
    if not text:
        raise InputError("empty question: give a yes/no question such as 'Is there a dog?'")
    for pattern, build in _RULES:
        match = pattern.match(text)
        pair = build(match) if match else None
        if pair is not None:
            return pair
    shown = text[0].lower() + text[1:]
    return StatementPair(f"a photo showing {shown}", f"a photo not showing {shown}")


def _embed_unique(
    items: Sequence[_Item],
    key: Callable[[_Item], Hashable],
    embed: Callable[[list[_Item]], Vectors],
) -> list[np.ndarray]:
    """Embed each distinct input once; return one row per input, in order."""
    first: dict[Hashable, int] = {}
    unique: list[_Item] = []
    for item in items:
        if key(item) not in first:
            first[key(item)] = len(unique)
            unique.append(item)
    vectors = embed(unique) if unique else np.zeros((0, 0), dtype=np.float32)
    return [vectors[first[key(item)]] for item in items]


def _sigmoid(x: float) -> float:
    return 0.5 * (1.0 + math.tanh(0.5 * x))


class ClipVerifier(Verifier):
    """Zero-shot yes/no answers from image-text similarity.

    For each item: ``p_yes`` is the softmax, at ``temperature``, of the image's
    similarities to the positive statement (less ``margin``) and to the negative
    one; ``yes`` is ``p_yes > 0.5``, i.e. the positive statement wins by more than
    ``margin``. Within one call each distinct statement is embedded once, and
    each image once per ``image_id`` (items sharing an id share the image).
    """

    def __init__(self, embedder: Embedder, *, margin: float = 0.0, temperature: float = 100.0):
        if temperature <= 0:
            raise ConfigError(f"temperature must be positive, got {temperature}")
        self.embedder = embedder
        self.margin = margin
        self.temperature = temperature
        self.model_id = f"clip-verifier:{embedder.model_id}:m{margin:g}:t{temperature:g}"

    def verify(self, items: Sequence[VerifyItem]) -> list[Answer]:
        if not items:
            return []
        pairs = [question_to_statements(item.question) for item in items]
        statements = [s for pair in pairs for s in pair]
        text_rows = _embed_unique(statements, lambda s: s, self.embedder.embed_texts)
        image_rows = _embed_unique(
            list(items),
            lambda item: item.image_id,
            lambda u: self.embedder.embed_images([i.image for i in u]),
        )
        return [
            self._answer(image_rows[n], text_rows[2 * n], text_rows[2 * n + 1], pair)
            for n, pair in enumerate(pairs)
        ]

    def _answer(
        self, image: np.ndarray, positive: np.ndarray, negative: np.ndarray, pair: StatementPair
    ) -> Answer:
        sim_yes, sim_no = float(image @ positive), float(image @ negative)
        p_yes = _sigmoid(self.temperature * (sim_yes - self.margin - sim_no))
        raw = (
            f"sim({pair.positive!r})={sim_yes:.4f} sim({pair.negative!r})={sim_no:.4f} "
            f"margin={self.margin:g}"
        )
        return Answer(yes=p_yes > 0.5, p_yes=p_yes, raw=raw)


class ClipEvaluator(Evaluator):
    """Stage-3 judge from instruction-image similarity.

    With a reference image: accept when the candidate's similarity to the
    instruction exceeds the reference's by more than ``margin`` (the candidate
    moved towards the requested change). Without one: accept when the
    candidate's similarity reaches ``threshold`` (model-dependent; about 0.25
    suits CLIP ViT-B/32). The reason states the numbers. Within one call each
    distinct instruction and image object is embedded once.
    """

    def __init__(self, embedder: Embedder, *, threshold: float = 0.25, margin: float = 0.0):
        self.embedder = embedder
        self.threshold = threshold
        self.margin = margin
        self.model_id = f"clip-evaluator:{embedder.model_id}:m{margin:g}:th{threshold:g}"

    def evaluate(self, items: Sequence[EvaluationItem]) -> list[Evaluation]:
        if not items:
            return []
        texts = _embed_unique(
            [item.instruction for item in items], lambda s: s, self.embedder.embed_texts
        )
        images = [item.candidate for item in items]
        images += [item.reference for item in items if item.reference is not None]
        image_rows = _embed_unique(images, id, self.embedder.embed_images)
        by_object = {id(image): row for image, row in zip(images, image_rows, strict=True)}
        return [
            self._judge(
                texts[n],
                by_object[id(item.candidate)],
                None if item.reference is None else by_object[id(item.reference)],
            )
            for n, item in enumerate(items)
        ]

    def _judge(
        self, instruction: np.ndarray, candidate: np.ndarray, reference: np.ndarray | None
    ) -> Evaluation:
        sim_candidate = float(instruction @ candidate)
        if reference is None:
            accepted = sim_candidate >= self.threshold
            reason = (
                f"instruction similarity {sim_candidate:.3f} "
                f"{'reaches' if accepted else 'is below'} the threshold {self.threshold:.3f}"
            )
            return Evaluation(
                accepted=accepted, reason=reason, raw=f"candidate={sim_candidate:.4f}"
            )
        sim_reference = float(instruction @ reference)
        gain = sim_candidate - sim_reference
        accepted = gain > self.margin
        reason = (
            f"instruction similarity {sim_candidate:.3f} vs reference {sim_reference:.3f} "
            f"(gain {gain:+.3f}, {'above' if accepted else 'not above'} margin {self.margin:.3f})"
        )
        raw = f"candidate={sim_candidate:.4f} reference={sim_reference:.4f}"
        return Evaluation(accepted=accepted, reason=reason, raw=raw)
