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
    question_to_statements,
)

pytestmark = pytest.mark.unit

DIM = 4


def unit(*values: float) -> np.ndarray:
    vector = np.asarray(values, dtype=np.float32)
    return vector / np.linalg.norm(vector)


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
        return np.stack([self.texts[t] for t in texts]).astype(np.float32)

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
FRIDGE = question_to_statements("Is there a fridge?")
CAT = question_to_statements("Is the cat on the sofa?")


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
        ("Is the dress dark blue?", "a photo where the dress is dark blue",
         "a photo where the dress is not dark blue"),
        ("Are the shoes red and white?", "a photo where the shoes are red and white",
         "a photo where the shoes are not red and white"),
        ("Is the cat on the sofa?", "a photo where the cat is on the sofa",
         "a photo where the cat is not on the sofa"),
        ("Is a man riding a horse?", "a photo where a man is riding a horse",
         "a photo where a man is not riding a horse"),
        ("Is it raining?", "a photo where it is raining", "a photo where it is not raining"),
        ("Is the man a doctor?", "a photo where the man is a doctor",
         "a photo where the man is not a doctor"),
        ("Is the table covered with a cloth?", "a photo where the table is covered with a cloth",
         "a photo where the table is not covered with a cloth"),
        ("Is this a kitchen?", "a photo of a kitchen", "a photo that is not of a kitchen"),
        ("Does the shirt have long sleeves?", "a photo of the shirt with long sleeves",
         "a photo of the shirt without long sleeves"),
        ("Does the man wear a hat?", "a photo where the man wears a hat",
         "a photo where the man does not wear a hat"),
        ("Does the dog carry a stick?", "a photo where the dog carries a stick",
         "a photo where the dog does not carry a stick"),
        ("Do the children play?", "a photo where the children play",
         "a photo where the children do not play"),
        ("  Is   there a   lamp ? ", "a photo with a lamp", "a photo without a lamp"),
        ("What colour is the car?", "a photo showing what colour is the car",
         "a photo not showing what colour is the car"),
    ],
)  # fmt: skip
def test_question_to_statements(question, positive, negative):
    assert question_to_statements(question) == StatementPair(positive, negative)


def test_empty_question_is_rejected():
    with pytest.raises(InputError, match="yes/no question"):
        question_to_statements(" ? ")


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def make_embedder() -> TableEmbedder:
    texts = {
        FRIDGE.positive: unit(1, 0, 0, 0),
        FRIDGE.negative: unit(0, 1, 0, 0),
        CAT.positive: unit(0, 0, 1, 0),
        CAT.negative: unit(0, 0, 0, 1),
    }
    images = {
        RED: unit(0.6, 0.4, 0.7, 0.1),  # fridge: yes (barely); cat on sofa: yes
        BLUE: unit(0.2, 0.9, 0.1, 0.5),  # fridge: no; cat on sofa: no
    }
    return TableEmbedder(texts, images)


def test_verifier_p_yes_is_the_softmax_of_the_two_similarities():
    embedder = make_embedder()
    verifier = ClipVerifier(embedder, temperature=10.0)
    answers = verifier.verify(
        [
            VerifyItem("red", solid(RED), "Is there a fridge?"),
            VerifyItem("blue", solid(BLUE), "Is there a fridge?"),
            VerifyItem("blue", solid(BLUE), "Is the cat on the sofa?"),
        ]
    )
    cases = [(RED, FRIDGE), (BLUE, FRIDGE), (BLUE, CAT)]
    for answer, (colour, pair) in zip(answers, cases, strict=True):
        image = embedder.images[colour]
        diff = float(image @ embedder.texts[pair.positive] - image @ embedder.texts[pair.negative])
        assert answer.p_yes == pytest.approx(_sigmoid(10.0 * diff), abs=1e-6)
        assert answer.yes is (diff > 0)
        assert pair.positive in answer.raw and pair.negative in answer.raw
    assert [a.yes for a in answers] == [True, False, False]


def test_margin_shifts_the_decision():
    embedder = make_embedder()
    image = embedder.images[RED]
    diff = float(image @ embedder.texts[FRIDGE.positive] - image @ embedder.texts[FRIDGE.negative])
    item = [VerifyItem("red", solid(RED), "Is there a fridge?")]
    assert ClipVerifier(embedder, margin=diff - 0.01).verify(item)[0].yes
    below = ClipVerifier(embedder, margin=diff + 0.01).verify(item)[0]
    assert below.p_yes is not None
    assert not below.yes and below.p_yes < 0.5


def test_higher_temperature_sharpens_p_yes():
    embedder = make_embedder()
    item = [VerifyItem("red", solid(RED), "Is there a fridge?")]
    soft = ClipVerifier(embedder, temperature=1.0).verify(item)[0].p_yes
    sharp = ClipVerifier(embedder, temperature=100.0).verify(item)[0].p_yes
    assert soft is not None and sharp is not None
    assert 0.5 < soft < sharp <= 1.0


