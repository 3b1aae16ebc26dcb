"""A reasoner without a language model: atomic edits, descriptions and propositions by rules.

The CPU default when no LLM is configured. An instruction is split into
clauses and each clause classified into the method's five edit kinds
(:mod:`~imagescope.models.rule_clauses`): replacements ("X instead of Y",
"replace Y with X", "change Y to X", "make it X"), additions, removals,
counts, attributes and comparatives, places and viewpoints. Pronouns resolve
to the element the previous clause talked about (the caption's subject
first). The edits are applied to the reference caption and written as three
descriptions, coarse to fine (:mod:`~imagescope.models.rule_descriptions`).

Dialogs arrive as turns: each "question? answer" round is restated as the
edit it implies (:mod:`~imagescope.models.rule_dialog`: "how many are
there? two" -> two of the subject) and applied to the running description.
A whole dialog pasted as one text is split into its turns first. Text
queries describe their target themselves; their descriptions leave out what
must not be there ("no people"), since CLIP reads a negation as a mention.
Propositions: see :mod:`~imagescope.models.rule_propositions`. Deterministic.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from imagescope.errors import EmptyQueryError, InputError
from imagescope.models.base import Reasoner
from imagescope.models.description_edit import Description, is_stop
from imagescope.models.lexicon import INSTRUCTION_VERBS, is_verb_only
from imagescope.models.reference_details import Probe, probes, with_details
from imagescope.models.rule_clauses import ATTRIBUTES, classify, clauses
from imagescope.models.rule_descriptions import (
    apply_edits,
    asked_words,
    granularities,
    is_attribute,
    is_place,
    positive_text,
)
from imagescope.models.rule_dialog import dialog_proposition, split_transcript, turn_to_instruction
from imagescope.models.rule_propositions import (
    Check,
    description_checks,
    edit_checks,
    merge,
)
from imagescope.models.word_classes import (
    CLASS_NAMES,
    DETERMINERS,
    PATTERN_NOUNS,
    PRONOUNS,
    class_of,
    count_of,
)
from imagescope.schemas import AtomicEdit, DialogTurn, EditKind, Intent, Proposition

__all__ = [
    "RuleReasoner",
    "apply_edits",
    "build_descriptions",
    "dialog_proposition",
    "parse_edits",
    "turn_to_instruction",
]

_PRONOUNS = PRONOUNS | {"image", "picture", "photo", "everything", "all"}
#: Aspects of a thing: "the position of the dog" is about the dog.
_ASPECTS = frozenset("position pose posture angle view type kind breed style".split())
#: What "it" refers to before anything was described.
_NOTHING = "image"

_LOCATION = re.compile(r"\s+\b(on|to|in|at|near|next to|behind|under|over|beside|onto|by)\b\s+")
#: A clause that asks for a change rather than describing ("make it red", "no hat").
_INSTRUCTING = re.compile(
    r"^(?:make|change|turn|replace|swap|substitute|convert|switch|remove|delete|erase|drop|add|"
    r"put|place|move|shift|keep|retain|same|without|no|not|only|more|less|fewer|still)\b"
    r"|\binstead of\b|->|=>|\bthan\b|\?"
)


def _strip_determiners(phrase: str) -> str:
    words = phrase.split()
    while words and words[0] in DETERMINERS:
        words = words[1:]
    text = " ".join(words)
    return re.sub(r"\s+(?:in|to|from)\s+the\s+(?:image|picture|photo)$", "", text)


def _core(element: str) -> str:
    """An element without attribute words or determiners ("the long sleeves" -> "sleeves").

    An element made only of attributes ("red") has no core: the result is "it".
    """
    kept = [w for w in element.split() if w not in ATTRIBUTES and w not in DETERMINERS]
    return " ".join(kept) or "it"


def _only_attributes(phrase: str) -> bool:
    words = [w for w in phrase.split() if w not in DETERMINERS]
    return bool(words) and all(w in ATTRIBUTES or w in {"and", "very"} for w in words)


# --------------------------------------------------------------------------- clauses -> edits


def _subject_of(caption: str | None) -> str:
    """The subject noun of a caption: what "it" most likely refers to."""
    scene = Description(caption or "")
    head = scene.subject()
    return scene.tokens[head] if head is not None else _NOTHING


def _element(element: str, context: str) -> str:
    """Resolve pronouns and class names ("the colour of the car" -> "car")."""
    named = re.match(r"^(\w+)\s+of\s+(?:the\s+)?(.+)$", element)
    if named and (named[1] in CLASS_NAMES or named[1] in _ASPECTS):
        return named[2]
    return context if element in _PRONOUNS | {""} or element in CLASS_NAMES else element


def _replacement(element: str, detail: str, context: str) -> list[AtomicEdit] | None:
    """A new value for an old one that is not a plain noun: "red instead of blue"
    (a value of the subject), "three dogs instead of one" (a count)."""
    old, new = _strip_determiners(element), _strip_determiners(detail)
    new_words = new.split()
    if not new_words or not old:
        return None
    if count_of(old) is not None and len(old.split()) == 1:
        number = new_words[0] if count_of(new_words[0]) is not None else old
        noun = _core(" ".join(new_words[1:]) if len(new_words) > 1 else context)
        return [AtomicEdit(kind=EditKind.MODIFICATION, element=noun, detail=number)]
    if _only_attributes(old):
        target = context if _only_attributes(new) else old
        edits = [AtomicEdit(kind=EditKind.MODIFICATION, element=target, detail=new)]
        if _only_attributes(new) and class_of(old.split()[-1]) is not class_of(new_words[-1]):
            edits.insert(0, AtomicEdit(kind=EditKind.REMOVAL, element=old))
        return edits
    return None


def _head_phrase(element: str) -> str:
    """An element up to its first preposition or verb ("the pouch in the scene" -> "the pouch")."""
    words = element.split()
    for index, word in enumerate(words[1:], start=1):
        if (is_stop(word) and word != "of") or is_verb_only(word):
            return " ".join(words[:index])
    return element


def _unverbed(text: str) -> str:
    """A value without a leading instruction verb ("make safety pin as earring")."""
    words = text.split()
    while len(words) > 1 and words[0] in INSTRUCTION_VERBS | {"out", "with"}:
        words = words[1:]
    return " ".join(words)


def _free(text: str) -> list[AtomicEdit]:
    return [AtomicEdit(kind=EditKind.ADDITION, element="", detail=text)] if text else []


def _edit(parsed: tuple[EditKind, str, str], *, context: str) -> list[AtomicEdit]:
    kind, element, detail = parsed
    if kind is EditKind.ADDITION and not element:
        return _free(detail)
    element = _strip_determiners(re.sub(r"^(?:only|just|also|even)\s+", "", element))
    verb, _, rest = element.partition(" ")
    if kind is EditKind.ADDITION and verb in INSTRUCTION_VERBS:  # "make side view of puppies"
        return _edit(classify(rest), context=context) if rest else []
    if kind is EditKind.ADDITION and verb in _PRONOUNS:  # "(have) them closer together"
        return _free(rest)
    detail = _unverbed(detail)
    detail = re.sub(r"\s+in\s+colou?r$", "", detail.strip())
    if kind is EditKind.ADDITION and element.split()[:1] and is_verb_only(element.split()[0]):
        return _free(element)  # "be looking at the camera": a state, not a thing
    if kind is EditKind.MODIFICATION and len(detail.split()) > 1 and not is_place(detail):
        if is_verb_only(detail.split()[0]) and not is_attribute(detail):  # "food is transferred"
            return _free(detail if element in _PRONOUNS else f"{element} {detail}")
    if kind in (EditKind.MODIFICATION, EditKind.REMOVAL) and not _only_attributes(element):
        element = _head_phrase(element)
    if kind is EditKind.MODIFICATION and (swap := _replacement(element, detail, context)):
        return swap
    if kind is EditKind.ADDITION and (place := _LOCATION.search(element)):
        element, detail = element[: place.start()], element[place.start() :].strip()
    if kind is not EditKind.ADDITION and kind is not EditKind.REMOVAL:
        element = _element(element, context)
    if kind is EditKind.MODIFICATION and detail and not (is_attribute(detail) or is_place(detail)):
        detail = _strip_determiners(detail)
    if not (element or context) or (kind is EditKind.ADDITION and element in _PRONOUNS):
        return []
    return [AtomicEdit(kind=kind, element=element or context, detail=detail)]


def _next_context(edit: AtomicEdit, context: str) -> str:
    """What "it" means after ``edit``: a new noun when the subject was replaced or added."""
    if edit.kind is EditKind.MODIFICATION and edit.element == context and edit.detail:
        plain = not (is_attribute(edit.detail) or is_place(edit.detail))
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
    for clause in clauses(turn_to_instruction(instruction)):
        for edit in _edit(classify(clause), context=context):
            placed = edit.kind is EditKind.MODIFICATION and is_place(edit.detail)
            if placed and reference_caption and scene.find(edit.element) is None:
                edit = AtomicEdit(kind=EditKind.ADDITION, element=edit.element, detail=edit.detail)
            context = _next_context(edit, context)
            if edit not in edits:
                edits.append(edit)
    return edits


# --------------------------------------------------------------------------- descriptions


def build_descriptions(
    instruction: str, *, edits: Sequence[AtomicEdit], reference_caption: str | None
) -> list[str]:
    """Three descriptions, coarse to fine, of the reference caption after ``edits``
    (without a reference: of the user's text, less what must not be there)."""
    if reference_caption and reference_caption.strip():
        full = apply_edits(reference_caption, edits) or " ".join(instruction.split())
    else:
        full = str(Description(positive_text(" ".join(instruction.split()))))
    return granularities(full, asked=asked_words(edits))


def _turn_text(turn: DialogTurn) -> str:
    return f"{turn.question.strip().rstrip('?')}? {turn.answer.strip()}"


def _dialog_intent(caption: str, turns: Sequence[str]) -> tuple[list[AtomicEdit], str]:
    """A dialog: the turns applied one by one to the caption."""
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
        self,
        instruction: str,
        *,
        reference_caption: str | None,
        num_descriptions: int = 3,
        turns: Sequence[DialogTurn] | None = None,
    ) -> Intent:
        if not instruction.strip():
            raise EmptyQueryError("the instruction is empty; say what the wanted image shows")
        if num_descriptions < 1:
            raise InputError("num_descriptions must be at least 1")
        transcript = None if reference_caption else split_transcript(instruction)
        if turns is not None:
            transcript = (reference_caption or instruction, [_turn_text(t) for t in turns])
        if transcript is not None:
            edits, description = _dialog_intent(*transcript)
            descriptions = granularities(description, asked=asked_words(edits))
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

    def reference_probes(self, caption: str) -> list[Probe]:
        """Questions about a reference's details its caption leaves out
        (:mod:`~imagescope.models.reference_details`)."""
        return probes(caption)

    def with_reference_details(self, caption: str, confirmed: Sequence[Probe]) -> str:
        """The reference caption with the details a verifier confirmed."""
        return with_details(caption, confirmed)

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
    return not any(_INSTRUCTING.search(clause) for clause in clauses(text))


def _touches_count(edit: AtomicEdit) -> bool:
    words = edit.element.split()
    if edit.kind is EditKind.MODIFICATION:
        return count_of(edit.detail) is not None and len(edit.detail.split()) == 1
    if edit.kind is EditKind.ADDITION:
        return bool(words) and (words[0] in {"another", "extra"} or "more" in words)
    return edit.kind is EditKind.REMOVAL and len(words) > 1 and count_of(words[0]) is not None
