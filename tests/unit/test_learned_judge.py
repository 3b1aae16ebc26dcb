"""ImageScope-Judge: training data, held-out seeds, the shipped weights, backends, server."""

from __future__ import annotations

import ast
import math
import random
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL.Image import Image

import imagescope.models
from imagescope.errors import ConfigError, InputError
from imagescope.ingest.images import image_to_data_url
from imagescope.models.base import EvaluationItem, VerifyItem
from imagescope.models.chat import ChatEvaluator, ChatVerifier
from imagescope.models.factory import build_evaluator, build_verifier, known_kinds, register
from imagescope.models.fakes import FakeEmbedder
from imagescope.models.openai_chat import OpenAIChatModel
from imagescope.models.rule_propositions import description_checks
from imagescope.settings import ChatEndpoint, RoleSettings
from imagescope.synthetic.bench import BenchConfig
from imagescope.synthetic.catalog import ATTRIBUTES, VALUES, SyntheticItem, draw, make_catalog
from imagescope.synthetic.judge_backend import LearnedEvaluator, LearnedVerifier
from imagescope.synthetic.judge_data import (
    Sample,
    attribute_codes,
    composed_samples,
    constraints,
    holds,
    verify_samples,
    words,
)
from imagescope.synthetic.judge_model import (
    MODEL_NAME,
    SHIPPED_JUDGE,
    JudgeConfig,
    JudgeNet,
    Vocabulary,
    load_judge,
)
from imagescope.synthetic.judge_server import create_app
from imagescope.synthetic.judge_train import (
    HELD_OUT_SEEDS,
    JudgeTrainConfig,
    edit_loss,
    reading_targets,
    train_judge,
)
from imagescope.synthetic.judges import register_learned_judges

pytestmark = pytest.mark.unit

SCENE = {"category": "square", "colour": "red", "count": 2, "pattern": "striped",
         "position": "left", "background": "white"}  # fmt: skip


def picture(item_id: str = "test-0", **changes: object) -> Image:
    return draw(SyntheticItem(item_id, {**SCENE, **changes}))


# --------------------------------------------------------------------------- data


def test_constraints_read_every_value_the_pipeline_question_states() -> None:
    question = "Are the two striped squares on the left on a white background red?"
    assert constraints(question) == {k: SCENE[k] for k in SCENE}
    assert constraints("Are there exactly three shapes?") == {"count": 3}
    assert constraints("Is the background navy?") == {"background": "navy"}
    assert constraints("do they have a pattern? no, plain") == {"pattern": "plain"}
    assert constraints("without stripes") == {}
    assert constraints("Are the red shapes blue?") is None  # two colours: no label


def test_rule_reasoner_checks_are_labelled_by_what_they_state() -> None:
    checks = description_checks("two red striped squares on the left")
    assert len(checks) >= 4
    for check in checks:
        wanted = constraints(check.proposition.question)
        assert wanted and holds(SCENE, wanted), check.proposition.question
        assert not holds({**SCENE, "colour": "blue"}, wanted) or "colour" not in wanted


def test_verify_samples_hold_both_answers_and_exact_labels() -> None:
    pool = make_catalog(200, seed=77)
    rng = random.Random(3)
    samples = [s for i in range(200) for s in verify_samples(pool, i, rng)]
    labels = {s.label for s in samples}
    assert labels == {0.0, 1.0}
    for sample in samples[:100]:
        wanted = constraints(sample.text)
        assert wanted is not None
        assert sample.label == float(holds(pool[sample.image].attributes, wanted))


def test_reading_targets_are_the_attributes_and_values_a_text_names() -> None:
    asked, wanted = reading_targets(["Are the three striped crosses on the left?", "hello"])
    named = {
        ATTRIBUTES[c]: VALUES[ATTRIBUTES[c]][int(wanted[0, c])] for c in range(6) if asked[0, c]
    }
    assert named == {"count": 3, "pattern": "striped", "category": "cross", "position": "left"}
    assert not asked[1].any() and bool((wanted[1] == -100).all())
    assert bool((wanted[0][asked[0] == 0] == -100).all())


