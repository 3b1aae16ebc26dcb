"""Stages 2 and 3 on the learned ImageScope-Judge (kind ``learned``), on the CPU.

The judge (:mod:`imagescope.synthetic.judge_model`) is a small network trained
on the synthetic world only: it reads shapes, colours, counts, patterns,
positions and backgrounds of drawn scenes, and knows nothing of photographs.
It answers a question yes only when everything the question states holds
("Are the three striped crosses purple?" is no for plain crosses).

- :class:`LearnedVerifier`: P(yes) from the verify head, per (image, question).
- :class:`LearnedEvaluator`: P(accept) from the pair head, on (reference or
  none, candidate, instruction); the reason lists the checks behind it: each
  clause of an edit instruction judged alone on the pair, and, without a
  reference, each attribute the instruction names asked of the candidate
  (then every one of them must hold too).
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL.Image import Image

from imagescope.models.base import EvaluationItem, Evaluator, Verifier, VerifyItem
from imagescope.schemas import Answer, Evaluation
from imagescope.synthetic.catalog import POSITION_PHRASES
from imagescope.synthetic.judge_data import constraints, words
from imagescope.synthetic.judge_model import MODEL_NAME, SHIPPED_JUDGE, JudgeModel

_CLAUSES = re.compile(r"\s*(?:\band\b|;|,|\.)\s*")
_LOCK = threading.Lock()
_MODELS: dict[Path, JudgeModel] = {}


def shared_judge(path: Path | None = None) -> JudgeModel:
    """One loaded judge per weights file and process (verifier and evaluator share it)."""
    key = (path or SHIPPED_JUDGE).resolve()
    with _LOCK:
        if key not in _MODELS:
            _MODELS[key] = JudgeModel(key)
        return _MODELS[key]


def judge_model_id(path: Path | None = None) -> str:
    digest = hashlib.sha256((path or SHIPPED_JUDGE).read_bytes()).hexdigest()[:8]
    return f"learned:{MODEL_NAME}@{digest}"


class LearnedVerifier(Verifier):
    """Yes when the verify head's P(yes) reaches ``threshold``.

    ``reads_details``: it reads counts, patterns, positions and backgrounds
    reliably, so stage 2 may ask it about a composed query's reference image."""

    reads_details = True

    def __init__(self, path: Path | None = None, *, threshold: float = 0.5) -> None:
        self.judge = shared_judge(path)
        self.model_id = judge_model_id(path)
        self.threshold = threshold

    def verify(self, items: Sequence[VerifyItem]) -> list[Answer]:
        """A question with a word the judge never learned is answered no (P(yes) 0):
        it cannot confirm what it cannot read ("Are there exactly four stars?")."""
        scores = self.judge.p_yes([i.image for i in items], [i.question for i in items])
        out = []
        for item, p in zip(items, scores, strict=True):
            unknown = [w for w in words(item.question) if w not in self.judge.vocab.ids]
            raw = f"{MODEL_NAME} " + (f"cannot read {unknown}" if unknown else f"p_yes={p:.3f}")
            p = 0.0 if unknown else p
            out.append(Answer(yes=p >= self.threshold and not unknown, p_yes=p, raw=raw))
        return out


def attribute_question(name: str, value: object) -> str:
    """A short question about one attribute, as the judge was trained on."""
    if name == "count":
        words = {1: "one", 2: "two", 3: "three"}
        noun = "shape" if value == 1 else "shapes"
        verb = "Is" if value == 1 else "Are"
        return f"{verb} there exactly {words.get(int(str(value)), value)} {noun}?"
    if name == "colour":
        return f"Is the colour {value}?"
    if name == "category":
        return f"Is there a {value}?"
    if name == "pattern":
        return "Is there no pattern?" if value == "plain" else f"Are the shapes {value}?"
    if name == "position":
        return f"Are the shapes {POSITION_PHRASES.get(str(value), value)}?"
    return f"Is the background {value}?"


@dataclass(frozen=True)
class _Check:
    text: str
    p: float


def _clauses(instruction: str) -> list[str]:
    parts = [p.strip() for p in _CLAUSES.split(instruction) if p.strip()]
    return parts if len(parts) > 1 else []


class LearnedEvaluator(Evaluator):
    """Accepts when the pair head's P(accept) reaches ``threshold``; explains with checks."""

    def __init__(self, path: Path | None = None, *, threshold: float = 0.5) -> None:
        self.judge = shared_judge(path)
        self.model_id = judge_model_id(path)
        self.threshold = threshold

    def evaluate(self, items: Sequence[EvaluationItem]) -> list[Evaluation]:
        return [evaluation for evaluation, _ in self.scored(items)]

    def scored(self, items: Sequence[EvaluationItem]) -> list[tuple[Evaluation, float]]:
        """Each item's evaluation and P(accept)."""
        if not items:
            return []
        scores = self.judge.p_accept(
            [i.reference for i in items],
            [i.candidate for i in items],
            [i.instruction for i in items],
        )
        return [
            (self._verdict(item, p, self._checks(item)), p)
            for item, p in zip(items, scores, strict=True)
        ]

    def _checks(self, item: EvaluationItem) -> list[_Check]:
        """Edit clauses judged alone on the pair; or attributes named, asked of the candidate."""
        if item.reference is not None:
            clauses = _clauses(item.instruction)
            refs: list[Image | None] = [item.reference] * len(clauses)
            scores = self.judge.p_accept(refs, [item.candidate] * len(clauses), clauses)
            return [_Check(c, p) for c, p in zip(clauses, scores, strict=True)]
        named = constraints(item.instruction) or {}
        questions = [attribute_question(n, v) for n, v in named.items()]
        scores = self.judge.p_yes([item.candidate] * len(questions), questions)
        return [_Check(f"{n} {v}", p) for (n, v), p in zip(named.items(), scores, strict=True)]

    def _verdict(self, item: EvaluationItem, p: float, checks: list[_Check]) -> Evaluation:
        passed = [c.text for c in checks if c.p >= self.threshold]
        failed = [c.text for c in checks if c.p < self.threshold]
        # Without a reference the checks are the request's own attributes: all must hold.
        accepted = p >= self.threshold and (item.reference is not None or not failed)
        parts = [f"P(accept)={p:.2f}"]
        if passed:
            parts.append("holds: " + "; ".join(passed))
        if failed:
            parts.append("fails: " + "; ".join(failed))
        if item.reference is not None:
            head = "shows the requested change" if accepted else "misses the requested change"
        else:
            head = "fits the request" if accepted else "does not fit the request"
        raw = ", ".join(f"{c.text}={c.p:.3f}" for c in checks)
        return Evaluation(
            accepted=accepted, reason=f"candidate {head} ({', '.join(parts)})", raw=raw
        )
