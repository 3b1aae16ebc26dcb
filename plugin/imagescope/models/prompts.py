"""Prompts of the chat-driven roles, and the parsers of their replies.

Each prompt lives next to the parser of the reply it asks for, so the two can
only change together. Bump :data:`PROMPT_VERSION` whenever a prompt's wording
changes: it is part of the roles' ``model_id`` and therefore of the
answer-cache key, so cached answers to an old prompt are not reused.

Parsers are tolerant (code fences, prose around JSON, single quotes, a reply
cut off by the token limit, markdown bold) and raise ``ModelOutputError`` when
nothing usable is left.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import json_repair

from imagescope.errors import ModelOutputError
from imagescope.models.yes_no import LEADING_YES_NO as _LEADING_YES_NO
from imagescope.models.yes_no import add_logprob as add_logprob
from imagescope.models.yes_no import parse_yes_no as parse_yes_no
from imagescope.models.yes_no import yes_probability as yes_probability
from imagescope.schemas import AtomicEdit, EditKind, Evaluation, Intent, Proposition

logger = logging.getLogger(__name__)

PROMPT_VERSION = "v1"

# --------------------------------------------------------------------------- stage 1a: intent

REASONER_SYSTEM = (
    "You plan queries for a photo search engine. You read what a user wants and "
    "describe, precisely and literally, the photo that would satisfy them. "
    "You reply with a single JSON object and write nothing after it."
)

_EDITS_HELP = """\
2. "edits": the atomic edits the request makes, each an object with:
   - "kind", one of
       "addition": something new must appear;
       "removal": something must be absent;
       "modification": an element stays but an attribute changes, or one thing
         replaces another;
       "comparison": more, less, bigger, smaller... than in the reference;
       "retention": something must stay as it is;
   - "element": the object or region concerned, in a few words;
   - "detail": the attribute or the change, "" when there is none.
   Without a reference photo, list the requested elements as additions."""


def _reference_block(reference_caption: str | None) -> str:
    if reference_caption and reference_caption.strip():
        return (
            "The user starts from a reference photo, described as:\n"
            f'"{reference_caption.strip()}"\n'
            "The request says how the wanted photo differs from it."
        )
    return "There is no reference photo: the request describes the wanted photo directly."


def _descriptions_help(num_descriptions: int) -> str:
    levels = [
        "the core elements only, in a few words;",
        "the core elements with their key attributes (colour, number, size, material, position);",
        "one fluent caption of the whole wanted photo, keeping whatever the reference "
        "contributes that the request leaves unchanged.",
    ]
    if num_descriptions < 3:
        levels = levels[3 - num_descriptions :]
    elif num_descriptions > 3:
        levels.insert(2, f"{num_descriptions - 3} more description(s) of growing detail;")
    return "\n".join(f"   - {level}" for level in levels)


def intent_prompt(instruction: str, *, reference_caption: str | None, num_descriptions: int) -> str:
    """The stage-1a request: reasoning first, then edits, then the descriptions."""
    return f"""{_reference_block(reference_caption)}

Request: "{instruction.strip()}"

Answer with these fields, in this order.
1. "reasoning": think step by step. What must the wanted photo show? What must it not
   show? Which parts of the reference carry over unchanged?
{_EDITS_HELP}
3. "descriptions": exactly {num_descriptions} description(s) of the wanted photo, from
   shortest to most complete:
{_descriptions_help(num_descriptions)}
   Describe the photo itself, never the change: write "a red dress", not "make the
   dress red".

Reply with JSON only, shaped like:
{{"reasoning": "...", "edits": [{{"kind": "addition", "element": "...", "detail": "..."}}],
 "descriptions": ["...", "..."]}}"""


# --------------------------------------------------------------------------- stage 2a: propositions


def propositions_prompt(
    instruction: str,
    *,
    edits: Sequence[AtomicEdit],
    descriptions: Sequence[str],
    reference_caption: str | None,
    max_propositions: int,
) -> str:
    """The stage-2a request: edits -> statements -> yes/no questions with answers."""
    edit_lines = "\n".join(
        f"- {e.kind.value}: {e.element}" + (f" ({e.detail})" if e.detail else "") for e in edits
    )
    wanted = descriptions[-1] if descriptions else instruction
    return f"""A vision model will check candidate photos one at a time by answering yes/no
questions while looking at that single photo only.

{_reference_block(reference_caption)}

Request: "{instruction.strip()}"
Wanted photo: "{wanted.strip()}"
Atomic edits:
{edit_lines or "- (none listed: use the request itself)"}

First turn each edit into one short statement that is true of the wanted photo, such as
"There is a dog on the sofa.", "There is no oven." or "The dress is red.". Then turn each
statement into a yes/no question about one photo, and give the answer the wanted photo
would give. Rules: one visible fact per question; never refer to the reference photo or
to "before" (ask "Is the dog large?", not "Is the dog bigger than before?"); at most
{max_propositions} questions, most important first.

