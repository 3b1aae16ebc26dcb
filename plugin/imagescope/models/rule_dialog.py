"""Dialog turns for the rule reasoner: "question? answer" -> the edit it implies.

A turn says what the wanted image shows; :func:`turn_to_instruction` restates
it as an instruction the reasoner applies to the running description:

- counts: "how many are there? two" -> "only two" (of the subject);
- colours, kinds, materials: "what colour is the shirt? red" -> "make the
  shirt red"; "what is the desk made of? wood" -> "make the desk wood";
- existence: "is there a dog? yes" -> "with a dog", "... no" -> "without a dog";
- states of the subject: "is the car red? yes" -> "make the car red";
  "is it daytime? yes" -> the fact "daytime" (see ``FACT``);
- places: "where is it? on the left" -> "put it on the left";
- anything else with a noun-phrase answer -> "with <answer>".

A "no" that does not deny a thing, a question about the photo itself ("is
the photo in colour?"), the viewer's opinion ("do you think...") and answers
such as "not sure" add nothing: the empty instruction. :func:`split_transcript`
reads a whole dialog written as one text.
"""

from __future__ import annotations

import re

from imagescope.models.lexicon import is_function_word, is_verb_only
from imagescope.models.word_classes import (
    COLOUR,
    NUMBERS,
    POSITIONS,
    is_attribute_word,
    position_phrase,
)
from imagescope.schemas import Proposition

#: Instructions starting with this word add their rest as a plain fact.
FACT = "depicting"

_QA = re.compile(r"^\s*(?:q(?:uestion)?\s*:\s*)?(.+?)\?\s*(?:a(?:nswer)?\s*:\s*)?(.*?)\W*$")
_AUX = re.compile(r"^(?:is|are|does|do|can|has|have)\s+(?:there\s+)?(.+)$")
_EXIST = [
    re.compile(r"^(?:is|are)\s+there\s+(.+)$"),
    re.compile(r"^(?:can|could|do|did)\s+(?:you|we|i)\s+(?:see|spot|notice)\s+(.+)$"),
    re.compile(r"^(?:are|is)\s+(any\s+.+)$"),
    re.compile(r"^(any\s+(?!\w+ing\b).+)$"),
    re.compile(r"^(?:does|do|did)\s+(?:.+?)\s+(?:have|has|contain|include|wear)\s+(.+)$"),
]
_IS_THE_X_Y = re.compile(r"^(?:is|are)\s+(the\s+\w+|the\s+\w+\s+\w+|it|they|he|she|this)\s+(.+)$")
_LOOKS = re.compile(r"^(?:does|do)\s+(?:it|this|they)\s+look\s+like\s+(.+)$")
_ALTERNATIVE = re.compile(r"^(?:(?:is|are)\s+(.+?)\s+)?(\w+)\s+or\s+(\w+)(?:\s+\w+)?$")
_ASK_COLOUR = re.compile(
    r"^what\s+colou?rs?\s+(?:(?:is|are)\s+(.+)|(?:of\s+)?(\w+(?:\s+\w+)?)(?:\s+(?:is|are|do|does)\b.*)?)$"
)
_HOW = re.compile(r"^how\s+(?!many\b)\w+")
_ASK_KIND_OF = re.compile(
    r"^what\s+(?:kind|type|sort|breed)\s+of\s+(\w+)\s+(?:is|are)\s+(?:it|they|this|that)$"
)
_ASK_KIND = re.compile(
    r"^what\s+(?:shape|kind|type|sort|size|material|pattern|breed)(?:\s+of\s+\w+)?\s+(?:is|are)\s+(.+)$"
)
_ASK_MADE = re.compile(r"^what(?:'s|\s+is|\s+are)\s+(.+?)\s+made\s+(?:out\s+)?of$")
_ASK_SETTING = re.compile(
    r"^(?:what\s+(?:time|season|is\s+the\s+weather|'s\s+the\s+weather)|is\s+it\s+(?:day|night)"
    r"|is\s+it\s+(?:inside|indoors|outside|outdoors)|is\s+this\s+(?:inside|indoors|outside))"
)
_ASK_BACKGROUND = re.compile(r"^what(?:'s|\s+is)\s+in\s+the\s+background$")
_HOW_MANY = re.compile(
    r"^how\s+many(?:\s+(.+?))??(?:\s+(?:are|is)\s+(?:there|in\s+the\s+\w+|visible)"
    r"|\s+(?:do|can)\s+you\s+see)?$"
)
_WHERE = re.compile(
    r"^where\s+(?:is|are)\s+(.+?)(?:\s+(?:in|on)\s+the\s+(?:picture|image|photo|frame))?$"
)
_PLACE = re.compile(r"^(?:on|in|at|to|near|under|behind|beside|by|inside|against)\b")
_LOCATED = re.compile(r"\s+(?:on|in|at|near|around|behind|under|beside|by|next to|inside)\s+.*$")
_META = re.compile(
    r"^(?:is|are|was)\s+(?:the|this|it\s+a)\s+(?:\w+\s+)?(?:photo|picture|image|pic)\b"
)
_OPINION = re.compile(r"\b(?:you|your|we|i)\s+(?:think|tell|guess|say|know|imagine)\b")
_UNKNOWN = re.compile(
    r"^(?:unknown|not sure|unsure|maybe|no idea|hard to (?:tell|say)|can'?t (?:tell|see|say)"
    r"|cannot (?:tell|see)|i (?:don'?t|do not|can'?t|cannot) (?:know|tell|see)|not visible)\b"
)
_ANSWER_FRAME = re.compile(
    r"^(?:it(?:'s|\s+is|\s+looks(?:\s+like)?)|they(?:'re|\s+are)|there\s+(?:is|are)|he(?:'s|\s+is)"
    r"|she(?:'s|\s+is)|i\s+think|looks\s+like|probably|about|maybe|just)\s+"
)
_VAGUE = frozenset("anything anyone anybody something someone somebody other others".split())
_PERSONAL = frozenset("it this they he she".split())
_SETTINGS = {"out": "outdoors", "outside": "outdoors", "in": "indoors", "inside": "indoors"}
_NONE = re.compile(r"^(?:no|none|zero|0|nothing|nobody|no one)\b")


