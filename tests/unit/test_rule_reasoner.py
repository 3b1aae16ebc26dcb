"""RuleReasoner: atomic edits, edited descriptions and propositions without a language model."""

from __future__ import annotations

import pytest

from imagescope.errors import EmptyQueryError, InputError
from imagescope.models.description_edit import Description
from imagescope.models.rule_reasoner import (
    RuleReasoner,
    apply_edits,
    dialog_proposition,
    parse_edits,
    turn_to_instruction,
)
from imagescope.models.word_classes import pluralize, singularize
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
        # A class name stands for the subject: "the colour" is the squares' colour.
        ("change the colour to yellow", "red squares", [(MODIFY, "squares", "yellow")]),
        ("change the colour of the car to red", None, [(MODIFY, "car", "red")]),
        ("same but blue", "a pink cross", [(RETAIN, "cross", ""), (MODIFY, "cross", "blue")]),
        ("move them to the right", "red squares", [(MODIFY, "squares", "to the right")]),
        ("put it on a navy background", "a star", [(MODIFY, "star", "on a navy background")]),
        # "put" of something the caption lacks adds it, where it goes.
        ("put a cat on the sofa", "a sofa", [(ADD, "cat", "on the sofa")]),
        ("keep only two squares", "squares", [(MODIFY, "squares", "two")]),
        ("add another square", "a square", [(ADD, "another square", "")]),
        ("remove one square", "two squares", [(REMOVE, "one square", "")]),
        ("turn them into crosses", "three stars", [(MODIFY, "stars", "crosses")]),
        ("dots instead of stripes", None, [(MODIFY, "stripes", "dots")]),
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
        ("Q: are there any people? A: no", "without people"),
        ("is the car red? yes", "make the car red"),
        ("what color is the car? blue", "make the car blue"),
        ("what colour is the background? navy", "make the background navy"),
        ("how many people are there? two", "only two people"),
        ("where is it in the picture? on the left", "put it on the left"),
        ("where are they? left", "put they on the left"),
        ("what shape is it? diamond", "turn it into diamond"),
        ("what shape is the table? round", "make the table round"),
        ("does it have a pattern? yes, dots", "with a pattern, dots"),
        ("do they have a pattern? no, plain", "without a pattern, plain"),
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


# --------------------------------------------------------------------------- descriptions


def described(instruction: str, caption: str | None) -> list[str]:
    return RuleReasoner().synthesize_intent(instruction, reference_caption=caption).descriptions


def scene(instruction: str, caption: str | None) -> str:
    """The finest of the three descriptions: the full edited scene."""
    return described(instruction, caption)[-1]


@pytest.mark.parametrize(
    ("caption", "instruction", "expected"),
    [
        # A new value replaces the old one of its class, the rest stays.
        ("red striped squares", "make them blue", "blue striped squares"),
        ("a pink striped cross", "same but blue", "a blue striped cross"),
        ("plain pink diamonds", "change the colour to yellow and make them dotted",
         "yellow dotted diamonds"),
        ("two red striped squares", "remove the stripes", "two plain red squares"),
        ("a pink dotted square", "no dots", "a plain pink square"),
        ("two purple striped triangles", "dots instead of stripes", "two purple dotted triangles"),
        # Positions and places replace the old phrase, or are added.
        ("three green crosses on a grey background", "move them to the right",
         "three green crosses on the right on a grey background"),
        ("blue stars on the left", "put them at the top", "blue stars at the top"),
        ("an orange square", "change the background to navy",
         "an orange square on a navy background"),
        ("red stars on a beige background", "put them on a white background",
         "red stars on a white background"),
        # Counts re-inflect the noun; an unknown count stays unknown.
        ("a blue star", "add another star", "two blue stars"),
        ("a plain red diamond", "add one more diamond", "two plain red diamonds"),
        ("three squares", "remove one square", "two squares"),
        ("blue squares on the right", "keep only two squares", "two blue squares on the right"),
        ("green squares", "remove one square", "green squares"),
        # Replacements keep modifiers and number, singular or plural.
        ("a pink square", "crosses instead of squares", "a pink cross"),
        ("three green stars", "turn them into crosses", "three green crosses"),
        ("two red striped circles", "turn them into triangles and add another triangle",
         "three red striped triangles"),
        ("a kitchen with an oven", "replace the oven with a fridge", "a kitchen with a fridge"),
        # Real-catalog phrasing.
        ("a woman in a long blue dress standing in a park", "same dress, but red",
         "a woman in a long red dress standing in a park"),
        ("a dog and a ball on grass", "remove the dog, add a cat", "a ball on grass, with a cat"),
        ("a living room with a sofa", "put a cat on the sofa",
         "a living room with a sofa, with a cat on the sofa"),
        ("a green t-shirt with short sleeves", "the shirt should be blue and have long sleeves",
         "a blue t-shirt with long sleeves"),
        # What the rules cannot read is kept as free text, never as "with a make it ...".
        ("a brown dog lying on a sofa", "change the dog to a cat and make it sit on the grass",
         "a brown cat lying on a sofa, sitting on the grass"),
    ],
)  # fmt: skip
def test_edits_rewrite_the_reference_caption(caption: str, instruction: str, expected: str) -> None:
    assert scene(instruction, caption) == expected


