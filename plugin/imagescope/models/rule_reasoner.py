"""A reasoner without a language model: atomic edits and propositions by rules.

The CPU default when no LLM is configured. It splits an instruction into
clauses (commas, semicolons, "and", "but", and before "with"/"without"),
classifies each clause with keyword patterns into the method's five edit
kinds and applies the edits to the reference caption with
:class:`~imagescope.models.description_edit.Description`: a new value
replaces the old value of its class ("make them blue" turns "red squares"
into "blue squares"), a replacement swaps the noun, counts and positions are
rewritten. Dialog turns written as "question? answer" are first rewritten
into an instruction (:mod:`~imagescope.models.rule_dialog`).

Descriptions: every one states everything the user asked for (a coarser
description that drops attributes only dilutes the averaged retrieval
score). With a reference caption (composed queries, dialog rounds) the
description is the edited caption; without one, the user's own text, after
a copy without what must not be there ("no people"), since CLIP reads a
negation as a mention. A whole dialog pasted as one text is applied turn by
turn. Propositions: see :mod:`~imagescope.models.rule_propositions`.
Deterministic.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from imagescope.errors import EmptyQueryError, InputError
from imagescope.models.base import Reasoner
from imagescope.models.description_edit import ING_NOUNS, Description, position_of, tokenize
from imagescope.models.rule_dialog import dialog_proposition, split_transcript, turn_to_instruction
from imagescope.models.rule_propositions import (
    COMPARATIVES,
    Check,
    description_checks,
    edit_checks,
    merge,
)
from imagescope.models.word_classes import (
    ADJECTIVE_CLASSES,
    CLASS_NAMES,
    COLOUR_SHADES,
    DETERMINERS,
    NUMBERS,
    OTHER_ADJECTIVES,
    PATTERN_NOUNS,
    PRONOUNS,
    class_of,
    count_of,
)
from imagescope.schemas import AtomicEdit, EditKind, Intent, Proposition

__all__ = [
    "RuleReasoner",
    "apply_edits",
    "build_descriptions",
    "dialog_proposition",
    "parse_edits",
    "turn_to_instruction",
]

ATTRIBUTES = frozenset(
    {w for c in ADJECTIVE_CLASSES for w in c.words} | COLOUR_SHADES | OTHER_ADJECTIVES
)
_PRONOUNS = PRONOUNS | {"image", "picture", "photo", "everything", "all"}
#: What "it" refers to before anything was described.
_NOTHING = "image"

_FILLER = re.compile(
    r"^(?:please\s+|i\s+want\s+|i'd\s+like\s+|the\s+(?:image|picture|photo)\s+should\s+"
    r"|it\s+should\s+|should\s+|also\s+|then\s+|just\s+)+"
)
_SPLIT = re.compile(r"\s*(?:[,;.!?]|\band\b|\bbut\b|\bwhile\b|\bwhereas\b)\s*")
_BEFORE_WITH = re.compile(r"\s+(?=\b(?:with|without)\b)")
_LOCATION = re.compile(r"\s+\b(on|to|in|at|near|next to|behind|under|over|beside|onto|by)\b\s+")

#: A clause that asks for a change rather than describing ("make it red", "no hat").
_INSTRUCTING = re.compile(
    r"^(?:make|change|turn|replace|swap|substitute|convert|switch|remove|delete|erase|drop|add|"
    r"put|place|move|shift|keep|retain|same|without|no|not|only|more|less|fewer|still)\b"
    r"|\binstead of\b|->|=>|\bthan\b|\?"
)
_ATTR = "|".join(sorted(ATTRIBUTES))
_ATTRS = rf"((?:(?:{_ATTR})\s+)*(?:{_ATTR}))"
_NUMBER = "|".join([*NUMBERS, r"\d+"])
_COMPARATIVE = "|".join(COMPARATIVES)
_KEEP = "keep|keeping|retain|preserve|maintain"
_DROP = "remove|removing|delete|erase|take out|take away|get rid of|drop"
_NEGATED = re.compile(rf"^(?:{_DROP}|without|no|not|minus)\b", re.IGNORECASE)
_NEGATED_TAIL = re.compile(r"\s+(?:without|with no)\s+[^,;]+", re.IGNORECASE)
_PUT = "add|adding|include|including|insert|put|place|plus|with|has|have|having|wearing|holding"
_PLACE = r"(?:on|in|at|to|onto|into|towards?|against|under|near|beside|behind|by|in front of)"
_SHORT = r"(?:a |an |the )?\S+(?: \S+)?"  # a subject of at most two words
_BE = "is|are|should be|must be|becomes?"
_RETAIN, _REMOVE, _ADD = EditKind.RETENTION, EditKind.REMOVAL, EditKind.ADDITION
_MODIFY, _COMPARE = EditKind.MODIFICATION, EditKind.COMPARISON

#: (kind, element group, detail group (0: none), pattern); the first match wins.
#: Element group 0 means "it": the element the previous clause talked about; an
#: addition without element adds its detail as free text ("make it sit on grass").
_RULES: list[tuple[EditKind, int, int, re.Pattern[str]]] = [
    (kind, element, detail, re.compile(pattern))
    for kind, element, detail, pattern in [
        (_MODIFY, 2, 1, rf"^(?:(?:keep|leave)\s+)?only\s+({_NUMBER})\s+(.+)$"),
        (_RETAIN, 0, 0, r"^(?:the\s+)?same(?:\s+(?:one|ones|thing|again|as before))?$"),
        (_RETAIN, 1, 0, rf"^(?:{_KEEP})\s+(.+?)(?:\s+the same|\s+unchanged)?$"),
        (_RETAIN, 1, 0, r"^(?:the\s+)?same\s+(.+)$"),
        (_RETAIN, 1, 0, r"^still\s+(?:has\s+|have\s+|is\s+|are\s+|with\s+)?(.+)$"),
        (_RETAIN, 1, 0, r"^(.+?)\s+(?:stays?|remains?|is|are)\s+(?:the same|unchanged)$"),
        (_REMOVE, 1, 0, rf"^(?:{_DROP})\s+(.+)$"),
        (_REMOVE, 1, 0, r"^(?:without|no more|no|minus|there (?:is|are) no)\s+(.+)$"),
        (_REMOVE, 1, 0, r"^(?:not|does not have|doesn't have)\s+(?:wearing\s+|having\s+)?(.+)$"),
        (_REMOVE, 1, 0, r"^(.+?)\s+(?:is\s+|are\s+)?(?:removed|gone|missing)$"),
        (_MODIFY, 1, 2, r"^(?:replace|swap|substitute)\s+(.+?)\s+(?:with|by|for)\s+(.+)$"),
        (_MODIFY, 2, 1, r"^(.+?)\s+instead of\s+(.+)$"),
        (_MODIFY, 1, 2, r"^(?:change|turn|convert|switch)\s+(.+?)\s+(?:to|into)\s+(.+)$"),
        (_MODIFY, 1, 2, r"^(.+?)\s*(?:->|=>|\u2192)\s*(.+)$"),
        (_MODIFY, 1, 2, rf"^(?:put|place|move|set|show|shift)\s+(.+?)\s+({_PLACE}\s+.+)$"),
        (_COMPARE, 2, 1, r"^(?:make\s+|with\s+|has\s+|have\s+)?(more|less|fewer)\s+(.+)$"),
        (_COMPARE, 1, 2, r"^(?:make\s+)?(.+?)\s+(?:is\s+|are\s+|looks?\s+)?(\w+er)\s+than\b.*$"),
        (_COMPARE, 1, 2, rf"^(?:make\s+)?(.+?)\s+(?:is\s+|are\s+)?({_COMPARATIVE})$"),
        (_COMPARE, 2, 1, rf"^(?:a\s+|an\s+|the\s+)?({_COMPARATIVE})\s+(.+)$"),
        (_MODIFY, 1, 2, rf"^(?:make|making|paint|colou?r|dye)\s+(.+?)\s+{_ATTRS}$"),
        (_MODIFY, 0, 1, rf"^(?:in|colou?red)\s+{_ATTRS}(?:\s+colou?r)?$"),
        (_ADD, 1, 0, r"^there (?:is|are)\s+(.+)$"),
        (_ADD, 0, 1, r"^(?:make|let|have|get)\s+(?:it|them|this|these|him|her)\s+(.+)$"),
        (_ADD, 0, 1, r"^show\s+(.+)$"),
        (_MODIFY, 1, 2, rf"^(?!.*\b(?:who|which|that)\b)({_SHORT}) (?:{_BE}) (.+)$"),
        (_ADD, 1, 0, rf"^(?:{_PUT})\s+(.+)$"),
    ]
]  # fmt: skip


def _strip_determiners(phrase: str) -> str:
    words = phrase.split()
    while words and words[0] in DETERMINERS:
        words = words[1:]
    text = " ".join(words)
    return re.sub(r"\s+(?:in|to|from)\s+the\s+(?:image|picture|photo)$", "", text)


def _is_attribute(detail: str) -> bool:
    """Adjectives ("dark red"), or a participle ("folded", "smiling")."""
    words = detail.split()
    participle = bool(words) and len(words[0]) > 4 and words[0] not in ING_NOUNS
    return bool(words) and (
        all(w in ATTRIBUTES or w in {"very", "and"} for w in words)
        or (participle and words[0].endswith(("ing", "ed")))
    )


def _is_place(detail: str) -> bool:
    return bool(re.match(rf"{_PLACE}\s", detail)) or position_of(detail) is not None


def _core(element: str) -> str:
    """An element without attribute words or determiners ("the long sleeves" -> "sleeves").

    An element made only of attributes ("red") has no core: the result is "it".
    """
    kept = [w for w in element.split() if w not in ATTRIBUTES and w not in DETERMINERS]
    return " ".join(kept) or "it"


# --------------------------------------------------------------------------- clauses -> edits


def _clauses(instruction: str) -> list[str]:
    text = re.sub(r"\s+", " ", instruction.lower()).strip()
    clauses: list[str] = []
    for part in _SPLIT.split(text):
        replaces = re.match(r"^(?:replace|swap|substitute)\b", part)
        pieces = [part] if replaces else _BEFORE_WITH.split(part)
        clauses.extend(_FILLER.sub("", p).strip(" '\"") for p in pieces)
    return [c for c in clauses if c]


def _classify(clause: str) -> tuple[EditKind, str, str]:
    for kind, element_group, detail_group, pattern in _RULES:
        if match := pattern.match(clause):
            element = match[element_group] if element_group else "it"
            if kind is EditKind.ADDITION and not element_group:
                element = ""
            return kind, element, match[detail_group] if detail_group else ""
    words = clause.split()
    attributes = [w for w in words if w in ATTRIBUTES]
    if attributes and len(words) <= 4:
        return EditKind.MODIFICATION, _core(clause), " ".join(attributes)
    return EditKind.ADDITION, clause, ""


def _subject_of(caption: str | None) -> str:
    """The subject noun of a caption: what "it" most likely refers to."""
    scene = Description(caption or "")
    head = scene.subject()
    return scene.tokens[head] if head is not None else _NOTHING


def _element(element: str, context: str) -> str:
    """Resolve pronouns and class names ("the colour of the car" -> "car")."""
    named = re.match(r"^(\w+)\s+of\s+(?:the\s+)?(.+)$", element)
    if named and named[1] in CLASS_NAMES:
        return named[2]
    return context if element in _PRONOUNS | {""} or element in CLASS_NAMES else element


def _edit(parsed: tuple[EditKind, str, str], *, context: str) -> AtomicEdit:
    kind, element, detail = parsed
    if kind is EditKind.ADDITION and not element:
        return AtomicEdit(kind=kind, element="", detail=detail)  # free text
    element, detail = _strip_determiners(element), detail.strip()
    if kind is EditKind.ADDITION and (place := _LOCATION.search(element)):
        element, detail = element[: place.start()], element[place.start() :].strip()
    if kind is not EditKind.ADDITION and kind is not EditKind.REMOVAL:
        element = _element(element, context)
    if (
        kind is EditKind.MODIFICATION
        and detail
        and not (_is_attribute(detail) or _is_place(detail))
    ):
        detail = _strip_determiners(detail)
    return AtomicEdit(kind=kind, element=element or context, detail=detail)


def _next_context(edit: AtomicEdit, context: str) -> str:
    """What "it" means after ``edit``: a new noun when the subject was replaced or added."""
    if edit.kind is EditKind.MODIFICATION and edit.element == context and edit.detail:
        plain = not (_is_attribute(edit.detail) or _is_place(edit.detail))
        if plain and count_of(edit.detail) is None:
            return _core(edit.detail)
    words = edit.element.split()
    if words and (edit.kind in (EditKind.ADDITION, EditKind.RETENTION) or context == _NOTHING):
        counted = words[0] in {"another", "extra"} or "more" in words
        if words[-1] not in PATTERN_NOUNS and not counted and words[-1] not in _PRONOUNS:
            return _core(edit.element)
    return context


def parse_edits(instruction: str, *, reference_caption: str | None = None) -> list[AtomicEdit]:
    """The atomic edits of an instruction, in clause order, without duplicates."""
    context = _subject_of(reference_caption)
    scene = Description(reference_caption or "")
    edits: list[AtomicEdit] = []
    for clause in _clauses(turn_to_instruction(instruction)):
        edit = _edit(_classify(clause), context=context)
        placed = edit.kind is EditKind.MODIFICATION and _is_place(edit.detail)
        if placed and reference_caption and scene.find(edit.element) is None:
            edit = AtomicEdit(kind=EditKind.ADDITION, element=edit.element, detail=edit.detail)
        context = _next_context(edit, context)
        if edit not in edits:
            edits.append(edit)
    return edits


# --------------------------------------------------------------------------- descriptions


def _apply(scene: Description, edit: AtomicEdit) -> None:
    element, detail = edit.element, edit.detail
    if edit.kind is EditKind.REMOVAL:
        scene.remove(element)
    elif edit.kind is EditKind.ADDITION and not element:
        scene.tokens += [",", *tokenize(detail)]
    elif edit.kind is EditKind.ADDITION:
        scene.add(element, where=detail)
    elif edit.kind is EditKind.COMPARISON:
        base = COMPARATIVES.get(detail, "")
        if class_of(base) is not None:
            scene.set_attribute(element, base)
    elif edit.kind is EditKind.MODIFICATION and detail:
        words = detail.split()
        if len(words) == 1 and count_of(detail) is not None:
            scene.set_count(element, count_of(detail) or 1)
        elif _is_place(detail):
            scene.place(element, detail)
        elif _is_attribute(detail):
            scene.set_attribute(element, detail)
        elif words[-1] in PATTERN_NOUNS:
            scene.add(detail)
        else:
            scene.replace(element, detail)


def apply_edits(caption: str, edits: Sequence[AtomicEdit]) -> str:
    """The caption with every edit applied, in order (see ``Description``)."""
    scene = Description(caption.strip().rstrip("."))
    for edit in edits:
        _apply(scene, edit)
    return str(scene)


def build_descriptions(
    instruction: str, *, edits: Sequence[AtomicEdit], reference_caption: str | None
) -> list[str]:
    """The target descriptions: the edited reference caption, else the user's text.

    A text that also says what must *not* be there ("a beach, no people") comes
    first without those parts, since CLIP reads "no people" as people.
    """
    text = " ".join(instruction.split())
    if reference_caption and reference_caption.strip():
        edited = apply_edits(reference_caption, edits)
        return [edited or text]
    if any(e.kind is EditKind.REMOVAL for e in edits):
        kept = [p for p in _NEGATED_TAIL.sub("", text).split(",") if not _NEGATED.match(p.strip())]
        positive = ", ".join(p.strip() for p in kept if p.strip())
        if positive and positive != text:
            return [positive, text]
    return [text]


def _transcript_intent(caption: str, turns: Sequence[str]) -> tuple[list[AtomicEdit], str]:
    """A dialog pasted as one text: the turns applied one by one to the caption."""
    description, edits = caption, []
    for turn in turns:
        turn_edits = parse_edits(turn, reference_caption=description)
        description = apply_edits(description, turn_edits) or description
        edits += [e for e in turn_edits if e not in edits]
    return edits, description


# --------------------------------------------------------------------------- the reasoner


class RuleReasoner(Reasoner):
    """Reasoner by keyword rules; see the module docstring. ``model_id`` is ``"rule"``."""

    model_id = "rule"

    def synthesize_intent(
        self, instruction: str, *, reference_caption: str | None, num_descriptions: int = 3
    ) -> Intent:
        if not instruction.strip():
            raise EmptyQueryError("the instruction is empty; say what the wanted image shows")
        if num_descriptions < 1:
            raise InputError("num_descriptions must be at least 1")
        transcript = None if reference_caption else split_transcript(instruction)
        if transcript is not None:
            edits, description = _transcript_intent(*transcript)
            descriptions = [description]
        else:
            edits = parse_edits(instruction, reference_caption=reference_caption)
            descriptions = build_descriptions(
                instruction, edits=edits, reference_caption=reference_caption
            )
        return Intent(
            edits=edits,
            descriptions=descriptions[-num_descriptions:],
            reasoning=f"rule-based: {len(edits)} edit(s) from keyword patterns",
        )

    def make_propositions(
        self,
        instruction: str,
        *,
        edits: Sequence[AtomicEdit],
        descriptions: Sequence[str],
        reference_caption: str | None,
    ) -> list[Proposition]:
        if not edits:
            edits = parse_edits(instruction, reference_caption=reference_caption)
        target = descriptions[-1] if descriptions else instruction
        counted = any(_touches_count(e) for e in edits)
        subject = _subject_of(target)
        checks: list[Check] = []
        if (asked := dialog_proposition(instruction)) is not None:
            checks.append(Check(("", asked.question.lower()), asked))
        if describes := _is_description(target, instruction=instruction):
            checks += description_checks(target, counted=counted)
        # A text query describes its target itself: what it adds is already retrieved for.
        own_text = describes and reference_caption is None and _same(target, instruction)
        for edit in edits:
            if not (own_text and edit.kind is EditKind.ADDITION):
                checks += edit_checks(edit, subject=subject)
        found = merge(checks)
        if not found:
            subject_text = " ".join(instruction.split()).rstrip(".?!") or target
            return [
                Proposition(statement=subject_text, question=f"Does the image show {subject_text}?")
            ]
        return found


def _same(a: str, b: str) -> bool:
    return a.split() == b.split()


def _is_description(text: str, *, instruction: str) -> bool:
    """Whether ``text`` describes an image (not an instruction such as "make it blue")."""
    if not _same(text, instruction):
        return True  # written by the reasoner
    return not any(_INSTRUCTING.search(clause) for clause in _clauses(text))


def _touches_count(edit: AtomicEdit) -> bool:
    words = edit.element.split()
    if edit.kind is EditKind.MODIFICATION:
        return count_of(edit.detail) is not None and len(edit.detail.split()) == 1
    if edit.kind is EditKind.ADDITION:
        return bool(words) and (words[0] in {"another", "extra"} or "more" in words)
    return edit.kind is EditKind.REMOVAL and len(words) > 1 and count_of(words[0]) is not None
