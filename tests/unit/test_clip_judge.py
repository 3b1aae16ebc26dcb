"""Zero-shot verifier and evaluator on a controlled embedder, plus question rewriting."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pytest
from PIL import Image

from imagescope.errors import ConfigError, InputError
from imagescope.models.base import Embedder, EvaluationItem, VerifyItem
from imagescope.models.clip_judge import (
    ClipEvaluator,
    ClipVerifier,
    StatementPair,
    question_to_contrast,
    question_to_statements,
)

pytestmark = pytest.mark.unit

DIM = 6


def unit(*values: float) -> np.ndarray:
    vector = np.zeros(DIM, dtype=np.float32)
    vector[: len(values)] = values
    return vector / np.linalg.norm(vector)


#: Where every text the test does not place lands: far from the placed ones.
ELSEWHERE = unit(0, 0, 0, 0, 0, 1)


class TableEmbedder(Embedder):
    """Texts and images (keyed by their solid colour) map to vectors set by the test."""

    model_id = "table"
    dim = DIM

    def __init__(self, texts: dict[str, np.ndarray], images: Mapping[tuple[int, ...], np.ndarray]):
        self.texts = texts
        self.images = images
        self.text_calls: list[list[str]] = []
        self.image_calls: list[int] = []

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        self.text_calls.append(list(texts))
        return np.stack([self.texts.get(t, ELSEWHERE) for t in texts]).astype(np.float32)

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        self.image_calls.append(len(images))
        return np.stack([self.images[colour_of(im)] for im in images]).astype(np.float32)


def colour_of(image: Image.Image) -> tuple[int, ...]:
    pixel = image.getpixel((0, 0))
    assert isinstance(pixel, tuple)
    return tuple(int(v) for v in pixel)


def solid(rgb: tuple[int, ...]) -> Image.Image:
    return Image.new("RGB", (4, 4), rgb)


Colour = tuple[int, ...]
RED: Colour = (255, 0, 0)
BLUE: Colour = (0, 0, 255)
GREEN: Colour = (0, 255, 0)
GREY: Colour = (128, 128, 128)


# --------------------------------------------------------------------------- questions


@pytest.mark.parametrize(
    ("question", "positive", "negative"),
    [
        ("Is there a fridge?", "a photo with a fridge", "a photo without a fridge"),
        ("is there any milk?", "a photo with milk", "a photo without milk"),
        ("Are there two dogs on the bed?", "a photo with two dogs on the bed",
         "a photo without two dogs on the bed"),
        ("Can you see a car?", "a photo with a car", "a photo without a car"),
        ("Is the dress red?", "a photo where the dress is red",
         "a photo where the dress is not red"),
        ("Is the cat on the sofa?", "a photo where the cat is on the sofa",
         "a photo where the cat is not on the sofa"),
        ("Is a man riding a horse?", "a photo where a man is riding a horse",
         "a photo where a man is not riding a horse"),
        ("Is this a kitchen?", "a photo of a kitchen", "a photo that is not of a kitchen"),
        ("Does the shirt have long sleeves?", "a photo of the shirt with long sleeves",
         "a photo of the shirt without long sleeves"),
        ("Does the dog carry a stick?", "a photo where the dog carries a stick",
         "a photo where the dog does not carry a stick"),
        ("  Is   there a   lamp ? ", "a photo with a lamp", "a photo without a lamp"),
        ("What colour is the car?", "a photo showing what colour is the car",
         "a photo not showing what colour is the car"),
    ],
)  # fmt: skip
def test_question_to_statements(question: str, positive: str, negative: str) -> None:
    assert question_to_statements(question) == StatementPair(positive, negative)


def test_empty_question_is_rejected() -> None:
    with pytest.raises(InputError, match="yes/no question"):
        question_to_statements(" ? ")
    with pytest.raises(InputError):
        question_to_contrast("?")


@pytest.mark.parametrize(
    ("question", "positive", "some_alternatives"),
    [
        # An adjective is swapped for the other values of its class, in context.
        ("Are the two squares on the left pink?", "a photo of two pink squares on the left",
         ["a photo of two red squares on the left", "a photo of two green squares on the left"]),
        ("Is the dress dark blue?", "a photo of a dark blue dress",
         ["a photo of a red dress", "a photo of an orange dress"]),
        ("Is the blue cross striped?", "a photo of a blue striped cross",
         ["a photo of a plain blue cross", "a photo of a blue dotted cross"]),
        # A trailing position moves the subject.
        ("Are the pink squares on a white background on the left?",
         "a photo of pink squares on the left on a white background",
         ["a photo of pink squares at the top on a white background"]),
        # A class word in the last phrase is swapped there.
        ("Is the orange square on a navy background?",
         "a photo of an orange square on a navy background",
         ["a photo of an orange square on a white background"]),
        # A count is contrasted with its neighbours, a kind with the other kinds.
        ("Are there two pink squares?", "a photo of two pink squares",
         ["a photo of a pink square", "a photo of three pink squares"]),
        ("Is the pink shape a square?", "a photo of a pink square",
         ["a photo of a pink circle", "a photo of a pink star"]),
        ("Is there a red star?", "a photo of a red star", ["a photo of a red diamond"]),
    ],
)  # fmt: skip
def test_question_to_contrast(question: str, positive: str, some_alternatives: list[str]) -> None:
    contrast = question_to_contrast(question)
    assert contrast.positive == positive
    assert set(some_alternatives) <= set(contrast.alternatives)
    assert positive not in contrast.alternatives


def test_a_shade_is_not_contrasted_with_its_own_colour() -> None:
    alternatives = question_to_contrast("Is the dress dark blue?").alternatives
    assert "a photo of a blue dress" not in alternatives
    assert "a photo of a red dress" in alternatives


def test_a_question_with_nothing_to_swap_keeps_its_statements() -> None:
    contrast = question_to_contrast("Is there a dog?")
    assert contrast.alternatives == ()
    assert (contrast.positive, contrast.negative) == ("a photo with a dog", "a photo without a dog")


# --------------------------------------------------------------------------- verifier

RED_DRESS = "a photo of a red dress"
BLUE_DRESS = "a photo of a blue dress"
DOG = question_to_contrast("Is there a dog?")


def dress_embedder() -> TableEmbedder:
    texts = {
        RED_DRESS: unit(1, 0, 0, 0),
        BLUE_DRESS: unit(0, 1, 0, 0),
        DOG.positive: unit(0, 0, 1, 0),
        DOG.negative: unit(0, 0, 0, 1),
        "a photo": unit(0, 0, 0, 0, 1),
    }
    images = {
        RED: unit(0.9, 0.1, 0.9, 0.2, 0.4),  # red dress, a dog
        BLUE: unit(0.1, 0.9, 0.3, 0.2, 0.4),  # blue dress, hardly a dog
        GREEN: unit(0.5, 0.48, 0.6, 0.2, 0.4),  # red and blue alike, some dog
        GREY: unit(0.2, 0.2, 0.5, 0.6, 0.4),
    }
    return TableEmbedder(texts, images)


def test_verifier_answers_by_contrast_with_the_other_values() -> None:
    embedder = dress_embedder()
    answers = ClipVerifier(embedder, tolerance=0.0).verify(
        [
            VerifyItem("red", solid(RED), "Is the dress red?"),
            VerifyItem("blue", solid(BLUE), "Is the dress red?"),
        ]
    )
    assert [a.yes for a in answers] == [True, False]
    red = embedder.images[RED]
    # The other colours land on BLUE_DRESS or ELSEWHERE: the best of them is the bar.
    bar = max(float(red @ embedder.texts[BLUE_DRESS]), float(red @ ELSEWHERE))
    lead = float(red @ embedder.texts[RED_DRESS]) - bar
    assert answers[0].p_yes == pytest.approx(1.0 / (1.0 + math.exp(-100.0 * lead)), abs=1e-6)
    assert answers[1].p_yes is not None and answers[1].p_yes < 0.5
    assert RED_DRESS in answers[0].raw and "10 alternatives" in answers[0].raw


def test_tolerance_says_no_only_when_another_value_clearly_wins() -> None:
    embedder = dress_embedder()
    item = [VerifyItem("green", solid(GREEN), "Is the dress blue?")]  # red leads by a hair
    assert not ClipVerifier(embedder, tolerance=0.0).verify(item)[0].yes
    assert ClipVerifier(embedder, tolerance=0.2).verify(item)[0].yes
    assert (
        not ClipVerifier(embedder, tolerance=0.2)
        .verify([VerifyItem("red", solid(RED), "Is the dress blue?")])[0]
        .yes
    )


def test_margin_shifts_the_decision() -> None:
    embedder = dress_embedder()
    item = [VerifyItem("red", solid(RED), "Is the dress red?")]
    assert ClipVerifier(embedder, tolerance=0.0, margin=0.1).verify(item)[0].yes
    strict = ClipVerifier(embedder, tolerance=0.0, margin=2.0).verify(item)[0]
    assert not strict.yes and strict.p_yes is not None and strict.p_yes < 0.5


def test_alternatives_the_model_cannot_tell_apart_are_left_out() -> None:
    embedder = dress_embedder()
    # The claim and every alternative land on one point: nothing to tell apart.
    embedder.texts[RED_DRESS] = embedder.texts[BLUE_DRESS] = ELSEWHERE
    answer = ClipVerifier(embedder).verify([VerifyItem("blue", solid(BLUE), "Is the dress red?")])
    assert answer[0].yes and answer[0].p_yes == 0.5
    assert "told apart" in answer[0].raw


def test_alternatives_close_to_the_claim_are_no_evidence() -> None:
    embedder = dress_embedder()
    embedder.texts[BLUE_DRESS] = unit(0.97, 0.243)  # cosine 0.97 with the red dress
    item = [VerifyItem("red", solid(RED), "Is the dress red?")]
    close = ClipVerifier(embedder, tolerance=0.0, max_alternative_similarity=0.96).verify(item)
    strict = ClipVerifier(embedder, tolerance=0.0, max_alternative_similarity=0.99).verify(item)
    image = embedder.images[RED]
    assert float(image @ embedder.texts[BLUE_DRESS]) < float(image @ embedder.texts[RED_DRESS])
    bar = {"close": float(image @ ELSEWHERE), "strict": float(image @ embedder.texts[BLUE_DRESS])}
    claim = float(image @ embedder.texts[RED_DRESS])
    assert close[0].raw.endswith(f"{claim - bar['close']:+.4f} (margin=0)")
    assert strict[0].raw.endswith(f"{claim - bar['strict']:+.4f} (margin=0)")


def test_questions_without_alternatives_are_judged_against_the_batch() -> None:
    embedder = dress_embedder()
    items = [VerifyItem(name, solid(c), "Is there a dog?") for name, c in
             [("red", RED), ("blue", BLUE), ("green", GREEN), ("grey", GREY)]]  # fmt: skip
    answers = ClipVerifier(embedder).verify(items)
    presence = {
        n: float(embedder.images[c] @ (embedder.texts[DOG.positive] - embedder.texts["a photo"]))
        for n, c in [("red", RED), ("blue", BLUE), ("green", GREEN), ("grey", GREY)]
    }
    middle = float(np.median(list(presence.values())))
    assert [a.yes for a in answers] == [presence[i.image_id] >= middle for i in items]
    assert sum(a.yes for a in answers) == 2 and "batch median" in answers[0].raw
    # Too few images to compare: the statement must beat its negation.
    alone = ClipVerifier(embedder).verify(items[:2])
    assert [a.yes for a in alone] == [True, True]
    assert "without a dog" in alone[0].raw


def test_verifier_embeds_each_text_and_image_once() -> None:
    embedder = dress_embedder()
    ClipVerifier(embedder).verify(
        [
            VerifyItem("red", solid(RED), "Is the dress red?"),
            VerifyItem("red", solid(RED), "Is the dress blue?"),
            VerifyItem("blue", solid(BLUE), "Is the dress red?"),
        ]
    )
    assert embedder.image_calls == [2]
    assert len(embedder.text_calls) == 1
    assert len(embedder.text_calls[0]) == len(set(embedder.text_calls[0]))


def test_verifier_config_is_checked() -> None:
    embedder = dress_embedder()
    with pytest.raises(ConfigError, match="temperature"):
        ClipVerifier(embedder, temperature=0)
    with pytest.raises(ConfigError, match="min_batch"):
        ClipVerifier(embedder, min_batch=1)
    assert ClipVerifier(embedder).verify([]) == []


def test_model_ids_carry_the_embedder_and_the_knobs() -> None:
    embedder = dress_embedder()
    assert ClipVerifier(embedder, margin=0.02).model_id != ClipVerifier(embedder).model_id
    assert ClipVerifier(embedder, tolerance=0.5).model_id != ClipVerifier(embedder).model_id
    assert "table" in ClipVerifier(embedder).model_id
    assert ClipEvaluator(embedder, margin=0.3).model_id != ClipEvaluator(embedder).model_id


# --------------------------------------------------------------------------- evaluator

SQUARES = "a photo of two blue squares on the left"
RED_SQUARES = "a photo of two red squares on the left"


def squares_embedder() -> TableEmbedder:
    """Blue vs red squares: the instruction's colour claim and the reference."""
    texts = {SQUARES: unit(1, 0, 0), RED_SQUARES: unit(0, 1, 0)}
    images = {
        BLUE: unit(0.95, 0.2, 0.3),  # blue squares
        GREEN: unit(0.9, 0.3, 0.2),  # blue squares too, less like the reference
        RED: unit(0.2, 0.95, 0.3),  # red squares: the reference
        GREY: unit(0.3, 0.3, 1),  # neither
    }
    return TableEmbedder(texts, images)


