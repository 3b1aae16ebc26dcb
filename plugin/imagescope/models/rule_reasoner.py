"""A reasoner without a language model: atomic edits and propositions by rules.

The CPU default when no LLM is configured. It splits an instruction into
clauses (commas, semicolons, "and", "but", and before "with"/"without"),
classifies each clause with keyword patterns into the method's five edit
kinds, writes three descriptions (core elements; elements with attributes;
the reference caption with the edits applied, plus the instruction) and turns
the edits into yes/no propositions. Dialog turns written as "question? answer"
are first rewritten into an instruction. Deterministic: same input, same output.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from imagescope.errors import EmptyQueryError, InputError
from imagescope.models.base import Reasoner
from imagescope.schemas import AtomicEdit, EditKind, Intent, Proposition

_COLOURS = (
    "red blue green yellow black white gray grey brown pink purple orange beige gold golden "
    "silver navy teal maroon cream tan khaki turquoise violet dark light colorful colourful"
).split()
_SIZES = "big small large tiny huge little long short tall wide narrow thin thick".split()
_LOOKS = (
    "wooden metal leather cotton denim silk wool woolen striped plain floral checked dotted "
    "patterned glass plastic sleeveless shiny bright round square empty full open closed "
    "young old new wet dry sunny cloudy snowy"
).split()
ATTRIBUTES = frozenset(_COLOURS + _SIZES + _LOOKS)
_CATEGORIES = (frozenset(_COLOURS), frozenset(_SIZES), frozenset(_LOOKS))
#: Comparative -> the adjective a single image can be asked about.
COMPARATIVES = {
    "bigger": "big", "larger": "large", "smaller": "small", "longer": "long",
    "shorter": "short", "taller": "tall", "wider": "wide", "brighter": "bright",
    "darker": "dark", "lighter": "light", "older": "old", "younger": "young",
    "closer": "close", "thicker": "thick", "thinner": "thin", "more": "many",
    "less": "few", "fewer": "few",
}  # fmt: skip
_DETERMINERS = frozenset("a an the some any its his her their this that these those it's".split())
_COUNTS = frozenset("two three four five six several many some multiple".split())
_MASS = frozenset("water grass snow sand food hair sky smoke fire rain text writing".split())
_PLURALS = frozenset("people men women children feet teeth mice geese cattle clothes".split())
_PRONOUNS = frozenset({"it", "this", "that", "them", "they", "image", "picture", "photo"})

_FILLER = re.compile(
    r"^(?:please\s+|i\s+want\s+|i'd\s+like\s+|the\s+(?:image|picture|photo)\s+should\s+"
    r"|it\s+should\s+|should\s+|also\s+|then\s+|just\s+)+"
)
_SPLIT = re.compile(r"\s*(?:[,;.!?]|\band\b|\bbut\b|\bwhile\b|\bwhereas\b)\s*")
_BEFORE_WITH = re.compile(r"\s+(?=\b(?:with|without)\b)")
_LOCATION = re.compile(r"\s+\b(on|to|in|at|near|next to|behind|under|over|beside|onto|by)\b\s+")

_ATTR = "|".join(sorted(ATTRIBUTES))
_ATTRS = rf"((?:(?:{_ATTR})\s+)*(?:{_ATTR}))"
_COMPARATIVE = "|".join(COMPARATIVES)
_KEEP = "keep|keeping|retain|preserve|maintain"
_DROP = "remove|removing|delete|erase|take out|take away|get rid of|drop"
_PUT = "add|adding|include|including|insert|put|place|plus|with|has|have|having|wearing|holding"
_SHORT = r"(?:a |an |the )?\S+(?: \S+)?"  # a subject of at most two words
_BE = "is|are|should be|must be|becomes?"
_RETAIN, _REMOVE, _ADD = EditKind.RETENTION, EditKind.REMOVAL, EditKind.ADDITION
_MODIFY, _COMPARE = EditKind.MODIFICATION, EditKind.COMPARISON

#: (kind, element group, detail group (0: none), pattern); the first match wins.
#: Element group 0 means "it": the element the previous clause talked about.
_RULES: list[tuple[EditKind, int, int, re.Pattern[str]]] = [
    (kind, element, detail, re.compile(pattern))
    for kind, element, detail, pattern in [
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
        (_COMPARE, 2, 1, r"^(?:make\s+|with\s+|has\s+|have\s+)?(more|less|fewer)\s+(.+)$"),
        (_COMPARE, 1, 2, r"^(?:make\s+)?(.+?)\s+(?:is\s+|are\s+|looks?\s+)?(\w+er)\s+than\b.*$"),
        (_COMPARE, 1, 2, rf"^(?:make\s+)?(.+?)\s+(?:is\s+|are\s+)?({_COMPARATIVE})$"),
        (_COMPARE, 2, 1, rf"^(?:a\s+|an\s+|the\s+)?({_COMPARATIVE})\s+(.+)$"),
        (_MODIFY, 1, 2, rf"^(?:make|making|paint|colou?r|dye)\s+(.+?)\s+{_ATTRS}$"),
        (_MODIFY, 0, 1, rf"^(?:in|colou?red)\s+{_ATTRS}(?:\s+colou?r)?$"),
        (_ADD, 1, 0, r"^there (?:is|are)\s+(.+)$"),
        (_MODIFY, 1, 2, rf"^(?!.*\b(?:who|which|that)\b)({_SHORT}) (?:{_BE}) (.+)$"),
        (_ADD, 1, 0, rf"^(?:{_PUT})\s+(.+)$"),
    ]
]  # fmt: skip


def _strip_determiners(phrase: str) -> str:
    words = phrase.split()
    while words and words[0] in _DETERMINERS:
        words = words[1:]
    text = " ".join(words)
    return re.sub(r"\s+(?:in|to|from)\s+the\s+(?:image|picture|photo)$", "", text)


def _is_attribute(detail: str) -> bool:
    words = detail.split()
    return bool(words) and (
        all(w in ATTRIBUTES or w in {"very", "and"} for w in words)
        or words[0].endswith(("ing", "ed"))
    )


def _core(element: str) -> str:
    """An element without attribute words or determiners ("the long sleeves" -> "sleeves").

    An element made only of attributes ("red") has no core: the result is "it".
    """
    kept = [w for w in element.split() if w not in ATTRIBUTES and w not in _DETERMINERS]
    return " ".join(kept) or "it"


# --------------------------------------------------------------------------- dialog turns

_QA = re.compile(r"^\s*(?:q(?:uestion)?\s*:\s*)?(.+?)\?\s*(?:a(?:nswer)?\s*:\s*)?(.*?)\W*$")
_AUX = re.compile(r"^(?:is|are|does|do|can|has|have)\s+(?:there\s+)?(.+)$")
_ASK_ATTRIBUTE = re.compile(r"^what\s+(?:colou?r|size|kind|type|material)\s+(?:is|are)\s+(.+)$")
_IS_THE_X_Y = re.compile(r"^(?:is|are)\s+(the\s+.+?)\s+(\S+)$")


def _split_turn(text: str) -> tuple[str, str, str] | None:
    """(question, answer, first answer word) of a "question? answer" turn."""
    match = _QA.match(text.strip().lower())
    if match is None:
        return None
    question, answer = match[1].strip(), match[2].strip()
    words = answer.split(",")[0].split()
    return question, answer, words[0] if words else ""


def dialog_proposition(text: str) -> Proposition | None:
    """A yes/no dialog turn ("is there a dog? no") is itself a proposition."""
    turn = _split_turn(text)
    if turn is None or turn[2] not in {"yes", "no"} or not _AUX.match(turn[0]):
        return None
    question = turn[0][0].upper() + turn[0][1:] + "?"
    return Proposition(statement=text.strip(), question=question, expected=turn[2] == "yes")


def turn_to_instruction(text: str) -> str:
    """Rewrite a "question? answer" dialog turn as an instruction; other text is unchanged.

    "is there a dog? yes" -> "with a dog"; "... no" -> "without a dog";
    "what color is the car? red" -> "make the car red"; "how many people? two" ->
    "with two people"; other questions -> "with <answer>".
    """
    turn = _split_turn(text)
    if turn is None:
        return text
    question, answer, answer_word = turn
    if answer_word in {"yes", "no"}:
        attribute = _IS_THE_X_Y.match(question)
        if attribute and attribute[2] in ATTRIBUTES:
            return f"make {attribute[1]} {attribute[2]}" if answer_word == "yes" else ""
        body = _AUX.match(question)
        phrase = body[1] if body else question
        return f"{'with' if answer_word == 'yes' else 'without'} {phrase}"
    if (asked := _ASK_ATTRIBUTE.match(question)) and answer:
        return f"make {asked[1]} {answer}"
    if (many := re.match(r"^how many\s+(.+?)(?:\s+(?:are|is)\s+there.*)?$", question)) and answer:
        return f"with {answer_word} {many[1]}"
    return f"with {answer}" if answer else text


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
            return kind, element, match[detail_group] if detail_group else ""
    words = clause.split()
    attributes = [w for w in words if w in ATTRIBUTES]
    if attributes and len(words) <= 4:
        return EditKind.MODIFICATION, _core(clause), " ".join(attributes)
    return EditKind.ADDITION, clause, ""


def _subject_of(caption: str | None) -> str:
    """The first plain word of a caption: what "it" most likely refers to."""
    for word in re.findall(r"[a-z]+", (caption or "").lower()):
        if word not in _DETERMINERS and word not in ATTRIBUTES and word not in _COUNTS:
            return str(word)
    return "image"


def _edit(parsed: tuple[EditKind, str, str], *, context: str) -> AtomicEdit:
    kind, element, detail = parsed
    element, detail = _strip_determiners(element), detail.strip()
    if kind is EditKind.ADDITION and (place := _LOCATION.search(element)):
        element, detail = element[: place.start()], element[place.start() :].strip()
    if kind in (EditKind.MODIFICATION, EditKind.COMPARISON) and element in _PRONOUNS | {""}:
        element = context
    if kind is EditKind.MODIFICATION and detail and not _is_attribute(detail):
        detail = _strip_determiners(detail)
    return AtomicEdit(kind=kind, element=element or context, detail=detail)


def parse_edits(instruction: str, *, reference_caption: str | None = None) -> list[AtomicEdit]:
    """The atomic edits of an instruction, in clause order, without duplicates."""
    context = _subject_of(reference_caption)
    edits: list[AtomicEdit] = []
    for clause in _clauses(turn_to_instruction(instruction)):
        edit = _edit(_classify(clause), context=context)
        if edit.kind is not EditKind.REMOVAL:
            context = _core(_target(edit))
        if edit not in edits:
            edits.append(edit)
    return edits


# --------------------------------------------------------------------------- descriptions


def _target(edit: AtomicEdit) -> str:
    """What the wanted image shows for this edit: the replacement, when there is one."""
    replaced = edit.kind is EditKind.MODIFICATION and edit.detail and not _is_attribute(edit.detail)
    return edit.detail if replaced else edit.element


def _with_attributes(edit: AtomicEdit) -> str:
    if edit.kind is EditKind.REMOVAL:
        return f"no {edit.element}"
    if edit.kind is EditKind.MODIFICATION and edit.detail:
        return f"{edit.detail} {edit.element}" if _is_attribute(edit.detail) else edit.detail
    if edit.kind is EditKind.COMPARISON:
        return f"{edit.detail} {edit.element}"
    return f"{edit.element} {edit.detail}".strip()


def _apply_to_caption(caption: str, edits: Sequence[AtomicEdit]) -> str:
    text = caption.strip().rstrip(".")
    for edit in edits:
        element = re.escape(edit.element)
        if edit.kind is EditKind.REMOVAL:
            text = _remove_from(text, element)
        elif edit.kind is EditKind.MODIFICATION and edit.detail and _is_attribute(edit.detail):
            text = _recolour(text, edit)
        elif edit.kind is EditKind.MODIFICATION and edit.detail:
            text = re.sub(rf"(?:\b(?:a|an)\s+)?\b{element}\b", _article(edit.detail), text)
        elif edit.kind is EditKind.ADDITION and not re.search(rf"\b{element}\b", text):
            text = f"{text}, with {_article(_with_attributes(edit))}"
    return re.sub(r"\s+([,.])", r"\1", re.sub(r"\s{2,}", " ", text)).strip(" ,")


def _remove_from(text: str, element: str) -> str:
    """Drop "<connector> <article> element" ("with a dog"), else "<article> element <and>"."""
    article = r"(?:\b(?:a|an|the|some)\s+)?"
    text = re.sub(rf",?\s*\b(?:with|and|holding|wearing)\s+{article}\b{element}\b", "", text)
    return re.sub(rf"{article}\b{element}\b(?:\s+(?:and|with)\b|\s*,)?\s*", "", text)


def _recolour(text: str, edit: AtomicEdit) -> str:
    """Put the edit's attributes before its element, dropping old ones of the same kind."""
    new_words = set(edit.detail.split())
    same = sorted(w for c in _CATEGORIES if new_words & c for w in c)
    olds = "|".join(same) or "(?!)"
    pattern = rf"(?:\b(?:{olds})\s+)*\b{re.escape(edit.element)}\b"
    return re.sub(pattern, f"{edit.detail} {edit.element}", text)


