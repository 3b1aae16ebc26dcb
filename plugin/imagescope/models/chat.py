"""The prompt-driven roles, written once on top of any ChatModel transport.

``ChatReasoner``, ``ChatVerifier``, ``ChatEvaluator`` and ``ChatCaptioner``
turn role calls into ``ChatRequest`` batches (prompts in :mod:`.prompts`), send
them through the injected :class:`~imagescope.models.base.ChatModel` (the
OpenAI-compatible HTTP client or in-process vLLM) and parse the replies.

Each role counts its model calls and tokens in ``usage`` (a :class:`Usage`),
which the pipeline reads for cost accounting.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from PIL import Image as PILImage
from PIL.Image import Image

from imagescope.errors import EmptyQueryError, InputError, ModelBackendError, ModelOutputError
from imagescope.models import prompts
from imagescope.models.base import (
    Captioner,
    ChatModel,
    ChatReply,
    ChatRequest,
    EvaluationItem,
    Evaluator,
    Reasoner,
    Verifier,
    VerifyItem,
)
from imagescope.schemas import Answer, AtomicEdit, Evaluation, Intent, Proposition

logger = logging.getLogger(__name__)

#: How many first-token alternatives the verifier asks for.
VERIFY_TOP_LOGPROBS = 10


@dataclass
class Usage:
    """Model calls (one per chat request) and tokens spent by one role instance.

    Thread-safe; read a consistent copy with :meth:`snapshot`.
    """

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    _lock: threading.Lock = field(
        default_factory=threading.Lock, init=False, repr=False, compare=False
    )

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def record(self, replies: Sequence[ChatReply]) -> None:
        with self._lock:
            self.calls += len(replies)
            self.prompt_tokens += sum(r.prompt_tokens for r in replies)
            self.completion_tokens += sum(r.completion_tokens for r in replies)

    def snapshot(self) -> Usage:
        with self._lock:
            return Usage(self.calls, self.prompt_tokens, self.completion_tokens)


class _ChatRole:
    """Shared plumbing: the transport, the usage counter, the reply-count check."""

    def __init__(self, chat: ChatModel) -> None:
        self.chat = chat
        self.usage = Usage()
        self.model_id = f"{chat.model_id}#prompts-{prompts.PROMPT_VERSION}"

    def _complete(self, requests: Sequence[ChatRequest]) -> list[ChatReply]:
        if not requests:
            return []
        replies = self.chat.complete(requests)
        if len(replies) != len(requests):
            raise ModelBackendError(
                f"{self.chat.model_id} returned {len(replies)} replies for {len(requests)} requests"
            )
        self.usage.record(replies)
        return replies


# --------------------------------------------------------------------------- reasoner


class ChatReasoner(_ChatRole, Reasoner):
    """Stages 1a and 2a with an instruction-following LLM (JSON replies, repaired).

    Raises ``ModelOutputError`` when a reply stays unusable after repair (the
    pipeline then falls back to the raw instruction) and ``ModelBackendError``
    when the transport fails.
    """

    def __init__(
        self, chat: ChatModel, *, max_tokens: int = 512, max_propositions: int = 8
    ) -> None:
        super().__init__(chat)
        if max_tokens < 1 or max_propositions < 1:
            raise InputError("max_tokens and max_propositions must be at least 1")
        self.max_tokens = max_tokens
        self.max_propositions = max_propositions

    def _ask_json(self, text: str) -> str:
        request = ChatRequest(
            text=text, system=prompts.REASONER_SYSTEM, max_tokens=self.max_tokens, json_mode=True
        )
        return self._complete([request])[0].text

    def synthesize_intent(
        self, instruction: str, *, reference_caption: str | None, num_descriptions: int = 3
    ) -> Intent:
        if not instruction.strip():
            raise EmptyQueryError("the instruction is empty; say what the wanted image shows")
        if num_descriptions < 1:
            raise InputError("num_descriptions must be at least 1")
        reply = self._ask_json(
            prompts.intent_prompt(
                instruction, reference_caption=reference_caption, num_descriptions=num_descriptions
            )
        )
        return prompts.parse_intent(reply, num_descriptions=num_descriptions)

    def make_propositions(
        self,
        instruction: str,
        *,
        edits: Sequence[AtomicEdit],
        descriptions: Sequence[str],
        reference_caption: str | None,
    ) -> list[Proposition]:
        reply = self._ask_json(
            prompts.propositions_prompt(
                instruction,
                edits=edits,
                descriptions=descriptions,
                reference_caption=reference_caption,
                max_propositions=self.max_propositions,
            )
        )
        return prompts.parse_propositions(reply, max_propositions=self.max_propositions)


# --------------------------------------------------------------------------- verifier


def answer_from_reply(reply: ChatReply) -> Answer:
    """Yes/no from first-token log-probabilities, else from the text.

    An unparseable reply gives ``Answer(yes=False, p_yes=None)`` and a warning:
    one odd reply must not fail a whole rerank job.
    """
    if reply.first_token_logprobs:
        p_yes = prompts.yes_probability(reply.first_token_logprobs)
        if p_yes is not None:
            return Answer(yes=p_yes > 0.5, p_yes=p_yes, raw=reply.text)
    said_yes = prompts.parse_yes_no(reply.text)
    if said_yes is None:
        logger.warning("verifier reply is neither yes nor no: %r", reply.text[:80])
        return Answer(yes=False, p_yes=None, raw=reply.text)
    return Answer(yes=said_yes, p_yes=None, raw=reply.text)


class ChatVerifier(_ChatRole, Verifier):
    """Stage 2b with a vision-language model: one generated token per question.

    The image precedes the question in every request, so the questions asked
    about one image share a cacheable prefix. Items go to the transport in
    batches of ``batch_size``.
    """

    def __init__(self, chat: ChatModel, *, batch_size: int = 64) -> None:
        super().__init__(chat)
        if batch_size < 1:
            raise InputError("batch_size must be at least 1")
        self.batch_size = batch_size

    def verify(self, items: Sequence[VerifyItem]) -> list[Answer]:
        answers: list[Answer] = []
        for start in range(0, len(items), self.batch_size):
            batch = items[start : start + self.batch_size]
            requests = [
                ChatRequest(
                    text=prompts.verify_prompt(item.question),
                    images=(item.image,),
                    max_tokens=1,
                    top_logprobs=VERIFY_TOP_LOGPROBS,
                )
                for item in batch
            ]
            answers.extend(answer_from_reply(r) for r in self._complete(requests))
        return answers


# --------------------------------------------------------------------------- evaluator


def _to_height(image: Image, height: int) -> Image:
    width = max(1, round(image.width * height / image.height))
    return image.convert("RGB").resize((width, height), PILImage.Resampling.BICUBIC)


def compose_side_by_side(
    reference: Image | None, candidate: Image, *, max_height: int = 448, gap: int = 16
) -> Image:
    """Reference on the left, candidate on the right, both scaled to one height.

    The height is the taller image's, capped at ``max_height``. Without a
    reference the left panel is blank (white) and as large as the candidate's.
    A grey ``gap``-pixel bar separates the panels.
    """
    tallest = max(candidate.height, reference.height if reference is not None else 0)
    height = min(max_height, tallest)
    right = _to_height(candidate, height)
    if reference is None:
        left = PILImage.new("RGB", right.size, (255, 255, 255))
    else:
        left = _to_height(reference, height)
    canvas = PILImage.new("RGB", (left.width + gap + right.width, height), (128, 128, 128))
    canvas.paste(left, (0, 0))
    canvas.paste(right, (left.width + gap, 0))
    return canvas


class ChatEvaluator(_ChatRole, Evaluator):
    """Stage 3 with a vision-language model judging reference and candidate together.

    The reply must start with ``ANSWER: Yes`` or ``ANSWER: No`` and a short
    reason; an unparseable reply is not accepted (reason
    ``"unparseable evaluator reply"``).
    """

    def __init__(self, chat: ChatModel, *, max_tokens: int = 128) -> None:
        super().__init__(chat)
        if max_tokens < 1:
            raise InputError("max_tokens must be at least 1")
        self.max_tokens = max_tokens

    def evaluate(self, items: Sequence[EvaluationItem]) -> list[Evaluation]:
        requests = [
            ChatRequest(
                text=prompts.evaluate_prompt(
                    item.instruction, has_reference=item.reference is not None
                ),
                images=(compose_side_by_side(item.reference, item.candidate),),
                max_tokens=self.max_tokens,
            )
            for item in items
        ]
        return [prompts.parse_evaluation(r.text) for r in self._complete(requests)]


# --------------------------------------------------------------------------- captioner


class ChatCaptioner(_ChatRole, Captioner):
    """Ingest-time captions from a vision-language model, one request per image.

    An empty reply raises ``ModelOutputError`` naming the image's position, so
    the ingest run can record the failure instead of storing an empty caption.
    """

    def __init__(self, chat: ChatModel, *, max_tokens: int = 96) -> None:
        super().__init__(chat)
        if max_tokens < 1:
            raise InputError("max_tokens must be at least 1")
        self.max_tokens = max_tokens

    def caption(self, images: Sequence[Image]) -> list[str]:
        requests = [
            ChatRequest(text=prompts.CAPTION_PROMPT, images=(image,), max_tokens=self.max_tokens)
            for image in images
        ]
        captions = [prompts.clean_caption(r.text) for r in self._complete(requests)]
        empty = [i for i, c in enumerate(captions) if not c]
        if empty:
            raise ModelOutputError(
                f"{self.chat.model_id} returned an empty caption for image(s) at "
                f"position {empty} of the batch"
            )
        return captions
