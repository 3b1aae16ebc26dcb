"""Atomic edits -> the rule reasoner's three target descriptions.

The edits are applied to the reference caption with
:class:`~imagescope.models.description_edit.Description` (a new value
replaces the old value of its class, a replacement swaps the noun, counts
re-inflect it, places replace places). The method asks for three
descriptions, coarse to fine; here they are

1. the subject: the head noun phrase of the edited scene ("three brown dogs");
2. the subject and every edit: the subject plus each phrase that carries
   something the instruction asked for ("three brown dogs, with a ball");
3. the full scene: the whole edited caption.

Levels that coincide are told apart by the fuller phrasing "a photo of ..."
so that the three are always distinct strings.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import lemminflect

from imagescope.models.description_edit import (
    PREPOSITIONS,
    Description,
    is_stop,
    position_of,
    render,
    tokenize,
)
from imagescope.models.lexicon import comparative_base, is_verb_only
from imagescope.models.rule_clauses import ATTRIBUTES
from imagescope.models.rule_propositions import COMPARATIVES
from imagescope.models.word_classes import (
    DETERMINERS,
    PATTERN_NOUNS,
    PRONOUNS,
    class_of,
    count_of,
    is_plural,
    pluralize,
)
from imagescope.schemas import AtomicEdit, EditKind

_PLACE = re.compile(
    r"^(?:on|in|at|to|onto|into|towards?|against|under|near|beside|behind|by|in front of|from)\s"
)
_NEGATED = re.compile(
    r"^(?:remove|removing|delete|erase|take out|take away|get rid of|drop|without|no|not|minus)\b"
)
_DANGLING = frozenset(
    "with without a an the and or of on in to at by from is are into onto for as".split()
)
_NEGATED_TAIL = re.compile(
    r"\s+(?:without|with no)\s+[^,;]+?(?=\s+(?:on|in|at|near|under|behind|beside|by|with)\s|[,;]|$)"
)


def is_attribute(detail: str) -> bool:
    """Adjectives ("dark red", "black and white"), or a participle ("folded")."""
    words = detail.split()
    if not words:
        return False
    if all(w in ATTRIBUTES or w in {"very", "and"} for w in words):
        return True
    first = words[0]
    return len(words) == 1 and len(first) > 4 and first.endswith("ed") and is_verb_only(first)


def is_place(detail: str) -> bool:
    return bool(_PLACE.match(detail + " ")) or position_of(detail) is not None


def gerund(clause: str) -> str:
    """ "sit on the grass" -> "sitting on the grass" (a leading verb reads as a state)."""
    words = clause.split()
    base = lemminflect.getLemma(words[0], "VERB")[0] if words else ""
    if words and is_verb_only(words[0]) and words[0] == base:
        forms = lemminflect.getInflection(base, "VBG")
        if forms:
            words[0] = str(forms[0])
    return " ".join(words)


def _remove(scene: Description, element: str) -> None:
    """Remove ``element`` with what only it was doing ("two people walking on a beach"
    -> "a beach"), keeping a list's connector ("with cars and trees" -> "with trees")."""
    head = scene.find(element)
    if head is None or not element.split():
        scene.remove(element)
        return
    start, end = scene.span(head)
    before = scene.tokens[start - 1] if start else ""
    after = scene.tokens[end] if end < len(scene.tokens) else ""
    if before in {"with", "wearing", "holding", "carrying"} and after == "and":
        del scene.tokens[start : end + 1]
        return
    scene.remove(element)
    while start < len(scene.tokens) and _doing(scene.tokens[start]):
        del scene.tokens[start]


def _doing(token: str) -> bool:
    return (token.endswith("ing") and len(token) > 4) or is_verb_only(token)


