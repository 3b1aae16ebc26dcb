"""A reasoner whose stage-2 propositions are capped at ``limits.max_propositions``.

A model asked for propositions may return any number; each one costs a
verifier call per candidate. Rerank jobs run over this wrapper (see
``jobs.factory.job_components``), so a runaway answer costs at most the limit.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from imagescope.models.base import Reasoner
from imagescope.schemas import AtomicEdit, DialogTurn, Intent, Proposition

log = logging.getLogger(__name__)


class BoundedReasoner(Reasoner):
    def __init__(self, inner: Reasoner, *, max_propositions: int) -> None:
        self.inner = inner
        self.max_propositions = max_propositions
        self.model_id = inner.model_id

    def synthesize_intent(
        self,
        instruction: str,
        *,
        reference_caption: str | None,
        num_descriptions: int = 3,
        turns: Sequence[DialogTurn] | None = None,
    ) -> Intent:
        return self.inner.synthesize_intent(
            instruction,
            reference_caption=reference_caption,
            num_descriptions=num_descriptions,
            turns=turns,
        )

    def make_propositions(
        self,
        instruction: str,
        *,
        edits: Sequence[AtomicEdit],
        descriptions: Sequence[str],
        reference_caption: str | None,
    ) -> list[Proposition]:
        propositions = self.inner.make_propositions(
            instruction, edits=edits, descriptions=descriptions, reference_caption=reference_caption
        )
        if len(propositions) > self.max_propositions:
            log.warning(
                "reasoner %s wrote %d propositions; keeping the first %d (limits.max_propositions)",
                self.model_id,
                len(propositions),
                self.max_propositions,
            )
        return propositions[: self.max_propositions]