def test_evaluator_accepts_a_candidate_that_fits_its_claims() -> None:
    embedder = dress_embedder()
    evaluator = ClipEvaluator(embedder)
    assert [c.proposition.question for c in evaluator.claims("a blue dress")] == [
        "Is the dress blue?"
    ]
    fits, misses = evaluator.evaluate(
        [
            EvaluationItem("blue", solid(BLUE), "a blue dress"),
            EvaluationItem("red", solid(RED), "a blue dress"),
        ]
    )
    assert fits.accepted and "mean fit" in fits.reason and "Is the dress blue?" in fits.raw
    assert not misses.accepted and "not above" in misses.reason


def test_evaluator_without_a_checkable_claim_rejects() -> None:
    verdict = ClipEvaluator(squares_embedder()).evaluate(
        [EvaluationItem("grey", solid(GREY), "a man walking on a street at night")]
    )[0]
    assert not verdict.accepted and "no claim" in verdict.reason


def test_evaluator_needs_the_change_to_show_against_the_reference() -> None:
    embedder = squares_embedder()
    claims = ClipEvaluator(embedder).claims("make them blue")
    assert [c.proposition.question for c in claims] == ["Is the image blue?"]
    blue = claims[0].contrast.positive
    embedder.texts[blue] = unit(1, 0, 0)
    for alternative in claims[0].contrast.alternatives:
        embedder.texts[alternative] = unit(0, 1, 0) if "red" in alternative else unit(0, 0, 1)
    items = [
        EvaluationItem("blue", solid(BLUE), "make them blue", reference=solid(RED)),
        EvaluationItem("red", solid(RED), "make them blue", reference=solid(BLUE)),
    ]
    # One item per call: each is judged on its own.
    changed, unchanged = (ClipEvaluator(embedder).evaluate([item])[0] for item in items)
    assert changed.accepted and "gain" in changed.reason
    assert not unchanged.accepted


