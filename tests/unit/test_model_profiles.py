"""Model profiles: the exact prompts and inputs each model family receives.

The expected strings are vLLM's documented example prompts for these models
(``examples/offline_inference/vision_language.py`` in the vLLM repository):
LLaVA ``USER: <image>\\n{q}\\nASSISTANT:``, LLaVA-NeXT (Mistral)
``[INST] <image>\\n{q} [/INST]``, Qwen2-VL's ChatML prompt with
``<|vision_start|><|image_pad|><|vision_end|>``, PaliGemma's bare task prompt
(``caption en``) with the image in ``multi_modal_data``, and InternVL2's chat
template with its four stop tokens. A fake ``vllm`` module records the calls.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import jinja2
import pytest
from PIL import Image

from imagescope.errors import ConfigError
from imagescope.models.base import ChatRequest, EvaluationItem, VerifyItem
from imagescope.models.chat import ChatCaptioner, ChatEvaluator, ChatReasoner, ChatVerifier
from imagescope.models.profiles import PROFILES, ModelProfile, profile_for, profile_named
from imagescope.models.vllm_chat import VLLMChatModel
from imagescope.settings import ProfileSettings, Settings, VLLMEngine

pytestmark = pytest.mark.unit

QWEN2_VL_EXAMPLE = (
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>"
    "What is in the image?<|im_end|>\n"
    "<|im_start|>assistant\n"
)
TOKEN_IDS = {
    "<|endoftext|>": 2,
    "<|im_start|>": 92543,
    "<|im_end|>": 92542,
    "<|end|>": 0,  # unknown to this tokenizer: left out
    "<|eot_id|>": 128009,
}


class SamplingParams:
    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs


class FakeTokenizer:
    unk_token_id = 0

    def convert_tokens_to_ids(self, token: str) -> int:
        return TOKEN_IDS.get(token, 0)


def output(text: str) -> Any:
    completion = types.SimpleNamespace(
        text=text, token_ids=[1], logprobs=None, finish_reason="stop"
    )
    return types.SimpleNamespace(prompt_token_ids=[1, 2, 3], outputs=[completion])


@dataclass
class FakeLLM:
    init_kwargs: dict[str, Any]
    calls: list[tuple[str, list[Any], list[SamplingParams]]] = field(default_factory=list)
    reply: str = "yes"

    def get_tokenizer(self) -> FakeTokenizer:
        return FakeTokenizer()

    def generate(self, prompts: list[Any], sampling_params: Any = None, **_: Any) -> list[Any]:
        self.calls.append(("generate", prompts, sampling_params))
        return [output(self.reply) for _ in prompts]

    def chat(self, messages: list[Any], sampling_params: Any = None, **_: Any) -> list[Any]:
        self.calls.append(("chat", messages, sampling_params))
        return [output(self.reply) for _ in messages]


@pytest.fixture
def llms(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[FakeLLM]]:
    built: list[FakeLLM] = []

    def make_llm(**kwargs: Any) -> FakeLLM:
        built.append(FakeLLM(init_kwargs=kwargs))
        return built[-1]

    module = types.ModuleType("vllm")
    module.LLM = make_llm  # type: ignore[attr-defined]
    module.SamplingParams = SamplingParams  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vllm", module)
    yield built


def solid(colour: tuple[int, int, int], size: tuple[int, int] = (64, 32)) -> Image.Image:
    return Image.new("RGB", size, colour)


# --------------------------------------------------------------------------- the registry


@pytest.mark.parametrize(
    ("model_id", "name"),
    [
        ("meta-llama/Meta-Llama-3-8B-Instruct", "llama3"),
        ("google/paligemma-3b-mix-224", "paligemma"),
        ("OpenGVLab/InternVL2-8B", "internvl2"),
        ("llava-hf/llava-v1.6-vicuna-7b-hf", "llava"),
        ("llava-hf/llava-v1.6-mistral-7b-hf", "llava-next-mistral"),
        ("llava-hf/llava-1.5-7b-hf", "llava"),
        ("Qwen/Qwen2-VL-7B-Instruct", "qwen2-vl"),
        ("/models/qwen2.5-vl-3b-instruct", "qwen2-vl"),
        ("org/some-new-vlm", "generic"),
    ],
)
def test_profile_is_chosen_by_model_id(model_id: str, name: str) -> None:
    assert profile_for(model_id).name == name


def test_settings_name_a_profile_and_override_fields() -> None:
    chosen = profile_for(
        "/local/checkpoint-1200",
        ProfileSettings(name="internvl2", image_size=(448, 448), stop_tokens=["<|im_end|>"]),
    )
    assert (chosen.name, chosen.image_size, chosen.stop_tokens) == (
        "internvl2",
        (448, 448),
        ("<|im_end|>",),
    )
    assert chosen.panel_size == (800, 800)  # not overridden: the profile's own
    with pytest.raises(ConfigError, match="unknown model profile 'nope'; known: llama3"):
        profile_for("x", ProfileSettings(name="nope"))


def test_profile_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMAGESCOPE_MODELS__VERIFIER__KIND", "vllm")
    monkeypatch.setenv("IMAGESCOPE_MODELS__EVALUATOR__KIND", "openai")
    monkeypatch.setenv("IMAGESCOPE_MODELS__VERIFIER__PROFILE__NAME", "paligemma")
    monkeypatch.setenv("IMAGESCOPE_MODELS__VERIFIER__PROFILE__YES_NO", "text")
    monkeypatch.setenv("IMAGESCOPE_MODELS__EVALUATOR__COMPOSE", "separate")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    profile = profile_for("whatever", settings.models.verifier.profile)
    assert (profile.name, profile.yes_no, profile.prompt_format) == ("paligemma", "text", "raw")
    assert settings.models.evaluator.compose == "separate"


def test_every_profile_name_is_unique_and_generic_is_last() -> None:
    names = [p.name for p in PROFILES]
    assert len(names) == len(set(names)) and names[-1] == "generic"


# --------------------------------------------------------------------------- raw prompts


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("llava-hf/llava-v1.6-vicuna-7b-hf", "USER: <image>\nWhat is in the image?\nASSISTANT:"),
        ("llava-hf/llava-v1.6-mistral-7b-hf", "[INST] <image>\nWhat is in the image? [/INST]"),
        ("Qwen/Qwen2-VL-7B-Instruct", QWEN2_VL_EXAMPLE),
        ("google/paligemma-3b-mix-224", "What is in the image?"),
    ],
)
def test_raw_prompts_are_vllm_example_formats(
    llms: list[FakeLLM], model: str, expected: str
) -> None:
    chat = VLLMChatModel(VLLMEngine(model=model))
    image = solid((200, 0, 0))
    chat.complete([ChatRequest(text="What is in the image?", images=(image,), max_tokens=8)])
    [(call, prompts, params)] = llms[0].calls
    assert call == "generate"
    [prompt] = prompts
    assert prompt["prompt"] == expected
    assert set(prompt) == {"prompt", "multi_modal_data"}
    sent = prompt["multi_modal_data"]["image"]
    assert isinstance(sent, Image.Image) and sent.size == (64, 32)
    assert params[0].kwargs == {"temperature": 0.0, "max_tokens": 8}


def test_paligemma_verifier_and_captioner_use_its_task_prompts(llms: list[FakeLLM]) -> None:
    chat = VLLMChatModel(VLLMEngine(model="google/paligemma-3b-mix-224"))
    llm = llms[0]
    assert "trust_remote_code" not in llm.init_kwargs
    verifier = ChatVerifier(chat)
    [answer] = verifier.verify([VerifyItem("i", solid((0, 0, 255)), "Is there a dog?")])
    assert answer.yes and answer.raw == "yes"
    ChatCaptioner(chat).caption([solid((0, 0, 255))])
    (_, verify_prompts, verify_params), (_, caption_prompts, _) = llm.calls
    assert verify_prompts[0]["prompt"] == "answer en Is there a dog?"
    assert verify_params[0].kwargs == {"temperature": 0.0, "max_tokens": 1, "logprobs": 10}
    assert caption_prompts[0]["prompt"] == "caption en"  # vLLM's PaliGemma example
    with pytest.raises(ConfigError, match="at most 1 image"):
        chat.complete([ChatRequest(text="two", images=(solid((0, 0, 0)), solid((0, 0, 0))))])


def test_qwen2_vl_takes_several_images_and_a_system_prompt(llms: list[FakeLLM]) -> None:
    chat = VLLMChatModel(VLLMEngine(model="Qwen/Qwen2-VL-7B-Instruct"))
    assert llms[0].init_kwargs["limit_mm_per_prompt"] == {"image": 4}
    images = (solid((1, 1, 1)), solid((2, 2, 2)))
    chat.complete([ChatRequest(text="Compare.", images=images, system="Be brief.")])
    [(_, [prompt], _)] = llms[0].calls
    pad = "<|vision_start|><|image_pad|><|vision_end|>"
    assert prompt["prompt"] == (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        f"<|im_start|>user\n{pad}{pad}Compare.<|im_end|>\n<|im_start|>assistant\n"
    )
    assert prompt["multi_modal_data"]["image"] == list(images)


def test_llava_reads_yes_no_from_the_text(llms: list[FakeLLM]) -> None:
    chat = VLLMChatModel(VLLMEngine(model="llava-hf/llava-v1.6-vicuna-7b-hf"))
    llms[0].reply = " Yes, there is."
    [answer] = ChatVerifier(chat).verify([VerifyItem("i", solid((5, 5, 5)), "Is it dark?")])
    assert (answer.yes, answer.p_yes) == (True, None)
    [(_, [prompt], [params])] = llms[0].calls
    assert prompt["prompt"] == (
        "USER: <image>\nIs it dark?\nReply with one word: Yes or No.\nASSISTANT:"
    )
    assert params.kwargs == {"temperature": 0.0, "max_tokens": 3}  # no logprobs asked


# --------------------------------------------------------------------------- chat templates


def test_internvl2_uses_chat_with_its_stop_tokens_and_sizes(llms: list[FakeLLM]) -> None:
    chat = VLLMChatModel(VLLMEngine(model="OpenGVLab/InternVL2-8B", dtype="bfloat16"))
    llm = llms[0]
    assert llm.init_kwargs["trust_remote_code"] is True
    assert llm.init_kwargs["max_model_len"] == 8192
    ChatVerifier(chat).verify([VerifyItem("i", solid((0, 90, 0), (1000, 500)), "Is it green?")])
    [(call, [messages], [params])] = llm.calls
    assert call == "chat"
    [user] = messages
    image_part, text_part = user["content"]
    # vLLM renders this as InternVL2's chat template with "<image>\n" before the text.
    assert image_part["type"] == "image_pil" and image_part["image_pil"].size == (400, 400)
    assert text_part == {"type": "text", "text": "Is it green?\nReply with one word: Yes or No."}
    assert params.kwargs["stop_token_ids"] == [2, 92543, 92542]


def test_internvl2_evaluator_sees_reference_left_candidate_right(llms: list[FakeLLM]) -> None:
    chat = VLLMChatModel(VLLMEngine(model="OpenGVLab/InternVL2-8B"))
    llms[0].reply = "ANSWER: Yes. It is red now."
    evaluator = ChatEvaluator(chat)
    reference, candidate = solid((255, 0, 0), (100, 50)), solid((0, 0, 255), (50, 100))
    [evaluation] = evaluator.evaluate(
        [EvaluationItem("c", candidate, "make it blue", reference=reference)]
    )
    assert (evaluation.accepted, evaluation.reason) == (True, "It is red now.")
    [(_, [messages], _)] = llms[0].calls
    composed = messages[0]["content"][0]["image_pil"]
    assert composed.size == (800 + 16 + 800, 800)
    assert composed.getpixel((400, 400)) == (255, 0, 0)  # reference, letterboxed left
    assert composed.getpixel((400, 100)) == (255, 255, 255)  # its letterbox band
    assert composed.getpixel((808, 400)) == (128, 128, 128)  # the gap
    assert composed.getpixel((816 + 400, 400)) == (0, 0, 255)  # candidate right
    assert composed.getpixel((816 + 100, 400)) == (255, 255, 255)


def test_llama3_reasoner_is_a_text_only_chat(llms: list[FakeLLM]) -> None:
    chat = VLLMChatModel(VLLMEngine(model="meta-llama/Meta-Llama-3-8B-Instruct"))
    llms[0].reply = '{"descriptions": ["a red car"]}'
    intent = ChatReasoner(chat).synthesize_intent("make it red", reference_caption="a car")
    assert intent.descriptions == ["a red car"]
    [(call, [messages], [params])] = llms[0].calls
    assert call == "chat"
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[1]["content"][0]["type"] == "text"
    assert params.kwargs["stop_token_ids"] == [128009]
    with pytest.raises(ConfigError, match="at most 0 image"):
        chat.complete([ChatRequest(text="x", images=(solid((0, 0, 0)),))])


def test_separate_images_need_a_multi_image_profile(llms: list[FakeLLM]) -> None:
    with pytest.raises(ConfigError, match="compose=separate .* takes 1"):
        ChatEvaluator(VLLMChatModel(VLLMEngine(model="OpenGVLab/InternVL2-8B")), compose="separate")
    chat = VLLMChatModel(VLLMEngine(model="Qwen/Qwen2-VL-7B-Instruct"))
    llms[-1].reply = "ANSWER: No. Wrong colour."
    evaluator = ChatEvaluator(chat, compose="separate")
    reference, candidate = solid((255, 0, 0)), solid((0, 0, 255))
    evaluator.evaluate([EvaluationItem("c", candidate, "make it green", reference=reference)])
    [(_, [prompt], _)] = llms[-1].calls
    assert prompt["multi_modal_data"]["image"] == [reference, candidate]
    assert "The FIRST is the reference photo" in prompt["prompt"]


# --------------------------------------------------------------------------- vllm serve templates


def _render(profile: ModelProfile, content: str, **tokens: str) -> str:
    path = profile.chat_template_path()
    assert path is not None and path.is_file()
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
    template = env.from_string(path.read_text())
    messages = [{"role": "user", "content": content}]
    return template.render(messages=messages, add_generation_prompt=True, **tokens)


@pytest.mark.parametrize(
    ("name", "placeholder"),
    [("paligemma", ""), ("llava", "<image>\n"), ("llava-next-mistral", "<image>\n")],
)
def test_shipped_chat_templates_render_the_raw_prompt(name: str, placeholder: str) -> None:
    """``vllm serve --chat-template`` gives the server the prompt the engine gets in-process.

    vLLM hands a chat template the user's text with the model's image
    placeholder and a newline before it (none for PaliGemma, whose processor
    adds the image tokens); the tokenizer adds ``bos`` to a raw prompt.
    """
    profile = profile_named(name)
    text = "Is there a dog?"
    rendered = _render(profile, placeholder + text, bos_token="<s>", eos_token="</s>")
    assert rendered == "<s>" + profile.render(text, images=1 if placeholder else 0)


def test_role_model_ids_change_with_the_profile(llms: list[FakeLLM]) -> None:
    """The answer cache is keyed by model id: a changed prompt format must not reuse answers."""
    engine = VLLMEngine(model="OpenGVLab/InternVL2-8B")
    default = ChatVerifier(VLLMChatModel(engine)).model_id
    same = ChatVerifier(VLLMChatModel(engine, profile=profile_for(engine.model))).model_id
    resized = profile_for(engine.model, ProfileSettings(image_size=(448, 448)))
    other = ChatVerifier(VLLMChatModel(engine, profile=resized)).model_id
    assert default == same and default.startswith("vllm:OpenGVLab/InternVL2-8B#prompts-v1")
    assert "#profile-internvl2-" in default and other != default


def test_image_sizes_must_be_positive() -> None:
    with pytest.raises(ValueError, match="greater than 0"):
        ProfileSettings(panel_size=(0, 800))
