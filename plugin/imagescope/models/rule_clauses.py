"""Everyday edit language -> clauses -> (kind, element, detail) for the rule reasoner.

An instruction is lower-cased and split into clauses (commas, semicolons,
"and", "but", and before "with"/"without"); each clause loses the words that
only frame it ("the target photo shows", "please", "has", "is", "show") and
is classified by the first matching pattern into the method's five edit
kinds. Adjacent colours joined by "and" stay one value ("black and white").
"""

from __future__ import annotations

import re

from imagescope.models.lexicon import INSTRUCTION_VERBS, comparative_base, is_verb_only
from imagescope.models.rule_dialog import FACT
from imagescope.models.rule_propositions import COMPARATIVES
from imagescope.models.word_classes import (
    ADJECTIVE_CLASSES,
    COLOUR,
    COLOUR_SHADES,
    NUMBERS,
    OTHER_ADJECTIVES,
)
from imagescope.schemas import EditKind

ATTRIBUTES = frozenset(
    {w for c in ADJECTIVE_CLASSES for w in c.words} | COLOUR_SHADES | OTHER_ADJECTIVES
)

#: Words that frame a clause without saying anything about the image.
_FRAME = re.compile(
    r"^(?:please|i\s+want(?:\s+(?:it|the\s+\w+\s+image))?(?:\s+to)?|i'd\s+like|i\s+would\s+like"
    r"|unlike\s+the\s+reference(?:\s+image)?,?|the\s+target(?:\s+(?:image|photo|pic|picture))?"
    r"|the\s+(?:new|second)\s+(?:image|photo|pic|picture)|(?:the\s+)?(?:target\s+)?(?:image|picture|photo|pic)(?:\s+should)?"
    r"|target\s+on|focus\s+on|it\s+should|should|must|now|also|then|just|simply|so|it's|its"
    r"|it|this|they|these|he|she"
    r"|(?:be|is|are|was|were|being|becomes?|has|have|having|had|shows?|showing|contains?"
    r"|features?|includes?|including|looks?|appears?|depicts?)(?:\s+(?:to\s+be|like))?)\s+"
)
_SPLIT = re.compile(r"\s*([,;.!?]|\band\b|\bbut\b|\bwhile\b|\bwhereas\b|\bplus\b)\s*")
_NEGATION = re.compile(r"^(?:remove|delete|erase|without|no)\b")
_BEFORE_WITH = re.compile(r"\s+(?=\b(?:with|without)\b)")

_ATTR = "|".join(sorted(ATTRIBUTES))
_ATTRS = rf"((?:(?:{_ATTR})\s+(?:and\s+)?)*(?:{_ATTR}))"
_NUMBER = "|".join([*NUMBERS, r"\d+", "single", "a single"])
_COMPARATIVE = "|".join(COMPARATIVES)
_KEEP = "keep|keeping|retain|preserve|maintain"
_DROP = "remove|removing|delete|erase|take out|take away|get rid of|drop|exclude|excluding|minus"
_PUT = "add|adding|include|including|insert|put|place|plus|with|wearing|holding|featuring"
_PLACE = r"(?:on|in|at|to|onto|into|towards?|against|under|near|beside|behind|by|in front of)"
_SHORT = r"(?:a |an |the )?\S+(?: \S+)?"  # a subject of at most two words
_BE = "is|are|should be|must be|becomes?"
_IT = r"(?:it|them|this|these|him|her|they)"
_AUX = "has|have|is|are"
#: A viewpoint said alone ("closer shot", "zoomed in"): kept as it is said.
_CLOSE = r"close[- ]?up(?:\s+shot)?|closer(?:\s+(?:shot|view|up))?|zoom(?:ed)?\s+in(?:\s+closer)?"
_MODAL = "should|must|will|would|could|can|might"
_IN_COL = r"in\s+colou?r"
_INSTEAD = r"instead of|rather than|in place of|instead|rather"
#: Verbs that only frame the old value ("rather showing dough", "instead sitting on").
_DOING = r"showing|making|having|with|of|being|doing|the one|one"
_RETAIN, _REMOVE, _ADD = EditKind.RETENTION, EditKind.REMOVAL, EditKind.ADDITION
_MODIFY, _COMPARE = EditKind.MODIFICATION, EditKind.COMPARISON

