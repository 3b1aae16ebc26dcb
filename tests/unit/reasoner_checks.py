"""Automatic checks of a rewrite: what makes a description clean, read off the text alone.

Shared by the corpus test (real instructions from ``../shared/corpora``) and
the everyday-instruction tests. Every check returns the problems it found (an
empty list: clean). The checks know nothing of the reasoner's internals: they
read the instruction with their own patterns and the descriptions as text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from imagescope.models.lexicon import is_function_word, is_verb_only, parts_of_speech
from imagescope.models.word_classes import COLOUR, NUMBERS, PATTERN_NOUNS, same_noun

WORD = re.compile(r"[a-z0-9]+(?:['-][a-z0-9]+)*")
_PUNCTUATED = re.compile(r"[a-z0-9]+(?:['-][a-z0-9]+)*|[,;.:]")
_PRONOUNS = frozenset("i you he she it we they me him us them this that".split())
#: Words only an instruction uses; never in a description (unless the reference had them).
INSTRUCTION_WORDS = frozenset(
    "make makes change changes changed replace replaced swap remove removed delete add added "
    "show shows instead rather".split()
)
_LINKS = frozenset("a an the some any two three four five one his her its their".split())
_DANGLING = frozenset("with without a an the and or of on in to is are at by from".split())
_STOP = frozenset(
    "a an the and or of on in to is are at by from with without it its this that these those "
    "there their they them some any one into onto for as".split()
)
_OLD_NEW = [
    (re.compile(r"\b(?P<new>[\w' -]+?)\s+instead\s+of\s+(?P<old>[\w' -]+)"), True),
    (re.compile(r"\b(?P<new>[\w' -]+?)\s+rather\s+than\s+(?P<old>[\w' -]+)"), True),
    (re.compile(r"\breplace\s+(?P<old>[\w' -]+?)\s+with\s+(?P<new>[\w' -]+)"), True),
    (re.compile(r"^change\s+(?P<old>[\w' -]+?)\s+(?:in)?to\s+(?P<new>[\w' -]+)"), True),
    (
        re.compile(
            r"\bno\s+longer\s+(?:has\s+|is\s+|are\s+|have\s+)?(?!on|in|at)(?P<old>[\w' -]+)"
        ),
        False,
    ),
]
_NEW_SUBJECT = re.compile(
    r"^(?:change|turn|make)\s+(?:it\s+|them\s+)?(?:(?:to|into)\s|an?\s+(?!lot\b)\w+\s+\w+$)"
)
_PLACE = re.compile(r"\b(on|in|at)\s+(?:an?\s+|the\s+)?([\w ]+)")
_QUANTITY = frozenset("many few several some lots".split())
_ADDED = re.compile(r"\badd(?:ing)?\s+(?:an?\s+|some\s+|the\s+)?(?P<new>[\w' -]+)")
_NEGATING = re.compile(
    r"\b(?:no|not|without|instead of|rather than|than|from|remove|no longer|less)\s"
)
#: Spellings of one word.
_SAME = {"gray": "grey", "color": "colour", "colored": "coloured", "colors": "colours"}


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


def _clause(text: str) -> str:
    """Up to the next clause boundary."""
    return re.split(r"\s*(?:[,;.!?]|\band\b|\bbut\b|\bwith\b|\bwhile\b)\s*", text.strip())[0]


def _content(text: str) -> list[str]:
    return [w for w in words(text) if w not in _STOP and not is_verb_only(w)]


def _has(description: str, word: str) -> bool:
    if word in NUMBERS and word != "one":
        return word in words(description)
    word = _SAME.get(word, word)
    if word in PATTERN_NOUNS and PATTERN_NOUNS[word] in words(description):  # "stripes"
        return True
    return any(same_noun(_SAME.get(w, w), word) for w in words(description))


@dataclass
class Rewrite:
    """One instruction, its reference (caption, or None), and the descriptions written."""

    instruction: str
    reference: str | None
    descriptions: Sequence[str]
    turns: Sequence[tuple[str, str]] = ()
    problems: list[str] = field(default_factory=list)


def _fragment_after(after: list[str]) -> bool:
    """What follows "with" cannot start a noun phrase: a verb ("with a has"), a
    pronoun or preposition ("with you see", "with an in"), or a lone adjective
    ("with a sunny")."""
    article = bool(after) and after[0] in {"a", "an"}
    rest = [t for t in after if t not in _LINKS]
    if not rest:
        return True
    word = rest[0]
    if is_verb_only(word) or word in {"theres", "there"} or word in _PRONOUNS:
        return True
    if is_function_word(word) and word not in {"no", "all", "both", "each"}:
        return True
    tags = parts_of_speech(word)
    lone = len(rest) == 1 or not rest[1].isalpha()
    return article and lone and tags <= {"ADJ", "ADV"} and bool(tags)


def garbage(description: str, *, reference: str | None) -> list[str]:
    """Verb fragments, duplicated words, instruction words, dangling ends, questions."""
    found: list[str] = []
    tokens = _PUNCTUATED.findall(description.lower())
    known = set(words(reference or ""))
    for i, token in enumerate(tokens[:-1]):
        phrase = " ".join(tokens[i : i + 4])
        inherited = phrase in " ".join(_PUNCTUATED.findall((reference or "").lower()))
        if token in {"with", "without"} and _fragment_after(tokens[i + 1 : i + 4]):
            found += [] if inherited else [f"fragment after with: {phrase!r}"]
        if tokens[i + 1] == token and token.isalpha() and token not in known:
            found.append(f"duplicated word {token!r}")
    leaked = [t for t in tokens if t in INSTRUCTION_WORDS and t not in known]
    if leaked:
        found.append(f"instruction words {leaked}")
    if "theres" in tokens or "?" in description:
        found.append("question left over")
    if not tokens or tokens[-1] in _DANGLING or not tokens[-1][0].isalnum():
        found.append("dangling end")
    return found


def replaced_gone(instruction: str, descriptions: Sequence[str]) -> list[str]:
    """For "X instead of Y" and the like: Y's words are not in the descriptions."""
    found: list[str] = []
    text = instruction.lower()
    for pattern, _ in _OLD_NEW:
        for match in pattern.finditer(text):
            new = set(_content(match.groupdict().get("new") or ""))
            old_phrase = _clause(match["old"]).split(" of ")[0]  # "the colour of the car"
            old = [w for w in _content(old_phrase) if w not in new]
            for description in descriptions[1:]:
                kept = [w for w in old if w in words(description)]
                if kept:
                    found.append(f"replaced value kept: {kept} in {description!r}")
    return found


