"""The prompt-driven roles (models.chat) on a scripted ChatModel."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence

import pytest
from PIL import Image

from imagescope.errors import EmptyQueryError, ModelBackendError, ModelOutputError
from imagescope.models import prompts
from imagescope.models.base import (
    ChatModel,
    ChatReply,
    ChatRequest,
    EvaluationItem,
    VerifyItem,
)
from imagescope.models.chat import (
    VERIFY_TOP_LOGPROBS,
    ChatCaptioner,
    ChatEvaluator,
    ChatReasoner,
    ChatVerifier,
    Usage,
    answer_from_reply,
    compose_side_by_side,
)
from imagescope.schemas import AtomicEdit, EditKind

pytestmark = pytest.mark.unit

Script = Callable[[ChatRequest], ChatReply]


class ScriptedChat(ChatModel):
    """Answers every request with ``script(request)`` and records the batches."""

    model_id = "scripted"

    def __init__(self, script: Script | str) -> None:
        self.script: Script = script if callable(script) else (lambda _r: ChatReply(text=script))
        self.batches: list[list[ChatRequest]] = []

    def complete(self, requests: Sequence[ChatRequest]) -> list[ChatReply]:
        self.batches.append(list(requests))
        return [self.script(r) for r in requests]

    @property
    def requests(self) -> list[ChatRequest]:
        return [r for batch in self.batches for r in batch]


def solid(colour: tuple[int, int, int], size: tuple[int, int]) -> Image.Image:
    return Image.new("RGB", size, colour)


GOOD_INTENT = (
    '{"reasoning": "keep the dress, change colour", '
    '"edits": [{"kind": "modification", "element": "dress", "detail": "red"}, '
    '{"kind": "addition", "element": "long sleeves", "detail": ""}], '
    '"descriptions": ["dress", "red dress with long sleeves", '
    '"a woman wearing a red dress with long sleeves"]}'
)

# --------------------------------------------------------------------------- reasoner: intent


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(GOOD_INTENT, id="plain"),
        pytest.param(f"```json\n{GOOD_INTENT}\n```", id="fenced"),
        pytest.param(
            f"Let me think: {{the dress}} stays.\n{GOOD_INTENT}\nHope it helps!", id="prose"
        ),
        pytest.param(GOOD_INTENT.replace('"', "'"), id="single-quotes"),
        pytest.param(GOOD_INTENT[:-2], id="truncated"),
    ],
)
def test_intent_is_repaired_and_validated(reply: str) -> None:
    reasoner = ChatReasoner(ScriptedChat(reply))
    intent = reasoner.synthesize_intent("same dress but red", reference_caption="a blue dress")
    assert [(e.kind, e.element) for e in intent.edits] == [
        (EditKind.MODIFICATION, "dress"),
        (EditKind.ADDITION, "long sleeves"),
    ]
    assert intent.descriptions[:2] == ["dress", "red dress with long sleeves"]
    assert intent.descriptions[-1].startswith("a woman wearing a red dress")
    assert intent.reasoning == "keep the dress, change colour"
    assert intent.fallback is False


def test_truncated_intent_keeps_what_was_written() -> None:
    cut = GOOD_INTENT[: GOOD_INTENT.index("a woman")]
    intent = ChatReasoner(ScriptedChat(cut)).synthesize_intent("x", reference_caption=None)
    assert intent.descriptions[:2] == ["dress", "red dress with long sleeves"]


@pytest.mark.parametrize(
    "reply",
    [
        "I am sorry, I cannot help with that.",
        "",
        '{"reasoning": "hmm", "edits": []}',
        '{"descriptions": []}',
        '{"descriptions": ["", "   "]}',
    ],
)
def test_unusable_intent_raises_model_output_error(reply: str) -> None:
    with pytest.raises(ModelOutputError):
        ChatReasoner(ScriptedChat(reply)).synthesize_intent("x", reference_caption=None)


def test_intent_request_and_normalisation() -> None:
    chat = ScriptedChat(
        '{"edits": [{"kind": "Add", "element": "hat"}, {"kind": "teleport", "element": "x"},'
        ' {"kind": "removal"}, "junk"], "descriptions": ["hat", "hat", "a hat", "a red hat"]}'
    )
    reasoner = ChatReasoner(chat, max_tokens=300)
    intent = reasoner.synthesize_intent(
        "add a hat", reference_caption="a man on a bench", num_descriptions=2
    )
    assert intent.edits == [AtomicEdit(kind=EditKind.ADDITION, element="hat", detail="")]
    assert intent.descriptions == ["hat", "a hat"]  # deduplicated, then cut to 2
    [request] = chat.requests
    assert request.json_mode and request.max_tokens == 300 and request.images == ()
    assert request.system == prompts.REASONER_SYSTEM
    assert '"add a hat"' in request.text and '"a man on a bench"' in request.text
    assert "exactly 2 description(s)" in request.text


def test_intent_prompt_without_reference_says_so() -> None:
    text = prompts.intent_prompt("a dog", reference_caption=None, num_descriptions=3)
    assert "no reference photo" in text and "core elements only" in text


def test_empty_instruction_is_refused_before_calling_the_model() -> None:
    chat = ScriptedChat(GOOD_INTENT)
    with pytest.raises(EmptyQueryError):
        ChatReasoner(chat).synthesize_intent("  ", reference_caption=None)
    assert chat.batches == []


# --------------------------------------------------------------------------- reasoner: propositions

EDITS = [
    AtomicEdit(kind=EditKind.ADDITION, element="fridge"),
    AtomicEdit(kind=EditKind.REMOVAL, element="oven"),
]


@pytest.mark.parametrize(
    "reply",
    [
        '{"propositions": [{"statement": "There is a fridge.", "question": "Is there a fridge?",'
        ' "answer": "yes"}, {"statement": "There is no oven.", "question": "Is there an oven?",'
        ' "answer": "No"}]}',
        "Statements first...\n[{'question': 'Is there a fridge', 'answer': true},"
        " {'question': 'Is there an oven?', 'expected': 'false'}]",
        '```\n{"propositions": [{"question": "Is there a fridge?", "answer": "yes"},'
        ' {"question": "Is there an oven?", "answer": "no"}, {"question": "Is it big?"},'
        ' {"question": "Is there a fridge?", "answer": "no"}',
    ],
    ids=["object", "bare-list", "truncated-with-bad-items"],
)
def test_propositions_are_repaired_and_validated(reply: str) -> None:
    chat = ScriptedChat(reply)
    propositions = ChatReasoner(chat).make_propositions(
        "replace the oven with a fridge",
        edits=EDITS,
        descriptions=["fridge", "a kitchen with a fridge"],
        reference_caption="a kitchen with an oven",
    )
    assert [(p.question, p.expected) for p in propositions] == [
        ("Is there a fridge?", True),
        ("Is there an oven?", False),
    ]
    request = chat.requests[0]
    assert "- addition: fridge" in request.text and "- removal: oven" in request.text
    assert '"a kitchen with a fridge"' in request.text and request.json_mode


def test_propositions_are_capped() -> None:
    items = ",".join(f'{{"question": "Is there item {i}?", "answer": "yes"}}' for i in range(9))
    reasoner = ChatReasoner(ScriptedChat(f'{{"propositions": [{items}]}}'), max_propositions=3)
    found = reasoner.make_propositions("x", edits=[], descriptions=[], reference_caption=None)
    assert [p.question for p in found] == [f"Is there item {i}?" for i in range(3)]


@pytest.mark.parametrize(
    "reply", ["no idea", '{"propositions": []}', '{"propositions": [{"answer": "yes"}]}']
)
def test_unusable_propositions_raise(reply: str) -> None:
    with pytest.raises(ModelOutputError):
        ChatReasoner(ScriptedChat(reply)).make_propositions(
            "x", edits=EDITS, descriptions=["d"], reference_caption=None
        )


# --------------------------------------------------------------------------- verifier


def p_yes(yes: Sequence[float], no: Sequence[float]) -> float:
    total_yes = sum(math.exp(v) for v in yes)
    return total_yes / (total_yes + sum(math.exp(v) for v in no))


@pytest.mark.parametrize(
    ("logprobs", "expected_yes", "expected_p"),
    [
        (
            {" Yes": -0.1, "yes": -3.0, "NO": -2.5, "no": -4.0},
            True,
            p_yes([-0.1, -3.0], [-2.5, -4.0]),
        ),
        ({"No": -0.2, " yes": -1.8, "Maybe": -2.0}, False, p_yes([-1.8], [-0.2])),
        ({"\u2581yes": -0.7, "\u2581no": -0.7}, False, 0.5),  # a tie is not a yes
        ({"YES.": -1.0, "Ġno": -1.5, "y": -0.1}, True, p_yes([-1.0], [-1.5])),
    ],
)
def test_yes_no_from_first_token_logprobs(
    logprobs: dict[str, float], expected_yes: bool, expected_p: float
) -> None:
    answer = answer_from_reply(ChatReply(text="whatever", first_token_logprobs=logprobs))
    assert answer.yes is expected_yes
    assert answer.p_yes == pytest.approx(expected_p)


@pytest.mark.parametrize(
    ("text", "logprobs", "expected"),
    [
        ("Yes.", None, True),
        ("  no", None, False),
        ("**Yes**", {}, True),
        ("No", {"Perhaps": -0.1, "Sure": -0.5}, False),  # no yes/no among the top tokens
    ],
)
def test_yes_no_falls_back_to_text(
    text: str, logprobs: dict[str, float] | None, expected: bool
) -> None:
    answer = answer_from_reply(ChatReply(text=text, first_token_logprobs=logprobs))
    assert (answer.yes, answer.p_yes, answer.raw) == (expected, None, text)


def test_unparseable_answer_is_a_logged_no(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="imagescope.models.chat"):
        answer = answer_from_reply(ChatReply(text="Perhaps"))
    assert (answer.yes, answer.p_yes, answer.raw) == (False, None, "Perhaps")
    assert "neither yes nor no" in caplog.text


def test_verifier_requests_batches_and_order() -> None:
    def script(request: ChatRequest) -> ChatReply:
        return ChatReply(text="Yes" if "dog" in request.text else "No", completion_tokens=1)

    chat = ScriptedChat(script)
    verifier = ChatVerifier(chat, batch_size=2)
    image_a, image_b = solid((1, 2, 3), (8, 8)), solid((9, 9, 9), (8, 8))
    items = [
        VerifyItem("a", image_a, "Is there a dog?"),
        VerifyItem("a", image_a, "Is there a cat?"),
        VerifyItem("b", image_b, "Is there a dog?"),
        VerifyItem("b", image_b, "Is there a cat?"),
        VerifyItem("b", image_b, "Is the dog brown?"),
    ]
    answers = verifier.verify(items)
    assert [a.yes for a in answers] == [True, False, True, False, True]
    assert [len(b) for b in chat.batches] == [2, 2, 1]
    for item, request in zip(items, chat.requests, strict=True):
        assert request.images == (item.image,)  # the image, then the question
        assert request.text == prompts.verify_prompt(item.question)
        assert request.text.startswith(item.question)
        assert (request.max_tokens, request.top_logprobs) == (1, VERIFY_TOP_LOGPROBS)
    assert (verifier.usage.calls, verifier.usage.completion_tokens) == (5, 5)


def test_reply_count_mismatch_is_a_backend_error() -> None:
    class Short(ScriptedChat):
        def complete(self, requests: Sequence[ChatRequest]) -> list[ChatReply]:
            return super().complete(requests)[:-1]

    with pytest.raises(ModelBackendError, match="1 replies for 2 requests"):
        ChatVerifier(Short("Yes")).verify(
            [VerifyItem("a", solid((0, 0, 0), (4, 4)), q) for q in ("q1?", "q2?")]
        )


# --------------------------------------------------------------------------- evaluator


@pytest.mark.parametrize(
    ("reply", "accepted", "reason"),
    [
        (
            "ANSWER: Yes. The dress is red with long sleeves.",
            True,
            "The dress is red with long sleeves.",
        ),
        ("**ANSWER:** no - the sleeves are short", False, "the sleeves are short"),
        ("answer:YES", True, ""),
        ("  ANSWER :  No\nReason: the dog is missing", False, "the dog is missing"),
        ("## Answer: **Yes**, it matches", True, "it matches"),
        ("Yes, it matches the request.", True, "it matches the request."),
        ("The image shows a cat. ANSWER: No, it is a dog.", False, "it is a dog."),
        ("I cannot tell.", False, prompts.UNPARSEABLE_EVALUATION),
        ("", False, prompts.UNPARSEABLE_EVALUATION),
        ("ANSWER: maybe", False, prompts.UNPARSEABLE_EVALUATION),
    ],
)
def test_evaluator_reply_parsing(reply: str, accepted: bool, reason: str) -> None:
    evaluation = prompts.parse_evaluation(reply)
    assert (evaluation.accepted, evaluation.reason, evaluation.raw) == (accepted, reason, reply)


def test_side_by_side_with_reference() -> None:
    reference, candidate = solid((255, 0, 0), (60, 30)), solid((0, 0, 255), (100, 50))
    image = compose_side_by_side(reference, candidate, gap=16)
    assert image.size == (100 + 16 + 100, 50)  # the reference is scaled to the same height
    assert image.getpixel((50, 25)) == (255, 0, 0)
    assert image.getpixel((108, 25)) == (128, 128, 128)
    assert image.getpixel((170, 25)) == (0, 0, 255)


def test_side_by_side_without_reference_and_height_cap() -> None:
    candidate = solid((0, 200, 0), (1000, 800))
    image = compose_side_by_side(None, candidate, max_height=400, gap=10)
    assert image.size == (500 + 10 + 500, 400)
    assert image.getpixel((250, 200)) == (255, 255, 255)  # blank left panel
    assert image.getpixel((760, 200)) == (0, 200, 0)


def test_evaluator_sends_one_composed_image_then_the_instruction() -> None:
    chat = ScriptedChat(
        lambda r: ChatReply(text="ANSWER: Yes. Red." if "red" in r.text else "ANSWER: No. Blue.")
    )
    evaluator = ChatEvaluator(chat, max_tokens=64)
    candidate = solid((10, 10, 10), (40, 40))
    results = evaluator.evaluate(
        [
            EvaluationItem("c1", candidate, "make it red", reference=solid((0, 0, 0), (20, 40))),
            EvaluationItem("c2", candidate, "a blue car"),
        ]
    )
    assert [(e.accepted, e.reason) for e in results] == [(True, "Red."), (False, "Blue.")]
    with_reference, without = chat.requests
    assert [img.size for img in with_reference.images] == [(20 + 16 + 40, 40)]
    assert [img.size for img in without.images] == [(40 + 16 + 40, 40)]
    assert "LEFT: the reference photo" in with_reference.text
    assert "blank panel" in without.text and '"a blue car"' in without.text
    assert all(r.max_tokens == 64 and r.top_logprobs is None for r in chat.requests)
    assert len(chat.batches) == 1


# --------------------------------------------------------------------------- captioner and usage


def test_captioner_cleans_replies() -> None:
    replies = iter(['Caption: "A red car parked\non a street."', "**A dog.**"])
    chat = ScriptedChat(lambda _r: ChatReply(text=next(replies), prompt_tokens=7))
    captioner = ChatCaptioner(chat, max_tokens=40)
    images = [solid((1, 1, 1), (4, 4)), solid((2, 2, 2), (4, 4))]
    assert captioner.caption(images) == ["A red car parked on a street.", "A dog."]
    assert [r.images for r in chat.requests] == [(images[0],), (images[1],)]
    assert all(r.max_tokens == 40 for r in chat.requests)
    assert (captioner.usage.calls, captioner.usage.prompt_tokens) == (2, 14)


def test_captioner_refuses_empty_captions() -> None:
    with pytest.raises(ModelOutputError, match=r"position \[0\]"):
        ChatCaptioner(ScriptedChat('  ""  ')).caption([solid((0, 0, 0), (4, 4))])


def test_usage_counts_and_snapshots() -> None:
    chat = ScriptedChat(
        lambda _r: ChatReply(text=GOOD_INTENT, prompt_tokens=100, completion_tokens=40)
    )
    reasoner = ChatReasoner(chat)
    reasoner.synthesize_intent("a", reference_caption=None)
    before = reasoner.usage.snapshot()
    reasoner.synthesize_intent("b", reference_caption=None)
    assert (before.calls, before.tokens) == (1, 140)
    assert (reasoner.usage.calls, reasoner.usage.prompt_tokens, reasoner.usage.tokens) == (
        2,
        200,
        280,
    )
    assert Usage().tokens == 0


def test_model_ids_name_the_transport_and_prompt_version() -> None:
    chat = ScriptedChat("x")
    ids = {
        role(chat).model_id for role in (ChatReasoner, ChatVerifier, ChatEvaluator, ChatCaptioner)
    }
    assert ids == {f"scripted#prompts-{prompts.PROMPT_VERSION}"}