def test_a_text_query_is_its_own_finest_description() -> None:
    assert described("A dog with a red ball", None) == [
        "a dog",
        "a photo of a dog with a red ball",
        "a dog with a red ball",
    ]
    text = "at the bottom two plain pink diamonds on a beige background"
    assert described(text, None) == [
        "two plain pink diamonds",
        "two plain pink diamonds on a beige background",
        text,
    ]


def test_what_must_not_be_there_is_left_out_first() -> None:
    assert described("a beach at sunset, no people", None) == [
        "a beach",
        "a photo of a beach at sunset",
        "a beach at sunset",
    ]


@pytest.mark.parametrize(
    ("previous", "turn", "expected"),
    [
        ("a red shape", "where is it in the picture? in the centre", "a red shape in the centre"),
        (
            "pink circles",
            "what colour is the background? navy",
            "pink circles on a navy background",
        ),
        ("red shapes", "how many shapes are there? three", "three red shapes"),
        ("a red shape", "what shape is it? diamond", "a red diamond"),
        ("diamonds", "what colour are they? red", "red diamonds"),
        ("a red star", "does it have a pattern? yes, dots", "a red dotted star"),
        ("red striped squares", "do they have a pattern? no, plain", "plain red squares"),
        ("a park with trees", "is there a dog? yes", "a park with trees, with a dog"),
        (
            "a man on a street",
            "is the man wearing a hat? yes",
            "a man on a street, the man wearing a hat",
        ),
        ("a man on a street", "is he smiling? no", "a man on a street"),
    ],
)
def test_dialog_answers_merge_into_the_running_description(
    previous: str, turn: str, expected: str
) -> None:
    assert scene(turn, previous) == expected


def test_a_whole_dialog_in_one_text_is_applied_turn_by_turn() -> None:
    dialog = (
        "a red shape. where is it in the picture? in the centre. what colour is the "
        "background? navy. does it have a pattern? yes, dots. what shape is it? diamond"
    )
    assert described(dialog, None) == [
        "a red dotted diamond",
        "a red dotted diamond in the centre",
        "a red dotted diamond in the centre on a navy background",
    ]


def test_a_removal_turn_keeps_what_came_before() -> None:
    assert scene("no stripes", "two red striped squares on the left") == (
        "two plain red squares on the left"
    )


def test_description_editor_pieces() -> None:
    scene = Description("there is a woman in a long blue dress")
    assert scene.tokens[scene.subject() or 0] == "woman"
    scene.set_attribute("dress", "dark red")
    assert str(scene) == "there is a woman in a long dark red dress"
    scene.set_attribute("sleeves", "short")
    assert str(scene).endswith("with short sleeves")
    assert apply_edits("a cat.", [AtomicEdit(kind=ADD, element="hat")]) == "a cat, with a hat"
    assert [pluralize(w) for w in ("cross", "berry", "man", "dress")] == [
        "crosses",
        "berries",
        "men",
        "dresses",
    ]
    assert [singularize(w) for w in ("crosses", "horses", "people", "glass")] == [
        "cross",
        "horse",
        "person",
        "glass",
    ]


# --------------------------------------------------------------------------- propositions


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
        # One question per attribute, asked in the context of the whole description.
        (
            "make them blue",
            "three red squares on the left",
            [
                ("Are the three squares on the left blue?", True),
                ("Are the three blue squares on the left?", True),
                ("Are there three blue squares on the left?", True),
                ("Are the three blue shapes on the left squares?", True),
            ],
        ),
        (
            "at the bottom a pink diamond",
            None,
            [
                ("Is the diamond at the bottom pink?", True),
                ("Is the pink diamond at the bottom?", True),
                ("Is the pink shape at the bottom a diamond?", True),
            ],
        ),
        (
            "change the background to navy",
            "an orange square",
            [
                ("Is the square on a navy background orange?", True),
                ("Is the orange square on a navy background?", True),
                ("Is the orange shape on a navy background a square?", True),
            ],
        ),
        # A count edit asks the count even for "a".
        (
            "remove one square",
            "two squares",
            [("Is there one square?", True), ("Is the shape a square?", True)],
        ),
        # Edits never ask about placeholders ("Is there a move them?").
        ("move them to the right", None, [("Is the image on the right?", True)]),
    ],
)
def test_propositions(
    instruction: str, caption: str | None, expected: list[tuple[str, bool]]
) -> None:
    assert propositions_of(instruction, caption) == expected


def test_dialog_propositions_check_the_final_description() -> None:
    reasoner = RuleReasoner()
    found = reasoner.make_propositions(
        "red shapes. how many shapes are there? two",
        edits=parse_edits("how many shapes are there? two", reference_caption="red shapes"),
        descriptions=["two red stars at the top"],
        reference_caption=None,
    )
    assert [p.question for p in found] == [
        "Are the two stars at the top red?",
        "Are the two red stars at the top?",
        "Are there two red stars at the top?",
        "Are the two red shapes at the top stars?",
    ]


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