def _split_turn(text: str) -> tuple[str, str, str, str] | None:
    """(question, answer, first answer word, rest of the answer) of a turn."""
    match = _QA.match(text.strip().lower())
    if match is None:
        return None
    question, answer = match[1].strip(), _clean_answer(match[2])
    first, _, rest = answer.partition(",")
    words = first.split()
    head = words[0] if words else ""
    if head in {"yes", "no"}:
        rest = _clean_answer(" ".join([*words[1:], rest]).strip(" ,"))
    return question, answer, head, rest


def _clean_answer(answer: str) -> str:
    answer = answer.strip(" .!,")
    while (match := _ANSWER_FRAME.match(answer + " ")) is not None and answer:
        answer = answer[match.end() :].strip()
    words = answer.split()
    if words and (is_verb_only(words[0]) or words[0] in {"not", "i", "it", "they", "there", "to"}):
        return words[0] if words[0] in {"yes", "no"} else ""
    return answer


def dialog_proposition(text: str) -> Proposition | None:
    """A yes/no dialog turn ("is there a dog? no") is itself a proposition."""
    turn = _split_turn(text)
    if turn is None or turn[2] not in {"yes", "no"} or not _AUX.match(turn[0]):
        return None
    question = turn[0][0].upper() + turn[0][1:] + "?"
    return Proposition(statement=text.strip(), question=question, expected=turn[2] == "yes")


def _thing(question: str) -> str | None:
    """What an existence question asks about ("is there a dog on a sofa" -> "a dog on a sofa")."""
    for pattern in _EXIST:
        if (match := pattern.match(question)) is not None:
            thing = re.sub(r"^(?:any|some)\s+", "", match[1]).strip()
            words = thing.split()
            if re.search(r"\b(?:other|else|another|more|besides)\b", thing):
                return ""  # "are there other people?" says nothing about the ones described
            if not words or words[0] in _VAGUE or is_verb_only(words[0]):
                return ""
            return thing
    return None


def _yes_no(question: str, rest: str, *, yes: bool) -> str:
    """ "is there a dog? yes" -> "with a dog"; "does it have a pattern? no, plain" ->
    "without a pattern, plain"; "is the car red? yes" -> "make the car red"."""
    extra = f", {rest}" if rest else ""
    if _META.match(question) or _OPINION.search(question):
        return rest
    thing = _thing(question)
    if thing is not None:
        if not thing:
            return rest
        return (f"with {thing}" if yes else f"without {_LOCATED.sub('', thing)}") + extra
    if not yes:
        return rest
    if (looks := _LOOKS.match(question)) is not None:
        return f"{FACT} {looks[1]}{extra}"
    state = _IS_THE_X_Y.match(question)
    if state is None:
        return rest
    subject, predicate = state[1], state[2]
    if all(is_attribute_word(w) or w == "and" for w in predicate.split()):
        return f"make {subject} {predicate}{extra}"
    if subject in {"it", "they", "this"}:
        return f"{FACT} {predicate}{extra}"
    return f"{FACT} {subject} {predicate}{extra}"


