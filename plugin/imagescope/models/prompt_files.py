"""Prompt books: the built-in prompts, or a folder of prompt files in the research layout.

A :class:`PromptBook` gives the chat roles their request texts and the parsers
of the replies. :data:`BUILTIN` is the default (:mod:`.prompts`).
:func:`load_prompt_dir` reads a folder laid out as the paper's research code
lays out its per-dataset prompts (``IMAGESCOPE_PROMPTS__DIR``, ``imagescope
eval --prompts DIR``)::

    prompt1_stage1_reasoner.txt    [[INSTRUCTION]], [[REF_IMAGE_DESC]]
    prompt2_stage2_reasoner.txt    [[INSTRUCTION]], [[ATOMIC_INST]]
    prompt3_stage3_evaluator.txt   [[INSTRUCTION]]
    caption.txt                    (no placeholder)

Replies to such prompts are read the research code's way: stage 1 answers a
JSON object whose ``step1`` lists ``[kind, element]`` pairs and whose
``step2`` lists the target descriptions; stage 2 answers ``step2`` as
``[question, "True" | "False"]`` pairs; the evaluator writes an
``ANSWER: Yes`` or ``ANSWER: No`` line.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from imagescope.errors import ConfigError, ModelOutputError
from imagescope.models import prompts
from imagescope.schemas import AtomicEdit, EditKind, Evaluation, Intent, Proposition

Layout = Literal["side_by_side", "separate"]

STAGE1_FILE = "prompt1_stage1_reasoner.txt"
STAGE2_FILE = "prompt2_stage2_reasoner.txt"
STAGE3_FILE = "prompt3_stage3_evaluator.txt"
CAPTION_FILE = "caption.txt"
#: Placeholders each file must hold, and those it may hold.
REQUIRED = {
    STAGE1_FILE: ("[[INSTRUCTION]]",),
    STAGE2_FILE: ("[[ATOMIC_INST]]",),
    STAGE3_FILE: ("[[INSTRUCTION]]",),
    CAPTION_FILE: (),
}
ALLOWED = {
    STAGE1_FILE: {"[[INSTRUCTION]]", "[[REF_IMAGE_DESC]]"},
    STAGE2_FILE: {"[[INSTRUCTION]]", "[[ATOMIC_INST]]"},
    STAGE3_FILE: {"[[INSTRUCTION]]"},
    CAPTION_FILE: set(),
}
#: What stands for the reference caption when a query has no reference image.
NO_REFERENCE = "A blank image."
_PLACEHOLDER = re.compile(r"\[\[[A-Z0-9_]+\]\]")


class PromptBook:
    """The built-in prompts (``models.prompts``); subclasses replace texts and parsers."""

    version = prompts.PROMPT_VERSION
    #: The reasoner's system prompt, and whether it asks for a bare JSON object.
    reasoner_system: str | None = prompts.REASONER_SYSTEM
    json_mode = True

    def intent_text(
        self, instruction: str, *, reference_caption: str | None, num_descriptions: int
    ) -> str:
        return prompts.intent_prompt(
            instruction, reference_caption=reference_caption, num_descriptions=num_descriptions
        )

    def parse_intent(self, text: str, *, num_descriptions: int) -> Intent:
        return prompts.parse_intent(text, num_descriptions=num_descriptions)

    def propositions_text(
        self,
        instruction: str,
        *,
        edits: Sequence[AtomicEdit],
        descriptions: Sequence[str],
        reference_caption: str | None,
        max_propositions: int,
    ) -> str:
        return prompts.propositions_prompt(
            instruction,
            edits=edits,
            descriptions=descriptions,
            reference_caption=reference_caption,
            max_propositions=max_propositions,
        )

    def parse_propositions(self, text: str, *, max_propositions: int) -> list[Proposition]:
        return prompts.parse_propositions(text, max_propositions=max_propositions)

    def evaluate_text(self, instruction: str, *, has_reference: bool, layout: Layout) -> str:
        return prompts.evaluate_prompt(instruction, has_reference=has_reference, layout=layout)

    def parse_evaluation(self, text: str) -> Evaluation:
        return prompts.parse_evaluation(text)

    def caption_text(self) -> str:
        return prompts.CAPTION_PROMPT


BUILTIN = PromptBook()


@dataclass(frozen=True)
class _Texts:
    stage1: str
    stage2: str
    stage3: str
    caption: str


class FilePromptBook(PromptBook):
    """Prompts read from a folder in the research layout (see the module docstring)."""

    reasoner_system = None
    json_mode = False  # the files ask for their own answer shape (reasoning, then JSON)

    def __init__(self, folder: Path, texts: _Texts) -> None:
        self.folder = folder
        self.texts = texts
        digest = hashlib.sha256(
            "\0".join((texts.stage1, texts.stage2, texts.stage3, texts.caption)).encode()
        ).hexdigest()
        self.version = f"files-{digest[:12]}"

    def intent_text(
        self, instruction: str, *, reference_caption: str | None, num_descriptions: int
    ) -> str:
        reference = (reference_caption or "").strip() or NO_REFERENCE
        return self.texts.stage1.replace("[[INSTRUCTION]]", instruction.strip()).replace(
            "[[REF_IMAGE_DESC]]", reference
        )

    def parse_intent(self, text: str, *, num_descriptions: int) -> Intent:
        return parse_step_intent(text, num_descriptions=num_descriptions)

    def propositions_text(
        self,
        instruction: str,
        *,
        edits: Sequence[AtomicEdit],
        descriptions: Sequence[str],
        reference_caption: str | None,
        max_propositions: int,
    ) -> str:
        return self.texts.stage2.replace("[[INSTRUCTION]]", instruction.strip()).replace(
            "[[ATOMIC_INST]]", atomic_instructions(edits)
        )

    def parse_propositions(self, text: str, *, max_propositions: int) -> list[Proposition]:
        return parse_step_propositions(text, max_propositions=max_propositions)

    def evaluate_text(self, instruction: str, *, has_reference: bool, layout: Layout) -> str:
        # The research code lower-cases the instruction and drops a final full stop.
        return self.texts.stage3.replace("[[INSTRUCTION]]", instruction.strip(" .").lower())

    def parse_evaluation(self, text: str) -> Evaluation:
        return parse_answer_line(text)

    def caption_text(self) -> str:
        return self.texts.caption


def load_prompt_dir(folder: Path | str) -> FilePromptBook:
    """Read and check a prompt folder; ``ConfigError`` names what is missing or wrong."""
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise ConfigError(
            f"prompt folder {str(path)!r} does not exist; it must hold "
            + ", ".join(REQUIRED)
            + " (IMAGESCOPE_PROMPTS__DIR or --prompts)"
        )
    missing = [name for name in REQUIRED if not (path / name).is_file()]
    if missing:
        raise ConfigError(f"prompt folder {str(path)!r} lacks {', '.join(missing)}")
    texts = {name: _read_checked(path / name) for name in REQUIRED}
    return FilePromptBook(
        path,
        _Texts(
            stage1=texts[STAGE1_FILE],
            stage2=texts[STAGE2_FILE],
            stage3=texts[STAGE3_FILE],
            caption=texts[CAPTION_FILE],
        ),
    )


def prompt_book(folder: Path | None) -> PromptBook:
    """The built-in prompts, or the folder's."""
    return BUILTIN if folder is None else load_prompt_dir(folder)


