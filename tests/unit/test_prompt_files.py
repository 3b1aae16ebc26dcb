"""Prompt folders in the research code's layout, and the replies they ask for.

The prompt texts below are written for these tests; only the layout (file
names, placeholders, answer shapes) follows the research code.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from PIL import Image

from imagescope.errors import ConfigError, ModelOutputError
from imagescope.models.base import ChatModel, ChatReply, ChatRequest, EvaluationItem
from imagescope.models.chat import ChatCaptioner, ChatEvaluator, ChatReasoner
from imagescope.models.prompt_files import (
    BUILTIN,
    load_prompt_dir,
    parse_answer_line,
    parse_step_intent,
    parse_step_propositions,
)
from imagescope.schemas import AtomicEdit, EditKind
from imagescope.settings import RoleSettings, Settings

pytestmark = pytest.mark.unit

FILES = {
    "prompt1_stage1_reasoner.txt": (
        "Reference: [[REF_IMAGE_DESC]]\nEdit: [[INSTRUCTION]]\n"
        'Think, then give ```json {"step1": [[kind, element]], "step2": [descriptions]}```'
    ),
    "prompt2_stage2_reasoner.txt": (
        "Edit: [[INSTRUCTION]]\nAtomic edits:[[ATOMIC_INST]]"
        'Answer ```json {"step1": [statements], "step2": [[question, "True"]]}```'
    ),
    "prompt3_stage3_evaluator.txt": "Left is before, right is after. Was it: [[INSTRUCTION]]?",
    "caption.txt": "Describe this photo in one sentence.",
}

STAGE1_REPLY = """Reasoning: the dog must become two dogs.
```json
{"step1": [["Modification", "one dog -> two dogs"], ["Addition", "a ball"], ["Teleport", "x"],
           ["Removal"]],
 "step2": ["two dogs", "two dogs with a ball", "two dogs playing with a ball on grass"]}
```"""

STAGE2_REPLY = """```json
{"step1": ["There are two dogs.", "There is a cat."],
 "step2": [["Are there two dogs?", "True"], ["Is there a cat?", "False"], ["broken"],
           ["Are there two dogs", "True"]]}
```"""


def write_folder(root: Path, files: dict[str, str] | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in (files or FILES).items():
        (root / name).write_text(text, encoding="utf-8")
    return root


class Scripted(ChatModel):
    model_id = "scripted"

    def __init__(self, answer: Callable[[ChatRequest], str]) -> None:
        self.answer = answer
        self.requests: list[ChatRequest] = []

    def complete(self, requests: Sequence[ChatRequest]) -> list[ChatReply]:
        self.requests.extend(requests)
        return [ChatReply(text=self.answer(r)) for r in requests]


# --------------------------------------------------------------------------- loading


def test_folder_is_loaded_and_versioned(tmp_path: Path) -> None:
    book = load_prompt_dir(write_folder(tmp_path / "a"))
    again = load_prompt_dir(write_folder(tmp_path / "b"))
    assert book.version == again.version and book.version.startswith("files-")
    changed = dict(FILES, **{"caption.txt": "One sentence, please."})
    assert load_prompt_dir(write_folder(tmp_path / "c", changed)).version != book.version
    assert book.version != BUILTIN.version


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"caption.txt": None}, "lacks caption.txt"),
        ({"prompt2_stage2_reasoner.txt": "no placeholder"}, r"lacks the placeholder\(s\)"),
        ({"prompt3_stage3_evaluator.txt": "[[INSTRUCTION]] [[REF_IMG]]"}, "unknown placeholder"),
        ({"caption.txt": "   \n"}, "is empty"),
    ],
)
def test_bad_folders_are_config_errors(
    tmp_path: Path, change: dict[str, str | None], message: str
) -> None:
    files = {k: v for k, v in {**FILES, **change}.items() if v is not None}
    with pytest.raises(ConfigError, match=message):
        load_prompt_dir(write_folder(tmp_path, files))  # type: ignore[arg-type]


def test_missing_folder_names_the_files_and_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="prompt1_stage1_reasoner.txt.*IMAGESCOPE_PROMPTS__DIR"):
        load_prompt_dir(tmp_path / "nowhere")


def test_prompts_dir_setting_reaches_the_chat_roles(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IMAGESCOPE_PROMPTS__DIR", str(tmp_path / "p"))
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    models = settings.models
    assert models.reasoner.prompts_dir == models.evaluator.prompts_dir == tmp_path / "p"
    assert models.captioner.prompts_dir == tmp_path / "p"
    own = RoleSettings(kind="openai", prompts_dir=tmp_path / "own")
    monkeypatch.delenv("IMAGESCOPE_PROMPTS__DIR")
    assert Settings(_env_file=None).models.reasoner.prompts_dir is None  # type: ignore[call-arg]
    assert own.prompts_dir == tmp_path / "own"


# --------------------------------------------------------------------------- roles on a folder


def test_reasoner_fills_the_placeholders_and_reads_step_answers(tmp_path: Path) -> None:
    book = load_prompt_dir(write_folder(tmp_path))
    chat = Scripted(lambda r: STAGE1_REPLY if "Reference:" in r.text else STAGE2_REPLY)
    reasoner = ChatReasoner(chat, prompts=book)
    intent = reasoner.synthesize_intent("show two dogs", reference_caption="a dog on grass")
    stage1 = chat.requests[0]
    assert stage1.text.startswith("Reference: a dog on grass\nEdit: show two dogs\nThink")
    assert (stage1.system, stage1.json_mode) == (None, False)
    assert intent.descriptions == [
        "two dogs",
        "two dogs with a ball",
        "two dogs playing with a ball on grass",
    ]
    assert [(e.kind, e.element) for e in intent.edits] == [
        (EditKind.MODIFICATION, "one dog -> two dogs"),
        (EditKind.ADDITION, "a ball"),
        (EditKind.MODIFICATION, "x"),  # an unknown kind counts as a modification
    ]
    propositions = reasoner.make_propositions(
        "show two dogs",
        edits=intent.edits[:2],
        descriptions=intent.descriptions,
        reference_caption="a dog on grass",
    )
    assert chat.requests[1].text.startswith(
        "Edit: show two dogs\nAtomic edits:\n"
        "   (1) Modification: one dog -> two dogs\n   (2) Addition: a ball\nAnswer"
    )
    assert [(p.question, p.expected, p.statement) for p in propositions] == [
        ("Are there two dogs?", True, "There are two dogs."),
        ("Is there a cat?", False, "There is a cat."),
    ]
    assert reasoner.model_id == f"scripted#prompts-{book.version}"


def test_no_reference_reads_as_a_blank_image(tmp_path: Path) -> None:
    chat = Scripted(lambda r: STAGE1_REPLY)
    ChatReasoner(chat, prompts=load_prompt_dir(write_folder(tmp_path))).synthesize_intent(
        "a red car", reference_caption=None
    )
    assert chat.requests[0].text.startswith("Reference: A blank image.\nEdit: a red car\n")


def test_evaluator_and_captioner_use_the_files(tmp_path: Path) -> None:
    book = load_prompt_dir(write_folder(tmp_path))
    chat = Scripted(
        lambda r: (
            "The sleeves are long now and the colour is red.\nANSWER: Yes"
            if r.images and "Was it" in r.text
            else "A red dress."
        )
    )
    image = Image.new("RGB", (8, 8))
    [evaluation] = ChatEvaluator(chat, prompts=book).evaluate(
        [EvaluationItem("c", image, "Make it Red.", reference=image)]
    )
    assert chat.requests[0].text == "Left is before, right is after. Was it: make it red?"
    assert evaluation.accepted
    assert evaluation.reason == "The sleeves are long now and the colour is red."
    assert ChatCaptioner(chat, prompts=book).caption([image]) == ["A red dress."]
    assert chat.requests[1].text == "Describe this photo in one sentence."


# --------------------------------------------------------------------------- parsers


def test_step_intent_without_descriptions_is_an_output_error() -> None:
    with pytest.raises(ModelOutputError, match="step2"):
        parse_step_intent('{"step1": [["Addition", "a hat"]], "step2": []}', num_descriptions=3)
    with pytest.raises(ModelOutputError):
        parse_step_intent("I cannot help.", num_descriptions=3)
    intent = parse_step_intent('{"step2": ["a", "b", "c", "d"]}', num_descriptions=2)
    assert intent.descriptions == ["a", "b"] and intent.edits == []


def test_step_propositions_accept_yes_no_and_objects() -> None:
    reply = (
        '{"step2": [["Is it red?", "yes"], {"q": "Is there a hat?", "a": "False"}, '
        '["Is it big?", "maybe"]]}'
    )
    propositions = parse_step_propositions(reply, max_propositions=8)
    assert [(p.question, p.expected, p.statement) for p in propositions] == [
        ("Is it red?", True, ""),
        ("Is there a hat?", False, ""),
    ]
    assert len(parse_step_propositions(reply, max_propositions=1)) == 1
    with pytest.raises(ModelOutputError, match="step2"):
        parse_step_propositions('{"step2": [["Is it big?", "maybe"]]}', max_propositions=8)


@pytest.mark.parametrize(
    ("reply", "accepted", "reason"),
    [
        ("It matches.\nANSWER: Yes", True, "It matches."),
        ("**ANSWER: No** - the hat is missing", False, "the hat is missing"),
        ("Answer: yes might be tempting.\nBut no.\nANSWER: No", False, "Answer: yes might"),
        ("Yes, it does.", True, "it does."),
        ("I cannot tell.", False, "unparseable evaluator reply"),
    ],
)
def test_answer_lines(reply: str, accepted: bool, reason: str) -> None:
    evaluation = parse_answer_line(reply)
    assert evaluation.accepted is accepted
    assert evaluation.reason.startswith(reason)


def test_builtin_book_is_the_default() -> None:
    chat = Scripted(lambda r: '{"descriptions": ["a hat"]}')
    reasoner = ChatReasoner(chat)
    assert reasoner.book is BUILTIN
    reasoner.synthesize_intent("a hat", reference_caption=None)
    assert chat.requests[0].json_mode and chat.requests[0].system
    edits = [AtomicEdit(kind=EditKind.ADDITION, element="hat")]
    assert "(1) Addition: hat" not in BUILTIN.propositions_text(
        "x", edits=edits, descriptions=[], reference_caption=None, max_propositions=3
    )
