"""Scripted, deterministic model roles for dry runs of the job layer.

``scripted_components`` is a components hook: point a worker (or the API's
in-process backend) at it to exercise queues, retries and merges without any
model weights, e.g. to smoke-test a deployment::

    IMAGESCOPE_MODELS__EMBEDDER__KIND=fake
    IMAGESCOPE_JOBS__COMPONENTS_HOOK=imagescope.jobs.fakes:scripted_components

Answers depend only on their inputs (hashes), so two processes give the same
result for the same request. Environment knobs (read when the hook runs):

- ``IMAGESCOPE_FAKES__VERIFY_DELAY_S``: seconds each verifier call sleeps (a
  window in which to kill a worker mid-job);
- a question containing ``explode`` makes the verifier raise a transient
  ``ModelBackendError``, one containing ``garbage`` a ``ModelOutputError``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import time
from collections.abc import Sequence

from imagescope.errors import ModelBackendError, ModelOutputError
from imagescope.models.base import (
    EvaluationItem,
    Evaluator,
    Reasoner,
    Verifier,
    VerifyItem,
    dialog_text,
)
from imagescope.pipeline.context import Components
from imagescope.schemas import Answer, AtomicEdit, DialogTurn, Evaluation, Intent, Proposition
from imagescope.settings import Settings

DELAY_ENV = "IMAGESCOPE_FAKES__VERIFY_DELAY_S"
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


def scripted_components(components: Components, settings: Settings) -> Components:
    """Components hook: the scripted reasoner, verifier and evaluator over the real store."""
    delay = float(os.environ.get(DELAY_ENV, "0") or 0)
    return dataclasses.replace(
        components,
        reasoner=KeywordReasoner(),
        verifier=HashVerifier(delay_s=delay),
        evaluator=HashEvaluator(),
    )
