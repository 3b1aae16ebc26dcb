"""RuleReasoner: atomic edits, descriptions and propositions without a language model."""

from __future__ import annotations

import pytest

from imagescope.errors import EmptyQueryError, InputError
from imagescope.models.rule_reasoner import (
    RuleReasoner,
    dialog_proposition,
    parse_edits,
    turn_to_instruction,
)
from imagescope.schemas import AtomicEdit, EditKind

pytestmark = pytest.mark.unit

ADD, REMOVE, MODIFY = EditKind.ADDITION, EditKind.REMOVAL, EditKind.MODIFICATION
COMPARE, RETAIN = EditKind.COMPARISON, EditKind.RETENTION


@pytest.mark.parametrize(
    ("instruction", "caption", "expected"),
    [
        (
            "same dress, but red, long sleeves",
            "a woman in a blue dress",
            [(RETAIN, "dress", ""), (MODIFY, "dress", "red"), (MODIFY, "sleeves", "long")],
        ),
        (
            "remove the dog and add a cat on the sofa",
            None,
            [(REMOVE, "dog", ""), (ADD, "cat", "on the sofa")],
        ),
        (
            "without people; keep the background",
            None,
            [(REMOVE, "people", ""), (RETAIN, "background", "")],
        ),
        ("no hat", None, [(REMOVE, "hat", "")]),
        ("replace the oven with a fridge", None, [(MODIFY, "oven", "fridge")]),
        ("a cat instead of a dog", None, [(MODIFY, "dog", "cat")]),
        ("change the car to red", None, [(MODIFY, "car", "red")]),
        ("shirt -> jacket", None, [(MODIFY, "shirt", "jacket")]),
        ("make the sofa green", None, [(MODIFY, "sofa", "green")]),
        ("the sky is cloudy", None, [(MODIFY, "sky", "cloudy")]),
        ("make it brighter", "a street at night", [(COMPARE, "street", "brighter")]),
        ("more people", None, [(COMPARE, "people", "more")]),
        ("a bigger dog", None, [(COMPARE, "dog", "bigger")]),
        ("the tree is taller than the house", None, [(COMPARE, "tree", "taller")]),
        ("keep the red car", None, [(RETAIN, "red car", "")]),
        ("still has a hat", None, [(RETAIN, "hat", "")]),
        ("a dog with a ball", None, [(ADD, "dog", ""), (ADD, "ball", "")]),
        (
            "a man walking on a street at night",
            None,
            [(ADD, "man walking", "on a street at night")],
        ),
        ("in black", "a striped shirt", [(MODIFY, "shirt", "black")]),
    ],
)
def test_instruction_to_edits(
    instruction: str, caption: str | None, expected: list[tuple[EditKind, str, str]]
) -> None:
    edits = parse_edits(instruction, reference_caption=caption)
    assert [(e.kind, e.element, e.detail) for e in edits] == expected


@pytest.mark.parametrize(
    ("turn", "instruction"),
    [
        ("is there a dog? yes", "with a dog"),
        ("Q: are there any people? A: no", "without any people"),
        ("is the car red? yes", "make the car red"),
        ("what color is the car? blue", "make the car blue"),
        ("how many people are there? two", "with two people"),
        ("what is the man holding? an umbrella", "with an umbrella"),
        ("a plain instruction", "a plain instruction"),
    ],
)
def test_dialog_turns_become_instructions(turn: str, instruction: str) -> None:
    assert turn_to_instruction(turn) == instruction


def test_yes_no_dialog_turn_is_itself_a_proposition() -> None:
    proposition = dialog_proposition("is the dog brown? no")
    assert proposition is not None
    assert (proposition.question, proposition.expected) == ("Is the dog brown?", False)
    assert dialog_proposition("what colour is the dog? brown") is None


def propositions_of(instruction: str, caption: str | None = None) -> list[tuple[str, bool]]:
    reasoner = RuleReasoner()
    intent = reasoner.synthesize_intent(instruction, reference_caption=caption)
    found = reasoner.make_propositions(
        instruction, edits=intent.edits, descriptions=intent.descriptions, reference_caption=caption
    )
    return [(p.question, p.expected) for p in found]