#: Words a description does not start with (after its subject was removed).
_LEADING = PREPOSITIONS | {"and", "or"}
_QUANTITIES = frozenset("many few several some".split())
#: Words that keep the next preposition in their phrase ("next to", "seen from").
_PHRASAL = frozenset("next close away out up down together front".split())
#: Times of day: "at night" is not where a thing is.
_TIMES = frozenset("night sunset sunrise dawn dusk noon day daytime evening morning".split())


def _replace_setting(scene: Description, phrase: str) -> bool:
    """ "on a beach" takes the place of the scene's "on grass" (same preposition,
    after the subject); False when there is none."""
    new = tokenize(phrase)
    subject = scene.subject()
    if len(new) < 2 or new[0] not in {"on", "in", "at"} or new[-1] in _TIMES or subject is None:
        return False
    _, end = scene.span(subject)
    for index in range(end, len(scene.tokens)):
        if scene.tokens[index] == new[0] and scene.tokens[-1] not in _TIMES:
            stop = index + 1
            while stop < len(scene.tokens) and scene.tokens[stop] not in PREPOSITIONS | {","}:
                stop += 1
            if scene.tokens[stop - 1] in _TIMES or position_of(" ".join(scene.tokens[index:stop])):
                return False
            scene.tokens[index:stop] = new
            return True
    return False


def _remove_words(scene: Description, words: Sequence[str]) -> None:
    scene.tokens = [t for t in scene.tokens if t not in set(words)]


def _without_stem(scene: Description, value: str) -> None:
    """ "sleeveless" takes the sleeves out of the scene, "strapless" the straps."""
    for word in value.split():
        if word.endswith("less") and len(word) > 6:
            stem = word[: -len("less")]
            if scene.find(stem) is not None:
                scene.remove(pluralize(stem))


def _compare(scene: Description, element: str, detail: str) -> None:
    if detail in {"more", "fewer", "less"}:
        if not is_plural(element.split()[-1]) or detail == "less":
            return
        value = "many" if detail == "more" else "few"
        if (head := scene.find(element)) is not None:
            start, _ = scene.span(head)
            counted = [
                i
                for i in range(start, head)
                if count_of(scene.tokens[i]) is not None or scene.tokens[i] in _QUANTITIES
            ]
            for index in reversed(counted):  # "two birds" -> "many birds"
                del scene.tokens[index]
            scene.set_attribute(element, value)
        else:
            scene.add(f"{value} {element}")
        return
    base = COMPARATIVES.get(detail) or comparative_base(detail) or detail
    named = element not in PRONOUNS and element != "it"
    if named and scene.find(element) is None:
        scene.add(f"{base} {element}")
    else:
        scene.set_attribute(element, base)
        _remove_words(scene, [detail])  # "shorter sleeves" said before: now "short sleeves"


def _modify(scene: Description, element: str, detail: str) -> None:
    words = detail.split()
    if len(words) == 1 and count_of(detail) is not None:
        scene.set_count(element, count_of(detail) or 1)
    elif is_place(detail):
        if not _replace_setting(scene, detail):
            scene.place(element, detail)
    elif is_attribute(detail):
        _without_stem(scene, detail)
        scene.set_attribute(element, detail)
    elif words[-1] in PATTERN_NOUNS:
        scene.add(detail)
    else:
        scene.replace(element, detail)


def apply_edit(scene: Description, edit: AtomicEdit) -> None:
    element, detail = edit.element, edit.detail
    if edit.kind is EditKind.REMOVAL:
        if element and all(w in ATTRIBUTES for w in element.split()):
            _remove_words(scene, element.split())
        else:
            _remove(scene, element)
    elif edit.kind is EditKind.ADDITION and not element:
        scene.tokens += [",", *tokenize(gerund(detail))]
    elif edit.kind is EditKind.ADDITION:
        scene.add(element, where=detail)
    elif edit.kind is EditKind.COMPARISON:
        _compare(scene, element, detail)
    elif edit.kind is EditKind.MODIFICATION and detail:
        _modify(scene, element, detail)