def _read_checked(file: Path) -> str:
    try:
        text = file.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read prompt file {str(file)!r}: {exc}") from exc
    if not text:
        raise ConfigError(f"prompt file {str(file)!r} is empty")
    absent = [p for p in REQUIRED[file.name] if p not in text]
    if absent:
        raise ConfigError(f"prompt file {str(file)!r} lacks the placeholder(s) {absent}")
    unknown = sorted(set(_PLACEHOLDER.findall(text)) - ALLOWED[file.name])
    if unknown:
        allowed = sorted(ALLOWED[file.name]) or "none"
        raise ConfigError(
            f"prompt file {str(file)!r} has unknown placeholder(s) {unknown}; allowed: {allowed}"
        )
    return text


# --------------------------------------------------------------------------- replies


def atomic_instructions(edits: Sequence[AtomicEdit]) -> str:
    """``[[ATOMIC_INST]]``: one numbered ``Kind: element`` line per edit."""
    lines = [
        f"   ({n}) {edit.kind.value.capitalize()}: {edit.element}"
        + (f" ({edit.detail})" if edit.detail else "")
        for n, edit in enumerate(edits, start=1)
    ]
    return "\n" + "\n".join(lines) + "\n"


def _pairs(value: Any) -> list[tuple[str, Any]]:
    """``[[a, b], ...]`` (or objects with two fields) -> (a, b) pairs; others dropped."""
    out: list[tuple[str, Any]] = []
    for item in value if isinstance(value, list) else []:
        if isinstance(item, list | tuple) and len(item) == 2:
            out.append((" ".join(str(item[0]).split()), item[1]))
        elif isinstance(item, dict) and len(item) >= 2:
            first, second = list(item.values())[:2]
            out.append((" ".join(str(first).split()), second))
    return out


