"""Dialog turns for the rule reasoner: "question? answer" -> an instruction.

A turn such as "what colour is the background? navy" says what the wanted
image shows; :func:`turn_to_instruction` restates it as the edit it implies
("make the background navy"), which the reasoner then applies to the running
description. :func:`split_transcript` reads a whole dialog written as one
text ("a red shape. where is it? on the left. how many are there? two").
"""

from __future__ import annotations

import re

from imagescope.models.word_classes import POSITIONS, is_attribute_word, position_phrase
from imagescope.schemas import Proposition

_QA = re.compile(r"^\s*(?:q(?:uestion)?\s*:\s*)?(.+?)\?\s*(?:a(?:nswer)?\s*:\s*)?(.*?)\W*$")
_AUX = re.compile(r"^(?:is|are|does|do|can|has|have)\s+(?:there\s+)?(.+)$")
_EXIST = re.compile(r"^(?:(?:is|are)\s+there|can\s+(?:you|we|i)\s+see)\s+(.+)$")
_POSSESS = re.compile(r"^(?:does|do|did)\s+(.+?)\s+(?:have|has|contain|include|wear)\s+(.+)$")
_ASK_COLOUR = re.compile(r"^what\s+colou?rs?\s+(?:is|are)\s+(.+)$")
_ASK_KIND = re.compile(
    r"^what\s+(?:shape|kind|type|sort|size|material|pattern)(?:\s+of\s+\w+)?\s+(?:is|are)\s+(.+)$"
)
_HOW_MANY = re.compile(r"^how\s+many\s+(.+?)(?:\s+(?:are|is)\s+there|\s+(?:do|can)\s+you\s+see)?$")
_WHERE = re.compile(
    r"^where\s+(?:is|are)\s+(.+?)(?:\s+(?:in|on)\s+the\s+(?:picture|image|photo|frame))?$"
)
_IS_THE_X_Y = re.compile(r"^(?:is|are)\s+(the\s+.+?|it|they)\s+(\S+)$")
_STATE = re.compile(r"^(?:is|are)\s+((?:the\s+|his\s+|her\s+)?\S+(?:\s+\S+)?\s+\w+ing\b.*)$")
_PLACE = re.compile(r"^(?:on|in|at|to|near|under|behind|beside|by|inside|against)\b")


def _split_turn(text: str) -> tuple[str, str, str, str] | None:
    """(question, answer, first answer word, rest of the answer) of a turn."""
    match = _QA.match(text.strip().lower())
    if match is None:
        return None
    question, answer = match[1].strip(), match[2].strip()
    first, _, rest = answer.partition(",")
    words = first.split()
    head = words[0] if words else ""
    if head in {"yes", "no"}:
        rest = " ".join([*words[1:], rest]).strip(" ,")
    return question, answer, head, rest


def dialog_proposition(text: str) -> Proposition | None:
    """A yes/no dialog turn ("is there a dog? no") is itself a proposition."""
    turn = _split_turn(text)
    if turn is None or turn[2] not in {"yes", "no"} or not _AUX.match(turn[0]):
        return None
    question = turn[0][0].upper() + turn[0][1:] + "?"
    return Proposition(statement=text.strip(), question=question, expected=turn[2] == "yes")


def _yes_no(question: str, rest: str, *, yes: bool) -> str:
    """ "is there a dog? yes" -> "with a dog"; "does it have a pattern? no, plain"
    -> "without a pattern, plain"; "is the car red? yes" -> "make the car red"."""
    extra = f", {rest}" if rest else ""
    attribute = _IS_THE_X_Y.match(question)
    if attribute and is_attribute_word(attribute[2]):
        return (f"make {attribute[1]} {attribute[2]}" if yes else "") + extra
    body = _POSSESS.match(question)
    thing = body[2] if body else (m[1] if (m := _EXIST.match(question)) else None)
    if thing is not None:
        return f"{'with' if yes else 'without'} {thing}{extra}"
    state = _STATE.match(question)  # "is the man wearing a hat? yes": show just that
    if state is not None:
        return (f"show {state[1]}" if yes else "") + extra
    aux = _AUX.match(question)
    return f"{'with' if yes else 'without'} {aux[1] if aux else question}{extra}"


def _open(question: str, answer: str, *, first: str) -> str | None:
    """The instruction of a turn whose answer is not yes/no, when recognised."""
    if (asked := _ASK_COLOUR.match(question)) is not None:
        return f"make {asked[1]} {answer}"
    if (many := _HOW_MANY.match(question)) is not None:
        return f"only {first} {many[1]}"
    if (where := _WHERE.match(question)) is not None:
        if _PLACE.match(answer):
            place = answer
        else:
            place = position_phrase(answer) if answer in POSITIONS else f"in {answer}"
        return f"put {where[1]} {place}"
    if (kind := _ASK_KIND.match(question)) is not None:
        words = answer.split()
        if words and all(is_attribute_word(w) for w in words):
            return f"make {kind[1]} {answer}"
        return f"turn {kind[1]} into {answer}"
    return None


def turn_to_instruction(text: str) -> str:
    """Rewrite a "question? answer" dialog turn as an instruction; other text is unchanged.

    "is there a dog? yes" -> "with a dog"; "... no" -> "without a dog";
    "what color is the car? red" -> "make the car red"; "how many people are
    there? two" -> "only two people"; "where is it? on the left" -> "put it on
    the left"; "what shape is it? a star" -> "turn it into a star"; other
    questions -> "with <answer>".
    """
    turn = _split_turn(text)
    if turn is None:
        return text
    question, answer, first, rest = turn
    if first in {"yes", "no"}:
        return _yes_no(question, rest, yes=first == "yes")
    if not answer:
        return text
    return _open(question, answer, first=first) or f"with {answer}"


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