def test_composed_samples_carry_the_target_the_edit_asks_for() -> None:
    pool = make_catalog(300, seed=77)
    codes, rng = attribute_codes(pool), random.Random(5)
    samples = [s for _ in range(60) for s in composed_samples(pool, codes, rng)]
    assert {s.label for s in samples} == {0.0, 1.0}
    for sample in samples:
        target = {a: VALUES[a][i] for a, i in zip(ATTRIBUTES, sample.target, strict=True)}
        assert (pool[sample.image].attributes == target) is (sample.label == 1.0)
        assert pool[sample.reference].attributes != target
    vocab = Vocabulary(sorted({w for s in samples for w in words(s.text)}))
    net = JudgeNet(JudgeConfig(vocab_size=len(vocab)))
    texts = net.encode_texts(vocab.encode([s.text for s in samples], max_words=72))
    loss = edit_loss(net, texts, samples, codes).item()
    assert math.isfinite(loss) and loss > 0.0
    described = [Sample(0, "two red squares", 1.0)]
    assert edit_loss(net, texts[:1], described, codes).item() == 0.0


def test_training_never_draws_the_benchmark_catalog_or_queries() -> None:
    bench = BenchConfig()
    assert {bench.catalog_seed, bench.query_seed} <= HELD_OUT_SEEDS
    config = JudgeTrainConfig()
    assert not {config.pool_seed, config.pool_seed + 1} & HELD_OUT_SEEDS
    with pytest.raises(InputError, match="benchmark catalog"):
        JudgeTrainConfig(pool_seed=bench.catalog_seed)


@pytest.mark.slow  # trains the judge (two steps, plus data generation and its eval)
def test_a_short_run_writes_weights_with_their_vocabulary(tmp_path: Path) -> None:
    path = tmp_path / "judge.safetensors"
    report = train_judge(path, JudgeTrainConfig(pool_items=150, steps=2, eval_items=60))
    net, vocab = load_judge(path)
    assert "squares" in vocab.ids and len(vocab) == net.config.vocab_size
    assert len(report.losses) == 2 and set(report.accuracy) == {
        "verify", "pair_reference", "pair_described"}  # fmt: skip
    assert (tmp_path / "judge.training.json").is_file()


def test_load_judge_names_the_fix_when_weights_are_missing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="judge_train"):
        load_judge(tmp_path / "missing.safetensors")


# --------------------------------------------------------------------------- shipped weights


def test_shipped_weights_are_small_and_registered_as_a_kind() -> None:
    assert SHIPPED_JUDGE.is_file() and SHIPPED_JUDGE.stat().st_size < 5_000_000
    register_learned_judges()
    assert "learned" in known_kinds("verifier") and "learned" in known_kinds("evaluator")
    embedder = FakeEmbedder()
    assert isinstance(build_verifier(RoleSettings(kind="learned"), embedder), LearnedVerifier)
    assert isinstance(build_evaluator(RoleSettings(kind="learned"), embedder), LearnedEvaluator)


@pytest.mark.parametrize(
    ("question", "changes", "expected"),
    [
        ("Are there exactly two shapes?", {}, True),
        ("Are there exactly three shapes?", {}, False),
        ("Is the background navy?", {"background": "navy"}, True),
        ("Is the background navy?", {}, False),
        ("Are the shapes circles?", {"category": "circle"}, True),
        ("Are the shapes striped?", {"pattern": "plain"}, False),
        ("Are the two striped squares on the left red?", {}, True),
        ("Are the two striped squares on the left red?", {"colour": "blue"}, False),
        ("Are the two red striped squares on the left?", {"count": 3}, False),
        ("Are the two red striped squares on the left?", {"pattern": "dotted"}, False),
        ("Are the squares on the left?", {}, True),
        ("Are the squares on the right?", {}, False),
        ("Is the square at the top?", {"count": 1, "position": "top"}, True),
        ("Is the square in the centre?", {"count": 1, "position": "bottom"}, False),
    ],
)
def test_verifier_answers_attribute_count_pattern_and_position_questions(
    question: str, changes: dict[str, object], expected: bool
) -> None:
    verifier = LearnedVerifier()
    answer = verifier.verify([VerifyItem("x", picture(**changes), question)])[0]
    assert answer.yes is expected, (question, changes, answer.p_yes)
    assert answer.p_yes is not None and (answer.p_yes >= 0.5) is expected


def test_verifier_answers_no_to_what_it_cannot_read() -> None:
    four, known = LearnedVerifier().verify(
        [
            VerifyItem("x", picture(), "Are there exactly four shapes?"),
            VerifyItem("x", picture(), "Are there exactly two shapes?"),
        ]
    )
    assert not four.yes and four.p_yes == 0.0 and "cannot read ['four']" in four.raw
    assert known.yes and known.p_yes is not None and known.p_yes > 0.5