def test_evaluator_prefers_the_candidate_closest_to_the_reference() -> None:
    embedder = squares_embedder()
    reference = solid(RED)
    claims = ClipEvaluator(embedder).claims("make them blue")
    for text in (claims[0].contrast.positive, *claims[0].contrast.alternatives):
        embedder.texts[text] = unit(1, 0, 0) if "blue" in text else unit(0, 1, 0)
    items = [
        EvaluationItem(name, solid(colour), "make them blue", reference=reference)
        for name, colour in (("green", GREEN), ("blue", BLUE), ("red", RED))
    ]
    alone = [ClipEvaluator(embedder).evaluate([item])[0].accepted for item in items]
    together = ClipEvaluator(embedder).evaluate(items)
    assert alone == [True, True, False]
    # The unchanged copy of the reference is the closest, but the change does not show.
    similarity = {i.candidate_id: float(embedder.images[colour_of(i.candidate)] @
                                        embedder.images[RED]) for i in items}  # fmt: skip
    assert similarity["red"] > max(similarity["green"], similarity["blue"])
    closer = "green" if similarity["green"] > similarity["blue"] else "blue"
    assert [e.accepted for e in together] == [i.candidate_id == closer for i in items]
    reasons = {i.candidate_id: e.reason for i, e in zip(items, together, strict=True)}
    assert "does not show" in reasons["red"]
    assert "closer to the reference" in reasons["blue" if closer == "green" else "green"]
    assert embedder.image_calls[-1] == 4  # the shared reference is embedded once


