"""A composed query's reference read by the verifier: probes, answers, fuller caption."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from PIL import Image

from imagescope.errors import ImageError, ModelBackendError
from imagescope.models.base import VerifyItem
from imagescope.models.fakes import FakeEmbedder, FakeVerifier
from imagescope.models.reference_details import (
    Probe,
    ReferenceReader,
    confirmed,
    probes,
    unstated,
    with_details,
)
from imagescope.models.rule_reasoner import RuleReasoner
from imagescope.pipeline.context import Components, MemoryImageSource
from imagescope.pipeline.stage2 import make_propositions
from imagescope.schemas import Answer, Trace
from imagescope.store.memory import MemoryStore

pytestmark = pytest.mark.unit

#: What the reference image shows, as the detail-reading verifier sees it.
SHOWN = {"Is the cross at the top?", "Is the background beige?"}


class DetailVerifier(FakeVerifier):
    """Yes to the questions in SHOWN (P 0.9), no to the rest (P 0.1)."""

    reads_details = True

    def verify(self, items: Sequence[VerifyItem]) -> list[Answer]:
        self.batches.append([(it.image_id, it.question) for it in items])
        return [
            Answer(yes=q in SHOWN, p_yes=0.9 if q in SHOWN else 0.1, raw="")
            for q in (it.question for it in items)
        ]


class BrokenVerifier(DetailVerifier):
    def verify(self, items: Sequence[VerifyItem]) -> list[Answer]:
        raise ModelBackendError("the model server is unreachable")


def _components(verifier: FakeVerifier) -> Components:
    return Components(
        embedder=FakeEmbedder(dim=8),
        store=MemoryStore(),
        reasoner=RuleReasoner(),
        images=MemoryImageSource({}),
        verifier=verifier,
    )


def _propositions(
    verifier: FakeVerifier, trace: Trace, loads: list[int] | None = None
) -> list[str]:
    caption, instruction = "a pink striped cross", "make it blue"
    loads = [] if loads is None else loads

    def reference() -> Image.Image:
        loads.append(1)
        return Image.new("RGB", (8, 8))

    intent = RuleReasoner().synthesize_intent(instruction, reference_caption=caption)
    props = make_propositions(
        _components(verifier),
        instruction,
        edits=intent.edits,
        descriptions=intent.descriptions,
        reference_caption=caption,
        trace=trace,
        reference=reference,
    )
    return [p.question for p in props]


def test_unstated_aspects_are_those_the_caption_leaves_out() -> None:
    assert unstated("a pink striped cross") == ["position", "background"]
    assert unstated("blue squares on the right on a grey background") == ["count", "pattern"]
    assert unstated("three plain stars on the left on a white background") == []
    assert unstated("two dogs with spots in the middle") == ["background"]


def test_probes_ask_one_question_per_generic_value() -> None:
    asked = probes("blue squares on the right")
    questions = {p.question for p in asked}
    assert "Are there exactly two squares?" in questions
    assert "Are the squares striped?" in questions
    assert "Is the background beige?" in questions
    assert {p.aspect for p in asked} == {"count", "pattern", "background"}
    assert probes("three plain stars on the left on a white background") == []


def test_confirmed_keeps_the_surest_yes_per_aspect() -> None:
    asked = [
        Probe("position", "left", "on the left", "q1"),
        Probe("position", "top", "at the top", "q2"),
        Probe("background", "grey", "on a grey background", "q3"),
    ]
    answers = [Answer(yes=True, p_yes=0.6), Answer(yes=True, p_yes=0.8), Answer(yes=False)]
    assert confirmed(asked, answers) == [asked[1]]


def test_with_details_adds_each_confirmed_detail_to_the_subject() -> None:
    found = [
        Probe("count", "2", "two", ""),
        Probe("pattern", "dotted", "dotted", ""),
        Probe("position", "top", "at the top", ""),
        Probe("background", "beige", "on a beige background", ""),
    ]
    assert with_details("blue squares", found) == (
        "two blue dotted squares at the top on a beige background"
    )
    assert with_details("a pink cross", []) == "a pink cross"


def test_stage2_reads_the_reference_when_the_verifier_reads_details() -> None:
    assert isinstance(RuleReasoner(), ReferenceReader)
    verifier, trace = DetailVerifier(), Trace()
    questions = _propositions(verifier, trace)
    # The kept details read off the reference are checked on the target, with the edit.
    assert any("blue" in q and "at the top" in q and "beige background" in q for q in questions)
    assert len(verifier.batches) == 1 and {i for i, _ in verifier.batches[0]} == {"reference"}
    assert trace.costs["verifier"].calls == 1
    assert any("at the top on a beige background" in note for note in trace.notes)


def test_stage2_leaves_the_reference_to_verifiers_that_do_not_read_details() -> None:
    verifier, trace, loads = FakeVerifier(), Trace(), []
    questions = _propositions(verifier, trace, loads)
    assert questions and not any("beige" in q for q in questions)
    assert verifier.batches == [] and "verifier" not in trace.costs
    assert loads == []  # the reference image is not even loaded


def test_a_failed_reference_reading_keeps_the_caption_propositions() -> None:
    trace = Trace()
    questions = _propositions(BrokenVerifier(), trace)
    assert questions and not any("beige" in q for q in questions)
    assert any("reference not read" in note for note in trace.notes)


def test_an_unreadable_reference_image_keeps_the_caption_propositions() -> None:
    verifier, trace = DetailVerifier(), Trace()

    def unreadable() -> Image.Image:
        raise ImageError("reference: not an image")

    props = make_propositions(
        _components(verifier),
        "make it blue",
        edits=[],
        descriptions=["a blue striped cross"],
        reference_caption="a pink striped cross",
        trace=trace,
        reference=unreadable,
    )
    assert props and not any("beige" in p.question for p in props)
    assert verifier.batches == [] and "verifier" not in trace.costs