#: (kind, element group, detail group (0: none), pattern); the first match wins.
#: Element group 0 means "it": the element the previous clause talked about; an
#: addition without element adds its detail as free text ("make it sit on grass").
_RULES: list[tuple[EditKind, int, int, re.Pattern[str]]] = [
    (kind, element, detail, re.compile(pattern))
    for kind, element, detail, pattern in [
        (_ADD, 0, 1, rf"^{FACT}\s+(.+)$"),
        (_ADD, 0, 1, rf"^(?:an?\s+)?({_CLOSE})$"),
        (_MODIFY, 2, 1, rf"^(?:(?:keep|leave)\s+)?only\s+({_NUMBER})\s+(?:of\s+(?:the\s+)?)?(.+)$"),
        (_MODIFY, 0, 1, rf"^(?:(?:keep|leave)\s+)?only\s+({_NUMBER})$"),
        (_MODIFY, 2, 1, rf"^({_NUMBER})\s+of\s+({_IT}|the\s+\w+|those)$"),
        (_RETAIN, 0, 0, r"^(?:the\s+)?same(?:\s+(?:one|ones|thing|again|as before))?$"),
        (_RETAIN, 1, 0, rf"^(?:{_KEEP})\s+(.+?)(?:\s+the same|\s+unchanged)?$"),
        (_RETAIN, 1, 0, r"^(?:the\s+)?same\s+(.+)$"),
        (_RETAIN, 1, 0, r"^still\s+(?:has\s+|have\s+|is\s+|are\s+|with\s+)?(.+)$"),
        (_RETAIN, 1, 0, r"^(.+?)\s+(?:stays?|remains?|is|are)\s+(?:the same|unchanged)$"),
        (_REMOVE, 1, 0, rf"^(?:{_DROP})\s+(.+)$"),
        (_REMOVE, 1, 0, r"^no\s+longer\s+(?:has\s+|have\s+|is\s+|are\s+|wearing\s+)?(.+)$"),
        (_REMOVE, 1, 0, r"^(?:without|no more|no|there (?:is|are) no)\s+(.+)$"),
        (_REMOVE, 1, 0, r"^(?:not|does not have|doesn't have)\s+(?:wearing\s+|having\s+)?(.+)$"),
        (_REMOVE, 1, 0, r"^(.+?)\s+(?:is\s+|are\s+)?(?:removed|gone|missing)$"),
        (_REMOVE, 1, 0, r"^(.+?)\s+(?:is|are)\s+no\s+longer\b.*$"),
        (_MODIFY, 1, 3, rf"^(.+?)\s+(?:{_AUX}\s+)?changed?\s+from\s+(.+?)\s+to\s+(.+)$"),
        (_MODIFY, 1, 2, rf"^(.+?)\s+(?:{_AUX}\s+)?(?:changed|turned)\s+(?:in)?to\s+(.+)$"),
        (_ADD, 1, 0, r"^(.+?)\s+(?:is|are)\s+(?:added|included|present|visible|shown|there)$"),
        (_MODIFY, 1, 2, r"^(?:replace|swap|substitute)\s+(.+?)\s+(?:with|by|for)\s+(.+)$"),
        (_MODIFY, 2, 1, rf"^(.+?)\s+(?:{_INSTEAD})\s+(?:{_DOING}\s+)*(.+)$"),
        (_MODIFY, 1, 2, r"^(?:change|turn|convert|switch)\s+(.+?)\s+(?:to|into)\s+(.+)$"),
        (_MODIFY, 0, 1, r"^(?:change|changed|turn|switch)\s+(?:it\s+)?(?:to|into)\s+(.+)$"),
        (_MODIFY, 1, 2, r"^(.+?)\s*(?:->|=>|\u2192)\s*(.+)$"),
        (_MODIFY, 1, 2, rf"^(?:put|place|move|set|shift)\s+(.+?)\s+({_PLACE}\s+.+)$"),
        (_COMPARE, 2, 1, r"^(?:make\s+|with\s+)?(more|less|fewer)\s+(\S+s)$"),
        (_MODIFY, 0, 1, rf"^(?:make\s+(?:{_IT}\s+)?)?(?:more|much)\s+{_ATTRS}(?:\s+{_IN_COL})?$"),
        (_COMPARE, 2, 1, r"^(?:make\s+|with\s+)?(more|less|fewer)\s+(.+)$"),
        (_COMPARE, 1, 2, r"^(?:make\s+)?(.+?)\s+(?:is\s+|are\s+|looks?\s+)?(\w+er)\s+than\b.*$"),
        (_COMPARE, 1, 2, rf"^(?:make\s+)?(.+?)\s+(?:is\s+|are\s+)?({_COMPARATIVE})$"),
        (_COMPARE, 2, 1, rf"^(?:a\s+|an\s+|the\s+)?({_COMPARATIVE})\s+(.+)$"),
        (_MODIFY, 1, 2, rf"^(?:make|making|paint|colou?r|dye)\s+(.+?)\s+{_ATTRS}$"),
        (_MODIFY, 0, 1, rf"^(?:in|colou?red)\s+{_ATTRS}(?:\s+colou?r)?$"),
        (_MODIFY, 0, 1, rf"^{_ATTRS}\s+(?:in\s+)?colou?r(?:ed)?$"),
        (_ADD, 1, 0, rf"^there\s+(?:(?:{_MODAL})\s+be|is|are)\s+(.+)$"),
        (_MODIFY, 0, 1, rf"^(?:make|turn)\s+{_IT}\s+(?:into\s+)?(an?\s+.+)$"),
        (_ADD, 0, 1, rf"^(?:make|let|have|get)\s+{_IT}\s+(.+)$"),
        (_MODIFY, 0, 1, rf"^(?!.*\b(?:a|an|the)\s.*\b(?:a|an|the)\s)((?:{_PLACE}|from)\s+.+)$"),
        (_MODIFY, 1, 2, rf"^(?!.*\b(?:who|which|that)\b)({_SHORT}) (?:{_BE}) (.+)$"),
        (_ADD, 1, 0, rf"^(?:{_PUT})\s+(.+)$"),
    ]
]  # fmt: skip


