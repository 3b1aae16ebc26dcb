"""Deterministic fakes of every model role, shipped for tests and dry runs.

Inject them where a real backend would go; they record their calls so tests
can assert on batching and caching.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL.Image import Image

from imagescope.errors import ModelBackendError, ModelOutputError
from imagescope.models.base import (
    Captioner,
    Embedder,
    EvaluationItem,
    Evaluator,
    Reasoner,
    Vectors,
    Verifier,
    VerifyItem,
    dialog_text,
)
from imagescope.schemas import Answer, AtomicEdit, DialogTurn, Evaluation, Intent, Proposition

#: PIL ``Image.info`` key whose text a FakeEmbedder embeds instead of the pixels.
TEXT_KEY = "imagescope_text"
_WORD = re.compile(r"[a-z0-9]+")


def _seeded_unit(token: str, dim: int) -> Vectors:
    seed = int.from_bytes(hashlib.sha256(token.encode()).digest()[:8], "little")
    vec = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    unit: Vectors = vec / np.float32(np.linalg.norm(vec))
    return unit


def _normalise(rows: Vectors) -> Vectors:
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    unit: Vectors = (rows / norms).astype(np.float32)
    return unit


class FakeEmbedder(Embedder):
    """Bag-of-words hashing: texts sharing words get similar vectors.

    An image embeds as the text in ``image.info[TEXT_KEY]`` when present, else
    as a hash of its pixels.
    """

    def __init__(self, dim: int = 64) -> None:
        self.dim = dim
        self.model_id = f"fake-embedder-{dim}"
        self.calls: list[tuple[str, int]] = []

    def _text_vector(self, text: str) -> Vectors:
        words = _WORD.findall(text.lower()) or ["<empty>"]
        return np.asarray(np.sum([_seeded_unit(w, self.dim) for w in words], axis=0))

    def embed_texts(self, texts: Sequence[str]) -> Vectors:
        self.calls.append(("text", len(texts)))
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return _normalise(np.stack([self._text_vector(t) for t in texts]))

    def embed_images(self, images: Sequence[Image]) -> Vectors:
        self.calls.append(("image", len(images)))
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        rows = []
        for image in images:
            text = image.info.get(TEXT_KEY)
            if isinstance(text, str):
                rows.append(self._text_vector(text))
            else:
                rows.append(_seeded_unit(hashlib.sha256(image.tobytes()).hexdigest(), self.dim))
        return _normalise(np.stack(rows))


class FakeCaptioner(Captioner):
    """Captions an image with its ``TEXT_KEY`` text, else a fixed string."""

    model_id = "fake-captioner"

    def caption(self, images: Sequence[Image]) -> list[str]:
        return [str(im.info.get(TEXT_KEY, "an image")) for im in images]


@dataclass
class FakeReasoner(Reasoner):
    """Returns scripted intents and propositions; can be told to fail."""

    intent: Intent | None = None
    propositions: list[Proposition] = field(default_factory=list)
    fail_with: Exception | None = None
    model_id: str = "fake-reasoner"
    intent_calls: list[tuple[str, str | None]] = field(default_factory=list)

    def synthesize_intent(
        self,
        instruction: str,
        *,
        reference_caption: str | None,
        num_descriptions: int = 3,
        turns: Sequence[DialogTurn] | None = None,
    ) -> Intent:
        instruction = dialog_text(instruction, turns) if turns else instruction
        self.intent_calls.append((instruction, reference_caption))
        if self.fail_with is not None:
            raise self.fail_with
        if self.intent is not None:
            return self.intent
        base = f"{reference_caption} {instruction}" if reference_caption else instruction
        return Intent(descriptions=[base] * num_descriptions)

    def make_propositions(
        self,
        instruction: str,
        *,
        edits: Sequence[AtomicEdit],
        descriptions: Sequence[str],
        reference_caption: str | None,
    ) -> list[Proposition]:
        if self.fail_with is not None:
            raise ModelOutputError(str(self.fail_with))
        return list(self.propositions)


class FakeVerifier(Verifier):
    """Answers from a table keyed by (image id, question), or a function."""

    def __init__(
        self,
        answers: Mapping[tuple[str, str], bool] | Callable[[str, str], bool] | None = None,
        *,
        model_id: str = "fake-verifier",
    ) -> None:
        self._answers = answers or {}
        self.model_id = model_id
        self.batches: list[list[tuple[str, str]]] = []

    def _answer(self, image_id: str, question: str) -> bool:
        if callable(self._answers):
            return self._answers(image_id, question)
        return self._answers.get((image_id, question), False)

    def verify(self, items: Sequence[VerifyItem]) -> list[Answer]:
        self.batches.append([(it.image_id, it.question) for it in items])
        out = []
        for it in items:
            yes = self._answer(it.image_id, it.question)
            out.append(Answer(yes=yes, p_yes=1.0 if yes else 0.0, raw="yes" if yes else "no"))
        return out


class FakeEvaluator(Evaluator):
    """Accepts the candidate ids it is given; records the order it was asked in."""

    def __init__(self, accept: set[str] | None = None, *, model_id: str = "fake-evaluator") -> None:
        self.accept = accept or set()
        self.model_id = model_id
        self.asked: list[str] = []

    def evaluate(self, items: Sequence[EvaluationItem]) -> list[Evaluation]:
        out = []
        for it in items:
            self.asked.append(it.candidate_id)
            ok = it.candidate_id in self.accept
            verdict = "Yes" if ok else "No"
            reason = f"fake verdict for {it.candidate_id}"
            out.append(Evaluation(accepted=ok, reason=reason, raw=f"ANSWER: {verdict}. {reason}"))
        return out


# --------------------------------------------------------------------------- scripted roles
# Deterministic by hash, for dry runs of the job layer (``imagescope.jobs.fakes``).

_WORD = re.compile(r"[a-z]+")
_STOP = frozenset({"a", "an", "the", "with", "and", "of", "on", "in", "but", "same", "it"})


def _byte(*parts: str) -> int:
    return hashlib.sha256("\x1f".join(parts).encode()).digest()[0]


class KeywordReasoner(Reasoner):
    """Descriptions from the instruction; one proposition per content word (at most 3)."""

    model_id = "scripted-reasoner"

    def synthesize_intent(
        self,
        instruction: str,
        *,
        reference_caption: str | None,
        num_descriptions: int = 3,
        turns: Sequence[DialogTurn] | None = None,
    ) -> Intent:
        instruction = dialog_text(instruction, turns) if turns else instruction
        text = f"{reference_caption}, {instruction}" if reference_caption else instruction
        return Intent(descriptions=[text] * max(1, num_descriptions))

    def make_propositions(
        self,
        instruction: str,
        *,
        edits: Sequence[AtomicEdit],
        descriptions: Sequence[str],
        reference_caption: str | None,
    ) -> list[Proposition]:
        words = [w for w in _WORD.findall(instruction.lower()) if w not in _STOP]
        unique = list(dict.fromkeys(words))[:3]
        return [
            Proposition(statement=f"there is {w}", question=f"Is there {w}?", expected=True)
            for w in unique
        ]


class HashVerifier(Verifier):
    """Says yes for about half of the (image, question) pairs, by hash."""

    model_id = "scripted-verifier"

    def __init__(self, *, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.calls = 0

    def verify(self, items: Sequence[VerifyItem]) -> list[Answer]:
        self.calls += 1
        if self.delay_s:
            time.sleep(self.delay_s)
        out = []
        for item in items:
            if "explode" in item.question:
                raise ModelBackendError("scripted verifier: the model server is unreachable")
            if "garbage" in item.question:
                raise ModelOutputError("scripted verifier: the reply is not yes or no")
            yes = _byte(item.image_id, item.question) % 2 == 0
            out.append(Answer(yes=yes, p_yes=1.0 if yes else 0.0, raw="yes" if yes else "no"))
        return out


class HashEvaluator(Evaluator):
    """Accepts about one candidate in three, by hash of its id."""

    model_id = "scripted-evaluator"

    def evaluate(self, items: Sequence[EvaluationItem]) -> list[Evaluation]:
        out = []
        for item in items:
            ok = _byte(item.candidate_id) % 3 == 0
            reason = f"scripted verdict for {item.candidate_id}"
            verdict = "Yes" if ok else "No"
            out.append(Evaluation(accepted=ok, reason=reason, raw=f"ANSWER: {verdict}. {reason}"))
        return out
