"""VLLMChatModel up to its boundary: a fake ``vllm`` module stands in for the engine."""

from __future__ import annotations

import math
import sys
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pytest
from PIL import Image

from imagescope.errors import ConfigError, ModelBackendError
from imagescope.models.base import ChatRequest, VerifyItem
from imagescope.models.chat import ChatVerifier
from imagescope.models.vllm_chat import VLLMChatModel
from imagescope.settings import VLLMEngine

pytestmark = pytest.mark.unit


@dataclass
class Logprob:
    logprob: float
    rank: int | None = None
    decoded_token: str | None = None


class SamplingParams:
    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs


class StructuredOutputsParams:
    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs


@dataclass
class FakeLLM:
    """Records how it was built and called; answers from ``FakeLLM.script``."""

    init_kwargs: dict[str, Any]
    calls: list[tuple[list[Any], list[SamplingParams], dict[str, Any]]] = field(
        default_factory=list
    )
    script: ClassVar[Callable[[int, Any], Any]]
    fail_with: ClassVar[Exception | None] = None

    def chat(self, messages: list[Any], sampling_params: Any = None, **kwargs: Any) -> list[Any]:
        if FakeLLM.fail_with is not None:
            raise FakeLLM.fail_with
        self.calls.append((messages, sampling_params, kwargs))
        return [FakeLLM.script(i, conversation) for i, conversation in enumerate(messages)]


def output(text: str, logprobs: dict[int, Logprob] | None, *, prompt_len: int = 7) -> Any:
    completion = types.SimpleNamespace(
        text=text,
        token_ids=list(range(len(text.split()) or 1)),
        logprobs=[logprobs] if logprobs is not None else None,
        finish_reason="length",
    )
    return types.SimpleNamespace(prompt_token_ids=list(range(prompt_len)), outputs=[completion])


@pytest.fixture
def fake_vllm(monkeypatch: pytest.MonkeyPatch) -> Iterator[types.ModuleType]:
    built: list[FakeLLM] = []

    def make_llm(**kwargs: Any) -> FakeLLM:
        llm = FakeLLM(init_kwargs=kwargs)
        built.append(llm)
        return llm

    module = types.ModuleType("vllm")
    module.LLM = make_llm  # type: ignore[attr-defined]
    module.SamplingParams = SamplingParams  # type: ignore[attr-defined]
    sampling = types.ModuleType("vllm.sampling_params")
    sampling.StructuredOutputsParams = StructuredOutputsParams  # type: ignore[attr-defined]
    module.sampling_params = sampling  # type: ignore[attr-defined]
    module.built = built  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vllm", module)
    monkeypatch.setitem(sys.modules, "vllm.sampling_params", sampling)
    FakeLLM.script = lambda i, conversation: output(f"reply {i}", None)
    FakeLLM.fail_with = None
    yield module
    FakeLLM.fail_with = None


def the_llm(module: types.ModuleType) -> FakeLLM:
    [llm] = module.built
    return llm  # type: ignore[no-any-return]


def test_engine_is_built_once_with_the_settings(fake_vllm: types.ModuleType) -> None:
    model = VLLMChatModel(
        VLLMEngine(model="org/tiny-vlm", dtype="bfloat16", gpu_memory_utilization=0.5)
    )
    assert the_llm(fake_vllm).init_kwargs == {
        "model": "org/tiny-vlm",
        "dtype": "bfloat16",
        "gpu_memory_utilization": 0.5,
        "enable_prefix_caching": True,
    }
    assert model.model_id == "vllm:org/tiny-vlm"
    VLLMChatModel(VLLMEngine(model="m", max_model_len=4096, enable_prefix_caching=False))
    last = fake_vllm.built[-1].init_kwargs
    assert (last["max_model_len"], last["enable_prefix_caching"]) == (4096, False)