def _unframe(clause: str) -> str:
    """Drop framing words ("the target photo shows", "has", "is") and quotes."""
    clause = re.sub(r"^(?:is\s+)?more\s+of\s+an?\s+", "", clause.strip(" '\""))
    while (match := _FRAME.match(clause + " ")) is not None and match.end() <= len(clause) + 1:
        clause = clause[match.end() :].strip()
    return clause


def _is_colour(clause: str) -> bool:
    words = clause.split()
    return bool(words) and all(w in COLOUR.words or w in COLOUR_SHADES for w in words)


def clauses(instruction: str) -> list[str]:
    """The clauses of an instruction, lower-cased and without framing words."""
    text = re.sub(r"\s+", " ", instruction.lower().replace("\u2019", "'")).strip()
    text = re.sub(r"(?<!\w)'|'(?!\w)|\"", " ", text.replace("(s)", "s")).strip()
    parts = _SPLIT.split(text)
    merged: list[str] = []
    for index in range(0, len(parts), 2):
        part = parts[index].strip()
        joined = index >= 2 and parts[index - 1] == "and" and merged
        last = merged[-1].split()[-1:] if merged else []
        if joined and _is_colour(" ".join(last)) and _is_colour(part.split(" in ")[0]):
            merged[-1] = f"{merged[-1]} and {part}"
        else:
            merged.append(part)
    found: list[str] = []
    for index, part in enumerate(merged):
        carried = _NEGATION.match(merged[index - 1]) if index else None
        noun = re.match(r"^(?:the\s+|a\s+|an\s+)?(\w+)$", part)
        if carried and noun and noun[1] not in ATTRIBUTES:
            part = f"{carried[0]} {part}"  # "remove the sheep and (remove) the costume"
        replaces = re.match(r"^(?:replace|swap|substitute)\b", part)
        pieces = [part] if replaces else _BEFORE_WITH.split(part)
        found.extend(_unframe(p) for p in pieces)
    return [c for c in found if c and not re.fullmatch(r"(?:is\s+)?(?:identical|perfect)", c)]


def _comparative(clause: str) -> tuple[EditKind, str, str] | None:
    """ "tighter fitting", "with a longer hem" -> (comparison, the thing, the comparative)."""
    words = re.sub(r"^(?:with\s+|has\s+|have\s+)?(?:a\s+|an\s+|the\s+)?", "", clause).split()
    if len(words) > 1 and words[0] not in COMPARATIVES and comparative_base(words[0]):
        return EditKind.COMPARISON, " ".join(words[1:]), words[0]
    return None


def classify(clause: str) -> tuple[EditKind, str, str]:
    """(kind, element, detail) of one clause; "it" when the element is implied."""
    if (compared := _comparative(clause)) is not None:
        return compared
    for kind, element_group, detail_group, pattern in _RULES:
        if match := pattern.match(clause):
            element = match[element_group] if element_group else "it"
            if kind is EditKind.ADDITION and not element_group:
                element = ""
            return kind, element, match[detail_group] if detail_group else ""
    words = clause.split()
    if len(words) > 1 and words[0] in INSTRUCTION_VERBS:
        return classify(" ".join(words[1:]))  # "make with a white background"
    attributes = [w for w in words if w in ATTRIBUTES]
    if attributes and len(words) <= 4 and not any(is_verb_only(w) for w in words):
        return EditKind.MODIFICATION, _core(clause), " ".join(attributes)
    if len(words) == 1 and comparative_base(words[0]) is not None:
        return EditKind.COMPARISON, "it", words[0]
    if words and re.fullmatch(r"\w+ly", words[0]) is None and is_verb_only(words[0]):
        return EditKind.ADDITION, "", clause  # "sit on the grass": free text
    return EditKind.ADDITION, clause, ""


def _core(element: str) -> str:
    """An element without attribute words or determiners ("the long sleeves" -> "sleeves")."""
    kept = [w for w in element.split() if w not in ATTRIBUTES and w not in {"a", "an", "the"}]
    return " ".join(kept) or "it"
