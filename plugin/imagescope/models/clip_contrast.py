"""Yes/no questions restated as captions a CLIP model can compare.

CLIP does not understand negation: "a photo with a dog" against "a photo
without a dog" is close to a coin flip. It does tell values of one attribute
apart well, so a question about a value is turned into a *contrast*: the
positive caption and the same caption with the asked value swapped for the
other values of its class.

- "Are the two squares on the left pink?" -> "a photo of two pink squares on
  the left" against "... two red squares ...", "... two green squares ...";
- "Are the two pink squares on the right?" -> against "... on the left",
  "... at the top"...; a trailing phrase with a class word ("on a white
  background") swaps that word;
- "Are there two pink squares?" -> against one and three pink squares;
  "Is there a pink square?" or "Is the pink shape a square?" -> against a
  pink circle, a pink star...

A question with nothing to swap ("Is there a dog?") keeps the positive
caption alone (and its negated form, see :func:`question_to_statements`);
the verifier then judges it against the other images of the same call.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from typing import NamedTuple

from imagescope.errors import InputError
from imagescope.models.description_edit import PREPOSITIONS, Description, render, tokenize
from imagescope.models.word_classes import (
    DETERMINERS,
    NOUN_CLASSES,
    POSITION_CONTRAST,
    POSITIONS,
    article_for,
    class_of,
    count_of,
    is_plural,
    singularize,
)

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


class Contrast(NamedTuple):
    """A positive caption and the captions it must beat (none: judge by the batch)."""

    positive: str
    alternatives: tuple[str, ...]
    negative: str


_EXISTS = re.compile(r"^(?:(?:is|are) there|(?:can|do) (?:you|we|i) see) (?:any |some )?(?P<x>.+)$")
_IS = re.compile(r"^(?:is|are) (?P<x>.+)$")
_PHOTO = "a photo of "
Edit = Callable[[Description, str], None]


def _caption(text: str) -> str:
    """ "the cross on a grey background" -> "a photo of a cross on a grey background"."""
    words = tokenize(text)
    if words[:1] == ["the"]:
        words = words[1:]
    head = Description(" ".join(words)).subject()
    counted = bool(words) and (words[0] in DETERMINERS or count_of(words[0]) is not None)
    if head is not None and not counted and not is_plural(words[head]):
        words = [article_for(words[0]), *words]
    return _PHOTO + render(words)


def _with_attribute(scene: Description, value: str) -> None:
    scene.set_attribute(None, value)


def _with_noun(scene: Description, value: str) -> None:
    scene.replace(None, value)


def _with_count(scene: Description, value: str) -> None:
    scene.set_count(None, int(value))


def _at(scene: Description, value: str) -> None:
    scene.place(None, value)


def _variants(text: str, values: Sequence[str], *, edit: Edit) -> list[str]:
    """``text`` edited once per value (the claim's value first)."""
    out = []
    for value in values:
        scene = Description(text)
        edit(scene, value)
        out.append(str(scene))
    return out


def _existence(thing: str) -> list[str]:
    """ "two pink squares" -> other counts; "a pink square" -> other kinds of shape."""
    scene = Description(thing)
    head = scene.subject()
    if head is None:
        return [thing]
    start, _ = scene.span(head)
    numbers = [count_of(t) for t in scene.tokens[start:head] if t not in {"a", "an"}]
    count = next((n for n in numbers if n is not None), None)
    if count is not None:
        others = [str(n) for n in (count - 1, count + 1) if n >= 1]
        return [thing, *_variants(thing, others, edit=_with_count)]
    noun = singularize(scene.tokens[head])
    kind = next((c for c in NOUN_CLASSES if noun in c.words), None)
    if kind is None:
        return [thing]
    return [thing, *_variants(thing, [v for v in kind.contrast if v != noun], edit=_with_noun)]


def _predicate(words: list[str]) -> list[str] | None:
    """Variants of "<subject> <value>" with the value swapped, when the value is
    an adjective, a noun or a position of a known class."""
    last = class_of(words[-1])
    if last is not None and last not in NOUN_CLASSES:
        size = 2 if len(words) > 2 and class_of(words[-2]) is last else 1
        value = " ".join(words[-size:])
        others = [v for v in last.contrast if v not in value.split()]
        return _variants(" ".join(words[:-size]), [value, *others], edit=_with_attribute)
    kind = next((c for c in NOUN_CLASSES if singularize(words[-1]) in c.words), None)
    if kind is not None:
        subject = " ".join(words[:-2] if words[-2] in {"a", "an"} else words[:-1])
        value = singularize(words[-1])
        return _variants(
            subject, [value, *(v for v in kind.contrast if v != value)], edit=_with_noun
        )
    if len(words) > 3 and words[-3] in {"on", "to", "at", "in"} and words[-2] == "the":
        where = words[-1]
        if where in POSITIONS:
            places = [where, *(v for v in POSITION_CONTRAST if v != where)]
            return _variants(" ".join(words[:-3]), places, edit=_at)
    return _in_phrase(words)


def _in_phrase(words: list[str]) -> list[str] | None:
    """The last prepositional phrase holds a class word: variants with it swapped."""
    starts = [i for i, w in enumerate(words) if w in PREPOSITIONS and i > 0]
    if not starts:
        return None
    for index in range(starts[-1] + 1, len(words)):
        word_class = class_of(words[index])
        if word_class is not None and word_class not in NOUN_CLASSES:
            values = [words[index], *(v for v in word_class.contrast if v != words[index])]
            return [render([*words[:index], v, *words[index + 1 :]]) for v in values]
    return None


@functools.lru_cache(maxsize=4096)
def question_to_contrast(question: str) -> Contrast:
    """The contrast a CLIP judge scores for a yes/no question (see the module doc).

    An empty question raises ``InputError``. Results are cached (the judges ask
    the same questions about every candidate, and across queries).
    """
    pair = question_to_statements(question)
    text = _clean(question).lower()
    variants: list[str] | None = None
    if (exists := _EXISTS.match(text)) is not None:
        variants = _existence(exists["x"])
    elif (state := _IS.match(text)) is not None and len(state["x"].split()) > 1:
        variants = _predicate(tokenize(state["x"]))
    if not variants or len(variants) < 2:
        return Contrast(pair.positive, (), pair.negative)
    claim, *others = [_caption(v) for v in variants]
    alternatives = tuple(a for a in dict.fromkeys(others) if a != claim)
    if not alternatives:
        return Contrast(pair.positive, (), pair.negative)
    return Contrast(claim, alternatives, pair.negative)
