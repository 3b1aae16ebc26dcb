"""Builds model backends from settings: a registry of kinds, one short factory.

Backends are imported lazily, so a CPU install never imports vLLM and a
process that only searches never loads a verifier.
"""

from __future__ import annotations

from imagescope.errors import ConfigError
from imagescope.models.base import Captioner, ChatModel, Embedder, Evaluator, Reasoner, Verifier
from imagescope.settings import EmbedderSettings, RoleSettings


def build_embedder(settings: EmbedderSettings) -> Embedder:
    if settings.kind == "open_clip":
        from imagescope.models.open_clip_embedder import OpenClipEmbedder

        return OpenClipEmbedder(
            settings.model,
            settings.pretrained,
            device=settings.device,
            batch_size=settings.batch_size,
            config_dir=settings.config_dir,
        )
    if settings.kind == "sentence_transformers":
        from imagescope.models.st_embedder import SentenceTransformersEmbedder

        return SentenceTransformersEmbedder(
            settings.model,
            image_model=settings.image_model,
            device=settings.device,
            batch_size=settings.batch_size,
        )
    from imagescope.models.fakes import FakeEmbedder

    return FakeEmbedder()


def build_chat(role: RoleSettings) -> ChatModel:
    """The chat transport behind an ``openai`` or ``vllm`` role."""
    if role.kind == "openai":
        from imagescope.models.openai_chat import OpenAIChatModel

        return OpenAIChatModel(role.openai)
    if role.kind == "vllm":
        from imagescope.models.vllm_chat import VLLMChatModel

        return VLLMChatModel(role.vllm)
    raise ConfigError(f"role kind {role.kind!r} has no chat transport")


def _limits(role: RoleSettings) -> dict[str, int]:
    return {} if role.max_tokens is None else {"max_tokens": role.max_tokens}


def _unsupported(role_name: str, kind: str, allowed: str) -> ConfigError:
    return ConfigError(
        f"models.{role_name}.kind={kind!r} is not supported; use one of: {allowed} "
        f"(env IMAGESCOPE_MODELS__{role_name.upper()}__KIND)"
    )


def build_reasoner(role: RoleSettings) -> Reasoner:
    if role.kind == "rule":
        from imagescope.models.rule_reasoner import RuleReasoner

        return RuleReasoner()
    if role.kind in {"openai", "vllm"}:
        from imagescope.models.chat import ChatReasoner

        return ChatReasoner(build_chat(role), **_limits(role))
    if role.kind == "fake":
        from imagescope.models.fakes import FakeReasoner

        return FakeReasoner()
    raise _unsupported("reasoner", role.kind, "rule, openai, vllm, fake")


def build_verifier(role: RoleSettings, embedder: Embedder) -> Verifier | None:
    if role.kind == "none":
        return None
    if role.kind == "clip":
        from imagescope.models.clip_judge import ClipVerifier

        return ClipVerifier(embedder)
    if role.kind in {"openai", "vllm"}:
        from imagescope.models.chat import ChatVerifier

        return ChatVerifier(build_chat(role))
    if role.kind == "fake":
        from imagescope.models.fakes import FakeVerifier

        return FakeVerifier()
    raise _unsupported("verifier", role.kind, "clip, openai, vllm, fake, none")


def build_evaluator(role: RoleSettings, embedder: Embedder) -> Evaluator | None:
    if role.kind == "none":
        return None
    if role.kind == "clip":
        from imagescope.models.clip_judge import ClipEvaluator

        return ClipEvaluator(embedder)
    if role.kind in {"openai", "vllm"}:
        from imagescope.models.chat import ChatEvaluator

        return ChatEvaluator(build_chat(role), **_limits(role))
    if role.kind == "fake":
        from imagescope.models.fakes import FakeEvaluator

        return FakeEvaluator()
    raise _unsupported("evaluator", role.kind, "clip, openai, vllm, fake, none")


def build_captioner(role: RoleSettings) -> Captioner | None:
    if role.kind == "none":
        return None
    if role.kind in {"openai", "vllm"}:
        from imagescope.models.chat import ChatCaptioner

        return ChatCaptioner(build_chat(role), **_limits(role))
    if role.kind == "fake":
        from imagescope.models.fakes import FakeCaptioner

        return FakeCaptioner()
    raise _unsupported("captioner", role.kind, "openai, vllm, fake, none")