def test_evaluator_accepts_the_edit_and_rejects_the_reference_with_reasons() -> None:
    evaluator = LearnedEvaluator()
    reference = picture("ref")
    items = [
        EvaluationItem("good", picture("cand", count=3), "add one more square", reference),
        EvaluationItem("same", picture("ref2"), "add one more square", reference),
    ]
    good, same = evaluator.evaluate(items)
    assert good.accepted and not same.accepted
    assert "shows the requested change" in good.reason and "misses" in same.reason
    alone = evaluator.evaluate([EvaluationItem("d", picture("c"), "two red striped squares")])[0]
    assert alone.accepted and "holds: " in alone.reason and "colour red" in alone.reason


# --------------------------------------------------------------------------- server


@pytest.fixture(scope="module")
def server() -> TestClient:
    return TestClient(create_app(), base_url="http://judge/v1/")


def _chat(server: TestClient) -> OpenAIChatModel:
    endpoint = ChatEndpoint(base_url="http://judge/v1/", model=MODEL_NAME)
    return OpenAIChatModel(endpoint, client=server)


def test_openai_backend_gets_the_judges_logprobs_through_the_server(server: TestClient) -> None:
    verifier = ChatVerifier(_chat(server))
    local = LearnedVerifier()
    items = [
        VerifyItem("a", picture(), "Are there exactly two shapes?"),
        VerifyItem("b", picture(), "Is the background grey?"),
    ]
    remote = verifier.verify(items)
    assert [a.yes for a in remote] == [True, False]
    for got, want in zip(remote, local.verify(items), strict=True):
        assert got.p_yes == pytest.approx(want.p_yes, abs=0.1)  # JPEG in transit


def test_openai_evaluator_reads_the_judges_verdict_and_reason(server: TestClient) -> None:
    evaluator = ChatEvaluator(_chat(server))
    reference = picture("ref")
    items = [
        EvaluationItem("g", picture("c", count=3), "add one more square", reference),
        EvaluationItem("b", picture("c2"), "add one more square", reference),
    ]
    good, bad = evaluator.evaluate(items)
    assert good.accepted and not bad.accepted
    assert "P(accept)=" in good.reason
    assert [e.accepted for e in LearnedEvaluator().evaluate(items)] == [True, False]


def test_server_rejects_requests_it_cannot_answer(server: TestClient) -> None:
    no_image = {"model": MODEL_NAME, "messages": [{"role": "user", "content": "Is it red?"}]}
    response = server.post("chat/completions", json=no_image)
    assert response.status_code == 400 and "image_url" in response.json()["error"]["message"]
    remote = {"type": "image_url", "image_url": {"url": "http://example.com/x.png"}}
    body = {"messages": [{"role": "user", "content": [remote, {"type": "text", "text": "Red?"}]}]}
    response = server.post("chat/completions", json=body)
    assert response.status_code == 400 and "data URL" in response.json()["error"]["message"]
    image = {"type": "image_url", "image_url": {"url": image_to_data_url(picture())}}
    body = {"messages": [{"role": "user", "content": [image]}]}
    response = server.post("chat/completions", json=body)
    assert response.status_code == 400 and "no text" in response.json()["error"]["message"]
    assert server.get("models").json()["data"][0]["id"] == MODEL_NAME


def test_demo_uses_the_learned_judge_unless_the_settings_name_one() -> None:
    from imagescope.demo import with_learned_judges
    from imagescope.settings import Settings

    default = with_learned_judges(Settings.model_validate({}))
    assert default.models.verifier.kind == "learned" and default.models.evaluator.kind == "learned"
    named = Settings.model_validate({"models": {"verifier": {"kind": "clip"}}})
    chosen = with_learned_judges(named)
    assert chosen.models.verifier.kind == "clip" and chosen.models.evaluator.kind == "learned"


def test_only_a_known_role_takes_a_registered_kind() -> None:
    with pytest.raises(ConfigError, match="roles: captioner, evaluator, reasoner, verifier"):
        register("embedder", "learned", lambda _role, _embedder: None)


def test_the_models_layer_imports_nothing_of_the_synthetic_world() -> None:
    models_dir = Path(imagescope.models.__file__).parent
    offenders = [
        f"{path.name}: {node.module}"
        for path in sorted(models_dir.glob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom)
        and (node.module or "").startswith("imagescope.synthetic")
    ]
    assert offenders == []
