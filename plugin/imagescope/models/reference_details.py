"""A composed query's reference, described beyond its caption by a yes/no verifier.

A reference caption names some of what the reference shows ("a pink striped
cross"); the target keeps everything the edit does not change, so stage 2 can
only check kept details the caption names. A real system reads the rest off
the reference image. With a yes/no verifier that means asking about the
reference itself: for each detail of the caption's subject that the caption
leaves out (how many, pattern, place in the frame, background colour), one
question per ordinary English value ("Are the crosses on the left?", "Is the
background grey?"), and the value answered yes most surely is added to the
caption ("a pink striped cross at the top on a beige background").

Nothing here knows a catalog: the values are the generic word classes of
:mod:`~imagescope.models.word_classes`. A verifier opts in with a true
``reads_details`` attribute (one whose yes/no answers on such details are
reliable); a reasoner, by implementing :class:`ReferenceReader`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import NamedTuple, Protocol, runtime_checkable

from imagescope.models.description_edit import Description
from imagescope.models.rule_descriptions import apply_edits
from imagescope.models.word_classes import (
    COLOUR,
    NUMBER_WORDS,
    PATTERN,
    PATTERN_NOUNS,
    POSITION_CONTRAST,
    POSITION_PHRASE,
    count_of,
    is_plural,
    position_phrase,
)
from imagescope.schemas import Answer, AtomicEdit, EditKind

#: Counts asked about when a plural caption gives none.
PLURAL_COUNTS = (2, 3, 4, 5)
_BACKGROUND = re.compile(r"\bbackground\b")


class Probe(NamedTuple):
    """A question about the reference: ``aspect`` takes ``value`` (``detail`` in words)."""

    aspect: str
    value: str
    detail: str
    question: str


@runtime_checkable
class ReferenceReader(Protocol):
    """A reasoner that asks about a reference's unstated details and adds the answers."""

    def reference_probes(self, caption: str) -> list[Probe]: ...

    def with_reference_details(self, caption: str, confirmed: Sequence[Probe]) -> str: ...


def _subject(caption: str) -> tuple[str, int] | None:
    scene = Description(caption)
    head = scene.subject()
    return None if head is None else (scene.tokens[head], head)


def _count_stated(tokens: Sequence[str], head: int) -> bool:
    """A singular subject is one; a plural one needs a count word before it."""
    return not is_plural(tokens[head]) or any(count_of(w) for w in tokens[:head])


def unstated(caption: str) -> list[str]:
    """The aspects of the caption's subject it does not state, in asking order."""
    found = _subject(caption)
    if found is None:
        return []
    tokens = Description(caption).tokens
    words = set(tokens)
    missing = [] if _count_stated(tokens, found[1]) else ["count"]
    if not words & (PATTERN.words | set(PATTERN_NOUNS)):
        missing.append("pattern")
    if not POSITION_PHRASE.search(caption.lower()):
        missing.append("position")
    if not _BACKGROUND.search(caption.lower()):
        missing.append("background")
    return missing


def probes(caption: str) -> list[Probe]:
    """One question per value of each aspect the caption leaves out."""
    found = _subject(caption)
    if found is None:
        return []
    noun = found[0]
    be = "Are" if is_plural(noun) else "Is"
    out: list[Probe] = []
    for aspect in unstated(caption):
        if aspect == "count":
            out += [
                Probe(
                    aspect, str(n), NUMBER_WORDS[n], f"Are there exactly {NUMBER_WORDS[n]} {noun}?"
                )
                for n in PLURAL_COUNTS
            ]
        elif aspect == "pattern":
            out += [Probe(aspect, v, v, f"{be} the {noun} {v}?") for v in PATTERN.contrast]
        elif aspect == "position":
            out += [
                Probe(aspect, v, position_phrase(v), f"{be} the {noun} {position_phrase(v)}?")
                for v in POSITION_CONTRAST
            ]
        else:
            out += [
                Probe(aspect, c, f"on {_article(c)} {c} background", f"Is the background {c}?")
                for c in sorted(COLOUR.words)
            ]
    return out


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def confirmed(asked: Sequence[Probe], answers: Sequence[Answer]) -> list[Probe]:
    """Per aspect, the probe answered yes with the highest P(yes) (none when no yes)."""
    best: dict[str, tuple[float, Probe]] = {}
    for probe, answer in zip(asked, answers, strict=True):
        score = answer.p_yes if answer.p_yes is not None else float(answer.yes)
        if answer.yes and (probe.aspect not in best or score > best[probe.aspect][0]):
            best[probe.aspect] = (score, probe)
    return [best[p.aspect][1] for p in asked if p.aspect in best and best[p.aspect][1] is p]


def with_details(caption: str, found: Sequence[Probe]) -> str:
    """The caption with each confirmed detail added to its subject."""
    subject = _subject(caption)
    if subject is None or not found:
        return caption
    edits = [
        AtomicEdit(kind=EditKind.MODIFICATION, element=subject[0], detail=p.detail) for p in found
    ]
    return apply_edits(caption, edits) or caption