def parse_step_intent(text: str, *, num_descriptions: int) -> Intent:
    """``{"step1": [[kind, element], ...], "step2": [description, ...]}`` -> Intent.

    An unknown kind counts as a modification; ``ModelOutputError`` when no
    description is left.
    """
    data = prompts.extract_json_object(text, required_key="step2")
    descriptions = list(dict.fromkeys(prompts.text_items(data.get("step2"))))
    if not descriptions:
        raise ModelOutputError(f"no target description in step2: {prompts.excerpt(text)}")
    edits = [
        AtomicEdit(
            kind=prompts.edit_kind(str(kind)) or EditKind.MODIFICATION,
            element=str(element).strip(),
            detail="",
        )
        for kind, element in _pairs(data.get("step1"))
        if str(element).strip()
    ]
    return Intent(edits=edits, descriptions=descriptions[:num_descriptions], reasoning="")


def parse_step_propositions(text: str, *, max_propositions: int) -> list[Proposition]:
    """``{"step2": [[question, "True" | "False"], ...]}`` -> distinct propositions.

    ``step1``, when it lists one statement per question, gives the statements.
    """
    data = prompts.extract_json_object(text, required_key="step2")
    raw_statements = data.get("step1")
    statements: list[str] = (
        [str(s) for s in raw_statements]
        if isinstance(raw_statements, list) and all(isinstance(s, str) for s in raw_statements)
        else []
    )
    out: dict[str, Proposition] = {}
    for n, (question, answer) in enumerate(_pairs(data.get("step2"))):
        expected = prompts.expected_answer(answer)
        question = question.rstrip("?. ")
        if not question or expected is None:
            continue
        statement = statements[n] if n < len(statements) else ""
        out.setdefault(
            question.lower(),
            Proposition(statement=statement, question=question + "?", expected=expected),
        )
    if not out:
        raise ModelOutputError(f"no [question, answer] pair in step2: {prompts.excerpt(text)}")
    return list(out.values())[:max_propositions]


_ANSWER_LINE = re.compile(r"^[\s*#_`>-]*answer\s*[:\-=]\s*\W*(yes|no)\b(.*)$", re.I | re.M)


def parse_answer_line(text: str) -> Evaluation:
    """The last ``ANSWER: Yes|No`` line decides; the rest of the reply is the reason.

    A reply without such a line is read as :func:`prompts.parse_evaluation` reads it.
    """
    matches = list(_ANSWER_LINE.finditer(text))
    if not matches:
        return prompts.parse_evaluation(text)
    last = matches[-1]
    after = last.group(2).strip(" .,:;*_`-")
    before = text[: last.start()].strip()
    reason = " ".join((after or before).replace("*", "").split())
    return Evaluation(accepted=last.group(1).lower() == "yes", reason=reason[-300:], raw=text)