def build_descriptions(
    instruction: str, *, edits: Sequence[AtomicEdit], reference_caption: str | None
) -> list[str]:
    """Coarse to fine: core elements; elements with attributes; full synthesis (deduplicated)."""
    kept = [e for e in edits if e.kind is not EditKind.REMOVAL]
    core = ", ".join(dict.fromkeys(_core(_target(e)) for e in kept))
    phrases = list(dict.fromkeys(_with_attributes(e) for e in edits))
    # "dress" adds nothing beside "red dress".
    detailed = ", ".join(
        p for p in phrases if not any(q != p and f" {p} " in f" {q} " for q in phrases)
    )
    text = " ".join(instruction.split())
    if reference_caption and reference_caption.strip():
        full = f"{_apply_to_caption(reference_caption, edits)}. {text}"
    else:
        full = text
    return list(dict.fromkeys(d for d in (core or full, detailed or full, full) if d))


# --------------------------------------------------------------------------- propositions


def _is_plural(element: str) -> bool:
    words = element.split()
    head = _core(element).split()[0] if element else ""
    return bool(words) and (
        words[0] in _COUNTS
        or head in _PLURALS
        or (head.endswith("s") and not head.endswith(("ss", "us", "is")))
    )


def _article(phrase: str) -> str:
    """ "a cat", "an owl"; plural, mass and determined phrases stay bare."""
    first = phrase.split()[0] if phrase else ""
    if _is_plural(phrase) or first in _DETERMINERS | _COUNTS or _core(phrase).split()[0] in _MASS:
        return phrase
    return ("an " if first[0] in "aeiou" else "a ") + phrase