def additions_present(rewrite: Rewrite) -> list[str]:
    """Every requested new value is in the finest description."""
    text, full = rewrite.instruction.lower(), rewrite.descriptions[-1]
    asked: list[str] = []
    for pattern, has_new in _OLD_NEW:
        for match in pattern.finditer(text):
            if has_new:
                new = _content(_clause(match["new"]).split(" of ")[-1])
                asked += new[-1:]
    for match in _ADDED.finditer(text):
        asked += _content(_clause(match["new"]))[-1:]
    for colour in (w for w in words(text) if w in COLOUR.words):
        before = text[: text.find(colour)]
        if not _NEGATING.search(before[-24:] + " "):
            asked.append(colour)
    for question, answer in rewrite.turns:
        asked += _answer_facts(question.lower(), answer.lower())
    return [f"asked {w!r} missing from {full!r}" for w in asked if not _has(full, w)]


def _answer_facts(question: str, answer: str) -> list[str]:
    """What a dialog answer says must be in the image: counts, colours, existence."""
    answer_words = words(answer)
    if re.match(r"how many", question) and answer_words and answer_words[0] in NUMBERS:
        return answer_words[:1] if answer_words[0] != "one" else []
    if re.match(r"what colou?rs?\b", question):
        return [w for w in answer_words if w in COLOUR.words]
    thing = re.match(r"(?:is|are) there (?:an?\s+|any\s+|some\s+)?([\w ]+)$", question)
    if thing and answer_words[:1] == ["yes"]:
        return _content(thing[1])[-1:]
    return []


def reference_kept(rewrite: Rewrite) -> list[str]:
    """The reference's nouns stay unless the instruction or a turn names them."""
    if not rewrite.reference:
        return []
    said = words(rewrite.instruction + " " + " ".join(q + " " + a for q, a in rewrite.turns))
    if _NEW_SUBJECT.match(rewrite.instruction.lower()):  # "change to zebras": a new subject
        said += [w for w in _content(rewrite.reference) if "ADJ" not in parts_of_speech(w)][:1]
    said += [w[: -len("less")] for w in said if w.endswith("less")]  # "sleeveless"
    for match in _PLACE.finditer(rewrite.instruction.lower()):  # "on a beach": a new setting
        for old in _PLACE.finditer(rewrite.reference.lower()):
            said += words(old[2]) if old[1] == match[1] else []
    full = rewrite.descriptions[-1]
    nouns = [
        w
        for w in _content(rewrite.reference)
        if "NOUN" in parts_of_speech(w)
        and "ADJ" not in parts_of_speech(w)
        and not w.endswith("ing")
        and w not in _QUANTITY
    ]
    missing = [w for w in nouns if not any(same_noun(w, s) for s in said) and not _has(full, w)]
    return [f"reference word {w!r} lost from {full!r}" for w in missing]


def check(rewrite: Rewrite) -> list[str]:
    """Every problem of one rewrite (empty: a clean rewrite)."""
    problems: list[str] = []
    if len(set(rewrite.descriptions)) != 3 or len(rewrite.descriptions) != 3:
        problems.append(f"not three distinct descriptions: {list(rewrite.descriptions)}")
    for description in rewrite.descriptions:
        problems += garbage(description, reference=rewrite.reference)
    problems += replaced_gone(rewrite.instruction, rewrite.descriptions)
    problems += additions_present(rewrite)
    problems += reference_kept(rewrite)
    return problems
