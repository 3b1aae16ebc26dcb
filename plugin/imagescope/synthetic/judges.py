"""Offers the learned ImageScope-Judge to the model factory as kind ``learned``.

The models layer does not import the synthetic world; this module registers
the judge's builders with :func:`imagescope.models.factory.register`, and the
wiring (:mod:`imagescope.wiring`) calls :func:`register_learned_judges` before
it builds the roles. Nothing heavy is imported until a judge is built.
"""

from __future__ import annotations

from imagescope.models.base import Embedder, Evaluator, Verifier
from imagescope.models.factory import register
from imagescope.settings import RoleSettings


def _verifier(_role: RoleSettings, _embedder: Embedder) -> Verifier:
    from imagescope.synthetic.judge_backend import LearnedVerifier

    return LearnedVerifier()


def _evaluator(_role: RoleSettings, _embedder: Embedder) -> Evaluator:
    from imagescope.synthetic.judge_backend import LearnedEvaluator

    return LearnedEvaluator()


def register_learned_judges() -> None:
    """Registers kind ``learned`` for the verifier and the evaluator (idempotent)."""
    register("verifier", "learned", _verifier)
    register("evaluator", "learned", _evaluator)
