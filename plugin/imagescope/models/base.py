"""Model interfaces: the five roles of the method, and the chat transport.

Every backend implements one of these small classes; the pipeline only sees
the interfaces. Each implementation exposes ``model_id`` (recorded in traces
and in the answer-cache key).

Roles
-----
Embedder    text and images -> L2-normalised vectors in one space (CLIP).
Captioner   images -> captions (run once at ingest).
Reasoner    instruction (+ reference caption) -> Intent; edits -> Propositions.
Verifier    (image, yes/no question) -> Answer.
Evaluator   (reference, candidate, instruction) -> Evaluation ("ANSWER: Yes/No").

Chat transport
--------------
ChatModel   a batch of chat requests (text + images) -> replies, with the
            first token's top log-probabilities when asked. The OpenAI-compatible
            HTTP client and the in-process vLLM engine implement it; the
            prompt-driven roles in ``models.chat`` are written once on top of it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from PIL.Image import Image

from imagescope.schemas import Answer, AtomicEdit, DialogTurn, Evaluation, Intent, Proposition

Vectors = NDArray[np.float32]
#: One embedding, shape ``(dim,)``.
Vector = NDArray[np.float32]


class Embedder(ABC):
    """Maps text and images into one vector space.

    Contract: both methods return a float32 array of shape ``(n, dim)`` whose
    rows have unit L2 norm, in input order; an empty input gives ``(0, dim)``.
    Raises ``ModelBackendError`` when the model cannot run.
    """

    model_id: str
    dim: int

    @abstractmethod
    def embed_texts(self, texts: Sequence[str]) -> Vectors: ...

    @abstractmethod
    def embed_images(self, images: Sequence[Image]) -> Vectors: ...


class Captioner(ABC):
    """Writes one caption per image, in input order."""

    model_id: str

    @abstractmethod
    def caption(self, images: Sequence[Image]) -> list[str]: ...


class Reasoner(ABC):
    """The text-only reasoner of stages 1a and 2a.

    ``synthesize_intent`` returns at least one description (coarse to fine).
    A dialog keeps its turns: ``instruction`` is then the dialog's caption and
    ``turns`` its question/answer rounds in order (``dialog_text`` writes them
    as one text for a backend that reads text only); the intent describes the
    image after the last turn.
    Implementations repair malformed model output where they can and raise
    ``ModelOutputError`` when they cannot; the pipeline then falls back to the
    raw instruction. Transport failures raise ``ModelBackendError``.
    """

    model_id: str

    @abstractmethod
    def synthesize_intent(
        self,
        instruction: str,
        *,
        reference_caption: str | None,
        num_descriptions: int = 3,
        turns: Sequence[DialogTurn] | None = None,
    ) -> Intent: ...

    @abstractmethod
    def make_propositions(
        self,
        instruction: str,
        *,
        edits: Sequence[AtomicEdit],
        descriptions: Sequence[str],
        reference_caption: str | None,
    ) -> list[Proposition]: ...


def dialog_text(caption: str, turns: Sequence[DialogTurn] | None) -> str:
    """A dialog as one text: "caption. question? answer. question? answer"."""
    parts = [caption.strip().rstrip(".")]
    for turn in turns or ():
        parts.append(f"{turn.question.strip().rstrip('?')}? {turn.answer.strip().rstrip('.')}")
    return ". ".join(p for p in parts if p)


@dataclass(frozen=True)
class VerifyItem:
    """One yes/no question about one image (``image_id`` keys the answer cache).

    ``image_vector``: the image's stored embedding, given only to a judge whose
    ``image_vector_model`` names the embedder that wrote it; such a judge uses
    it instead of encoding ``image`` again.
    """

    image_id: str
    image: Image
    question: str
    image_vector: Vector | None = field(default=None, compare=False)


class Verifier(ABC):
    """Answers yes/no questions about single images.

    Contract: one ``Answer`` per item, in input order. ``p_yes`` is filled when
    the backend can score (token log-probabilities, similarity margins).
    ``image_vector_model``: the ``model_id`` of the embedder whose image
    vectors the verifier accepts in ``VerifyItem.image_vector`` (None: it
    reads pixels only).
    """

    model_id: str
    image_vector_model: str | None = None

    @abstractmethod
    def verify(self, items: Sequence[VerifyItem]) -> list[Answer]: ...


@dataclass(frozen=True)
class EvaluationItem:
    """A candidate judged against the reference image (if any) and the instruction."""

    candidate_id: str
    candidate: Image
    instruction: str
    reference: Image | None = None
    #: Stored embeddings of the two images (see ``VerifyItem.image_vector``).
    candidate_vector: Vector | None = field(default=None, compare=False)
    reference_vector: Vector | None = field(default=None, compare=False)


class Evaluator(ABC):
    """Stage-3 global judge. One ``Evaluation`` per item, in input order.

    ``evaluate`` may judge the items of one call against each other (see the
    backend); ``evaluate_each`` judges every item as if it were alone in its
    call. ``judges_in_bulk``: whether judging many items in one call costs
    little more than judging one (then stage 3 judges its whole shortlist at
    once, even with early exit). ``image_vector_model``: see ``Verifier``.
    """

    model_id: str
    judges_in_bulk: bool = False
    image_vector_model: str | None = None

    @abstractmethod
    def evaluate(self, items: Sequence[EvaluationItem]) -> list[Evaluation]: ...

    def evaluate_each(self, items: Sequence[EvaluationItem]) -> list[Evaluation]:
        """Each item judged alone, as ``evaluate([item])`` would judge it."""
        return [self.evaluate([item])[0] for item in items]


# --------------------------------------------------------------------------- chat transport


@dataclass(frozen=True)
class ChatRequest:
    """A single-turn chat request: images first (prefix caching), then text."""

    text: str
    images: tuple[Image, ...] = ()
    system: str | None = None
    max_tokens: int = 512
    #: Ask for the top-N log-probabilities of the first generated token.
    top_logprobs: int | None = None
    #: Ask the server for a JSON object (where supported).
    json_mode: bool = False


@dataclass
class ChatReply:
    text: str
    #: token -> log-probability for the first generated token, when requested.
    first_token_logprobs: dict[str, float] | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    extra: dict[str, object] = field(default_factory=dict)


class ChatModel(ABC):
    """Runs chat requests against one model; greedy decoding.

    Contract: one reply per request, in order. Timeouts and server errors are
    retried a bounded number of times, then raise ``ModelBackendError``.
    """

    model_id: str

    @abstractmethod
    def complete(self, requests: Sequence[ChatRequest]) -> list[ChatReply]: ...