def _presence(element: str, *, expected: bool) -> Proposition:
    """ "Is there a dog?" / "Are there dogs?" with the matching statement."""
    verb = "are" if _is_plural(element) else "is"
    article = _article(element)[: -len(element)]
    statement = f"There {verb} {article if expected else 'no '}{element}."
    return Proposition(
        statement=statement,
        question=f"{verb.capitalize()} there {article}{element}?",
        expected=expected,
    )


def _attribute(element: str, adjective: str, *, expected: bool = True) -> Proposition:
    verb = "Are" if _is_plural(element) else "Is"
    return Proposition(
        statement=f"The {element} {verb.lower()} {'' if expected else 'not '}{adjective}.",
        question=f"{verb} the {element} {adjective}?",
        expected=expected,
    )


def propositions_for(edit: AtomicEdit) -> list[Proposition]:
    """The yes/no checks one edit implies."""
    element = edit.element
    if edit.kind is EditKind.REMOVAL:
        return [_presence(element, expected=False)]
    if edit.kind is EditKind.MODIFICATION and edit.detail:
        if _is_attribute(edit.detail):
            return [_attribute(_core(element), edit.detail)]
        return [_presence(edit.detail, expected=True), _presence(element, expected=False)]
    if edit.kind is EditKind.COMPARISON and (base := COMPARATIVES.get(edit.detail)):
        if base in {"many", "few"}:
            return [
                Proposition(
                    statement=f"There are {base} {element}.",
                    question=f"Are there many {element}?",
                    expected=base == "many",
                )
            ]
        return [_presence(element, expected=True), _attribute(_core(element), base)]
    return [_presence(element, expected=True)]


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
        found: dict[str, Proposition] = {}
        if (asked := dialog_proposition(instruction)) is not None:
            found[asked.question.lower()] = asked
        for edit in edits:
            for proposition in propositions_for(edit):
                found.setdefault(proposition.question.lower(), proposition)
        if not found:
            subject = " ".join(instruction.split()).rstrip(".?!") or (descriptions or ["it"])[-1]
            return [Proposition(statement=subject, question=f"Does the image show {subject}?")]
        return list(found.values())
