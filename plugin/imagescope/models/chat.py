"""The prompt-driven roles, written once on top of any ChatModel transport.

``ChatReasoner``, ``ChatVerifier``, ``ChatEvaluator`` and ``ChatCaptioner``
turn role calls into ``ChatRequest`` batches (texts and parsers from a
:class:`~imagescope.models.prompt_files.PromptBook`: the built-in prompts of
:mod:`.prompts`, or a folder of prompt files), send them through the injected
:class:`~imagescope.models.base.ChatModel` (the OpenAI-compatible HTTP client
or in-process vLLM) and parse the replies. The transport's model profile
(:mod:`.profiles`) sets image sizes, the verifier's question format and how
its yes/no is read.

Each role counts its model calls and tokens in ``usage`` (a :class:`Usage`),
which the pipeline reads for cost accounting.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from PIL.Image import Image

from imagescope.errors import (
    ConfigError,
    EmptyQueryError,
    InputError,
    ModelBackendError,
    ModelOutputError,
)
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
    dialog_text,
)
from imagescope.models.compose import Compose, evaluation_images, fit_image
from imagescope.models.compose import compose_side_by_side as compose_side_by_side
from imagescope.models.profiles import ModelProfile, profile_named
from imagescope.models.prompt_files import BUILTIN, PromptBook
from imagescope.schemas import Answer, AtomicEdit, DialogTurn, Evaluation, Intent, Proposition

logger = logging.getLogger(__name__)

#: How many first-token alternatives the verifier asks for.
VERIFY_TOP_LOGPROBS = 10
#: Tokens a verifier whose yes/no is read from the text may write.
VERIFY_TEXT_TOKENS = 3


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
    """Shared plumbing: the transport, its profile, the prompt book, usage, reply counts.

    ``model_id`` (part of the answer-cache key) names the transport's model, the
    prompt book's version and, when the transport has one, the profile's digest.
    """

    def __init__(self, chat: ChatModel, *, prompts: PromptBook | None = None) -> None:
        self.chat = chat
        self.book = prompts or BUILTIN
        profile = getattr(chat, "profile", None)
        self.profile: ModelProfile = (
            profile if isinstance(profile, ModelProfile) else profile_named("generic")
        )
        self.usage = Usage()
        self.model_id = f"{chat.model_id}#prompts-{self.book.version}"
        if profile is not None:  # the transport's profile shapes the requests too
            self.model_id += f"#profile-{self.profile.name}-{self.profile.digest}"

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
        self,
        chat: ChatModel,
        *,
        max_tokens: int = 512,
        max_propositions: int = 8,
        prompts: PromptBook | None = None,
    ) -> None:
        super().__init__(chat, prompts=prompts)
        if max_tokens < 1 or max_propositions < 1:
            raise InputError("max_tokens and max_propositions must be at least 1")
        self.max_tokens = max_tokens
        self.max_propositions = max_propositions

    def _ask_json(self, text: str) -> str:
        request = ChatRequest(
            text=text,
            system=self.book.reasoner_system,
            max_tokens=self.max_tokens,
            json_mode=self.book.json_mode,
        )
        return self._complete([request])[0].text

    def synthesize_intent(
        self,
        instruction: str,
        *,
        reference_caption: str | None,
        num_descriptions: int = 3,
        turns: Sequence[DialogTurn] | None = None,
    ) -> Intent:
        instruction = dialog_text(instruction, turns) if turns else instruction
        if not instruction.strip():
            raise EmptyQueryError("the instruction is empty; say what the wanted image shows")
        if num_descriptions < 1:
            raise InputError("num_descriptions must be at least 1")
        reply = self._ask_json(
            self.book.intent_text(
                instruction, reference_caption=reference_caption, num_descriptions=num_descriptions
            )
        )
        return self.book.parse_intent(reply, num_descriptions=num_descriptions)

    def make_propositions(
        self,
        instruction: str,
        *,
        edits: Sequence[AtomicEdit],
        descriptions: Sequence[str],
        reference_caption: str | None,
    ) -> list[Proposition]:
        reply = self._ask_json(
            self.book.propositions_text(
                instruction,
                edits=edits,
                descriptions=descriptions,
                reference_caption=reference_caption,
                max_propositions=self.max_propositions,
            )
        )
        return self.book.parse_propositions(reply, max_propositions=self.max_propositions)


# --------------------------------------------------------------------------- verifier


def answer_from_reply(reply: ChatReply, *, use_logprobs: bool = True) -> Answer:
    """Yes/no from first-token log-probabilities (when used), else from the text.

    An unparseable reply gives ``Answer(yes=False, p_yes=None)`` and a warning:
    one odd reply must not fail a whole rerank job.
    """
    if use_logprobs and reply.first_token_logprobs:
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
    batches of ``batch_size``. The profile sets the image size, the question
    format and the reading: one token and its log-probabilities, or (``text``)
    a few tokens whose first word is read.
    """

    def __init__(self, chat: ChatModel, *, batch_size: int = 64) -> None:
        super().__init__(chat)
        if batch_size < 1:
            raise InputError("batch_size must be at least 1")
        self.batch_size = batch_size
        self._use_logprobs = self.profile.yes_no == "logprobs"

    def _request(self, item: VerifyItem) -> ChatRequest:
        text = self.profile.verify_text(item.question, prompts.verify_prompt(item.question))
        return ChatRequest(
            text=text,
            images=(fit_image(item.image, self.profile),),
            max_tokens=1 if self._use_logprobs else VERIFY_TEXT_TOKENS,
            top_logprobs=VERIFY_TOP_LOGPROBS if self._use_logprobs else None,
        )

    def verify(self, items: Sequence[VerifyItem]) -> list[Answer]:
        answers: list[Answer] = []
        for start in range(0, len(items), self.batch_size):
            requests = [self._request(item) for item in items[start : start + self.batch_size]]
            answers.extend(
                answer_from_reply(r, use_logprobs=self._use_logprobs)
                for r in self._complete(requests)
            )
        return answers