def _count(thing: str | None, answer: str, *, first: str) -> str:
    noun = thing or ""
    if _NONE.match(answer):
        return f"without {noun}" if noun else ""
    if first in NUMBERS or first.isdigit():
        return f"only {first} {noun}".strip()
    return ""


def _open(question: str, answer: str, *, first: str) -> str | None:
    """The instruction of a turn whose answer is not yes/no, when recognised."""
    if (asked := _ASK_COLOUR.match(question)) is not None:
        colours = [w for w in answer.split() if w in COLOUR.words or w == "and"]
        value = re.sub(r"^and\s+|\s+and$", "", " ".join(colours)) if colours else answer
        return f"make {asked[1] or asked[2]} {value}" if len(value.split()) <= 3 else ""
    if _HOW.match(question):
        return f"make it {answer}" if is_attribute_word(answer) else ""
    if (many := _HOW_MANY.match(question)) is not None:
        return _count(many[1], answer, first=first)
    if (where := _WHERE.match(question)) is not None:
        if _PLACE.match(answer):
            place = answer
        else:
            place = position_phrase(answer) if answer in POSITIONS else f"in {answer}"
        return f"put {where[1]} {place}"
    if (made := _ASK_MADE.match(question)) is not None:
        return f"make {made[1]} {answer}" if is_attribute_word(answer) else f"with {answer}"
    if (kind_of := _ASK_KIND_OF.match(question)) is not None:
        return f"turn {kind_of[1]} into {answer}"
    if (kind := _ASK_KIND.match(question)) is not None:
        words = answer.split()
        if words and all(is_attribute_word(w) for w in words):
            return f"make {kind[1]} {answer}"
        return f"turn {kind[1]} into {answer}"
    if (alternative := _ALTERNATIVE.match(question)) is not None:
        subject = alternative[1]
        if subject and subject not in _PERSONAL and is_attribute_word(answer):
            return f"make {subject} {answer}"
        if is_function_word(answer.split()[0]) and answer not in _SETTINGS:
            return ""
        return f"{FACT} {_SETTINGS.get(answer, answer)}"
    if _ASK_SETTING.match(question):
        return f"{FACT} {_SETTINGS.get(answer, answer)}"
    if _ASK_BACKGROUND.match(question):
        return f"{FACT} {answer} in the background"
    return None


def turn_to_instruction(text: str) -> str:
    """Rewrite a "question? answer" dialog turn as an instruction; other text is unchanged.

    "is there a dog? yes" -> "with a dog"; "... no" -> "without a dog";
    "what color is the car? red" -> "make the car red"; "how many people are
    there? two" -> "only two people"; "where is it? on the left" -> "put it on
    the left"; "what shape is it? a star" -> "turn it into a star"; other
    questions -> "with <answer>"; an answer that says nothing -> "".
    """
    turn = _split_turn(text)
    if turn is None:
        return text
    question, answer, first, rest = turn
    if first in {"yes", "no"}:
        return _yes_no(question, rest, yes=first == "yes")
    if not answer or _UNKNOWN.match(answer) or _OPINION.search(question):
        return ""
    found = _open(question, answer, first=first)
    if found is not None:
        return found
    if _NONE.match(answer) or len(answer.split()) > 5:
        return ""
    if all(is_attribute_word(w) for w in answer.split()):
        return f"make it {answer}"
    return f"with {answer}"


def split_transcript(text: str) -> tuple[str, list[str]] | None:
    """A dialog written as one text -> (caption, ["question? answer", ...]).

    The caption is what comes before the first question; each question takes
    the text up to the next sentence end as its answer. None when the text has
    no caption or no question.
    """
    sentences = [s.strip() for s in re.split(r"(?<=[.?!])\s+", text.strip()) if s.strip()]
    first_question = next((i for i, s in enumerate(sentences) if s.endswith("?")), None)
    if not first_question:
        return None
    caption = " ".join(sentences[:first_question]).rstrip(".! ")
    turns: list[str] = []
    for sentence in sentences[first_question:]:
        if sentence.endswith("?") or not turns:
            turns.append(sentence)
        else:
            turns[-1] = f"{turns[-1]} {sentence.rstrip('.! ')}"
    return caption, turns
