"""Per-model-family profiles: how a chat model wants its prompts and images.

A :class:`ModelProfile` is data, not code: the prompt format (the model's own
chat template, or a raw prompt string we render), where the image token goes,
the stop tokens, the image sizes, how a yes/no answer is read, and how many
images one prompt may carry. :data:`PROFILES` is the registry; a model id (a
Hugging Face id or a local folder name) picks the first profile whose pattern
it matches, and ``RoleSettings.profile`` can name another one or override any
field (env e.g. ``IMAGESCOPE_MODELS__VERIFIER__PROFILE__NAME=paligemma``).

Raw templates reproduce vLLM's documented example prompts for each family
(``examples/offline_inference/vision_language.py`` in the vLLM repository);
``chat_template`` names a file under ``models/chat_templates`` that makes
``vllm serve`` render the same string from a chat request (``--chat-template``),
for models whose tokenizer ships none.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Literal

from imagescope.errors import ConfigError
from imagescope.settings import ProfileSettings

PromptFormat = Literal["chat", "raw"]
YesNoReading = Literal["logprobs", "text"]

#: Profile fields that do not change what a model is sent or how its reply is read.
_NOT_SHAPING = {"name", "patterns", "engine_options", "serve_flags", "chat_template"}
#: Shipped ``--chat-template`` files for ``vllm serve``.
CHAT_TEMPLATES_DIR = Path(__file__).resolve().parent / "chat_templates"


@dataclass(frozen=True)
class ModelProfile:
    """How one model family is prompted (see the module docstring)."""

    name: str
    #: Regular expressions searched (case-insensitively) in the model id.
    patterns: tuple[str, ...] = ()
    #: ``chat``: vLLM's ``LLM.chat`` / the server applies the model's chat template.
    #: ``raw``: we render ``template`` and call ``LLM.generate`` with ``multi_modal_data``.
    prompt_format: PromptFormat = "chat"
    #: Raw only: ``{image}`` (the image tokens), ``{text}`` and optionally ``{system}``.
    template: str = "{image}{text}"
    #: Raw only: the text standing for one image ("" when the model's processor adds it).
    image_token: str = ""
    #: Raw only: ``{system}`` when the request has no system prompt.
    default_system: str = ""
    #: Chat only: image parts before the text part.
    images_first: bool = True
    #: Tokens that end a reply (vLLM in-process: their ids; HTTP: ``stop`` strings).
    stop_tokens: tuple[str, ...] = ()
    #: Single images (verifier, captioner) are resized to (width, height).
    image_size: tuple[int, int] | None = None
    #: Each half of a side-by-side evaluation image is letterboxed to (width, height).
    panel_size: tuple[int, int] | None = None
    #: ``logprobs``: P(yes) from the first token's log-probabilities; ``text``: the reply's word.
    yes_no: YesNoReading = "logprobs"
    #: Images one prompt may carry (0: a text-only model).
    max_images: int = 1
    #: The verifier's question format (``{question}``); None: the built-in prompt.
    verify_template: str | None = None
    #: The captioner's request when the built-in prompts are in use; None: theirs.
    caption_text: str | None = None
    #: Extra ``vllm.LLM`` options for the in-process engine.
    engine_options: dict[str, object] = field(default_factory=dict)
    #: ``vllm serve`` flags this family needs (shown in the README).
    serve_flags: tuple[str, ...] = ()
    #: A shipped ``--chat-template`` file (name under ``CHAT_TEMPLATES_DIR``).
    chat_template: str | None = None

    @property
    def digest(self) -> str:
        """Short hash of every field that shapes requests or reads replies (cache keys)."""
        shaping = {k: v for k, v in asdict(self).items() if k not in _NOT_SHAPING}
        return hashlib.sha256(repr(sorted(shaping.items())).encode()).hexdigest()[:8]

    def matches(self, model_id: str) -> bool:
        return any(re.search(p, model_id, re.IGNORECASE) for p in self.patterns)

    def render(self, text: str, *, images: int, system: str | None = None) -> str:
        """The raw prompt for ``text`` with ``images`` image tokens.

        A system prompt goes into ``{system}`` when the template has one, else
        before the text.
        """
        if "{system}" not in self.template and system:
            text = f"{system.strip()}\n\n{text}"
        return self.template.format(
            image=self.image_token * images, text=text, system=system or self.default_system
        )

    def verify_text(self, question: str, default: str) -> str:
        """The verifier's question text: the profile's format, else ``default``."""
        if self.verify_template is None:
            return default
        return self.verify_template.format(question=question.strip())

    def check_images(self, count: int, model_id: str) -> None:
        """Raise ``ConfigError`` when a prompt carries more images than the model takes."""
        if count > self.max_images:
            raise ConfigError(
                f"{model_id} (profile {self.name!r}) takes at most {self.max_images} image(s) "
                f"per prompt, got {count}; use evaluator compose=side_by_side, or set "
                "the role's profile.max_images if the model (and its server's "
                "--limit-mm-per-prompt) allows more"
            )

    def chat_template_path(self) -> Path | None:
        return None if self.chat_template is None else CHAT_TEMPLATES_DIR / self.chat_template


INTERNVL_STOP = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|end|>")
QWEN2_VL_TEMPLATE = (
    "<|im_start|>system\n{system}<|im_end|>\n"
    "<|im_start|>user\n{image}{text}<|im_end|>\n"
    "<|im_start|>assistant\n"
)

#: The registry, most specific first; the last one matches any model.
PROFILES: tuple[ModelProfile, ...] = (
    ModelProfile(
        name="llama3",
        patterns=(r"llama-?3",),
        stop_tokens=("<|eot_id|>",),
        max_images=0,
    ),
    ModelProfile(
        name="paligemma",
        patterns=(r"paligemma",),
        prompt_format="raw",
        template="{text}",  # the processor puts the image tokens and <bos> first
        image_token="",
        verify_template="answer en {question}",
        caption_text="caption en",
        serve_flags=("--chat-template plugin/imagescope/models/chat_templates/paligemma.jinja",),
        chat_template="paligemma.jinja",
    ),
    ModelProfile(
        name="internvl2",
        patterns=(r"internvl2",),
        stop_tokens=INTERNVL_STOP,
        image_size=(400, 400),
        panel_size=(800, 800),
        engine_options={"trust_remote_code": True, "max_model_len": 8192},
        serve_flags=("--trust-remote-code", "--max-model-len 8192"),
    ),
    ModelProfile(
        name="llava-next-mistral",
        patterns=(r"llava-v1\.6-mistral",),
        prompt_format="raw",
        template="[INST] {image}\n{text} [/INST]",
        image_token="<image>",
        yes_no="text",
        engine_options={"max_model_len": 8192},
        serve_flags=(
            "--max-model-len 8192",
            "--chat-template plugin/imagescope/models/chat_templates/llava_next_mistral.jinja",
        ),
        chat_template="llava_next_mistral.jinja",
    ),
    ModelProfile(
        name="llava",
        patterns=(r"llava-v1\.6", r"llava-1\.5", r"llava-v1\.5"),
        prompt_format="raw",
        template="USER: {image}\n{text}\nASSISTANT:",
        image_token="<image>",
        yes_no="text",
        engine_options={"max_model_len": 4096},
        serve_flags=(
            "--max-model-len 4096",
            "--chat-template plugin/imagescope/models/chat_templates/llava.jinja",
        ),
        chat_template="llava.jinja",
    ),
    ModelProfile(
        name="qwen2-vl",
        patterns=(r"qwen2(\.5)?-vl",),
        prompt_format="raw",
        template=QWEN2_VL_TEMPLATE,
        image_token="<|vision_start|><|image_pad|><|vision_end|>",
        default_system="You are a helpful assistant.",
        max_images=4,
        engine_options={"max_model_len": 8192},
        serve_flags=("--max-model-len 8192", """--limit-mm-per-prompt '{"image": 4}'"""),
    ),
    ModelProfile(name="generic", patterns=(r".",)),
)


def profile_named(name: str) -> ModelProfile:
    for profile in PROFILES:
        if profile.name == name:
            return profile
    known = ", ".join(p.name for p in PROFILES)
    raise ConfigError(f"unknown model profile {name!r}; known: {known}")


def profile_for(model_id: str, settings: ProfileSettings | None = None) -> ModelProfile:
    """The profile of ``model_id`` (or the one ``settings.name`` names), with overrides."""
    settings = settings or ProfileSettings()
    if settings.name is not None:
        profile = profile_named(settings.name)
    else:
        profile = next(p for p in PROFILES if p.matches(model_id) or p.name == "generic")
    overrides = settings.model_dump(exclude={"name"}, exclude_none=True)
    if "stop_tokens" in overrides:
        overrides["stop_tokens"] = tuple(overrides["stop_tokens"])
    return replace(profile, **overrides) if overrides else profile
