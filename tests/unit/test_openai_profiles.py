"""The OpenAI-compatible client follows the model's profile (requests recorded in-process)."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import httpx
import pytest
from PIL import Image

from imagescope.errors import ConfigError
from imagescope.models.base import ChatRequest, EvaluationItem, VerifyItem
from imagescope.models.chat import ChatEvaluator, ChatReasoner, ChatVerifier
from imagescope.models.factory import build_chat, build_evaluator, build_reasoner
from imagescope.models.fakes import FakeEmbedder
from imagescope.models.openai_chat import OpenAIChatModel
from imagescope.models.prompt_files import FilePromptBook
from imagescope.settings import ChatEndpoint, ProfileSettings, RoleSettings

pytestmark = pytest.mark.unit


class Recorder:
    def __init__(self, text: str = "Yes", logprobs: dict[str, float] | None = None) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.text, self.logprobs = text, logprobs

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.bodies.append(json.loads(request.content))
        choice: dict[str, Any] = {"message": {"content": self.text}, "finish_reason": "stop"}
        if self.logprobs:
            top = [{"token": t, "logprob": lp} for t, lp in self.logprobs.items()]
            choice["logprobs"] = {"content": [{**top[0], "top_logprobs": top}]}
        return httpx.Response(200, json={"choices": [choice], "usage": {}})


def model(model_id: str, recorder: Recorder) -> OpenAIChatModel:
    client = httpx.Client(base_url="http://model.test/v1", transport=httpx.MockTransport(recorder))
    return OpenAIChatModel(ChatEndpoint(model=model_id), client=client)


def sent_image(part: dict[str, Any]) -> Image.Image:
    data = part["image_url"]["url"].split(",", 1)[1]
    return Image.open(io.BytesIO(base64.b64decode(data)))


def test_internvl2_sends_stop_strings_and_400px_candidates() -> None:
    recorder = Recorder("Yes", {"Yes": -0.1, "No": -2.5})
    verifier = ChatVerifier(model("OpenGVLab/InternVL2-8B", recorder))
    [answer] = verifier.verify([VerifyItem("i", Image.new("RGB", (900, 300)), "Is it dark?")])
    assert answer.yes and answer.p_yes is not None and answer.p_yes > 0.5
    [body] = recorder.bodies
    assert body["stop"] == ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|end|>"]
    image_part, text_part = body["messages"][0]["content"]
    assert sent_image(image_part).size == (400, 400)
    assert text_part["text"].startswith("Is it dark?")
    assert (body["max_tokens"], body["top_logprobs"]) == (1, 10)


def test_llava_folds_the_system_prompt_and_reads_text() -> None:
    recorder = Recorder("No, it is not.")
    chat = model("llava-hf/llava-v1.6-vicuna-7b-hf", recorder)
    chat.complete([ChatRequest(text="Describe.", system="Be brief.", images=())])
    assert recorder.bodies[0]["messages"] == [{"role": "user", "content": "Be brief.\n\nDescribe."}]
    [answer] = ChatVerifier(chat).verify([VerifyItem("i", Image.new("RGB", (8, 8)), "Is it?")])
    assert (answer.yes, answer.p_yes) == (False, None)
    body = recorder.bodies[1]
    assert body["max_tokens"] == 3 and "logprobs" not in body and "stop" not in body


def test_image_limits_are_checked_before_sending() -> None:
    recorder = Recorder()
    chat = model("google/paligemma-3b-mix-224", recorder)
    two = (Image.new("RGB", (4, 4)), Image.new("RGB", (4, 4)))
    with pytest.raises(ConfigError, match="at most 1 image"):
        chat.complete([ChatRequest(text="x"), ChatRequest(text="y", images=two)])
    assert recorder.bodies == []


def test_qwen2_vl_keeps_its_system_message_and_takes_two_images() -> None:
    recorder = Recorder("ANSWER: No. The colour is wrong.")
    chat = model("Qwen/Qwen2-VL-7B-Instruct", recorder)
    evaluator = ChatEvaluator(chat, compose="separate")
    image = Image.new("RGB", (16, 16), (9, 9, 9))
    [evaluation] = evaluator.evaluate([EvaluationItem("c", image, "make it red", reference=image)])
    assert not evaluation.accepted
    content = recorder.bodies[0]["messages"][0]["content"]
    assert [p["type"] for p in content] == ["image_url", "image_url", "text"]
    chat.complete([ChatRequest(text="plan", system="You plan.")])
    assert recorder.bodies[1]["messages"][0] == {"role": "system", "content": "You plan."}


def test_factory_builds_roles_with_profile_compose_and_prompt_folder(tmp_path: Any) -> None:
    folder = tmp_path / "prompts"
    folder.mkdir()
    for name, text in {
        "prompt1_stage1_reasoner.txt": "[[INSTRUCTION]] / [[REF_IMAGE_DESC]]",
        "prompt2_stage2_reasoner.txt": "[[ATOMIC_INST]]",
        "prompt3_stage3_evaluator.txt": "[[INSTRUCTION]]",
        "caption.txt": "Caption it.",
    }.items():
        (folder / name).write_text(text)
    role = RoleSettings(
        kind="openai",
        openai=ChatEndpoint(model="Qwen/Qwen2-VL-7B-Instruct"),
        compose="separate",
        prompts_dir=folder,
        profile=ProfileSettings(panel_size=(64, 64)),
    )
    evaluator = build_evaluator(role, FakeEmbedder())
    assert isinstance(evaluator, ChatEvaluator)
    assert evaluator.compose == "separate" and isinstance(evaluator.book, FilePromptBook)
    assert (evaluator.profile.name, evaluator.profile.panel_size) == ("qwen2-vl", (64, 64))
    reasoner = build_reasoner(role.model_copy(update={"max_tokens": 99}))
    assert isinstance(reasoner, ChatReasoner) and reasoner.max_tokens == 99
    assert isinstance(reasoner.book, FilePromptBook)
    named = build_chat(
        RoleSettings(
            kind="openai", openai=ChatEndpoint(model="my-ft"), profile=ProfileSettings(name="llava")
        )
    )
    assert isinstance(named, OpenAIChatModel) and named.profile.name == "llava"
    with pytest.raises(ConfigError, match="lacks"):
        build_evaluator(role.model_copy(update={"prompts_dir": tmp_path}), FakeEmbedder())