# --------------------------------------------------------------------------- evaluator


class ChatEvaluator(_ChatRole, Evaluator):
    """Stage 3 with a vision-language model judging reference and candidate together.

    With the built-in prompts the reply must start with ``ANSWER: Yes`` or
    ``ANSWER: No`` and a short reason; an unparseable reply is not accepted
    (reason ``"unparseable evaluator reply"``). ``compose``: one side-by-side
    image (reference left), or ``separate`` images, which the model's profile
    must allow (else ``ConfigError``).
    """

    def __init__(
        self,
        chat: ChatModel,
        *,
        max_tokens: int = 128,
        compose: Compose = "side_by_side",
        prompts: PromptBook | None = None,
    ) -> None:
        super().__init__(chat, prompts=prompts)
        if max_tokens < 1:
            raise InputError("max_tokens must be at least 1")
        if compose == "separate" and self.profile.max_images < 2:
            raise ConfigError(
                f"evaluator compose=separate sends two images per prompt, but "
                f"{chat.model_id} (profile {self.profile.name!r}) takes "
                f"{self.profile.max_images}; use compose=side_by_side "
                "(IMAGESCOPE_MODELS__EVALUATOR__COMPOSE)"
            )
        self.max_tokens = max_tokens
        self.compose: Compose = compose

    def _request(self, item: EvaluationItem) -> ChatRequest:
        return ChatRequest(
            text=self.book.evaluate_text(
                item.instruction, has_reference=item.reference is not None, layout=self.compose
            ),
            images=evaluation_images(
                item.reference, item.candidate, profile=self.profile, compose=self.compose
            ),
            max_tokens=self.max_tokens,
        )

    def evaluate(self, items: Sequence[EvaluationItem]) -> list[Evaluation]:
        requests = [self._request(item) for item in items]
        return [self.book.parse_evaluation(r.text) for r in self._complete(requests)]


# --------------------------------------------------------------------------- captioner


class ChatCaptioner(_ChatRole, Captioner):
    """Ingest-time captions from a vision-language model, one request per image.

    An empty reply raises ``ModelOutputError`` naming the image's position, so
    the ingest run can record the failure instead of storing an empty caption.
    """

    def __init__(
        self, chat: ChatModel, *, max_tokens: int = 96, prompts: PromptBook | None = None
    ) -> None:
        super().__init__(chat, prompts=prompts)
        if max_tokens < 1:
            raise InputError("max_tokens must be at least 1")
        self.max_tokens = max_tokens

    def caption(self, images: Sequence[Image]) -> list[str]:
        text = self.book.caption_text()
        if self.book is BUILTIN and self.profile.caption_text is not None:
            text = self.profile.caption_text
        requests = [
            ChatRequest(
                text=text, images=(fit_image(image, self.profile),), max_tokens=self.max_tokens
            )
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
