"""ChatModel on an in-process vLLM engine (GPU workers).

The engine is built once per process (CUDA cannot be re-initialised in a forked
child: run one worker process per GPU). A whole batch of requests goes to vLLM
in one call, so the engine schedules it at once and shares cached prefixes:
each prompt puts its images before its text.

The model's profile (:mod:`.profiles`) picks the call: ``LLM.chat`` for models
with a chat template, ``LLM.generate`` with a rendered prompt and
``multi_modal_data`` for raw-prompt models (PaliGemma, LLaVA, Qwen2-VL), and
adds the profile's stop tokens (as token ids) and engine options.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

from imagescope.errors import ConfigError, ModelBackendError
from imagescope.models.base import ChatModel, ChatReply, ChatRequest
from imagescope.models.profiles import ModelProfile, profile_for
from imagescope.models.prompts import add_logprob
from imagescope.settings import VLLMEngine

logger = logging.getLogger(__name__)

INSTALL_HINT = (
    "vLLM is not installed; on a GPU worker run `pip install 'opensearch-imagescope[gpu]'`, "
    "or set the role's kind to `openai` and point it at a `vllm serve` endpoint"
)


def _conversation(request: ChatRequest, profile: ModelProfile) -> list[dict[str, Any]]:
    """vLLM's OpenAI-style messages with PIL image parts (first, unless the profile says)."""
    images: list[dict[str, Any]] = [
        {"type": "image_pil", "image_pil": image.convert("RGB")} for image in request.images
    ]
    text = [{"type": "text", "text": request.text}]
    content = images + text if profile.images_first else text + images
    messages: list[dict[str, Any]] = []
    if request.system:
        messages.append({"role": "system", "content": request.system})
    messages.append({"role": "user", "content": content})
    return messages


def raw_prompt(request: ChatRequest, profile: ModelProfile) -> dict[str, Any]:
    """``LLM.generate`` input: the rendered prompt and, with images, ``multi_modal_data``."""
    prompt: dict[str, Any] = {
        "prompt": profile.render(request.text, images=len(request.images), system=request.system)
    }
    images = [image.convert("RGB") for image in request.images]
    if images:
        prompt["multi_modal_data"] = {"image": images[0] if len(images) == 1 else images}
    return prompt


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
    """Greedy completions from ``vllm.LLM``, one engine call per batch.

    ``profile`` defaults to the one matching ``engine.model``. Raises
    ``ConfigError`` when vLLM is missing, no model is set or a request carries
    more images than the profile allows, and ``ModelBackendError`` when the
    engine fails to load or to generate. ``json_mode`` requests use vLLM's
    JSON-object structured decoding when the installed version offers it.
    """

    def __init__(self, engine: VLLMEngine, *, profile: ModelProfile | None = None) -> None:
        if not engine.model.strip():
            raise ConfigError(
                "the vLLM engine has no model; set the role's vllm.model to a Hugging Face "
                "id or a local folder (e.g. IMAGESCOPE_MODELS__VERIFIER__VLLM__MODEL)"
            )
        try:
            import vllm
        except ImportError as exc:
            raise ConfigError(INSTALL_HINT) from exc
        self.profile = profile or profile_for(engine.model)
        try:
            self._llm = vllm.LLM(**self._engine_options(engine))
        except Exception as exc:  # vLLM raises many types while loading
            raise ModelBackendError(f"vLLM could not load {engine.model!r}: {exc}") from exc
        self._sampling_params = vllm.SamplingParams
        self._json_option = _json_mode_option(vllm)
        self._lock = threading.Lock()  # one engine, one batch at a time
        self.model_id = f"vllm:{engine.model}"
        self._stop_token_ids = self._token_ids(self.profile.stop_tokens)

    def _engine_options(self, engine: VLLMEngine) -> dict[str, Any]:
        """``vllm.LLM`` keywords: the profile's options, then the settings'."""
        options: dict[str, Any] = dict(self.profile.engine_options)
        if self.profile.max_images > 1:
            options["limit_mm_per_prompt"] = {"image": self.profile.max_images}
        options.update(
            model=engine.model,
            dtype=engine.dtype,
            gpu_memory_utilization=engine.gpu_memory_utilization,
            enable_prefix_caching=engine.enable_prefix_caching,
        )
        if engine.max_model_len is not None:
            options["max_model_len"] = engine.max_model_len
        return options

    def _token_ids(self, tokens: Sequence[str]) -> list[int]:
        """Ids of the profile's stop tokens; tokens this tokenizer lacks are left out."""
        if not tokens:
            return []
        tokenizer = self._llm.get_tokenizer()
        unknown = getattr(tokenizer, "unk_token_id", None)
        ids: list[int] = []
        for token in tokens:
            token_id = tokenizer.convert_tokens_to_ids(token)
            if isinstance(token_id, int) and token_id != unknown:
                ids.append(token_id)
        return ids

    def _params(self, request: ChatRequest) -> Any:
        options: dict[str, Any] = {"temperature": 0.0, "max_tokens": request.max_tokens}
        if request.top_logprobs:
            options["logprobs"] = request.top_logprobs
        if self._stop_token_ids:
            options["stop_token_ids"] = list(self._stop_token_ids)
        if request.json_mode and self._json_option is not None:
            keyword, cls = self._json_option
            options[keyword] = cls(json_object=True)
        return self._sampling_params(**options)

    def _run(self, requests: Sequence[ChatRequest], params: list[Any]) -> Any:
        if self.profile.prompt_format == "raw":
            prompts = [raw_prompt(r, self.profile) for r in requests]
            return self._llm.generate(prompts, sampling_params=params, use_tqdm=False)
        conversations = [_conversation(r, self.profile) for r in requests]
        return self._llm.chat(conversations, sampling_params=params, use_tqdm=False)

    def complete(self, requests: Sequence[ChatRequest]) -> list[ChatReply]:
        if not requests:
            return []
        for request in requests:
            self.profile.check_images(len(request.images), self.model_id)
        params = [self._params(r) for r in requests]
        try:
            with self._lock:
                outputs = self._run(requests, params)
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