def test_verifier_with_the_shipped_fake_embedder() -> None:
    from imagescope.models.fakes import TEXT_KEY, FakeEmbedder

    def described(text: str) -> Image.Image:
        image = Image.new("RGB", (4, 4))
        image.info[TEXT_KEY] = text
        return image

    answers = ClipVerifier(FakeEmbedder(), tolerance=0.0).verify(
        [
            VerifyItem("red", described("a photo of a red car"), "Is the car red?"),
            VerifyItem("blue", described("a photo of a blue car"), "Is the car red?"),
        ]
    )
    assert [a.yes for a in answers] == [True, False]


def test_verifier_and_evaluator_run_on_a_real_open_clip_model(tiny_open_clip: Embedder) -> None:
    images = [Image.new("RGB", (48, 40), colour) for colour in (RED, BLUE, GREEN)]
    answers = ClipVerifier(tiny_open_clip).verify(
        [VerifyItem(str(n), image, "Is the dress red?") for n, image in enumerate(images)]
        + [VerifyItem(str(n), image, "Is there a dog?") for n, image in enumerate(images)]
    )
    for answer in answers:
        assert answer.p_yes is not None and 0.0 <= answer.p_yes <= 1.0
        assert answer.yes is (answer.p_yes >= 0.5)
    verdicts = ClipEvaluator(tiny_open_clip).evaluate(
        [EvaluationItem(str(n), image, "make it red", reference=images[1]) for n, image in
         enumerate(images)]
    )  # fmt: skip
    assert len(verdicts) == 3 and sum(v.accepted for v in verdicts) <= 1
