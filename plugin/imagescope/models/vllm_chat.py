"""ChatModel on an in-process vLLM engine (GPU workers).

The engine is built once per process (CUDA cannot be re-initialised in a forked
child: run one worker process per GPU). A whole batch of requests goes to vLLM
in a single ``LLM.chat`` call, so the engine schedules it at once and shares
cached prefixes: each conversation puts its images before its text.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

from imagescope.errors import ConfigError, ModelBackendError
from imagescope.models.base import ChatModel, ChatReply, ChatRequest
from imagescope.models.prompts import add_logprob
from imagescope.settings import VLLMEngine

logger = logging.getLogger(__name__)

INSTALL_HINT = (
    "vLLM is not installed; on a GPU worker run `pip install 'opensearch-imagescope[gpu]'`, "
    "or set the role's kind to `openai` and point it at a `vllm serve` endpoint"
)


def _conversation(request: ChatRequest) -> list[dict[str, Any]]:
    """vLLM's OpenAI-style messages: PIL images first, then the text."""
    content: list[dict[str, Any]] = [
        {"type": "image_pil", "image_pil": image.convert("RGB")} for image in request.images
    ]
    content.append({"type": "text", "text": request.text})
    messages: list[dict[str, Any]] = []
    if request.system:
        messages.append({"role": "system", "content": request.system})
    messages.append({"role": "user", "content": content})
    return messages


def _first_token_logprobs(completion: Any) -> dict[str, float] | None:
    """Decoded token -> log-probability at the first generated position."""
    positions = getattr(completion, "logprobs", None)
    if not positions:
        return None
    out: dict[str, float] = {}
    for logprob in positions[0].values():
        token = getattr(logprob, "decoded_token", None)
        if token is None:
            continue
        add_logprob(out, token, logprob=float(logprob.logprob))
    return out


def _json_mode_option(vllm: Any) -> tuple[str, Any] | None:
    """(SamplingParams keyword, params class) for JSON-object decoding, if this vLLM has one."""
    sampling = getattr(vllm, "sampling_params", None)
    for keyword, name in (
        ("structured_outputs", "StructuredOutputsParams"),
        ("guided_decoding", "GuidedDecodingParams"),
    ):
        cls = getattr(sampling, name, None)
        if cls is not None:
            return keyword, cls
    return None


class VLLMChatModel(ChatModel):
    """Greedy chat completions from ``vllm.LLM``, one ``LLM.chat`` call per batch.

    Raises ``ConfigError`` when vLLM is missing or no model is set, and
    ``ModelBackendError`` when the engine fails to load or to generate.
    ``json_mode`` requests use vLLM's JSON-object structured decoding when the
    installed version offers it, and plain decoding otherwise.
    """

    def __init__(self, engine: VLLMEngine) -> None:
        if not engine.model.strip():
            raise ConfigError(
                "the vLLM engine has no model; set the role's vllm.model to a Hugging Face "
                "id or a local folder (e.g. IMAGESCOPE_MODELS__VERIFIER__VLLM__MODEL)"
            )
        try:
            import vllm
        except ImportError as exc:
            raise ConfigError(INSTALL_HINT) from exc
        options: dict[str, Any] = {
            "model": engine.model,
            "dtype": engine.dtype,
            "gpu_memory_utilization": engine.gpu_memory_utilization,
            "enable_prefix_caching": engine.enable_prefix_caching,
        }
        if engine.max_model_len is not None:
            options["max_model_len"] = engine.max_model_len
        try:
            self._llm = vllm.LLM(**options)
        except Exception as exc:  # vLLM raises many types while loading
            raise ModelBackendError(f"vLLM could not load {engine.model!r}: {exc}") from exc
        self._sampling_params = vllm.SamplingParams
        self._json_option = _json_mode_option(vllm)
        self._lock = threading.Lock()  # one engine, one batch at a time
        self.model_id = f"vllm:{engine.model}"

    def _params(self, request: ChatRequest) -> Any:
        options: dict[str, Any] = {"temperature": 0.0, "max_tokens": request.max_tokens}
        if request.top_logprobs:
            options["logprobs"] = request.top_logprobs
        if request.json_mode and self._json_option is not None:
            keyword, cls = self._json_option
            options[keyword] = cls(json_object=True)
        return self._sampling_params(**options)

    def complete(self, requests: Sequence[ChatRequest]) -> list[ChatReply]:
        if not requests:
            return []
        conversations = [_conversation(r) for r in requests]
        params = [self._params(r) for r in requests]
        try:
            with self._lock:
                outputs = self._llm.chat(conversations, sampling_params=params, use_tqdm=False)
        except Exception as exc:  # engine errors have no common base class
            raise ModelBackendError(f"{self.model_id}: generation failed: {exc}") from exc
        if len(outputs) != len(requests):
            raise ModelBackendError(
                f"{self.model_id}: {len(outputs)} outputs for {len(requests)} requests"
            )
        return [self._reply(output) for output in outputs]

    def _reply(self, output: Any) -> ChatReply:
        completion = output.outputs[0]
        return ChatReply(
            text=completion.text,
            first_token_logprobs=_first_token_logprobs(completion),
            prompt_tokens=len(output.prompt_token_ids or ()),
            completion_tokens=len(completion.token_ids or ()),
            extra={"finish_reason": getattr(completion, "finish_reason", None)},
        )