def apply_edits(caption: str, edits: Sequence[AtomicEdit]) -> str:
    """The caption with every edit applied, in order (see ``Description``)."""
    scene = Description(caption.strip().rstrip("."))
    for edit in edits:
        apply_edit(scene, edit)
    return str(scene)


def positive_text(text: str) -> str:
    """A text without what must not be there ("a beach, no people" -> "a beach")."""
    kept = [p for p in _NEGATED_TAIL.sub("", text).split(",") if not _NEGATED.match(p.strip())]
    return ", ".join(p.strip() for p in kept if p.strip()) or text


# --------------------------------------------------------------------------- granularities


def _segments(scene: Description, start: int) -> list[list[str]]:
    """The tokens after ``start`` cut into phrases at commas, prepositions and verbs."""
    found: list[list[str]] = []
    for token in scene.tokens[start:]:
        comma = bool(found) and found[-1] == [","]
        bound = bool(found) and (found[-1][-1] in _PHRASAL or is_verb_only(found[-1][-1]))
        opens = token == "," or (token in PREPOSITIONS and token != "next")
        if (opens or not found) and not (comma or bound):
            found.append([token])
        else:
            found[-1].append(token)
    return [s for s in found if s != [","]]


def _subject_phrase(scene: Description) -> tuple[str, int]:
    head = scene.subject()
    if head is None:
        return str(scene), len(scene.tokens)
    start, end = scene.span(head)
    return " ".join(scene.tokens[start:end]), end


def granularities(full: str, *, asked: set[str]) -> list[str]:
    """[subject, subject + the phrases holding ``asked`` words, full], distinct.

    When two levels coincide (every edit is on the subject), the middle one is
    the scene up to its last phrase ("three dogs on grass" of "three dogs on
    grass at night"); when the scene is its subject alone, the levels before
    the scene say "a photo of" / "an image of" it."""
    scene = Description(full)
    subject, end = _subject_phrase(scene)
    segments = _segments(scene, end)
    focus = [subject] + [" ".join(s) for s in segments if set(s) & asked]
    found = _distinct([Description(subject), Description(" ".join(focus)), scene])
    if len(found) < 3:
        cuts = [
            Description(" ".join([subject, *(" ".join(s) for s in segments[:n])]))
            for n in range(len(segments) - 1, 0, -1)
        ]
        found = _distinct([Description(subject), *cuts[:1], scene])
    full = found[-1] if found else full
    for phrasing in ("a photo of", "an image of")[: max(0, 3 - len(found))]:
        found.insert(len(found) - 1, f"{phrasing} {full}")
    return found


def _distinct(levels: Sequence[Description]) -> list[str]:
    found: list[str] = []
    for text in (_tidy(level) for level in levels):
        if text and text not in found:
            found.append(text)
    return found


def _tidy(scene: Description) -> str:
    """The text without dangling words at its ends ("with a red collar on")."""
    tokens = list(scene.tokens)
    while tokens and (tokens[-1] in _DANGLING or not tokens[-1][0].isalnum()):
        tokens.pop()
    while tokens and (tokens[0] in _LEADING or not tokens[0][0].isalnum()):
        if position_of(" ".join(tokens[:4])) is not None:
            break  # "at the bottom two diamonds"
        tokens.pop(0)
    return render(tokens) if any(t not in DETERMINERS for t in tokens) else ""


def asked_words(edits: Sequence[AtomicEdit]) -> set[str]:
    """The content words the edits bring into the scene."""
    words: set[str] = set()
    for edit in edits:
        if edit.kind is EditKind.REMOVAL:
            continue
        for word in tokenize(f"{edit.element} {edit.detail}"):
            if word not in DETERMINERS and not is_stop(word):
                words |= {word, pluralize(word)}
            base = COMPARATIVES.get(word) or comparative_base(word)
            if base:
                words.add(base)
            if class_of(word) is not None:
                words.add(word)
    return words