def test_one_chat_call_per_batch_with_images_first(fake_vllm: types.ModuleType) -> None:
    model = VLLMChatModel(VLLMEngine(model="m"))
    image = Image.new("RGB", (8, 6), (1, 2, 3))
    requests = [
        ChatRequest(text="Is there a dog?", images=(image,), max_tokens=1, top_logprobs=5),
        ChatRequest(text="Is there a cat?", images=(image,), max_tokens=1, top_logprobs=5),
        ChatRequest(text="plan", system="be brief", max_tokens=200, json_mode=True),
    ]
    replies = model.complete(requests)
    assert [r.text for r in replies] == ["reply 0", "reply 1", "reply 2"]
    [(conversations, params, kwargs)] = the_llm(fake_vllm).calls
    assert kwargs == {"use_tqdm": False}
    first_user = conversations[0][0]
    assert first_user["role"] == "user"
    assert [part["type"] for part in first_user["content"]] == ["image_pil", "text"]
    assert first_user["content"][0]["image_pil"].size == (8, 6)
    assert first_user["content"][1]["text"] == "Is there a dog?"
    assert conversations[2] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "plan"}]},
    ]
    assert params[0].kwargs == {"temperature": 0.0, "max_tokens": 1, "logprobs": 5}
    json_params = params[2].kwargs
    assert (json_params["temperature"], json_params["max_tokens"]) == (0.0, 200)
    assert "logprobs" not in json_params
    assert json_params["structured_outputs"].kwargs == {"json_object": True}


def test_first_token_logprobs_and_token_counts(fake_vllm: types.ModuleType) -> None:
    FakeLLM.script = lambda i, c: output(
        "Yes it is",
        {
            11: Logprob(-0.2, 1, "Yes"),
            12: Logprob(-2.0, 2, " yes"),
            13: Logprob(-2.5, 3, "No"),
            14: Logprob(-3.0, 4, "No"),  # another id decoding to the same text: summed
            15: Logprob(-5.0, 5, None),  # not decoded: skipped
        },
        prompt_len=12,
    )
    [reply] = VLLMChatModel(VLLMEngine(model="m")).complete([ChatRequest(text="q")])
    assert reply.first_token_logprobs is not None
    assert set(reply.first_token_logprobs) == {"Yes", " yes", "No"}
    assert reply.first_token_logprobs["No"] == pytest.approx(
        math.log(math.exp(-2.5) + math.exp(-3.0))
    )
    assert (reply.prompt_tokens, reply.completion_tokens) == (12, 3)
    assert reply.extra["finish_reason"] == "length"


def test_verifier_on_vllm(fake_vllm: types.ModuleType) -> None:
    FakeLLM.script = lambda i, c: output(
        "No", {1: Logprob(math.log(0.7), 1, "No"), 2: Logprob(math.log(0.1), 2, "Yes")}
    )
    verifier = ChatVerifier(VLLMChatModel(VLLMEngine(model="m")), batch_size=8)
    image = Image.new("RGB", (4, 4))
    answers = verifier.verify([VerifyItem("i", image, f"Is there thing {n}?") for n in range(3)])
    assert [a.yes for a in answers] == [False] * 3
    assert answers[0].p_yes == pytest.approx(0.1 / 0.8)
    assert len(the_llm(fake_vllm).calls) == 1  # one engine call for the whole batch


def test_engine_failures_are_backend_errors(fake_vllm: types.ModuleType) -> None:
    model = VLLMChatModel(VLLMEngine(model="m"))
    FakeLLM.fail_with = RuntimeError("CUDA out of memory")
    with pytest.raises(ModelBackendError, match="generation failed: CUDA out of memory"):
        model.complete([ChatRequest(text="q")])
    assert model.complete([]) == []


def test_load_failure_is_a_backend_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(**kwargs: Any) -> None:
        raise ValueError("no such model")

    module = types.ModuleType("vllm")
    module.LLM = broken  # type: ignore[attr-defined]
    module.SamplingParams = SamplingParams  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vllm", module)
    with pytest.raises(ModelBackendError, match="could not load 'org/missing': no such model"):
        VLLMChatModel(VLLMEngine(model="org/missing"))


def test_missing_vllm_tells_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "vllm", None)  # makes `import vllm` raise ImportError
    with pytest.raises(ConfigError, match=r"pip install 'opensearch-imagescope\[gpu\]'"):
        VLLMChatModel(VLLMEngine(model="m"))


def test_missing_model_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="vllm.model"):
        VLLMChatModel(VLLMEngine())