Reply with JSON only, shaped like:
{{"propositions": [{{"statement": "There is no oven.", "question": "Is there an oven?",
 "answer": "no"}}]}}"""


# --------------------------------------------------------------------------- stage 2b: verification


def verify_prompt(question: str) -> str:
    """Text that follows the image (the image comes first for prefix caching)."""
    return f"{question.strip()}\nReply with one word: Yes or No."


# --------------------------------------------------------------------------- stage 3: evaluation


def evaluate_prompt(
    instruction: str,
    *,
    has_reference: bool,
    layout: Literal["side_by_side", "separate"] = "side_by_side",
) -> str:
    """Text that follows the evaluation image(s).

    ``side_by_side``: one image, reference left and candidate right (a blank
    left panel without a reference). ``separate``: the reference image, then
    the candidate image (the candidate alone without a reference).
    """
    if layout == "separate":
        setup = _separate_setup(instruction, has_reference=has_reference)
    elif has_reference:
        setup = (
            "The image shows two photos side by side. LEFT: the reference photo the user "
            "started from. RIGHT: a candidate search result.\n"
            f'The user asked for the reference photo changed like this: "{instruction.strip()}"\n'
            "Does the RIGHT photo make every requested change while keeping what the request "
            "does not change?"
        )
    else:
        setup = (
            "The image shows a blank panel on the LEFT and a candidate search result on the "
            f'RIGHT.\nThe user is looking for: "{instruction.strip()}"\n'
            "Does the RIGHT photo show what the user is looking for?"
        )
    return (
        f'{setup}\nStart your reply with exactly "ANSWER: Yes" or "ANSWER: No", then give '
        "one short sentence with the main reason."
    )


def _separate_setup(instruction: str, *, has_reference: bool) -> str:
    if has_reference:
        return (
            "You see two photos. The FIRST is the reference photo the user started from; "
            "the SECOND is a candidate search result.\n"
            f'The user asked for the reference photo changed like this: "{instruction.strip()}"\n'
            "Does the SECOND photo make every requested change while keeping what the request "
            "does not change?"
        )
    return (
        "The photo is a candidate search result.\n"
        f'The user is looking for: "{instruction.strip()}"\n'
        "Does the photo show what the user is looking for?"
    )


# --------------------------------------------------------------------------- captions

CAPTION_PROMPT = (
    "Write one factual sentence describing this photo for a search index: the main "
    "subjects, their colours and other visible attributes, what is happening and the "
    "setting. No opinions, no preamble."
)

# --------------------------------------------------------------------------- JSON repair

_FENCE = re.compile(r"```[a-zA-Z]*")


def _objects_in(value: Any) -> Iterator[dict[str, Any]]:
    """Dicts in a parsed value, outermost first (json-repair may wrap them in a list)."""
    if isinstance(value, dict):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _objects_in(item)


def extract_json_object(
    text: str, *, required_key: str, item_key: str | None = None
) -> dict[str, Any]:
    """The first JSON object in ``text`` that has ``required_key``, repaired if needed.

    Tries the whole reply first, then the reply from each ``{`` onwards, so prose
    with braces before the JSON does not hide it. With ``item_key``, a bare list
    of objects having that key is accepted as ``{required_key: list}``.
    Raises ``ModelOutputError``.
    """
    cleaned = _FENCE.sub("", text).strip()
    starts = [0] + [m.start() for m in re.finditer(r"\{", cleaned)][:20]
    for start in starts:
        try:
            parsed = json_repair.loads(cleaned[start:])
        except (ValueError, RecursionError):  # pragma: no cover - json-repair rarely raises
            continue
        if item_key and isinstance(parsed, list):
            if any(isinstance(item, dict) and item_key in item for item in parsed):
                return {required_key: parsed}
        for candidate in _objects_in(parsed):
            if required_key in candidate:
                return candidate
    raise ModelOutputError(
        f"no JSON object with {required_key!r} in the model reply: {_excerpt(text)}"
    )


def _excerpt(text: str, limit: int = 200) -> str:
    flat = " ".join(text.split())
    return repr(flat if len(flat) <= limit else flat[:limit] + "...")


def _text_items(value: Any) -> list[str]:
    """Strings from a list, a dict of levels, or objects with a text field."""
    if isinstance(value, str):
        value = [value]
    elif isinstance(value, dict):
        value = list(value.values())
    if not isinstance(value, list):
        return []
    out: list[str] = []
    for item in value:
        if isinstance(item, dict):
            item = item.get("text") or item.get("description") or ""
        if isinstance(item, str) and item.strip():
            out.append(" ".join(item.split()))
    return out


# --------------------------------------------------------------------------- intent parsing

_KIND_ALIASES: dict[str, EditKind] = {
    **dict.fromkeys(("add", "added", "adding", "addition", "insert"), EditKind.ADDITION),
    **dict.fromkeys(("remove", "removed", "removal", "delete", "deletion"), EditKind.REMOVAL),
    **dict.fromkeys(
        ("modify", "modified", "modification", "change", "replace", "replacement"),
        EditKind.MODIFICATION,
    ),
    **dict.fromkeys(("compare", "comparison", "comparative"), EditKind.COMPARISON),
    **dict.fromkeys(("retain", "retention", "keep", "preserve", "unchanged"), EditKind.RETENTION),
}


def edit_kind(name: str) -> EditKind | None:
    """An edit kind from a model's word for it ("Addition", "remove", ...); None if unknown."""
    return _KIND_ALIASES.get(name.strip().lower())


def _parse_edit(raw: Any) -> AtomicEdit | None:
    if not isinstance(raw, dict):
        return None
    kind = _KIND_ALIASES.get(str(raw.get("kind") or raw.get("type") or "").strip().lower())
    element = str(raw.get("element") or raw.get("object") or "").strip()
    if kind is None or not element:
        return None
    return AtomicEdit(kind=kind, element=element, detail=str(raw.get("detail") or "").strip())


def parse_intent(text: str, *, num_descriptions: int) -> Intent:
    """Stage-1a reply -> Intent with at most ``num_descriptions`` distinct descriptions."""
    data = extract_json_object(text, required_key="descriptions")
    descriptions = list(dict.fromkeys(_text_items(data.get("descriptions"))))
    if not descriptions:
        raise ModelOutputError(f"the reasoner gave no usable description: {_excerpt(text)}")
    raw_edits = data.get("edits")
    edits = [e for e in map(_parse_edit, raw_edits if isinstance(raw_edits, list) else []) if e]
    dropped = (len(raw_edits) if isinstance(raw_edits, list) else 0) - len(edits)
    if dropped:
        logger.warning("dropped %d malformed edit(s) from the reasoner reply", dropped)
    reasoning = data.get("reasoning")
    return Intent(
        edits=edits,
        descriptions=descriptions[:num_descriptions],
        reasoning=reasoning.strip() if isinstance(reasoning, str) else "",
    )


# --------------------------------------------------------------------------- propositions parsing

_TRUTHY = {"yes", "true", "y", "1"}
_FALSY = {"no", "false", "n", "0"}


def _expected(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    word = str(value).strip().strip(".!").lower()
    return True if word in _TRUTHY else False if word in _FALSY else None


expected_answer = _expected
text_items = _text_items
excerpt = _excerpt


def parse_propositions(text: str, *, max_propositions: int) -> list[Proposition]:
    """Stage-2a reply -> distinct propositions; items without question or answer are dropped."""
    data = extract_json_object(text, required_key="propositions", item_key="question")
    raw = data.get("propositions")
    out: dict[str, Proposition] = {}
    for item in raw if isinstance(raw, list) else []:
        if not isinstance(item, dict):
            continue
        question = " ".join(str(item.get("question") or "").split()).rstrip("?. ")
        expected = _expected(item.get("answer", item.get("expected")))
        if not question or expected is None:
            continue
        statement = " ".join(str(item.get("statement") or "").split())
        out.setdefault(
            question.lower(),
            Proposition(statement=statement, question=question + "?", expected=expected),
        )
    if not out:
        raise ModelOutputError(f"the reasoner gave no usable proposition: {_excerpt(text)}")
    return list(out.values())[:max_propositions]


# --------------------------------------------------------------------------- evaluator verdicts

UNPARSEABLE_EVALUATION = "unparseable evaluator reply"
_MARKDOWN = re.compile(r"\*\*|__|`|^#+", re.MULTILINE)
_VERDICT = re.compile(r"answer\s*[:\-=]?\s*(yes|no)\b", re.IGNORECASE)
_REASON_LEAD = re.compile(r"^[\s.,:;\-\u2013\u2014]*(?:reason\s*[:\-]\s*)?", re.IGNORECASE)


def parse_evaluation(text: str) -> Evaluation:
    """``ANSWER: Yes|No`` + reason -> Evaluation; tolerant of case, bold and spacing.

    A reply that starts with a bare "Yes"/"No" is accepted too. Anything else is
    not accepted, with the reason ``"unparseable evaluator reply"``.
    """
    cleaned = _MARKDOWN.sub("", text).strip()
    match = _VERDICT.search(cleaned) or _LEADING_YES_NO.match(cleaned)
    if match is None:
        logger.warning("unparseable evaluator reply: %s", _excerpt(text))
        return Evaluation(accepted=False, reason=UNPARSEABLE_EVALUATION, raw=text)
    reason = _REASON_LEAD.sub("", cleaned[match.end() :], count=1)
    return Evaluation(
        accepted=match.group(1).lower() == "yes",
        reason=" ".join(reason.split())[:300],
        raw=text,
    )


# --------------------------------------------------------------------------- captions

_CAPTION_LEAD = re.compile(r"^\s*(?:caption|description)\s*:\s*", re.IGNORECASE)


def clean_caption(text: str) -> str:
    """A caption reply without a "Caption:" label, quotes or line breaks."""
    caption = _CAPTION_LEAD.sub("", _MARKDOWN.sub("", text))
    return " ".join(caption.split()).strip("\"' ")