@pytest.mark.parametrize(
    ("instruction", "caption", "expected"),
    [
        (
            "replace the oven with a fridge",
            "a kitchen with an oven",
            [("Is there a fridge?", True), ("Is there an oven?", False)],
        ),
        (
            "same dress, but red, long sleeves",
            None,
            [
                ("Is there a dress?", True),
                ("Is the dress red?", True),
                ("Are the sleeves long?", True),
            ],
        ),
        ("without people", None, [("Are there people?", False)]),
        ("remove the umbrella", None, [("Is there an umbrella?", False)]),
        ("add some grass", None, [("Is there grass?", True)]),
        ("more dogs", None, [("Are there many dogs?", True)]),
        ("fewer cars", None, [("Are there many cars?", False)]),
        ("a bigger dog", None, [("Is there a dog?", True), ("Is the dog big?", True)]),
        ("is there a cat? no", "a sofa", [("Is there a cat?", False)]),
    ],
)
def test_propositions(
    instruction: str, caption: str | None, expected: list[tuple[str, bool]]
) -> None:
    assert propositions_of(instruction, caption) == expected


def test_statements_match_the_expected_answer() -> None:
    reasoner = RuleReasoner()
    edits = [
        AtomicEdit(kind=ADD, element="fridge"),
        AtomicEdit(kind=REMOVE, element="ovens"),
        AtomicEdit(kind=MODIFY, element="dress", detail="red"),
    ]
    found = reasoner.make_propositions("x", edits=edits, descriptions=["d"], reference_caption=None)
    assert [p.statement for p in found] == [
        "There is a fridge.",
        "There are no ovens.",
        "The dress is red.",
    ]


def test_at_least_one_proposition() -> None:
    found = RuleReasoner().make_propositions(
        "just vibes?!", edits=[], descriptions=["d"], reference_caption=None
    )
    assert len(found) >= 1 and all(p.question.endswith("?") for p in found)
    # Even an instruction whose every clause is dropped gets a generic check.
    fallback = RuleReasoner().make_propositions(
        "is the dog brown? maybe", edits=[], descriptions=["a dog"], reference_caption=None
    )
    assert len(fallback) == 1 and fallback[0].expected is True


def test_three_descriptions_coarse_to_fine_for_a_composed_query() -> None:
    intent = RuleReasoner().synthesize_intent(
        "same dress, but red, long sleeves",
        reference_caption="a woman in a long blue dress standing in a park",
    )
    core, detailed, full = intent.descriptions
    assert core == "dress, sleeves"
    assert detailed == "red dress, long sleeves"
    assert full == (
        "a woman in a long red dress standing in a park. same dress, but red, long sleeves"
    )
    assert intent.fallback is False and intent.reasoning


def test_removed_elements_leave_the_descriptions() -> None:
    intent = RuleReasoner().synthesize_intent(
        "remove the dog, add a cat", reference_caption="a dog and a ball on grass"
    )
    core, detailed, full = intent.descriptions
    assert "dog" not in core and "cat" in core
    assert detailed == "no dog, cat"
    assert full.startswith("a ball on grass, with a cat.")


def test_replacement_rewrites_the_reference_caption() -> None:
    intent = RuleReasoner().synthesize_intent(
        "replace the oven with a fridge", reference_caption="a kitchen with an oven"
    )
    assert intent.descriptions == [
        "fridge",
        "a kitchen with a fridge. replace the oven with a fridge",
    ]


def test_text_query_keeps_the_instruction_as_finest_description() -> None:
    intent = RuleReasoner().synthesize_intent("A dog with a red ball", reference_caption=None)
    assert intent.descriptions[-1] == "A dog with a red ball"
    assert intent.descriptions[0] == "dog, ball"
    one = RuleReasoner().synthesize_intent(
        "A dog with a red ball", reference_caption=None, num_descriptions=1
    )
    assert one.descriptions == ["A dog with a red ball"]


def test_dialog_refinement_builds_on_the_previous_description() -> None:
    intent = RuleReasoner().synthesize_intent(
        "is there a dog? yes", reference_caption="a park with trees"
    )
    assert intent.edits == [AtomicEdit(kind=ADD, element="dog")]
    assert intent.descriptions[-1] == "a park with trees, with a dog. is there a dog? yes"


def test_deterministic() -> None:
    runs = {
        RuleReasoner()
        .synthesize_intent("remove the hat, make the coat longer", reference_caption="a man")
        .model_dump_json()
        for _ in range(3)
    }
    assert len(runs) == 1


def test_bad_input() -> None:
    with pytest.raises(EmptyQueryError):
        RuleReasoner().synthesize_intent(" ", reference_caption=None)
    with pytest.raises(InputError):
        RuleReasoner().synthesize_intent("a dog", reference_caption=None, num_descriptions=0)
    assert RuleReasoner.model_id == "rule"