def test_each_statement_and_image_id_is_embedded_once_per_call():
    embedder = make_embedder()
    items = [
        VerifyItem("red", solid(RED), "Is there a fridge?"),
        VerifyItem("red", solid(RED), "Is the cat on the sofa?"),
        VerifyItem("blue", solid(BLUE), "Is there a fridge?"),
        VerifyItem("red", solid(RED), "Is there a fridge?"),
    ]
    answers = ClipVerifier(embedder).verify(items)
    assert len(answers) == 4
    assert answers[0] == answers[3]
    assert len(embedder.text_calls) == 1
    assert sorted(embedder.text_calls[0]) == sorted([*FRIDGE, *CAT])
    assert embedder.image_calls == [2]


def test_no_items_no_model_calls():
    embedder = make_embedder()
    assert ClipVerifier(embedder).verify([]) == []
    assert ClipEvaluator(embedder).evaluate([]) == []
    assert embedder.text_calls == [] and embedder.image_calls == []


def test_non_positive_temperature_is_a_config_error():
    with pytest.raises(ConfigError, match="temperature"):
        ClipVerifier(make_embedder(), temperature=0.0)


def test_model_ids_carry_the_embedder_and_the_knobs():
    embedder = make_embedder()
    assert ClipVerifier(embedder, margin=0.02).model_id != ClipVerifier(embedder).model_id
    assert "table" in ClipVerifier(embedder).model_id
    assert ClipEvaluator(embedder, threshold=0.3).model_id != ClipEvaluator(embedder).model_id


INSTRUCTION = "make the dress red"


def evaluator_embedder() -> TableEmbedder:
    return TableEmbedder(
        {INSTRUCTION: unit(1, 0, 0, 0)},
        {
            BLUE: unit(0.2, 1, 0, 0),  # the reference: a blue dress
            RED: unit(0.9, 0.3, 0, 0),  # closer to the instruction than the reference
            GREEN: unit(0.1, 0, 1, 0),  # further from it
        },
    )


def test_evaluator_accepts_candidates_that_beat_the_reference():
    embedder = evaluator_embedder()
    reference = solid(BLUE)
    items = [
        EvaluationItem("red", solid(RED), INSTRUCTION, reference=reference),
        EvaluationItem("green", solid(GREEN), INSTRUCTION, reference=reference),
    ]
    accepted, rejected = ClipEvaluator(embedder).evaluate(items)
    text = embedder.texts[INSTRUCTION]
    sim = {c: float(text @ embedder.images[c]) for c in (RED, GREEN, BLUE)}
    assert accepted.accepted and not rejected.accepted
    assert f"{sim[RED]:.3f}" in accepted.reason and f"{sim[BLUE]:.3f}" in accepted.reason
    assert f"{sim[RED] - sim[BLUE]:+.3f}" in accepted.reason
    assert f"{sim[GREEN]:.3f}" in rejected.reason
    assert embedder.image_calls == [3]  # the shared reference is embedded once
    assert embedder.text_calls == [[INSTRUCTION]]


def test_evaluator_margin_raises_the_bar():
    embedder = evaluator_embedder()
    text = embedder.texts[INSTRUCTION]
    gain = float(text @ embedder.images[RED] - text @ embedder.images[BLUE])
    item = [EvaluationItem("red", solid(RED), INSTRUCTION, reference=solid(BLUE))]
    assert ClipEvaluator(embedder, margin=gain - 0.01).evaluate(item)[0].accepted
    assert not ClipEvaluator(embedder, margin=gain + 0.01).evaluate(item)[0].accepted


def test_evaluator_without_reference_uses_the_threshold():
    embedder = evaluator_embedder()
    sim = float(embedder.texts[INSTRUCTION] @ embedder.images[RED])
    item = [EvaluationItem("red", solid(RED), INSTRUCTION)]
    low = ClipEvaluator(embedder, threshold=sim - 0.01).evaluate(item)[0]
    high = ClipEvaluator(embedder, threshold=sim + 0.01).evaluate(item)[0]
    assert low.accepted and not high.accepted
    assert f"{sim:.3f}" in high.reason and f"{sim + 0.01:.3f}" in high.reason


def test_verifier_with_the_shipped_fake_embedder():
    from imagescope.models.fakes import TEXT_KEY, FakeEmbedder

    def described(text: str) -> Image.Image:
        image = Image.new("RGB", (4, 4))
        image.info[TEXT_KEY] = text
        return image

    answers = ClipVerifier(FakeEmbedder()).verify(
        [
            VerifyItem("with", described("a kitchen with a fridge"), "Is there a fridge?"),
            VerifyItem("without", described("a kitchen without a fridge"), "Is there a fridge?"),
        ]
    )
    assert [a.yes for a in answers] == [True, False]


def test_verifier_and_evaluator_run_on_a_real_open_clip_model(tiny_open_clip):
    images = [Image.new("RGB", (48, 40), colour) for colour in (RED, BLUE)]
    answers = ClipVerifier(tiny_open_clip).verify(
        [VerifyItem(str(n), image, "Is the dress red?") for n, image in enumerate(images)]
    )
    for answer in answers:
        assert answer.p_yes is not None and 0.0 <= answer.p_yes <= 1.0
        assert answer.yes is (answer.p_yes > 0.5)
    verdict = ClipEvaluator(tiny_open_clip).evaluate(
        [EvaluationItem("c", images[0], INSTRUCTION, reference=images[1])]
    )[0]
    assert "vs reference" in verdict.reason
