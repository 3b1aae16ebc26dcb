"""Builds model backends from settings: one registry (kind -> builder) per role.

Backends are imported lazily, so a CPU install never imports vLLM and a
process that only searches never loads a verifier. An unknown kind is a
``ConfigError`` that lists the known ones (:func:`known_kinds`).

The embedder also takes bundled models by name: ``model=bundled:synthetic`` (env
``IMAGESCOPE_MODELS__EMBEDDER__MODEL=bundled:synthetic``) is the small CLIP that
ships with the package, trained on the synthetic catalogs; it needs no download.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from imagescope.errors import ConfigError
from imagescope.models.base import Captioner, ChatModel, Embedder, Evaluator, Reasoner, Verifier
from imagescope.settings import EmbedderSettings, RoleSettings

#: The documented switch to the bundled model (no download, works offline).
BUNDLED_SWITCH = "IMAGESCOPE_MODELS__EMBEDDER__MODEL=bundled:synthetic"
BUNDLED_PREFIX = "bundled:"

T = TypeVar("T")
EmbedderBuilder = Callable[[EmbedderSettings], Embedder]
RoleBuilder = Callable[[RoleSettings, Embedder], T]


# --------------------------------------------------------------------------- embedders


def _needs_download(settings: EmbedderSettings) -> bool:
    """True when the weights are neither a local file/folder nor possibly cached."""
    for source in (settings.pretrained, settings.model.removeprefix("local-dir:")):
        if source and Path(source).expanduser().exists():
            return False
    return settings.pretrained is not None or settings.model.startswith("hf-hub:")


def _check_offline(settings: EmbedderSettings) -> None:
    """Fail before importing torch when the weights can neither be read nor fetched."""
    from imagescope.models.hub import hub_offline, nothing_cached

    if _needs_download(settings) and nothing_cached() and hub_offline():
        raise ConfigError(
            f"the {settings.kind} model {settings.model!r} ({settings.pretrained or 'default'}) "
            "is not cached here and the Hugging Face Hub cannot be reached (offline, or "
            "HF_HUB_OFFLINE=1); fetch it once with network access, or point "
            "IMAGESCOPE_MODELS__EMBEDDER__PRETRAINED at a local checkpoint"
        )


def _open_clip(settings: EmbedderSettings) -> Embedder:
    _check_offline(settings)
    from imagescope.models.open_clip_embedder import OpenClipEmbedder

    return OpenClipEmbedder(
        settings.model,
        settings.pretrained,
        device=settings.device,
        batch_size=settings.batch_size,
        config_dir=settings.config_dir,
    )


def _sentence_transformers(settings: EmbedderSettings) -> Embedder:
    _check_offline(settings.model_copy(update={"pretrained": settings.model}))
    from imagescope.models.st_embedder import SentenceTransformersEmbedder

    return SentenceTransformersEmbedder(
        settings.model,
        image_model=settings.image_model,
        device=settings.device,
        batch_size=settings.batch_size,
    )


def _fake_embedder(_settings: EmbedderSettings) -> Embedder:
    from imagescope.models.fakes import FakeEmbedder

    return FakeEmbedder()


_PACKAGE = Path(__file__).resolve().parent.parent
#: Bundled models: name -> (open_clip architecture, weights shipped as package data).
#: ``synthetic``: trained by ``imagescope.synthetic.train`` on drawn catalogs.
BUNDLED: dict[str, tuple[str, Path]] = {
    "synthetic": (
        "ImageScope-Synth",
        _PACKAGE / "synthetic" / "weights" / "ImageScope-Synth.safetensors",
    ),
}


def _bundled(name: str, settings: EmbedderSettings) -> Embedder:
    architecture, weights = BUNDLED[name]
    if not weights.is_file():
        raise ConfigError(
            f"the bundled model {BUNDLED_PREFIX}{name} has no weights at {weights}; "
            "reinstall the package, or train them with imagescope.synthetic.train.train_tiny_clip"
        )
    from imagescope.models.open_clip_embedder import OpenClipEmbedder

    return OpenClipEmbedder(
        architecture,
        str(weights),
        device=settings.device,
        batch_size=settings.batch_size,
        config_dir=_PACKAGE / "models" / "configs",
    )


EMBEDDERS: dict[str, EmbedderBuilder] = {
    "open_clip": _open_clip,
    "sentence_transformers": _sentence_transformers,
    "fake": _fake_embedder,
}


def build_embedder(settings: EmbedderSettings) -> Embedder:
    """The configured embedder (``model=bundled:<name>``: a model shipped with the package).

    A model that cannot be loaded is a ``ConfigError`` naming the bundled switch.
    """
    if settings.model.startswith(BUNDLED_PREFIX):
        name = settings.model.removeprefix(BUNDLED_PREFIX)
        if name not in BUNDLED:
            raise ConfigError(
                f"unknown bundled model {settings.model!r}; known: "
                + ", ".join(BUNDLED_PREFIX + n for n in sorted(BUNDLED))
            )
        return _bundled(name, settings)
    builder = _lookup(EMBEDDERS, "embedder", settings.kind)
    try:
        return builder(settings)
    except ConfigError as exc:
        raise ConfigError(
            f"{exc}. To run on the bundled model instead (offline, synthetic catalogs only), "
            f"set {BUNDLED_SWITCH}"
        ) from exc


# --------------------------------------------------------------------------- chat roles


def build_chat(role: RoleSettings) -> ChatModel:
    """The chat transport behind an ``openai`` or ``vllm`` role, with its model profile."""
    from imagescope.models.profiles import profile_for

    if role.kind == "openai":
        from imagescope.models.openai_chat import OpenAIChatModel

        return OpenAIChatModel(role.openai, profile=profile_for(role.openai.model, role.profile))
    if role.kind == "vllm":
        from imagescope.models.vllm_chat import VLLMChatModel

        return VLLMChatModel(role.vllm, profile=profile_for(role.vllm.model, role.profile))
    raise ConfigError(f"role kind {role.kind!r} has no chat transport; use openai or vllm")


def _none(_role: RoleSettings, _embedder: Embedder) -> None:
    return None


def _rule_reasoner(_role: RoleSettings, _embedder: Embedder) -> Reasoner:
    from imagescope.models.rule_reasoner import RuleReasoner

    return RuleReasoner()


def _chat_reasoner(role: RoleSettings, _embedder: Embedder) -> Reasoner:
    from imagescope.models.chat import ChatReasoner
    from imagescope.models.prompt_files import prompt_book

    book = prompt_book(role.prompts_dir)
    if role.max_tokens is None:
        return ChatReasoner(build_chat(role), prompts=book)
    return ChatReasoner(build_chat(role), max_tokens=role.max_tokens, prompts=book)


def _fake_reasoner(_role: RoleSettings, _embedder: Embedder) -> Reasoner:
    from imagescope.models.fakes import FakeReasoner

    return FakeReasoner()


def _clip_verifier(_role: RoleSettings, embedder: Embedder) -> Verifier:
    from imagescope.models.clip_judge import ClipVerifier

    return ClipVerifier(embedder)


def _chat_verifier(role: RoleSettings, _embedder: Embedder) -> Verifier:
    from imagescope.models.chat import ChatVerifier

    return ChatVerifier(build_chat(role))


def _fake_verifier(_role: RoleSettings, _embedder: Embedder) -> Verifier:
    from imagescope.models.fakes import FakeVerifier

    return FakeVerifier()


def _clip_evaluator(_role: RoleSettings, embedder: Embedder) -> Evaluator:
    from imagescope.models.clip_judge import ClipEvaluator

    return ClipEvaluator(embedder)


def _chat_evaluator(role: RoleSettings, _embedder: Embedder) -> Evaluator:
    from imagescope.models.chat import ChatEvaluator
    from imagescope.models.prompt_files import prompt_book

    chat, book = build_chat(role), prompt_book(role.prompts_dir)
    if role.max_tokens is None:
        return ChatEvaluator(chat, compose=role.compose, prompts=book)
    return ChatEvaluator(chat, max_tokens=role.max_tokens, compose=role.compose, prompts=book)


def _fake_evaluator(_role: RoleSettings, _embedder: Embedder) -> Evaluator:
    from imagescope.models.fakes import FakeEvaluator

    return FakeEvaluator()


def _chat_captioner(role: RoleSettings, _embedder: Embedder) -> Captioner:
    from imagescope.models.chat import ChatCaptioner
    from imagescope.models.prompt_files import prompt_book

    chat, book = build_chat(role), prompt_book(role.prompts_dir)
    if role.max_tokens is None:
        return ChatCaptioner(chat, prompts=book)
    return ChatCaptioner(chat, max_tokens=role.max_tokens, prompts=book)


def _fake_captioner(_role: RoleSettings, _embedder: Embedder) -> Captioner:
    from imagescope.models.fakes import FakeCaptioner

    return FakeCaptioner()


REASONERS: dict[str, RoleBuilder[Reasoner]] = {
    "rule": _rule_reasoner,
    "openai": _chat_reasoner,
    "vllm": _chat_reasoner,
    "fake": _fake_reasoner,
}
VERIFIERS: dict[str, RoleBuilder[Verifier | None]] = {
    "clip": _clip_verifier,
    "openai": _chat_verifier,
    "vllm": _chat_verifier,
    "fake": _fake_verifier,
    "none": _none,
}
EVALUATORS: dict[str, RoleBuilder[Evaluator | None]] = {
    "clip": _clip_evaluator,
    "openai": _chat_evaluator,
    "vllm": _chat_evaluator,
    "fake": _fake_evaluator,
    "none": _none,
}
CAPTIONERS: dict[str, RoleBuilder[Captioner | None]] = {
    "openai": _chat_captioner,
    "vllm": _chat_captioner,
    "fake": _fake_captioner,
    "none": _none,
}
REGISTRIES: dict[str, dict[str, Any]] = {
    "embedder": EMBEDDERS,
    "reasoner": REASONERS,
    "verifier": VERIFIERS,
    "evaluator": EVALUATORS,
    "captioner": CAPTIONERS,
}


def register(role: str, kind: str, builder: RoleBuilder[Any]) -> None:
    """Adds (or replaces) the builder of ``kind`` for a role.

    How packages above the models layer offer backends without this layer
    importing them (the synthetic world's learned judges, for one):
    ``register("verifier", "learned", build)``; ``build(role_settings, embedder)``.
    """
    if role not in REGISTRIES or role == "embedder":
        roles = ", ".join(r for r in sorted(REGISTRIES) if r != "embedder")
        raise ConfigError(f"cannot register a {role!r} kind; roles: {roles}")
    REGISTRIES[role][kind] = builder


def known_kinds(role: str) -> list[str]:
    """The kinds a role accepts (``models.<role>.kind``), sorted."""
    if role not in REGISTRIES:
        raise ConfigError(f"unknown model role {role!r}; known: {', '.join(sorted(REGISTRIES))}")
    return sorted(REGISTRIES[role])


def _lookup(registry: dict[str, T], role: str, kind: str) -> T:
    if kind not in registry:
        raise ConfigError(
            f"models.{role}.kind={kind!r} is not supported; use one of: "
            f"{', '.join(sorted(registry))} (env IMAGESCOPE_MODELS__{role.upper()}__KIND)"
        )
    return registry[kind]


def build_reasoner(role: RoleSettings, embedder: Embedder | None = None) -> Reasoner:
    return _lookup(REASONERS, "reasoner", role.kind)(role, embedder)  # type: ignore[arg-type]


def build_verifier(role: RoleSettings, embedder: Embedder) -> Verifier | None:
    return _lookup(VERIFIERS, "verifier", role.kind)(role, embedder)


def build_evaluator(role: RoleSettings, embedder: Embedder) -> Evaluator | None:
    return _lookup(EVALUATORS, "evaluator", role.kind)(role, embedder)


def build_captioner(role: RoleSettings, embedder: Embedder | None = None) -> Captioner | None:
    return _lookup(CAPTIONERS, "captioner", role.kind)(role, embedder)  # type: ignore[arg-type]
