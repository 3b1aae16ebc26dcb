"""The synthetic catalog, its exact ground truth, the tiny CLIP and the benchmark."""

from __future__ import annotations

import ast
import math
import random
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import imagescope
from imagescope.errors import InputError
from imagescope.ingest.sources import read_table
from imagescope.measures import recall
from imagescope.models.open_clip_embedder import OpenClipEmbedder
from imagescope.schemas import (
    Candidate,
    CostRecord,
    DialogQuery,
    Evaluation,
    SearchResult,
    TextQuery,
    Trace,
    Verdict,
)
from imagescope.synthetic.bench import (
    BenchConfig,
    chance_recall,
    format_table,
    judge_signal,
    run_synthetic_bench,
    stage_costs,
    stage_recall,
)
from imagescope.synthetic.catalog import (
    ATTRIBUTES,
    BACKGROUNDS,
    COLOURS,
    NUMBER_WORDS,
    POSITION_PHRASES,
    VALUES,
    SyntheticItem,
    describe,
    draw,
    make_catalog,
    write_catalog,
)
from imagescope.synthetic.queries import (
    SyntheticQuery,
    apply_edits,
    make_queries,
    matching_ids,
)
from imagescope.synthetic.train import (
    CONFIG_DIR,
    MODEL_NAME,
    SHIPPED_CHECKPOINT,
    TrainConfig,
    load_synth_embedder,
    train_tiny_clip,
    training_card,
)

pytestmark = pytest.mark.unit

BASE = {
    "category": "square",
    "colour": "red",
    "count": 2,
    "pattern": "striped",
    "position": "left",
    "background": "white",
}


@pytest.fixture(scope="module")
def catalog() -> list[SyntheticItem]:
    return make_catalog(400, seed=3)


@pytest.fixture(scope="module")
def queries(catalog: list[SyntheticItem]) -> list[SyntheticQuery]:
    return make_queries(catalog, n_per_kind=40, seed=5)


@pytest.fixture(scope="module")
def shipped() -> OpenClipEmbedder:
    return load_synth_embedder()


def _attrs(catalog: list[SyntheticItem]) -> dict[str, dict[str, Any]]:
    return {item.id: item.attributes for item in catalog}


# --------------------------------------------------------------------------- catalog


def test_drawing_is_deterministic_and_sized() -> None:
    item = SyntheticItem("syn-1", dict(BASE))
    first, second = draw(item), draw(item)
    assert first.size == (64, 64) and first.mode == "RGB"
    assert first.tobytes() == second.tobytes()
    assert draw(item, size=96).size == (96, 96)
    # The jitter is seeded by the id: another id with the same attributes differs a little.
    assert draw(SyntheticItem("syn-2", dict(BASE))).tobytes() != first.tobytes()


def test_drawing_puts_the_colour_at_the_position() -> None:
    item = SyntheticItem("x", {**BASE, "pattern": "plain", "colour": "blue", "count": 1})
    pixels = np.asarray(draw(item)).astype(int)
    assert np.abs(pixels[0, 0] - BACKGROUNDS["white"]).max() <= 8  # corner is background
    is_blue = np.abs(pixels - COLOURS["blue"]).max(axis=2) <= 20
    left, right = is_blue[:, :32].sum(), is_blue[:, 32:].sum()
    assert left > 100 and right == 0


def test_stripes_change_the_picture_but_not_the_outline() -> None:
    plain = SyntheticItem("x", {**BASE, "pattern": "plain"})
    striped = SyntheticItem("x", dict(BASE))
    a, b = (np.asarray(draw(i)).astype(int) for i in (plain, striped))
    background = np.abs(a - BACKGROUNDS["white"]).max(axis=2) <= 8
    assert np.array_equal(background, np.abs(b - BACKGROUNDS["white"]).max(axis=2) <= 8)
    assert np.abs(a - b).max(axis=2)[~background].mean() > 30


def test_bad_attributes_are_refused_with_the_allowed_values() -> None:
    with pytest.raises(InputError, match="colour='teal' is not one of"):
        draw(SyntheticItem("x", {**BASE, "colour": "teal"}))
    with pytest.raises(InputError, match="missing attribute"):
        draw(SyntheticItem("x", {"category": "star"}))


def test_catalog_is_deterministic_by_seed() -> None:
    first, again, other = (
        make_catalog(50, seed=1),
        make_catalog(50, seed=1),
        make_catalog(50, seed=2),
    )
    assert first == again
    assert [i.attributes for i in first] != [i.attributes for i in other]
    assert len({i.id for i in first}) == 50
    for item in first:
        assert set(item.attributes) == set(ATTRIBUTES)
        assert item.attributes["category"] in item.caption  # "crosses" holds "cross"
        assert item.attributes["colour"] in item.caption


def test_describe_names_exactly_what_it_is_asked_to() -> None:
    assert describe(BASE) == "two red striped squares on the left on a white background"
    assert describe(BASE, mention={"category", "colour"}) == "red squares"
    single = {**BASE, "count": 1, "colour": "orange", "pattern": "plain"}
    assert describe(single, mention={"category", "colour", "count"}) == "an orange square"


def test_written_catalog_is_read_by_ingest(tmp_path: Path) -> None:
    csv_path = write_catalog(tmp_path, n=6, seed=4)
    items = read_table(csv_path)
    expected = make_catalog(6, seed=4)
    assert [i.id for i in items] == [e.id for e in expected]
    for item, truth in zip(items, expected, strict=True):
        assert Path(item.uri).is_file() and Path(item.uri).parent == tmp_path / "images"
        assert item.caption == truth.caption
        assert item.metadata == truth.attributes  # count comes back as an int
    assert isinstance(items[0].metadata["count"], int)


# --------------------------------------------------------------------------- queries


def test_queries_are_deterministic_and_reference_catalog_ids(
    catalog: list[SyntheticItem], queries: list[SyntheticQuery]
) -> None:
    assert make_queries(catalog, n_per_kind=40, seed=5) == queries
    ids = {item.id for item in catalog}
    assert {q.kind for q in queries} == {"text", "composed", "dialog"}
    for query in queries:
        assert query.ground_truth and set(query.ground_truth) <= ids
        assert query.reference is None or query.reference in ids


def test_ground_truth_is_every_item_meeting_the_constraints(
    catalog: list[SyntheticItem], queries: list[SyntheticQuery]
) -> None:
    attrs = _attrs(catalog)
    for query in queries:
        meets = {i for i, a in attrs.items() if all(a[n] == v for n, v in query.target.items())}
        assert set(query.ground_truth) == meets
        if query.kind != "text":
            assert set(query.target) == set(ATTRIBUTES)


def test_composed_targets_are_the_reference_after_the_edits(
    catalog: list[SyntheticItem], queries: list[SyntheticQuery]
) -> None:
    attrs = _attrs(catalog)
    composed = [q for q in queries if q.kind == "composed"]
    assert composed
    for query in composed:
        assert query.reference is not None
        reference = attrs[query.reference]
        changed = [n for n in ATTRIBUTES if reference[n] != query.target[n]]
        assert 1 <= len(changed) <= 2
        assert query.reference not in query.ground_truth
        if "count" in changed:
            assert abs(int(reference["count"]) - int(query.target["count"])) == 1


@pytest.mark.parametrize(
    ("edits", "changed", "words"),
    [
        ([("pattern", "plain")], {"pattern": "plain"}, "stripes"),
        ([("count", 3)], {"count": 3}, "square"),
        ([("colour", "blue")], {"colour": "blue"}, "blue"),
        ([("position", "right")], {"position": "right"}, "right"),
        (
            [("category", "star"), ("background", "grey")],
            {"category": "star", "background": "grey"},
            "grey",
        ),
    ],
)
def test_apply_edits_changes_only_the_edited_attributes(
    edits: list[tuple[str, object]], changed: dict[str, object], words: str
) -> None:
    target, instruction = apply_edits(BASE, edits, rng=random.Random(0))
    assert target == {**BASE, **changed}
    assert words in instruction


def test_dialog_turns_pin_every_remaining_attribute(queries: list[SyntheticQuery]) -> None:
    pattern_words = {"plain": "plain", "striped": "stripes", "dotted": "dots"}
    for query in (q for q in queries if q.kind == "dialog"):
        dialog = query.query
        assert isinstance(dialog, DialogQuery) and len(dialog.turns) >= 4
        text = " ".join([dialog.caption] + [f"{t.question} {t.answer}" for t in dialog.turns])
        target = query.target
        for fragment in (
            target["colour"],
            target["background"],
            target["category"],
            NUMBER_WORDS[target["count"]],
            POSITION_PHRASES[target["position"]],
            pattern_words[target["pattern"]],
        ):
            assert fragment in text, (fragment, text)


def test_matching_ids_and_bad_kinds(catalog: list[SyntheticItem]) -> None:
    reds = matching_ids(catalog, {"colour": "red"})
    assert reds and all(i.attributes["colour"] == "red" for i in catalog if i.id in reds)
    with pytest.raises(InputError, match="unknown query kind"):
        make_queries(catalog, n_per_kind=1, seed=0, kinds=["image"])  # type: ignore[list-item]


# --------------------------------------------------------------------------- metrics


def test_recall_counts_ranks_within_k() -> None:
    assert recall([1, 3, None, 12], (1, 5, 10)) == {"R@1": 25.0, "R@5": 50.0, "R@10": 50.0}
    assert recall([1, None], (1,), prefix="text ") == {"text R@1": 50.0}
    assert stage_recall([1, None, None], (1,)) == {"R@1": 33.33}


def test_chance_recall_matches_the_closed_form() -> None:
    assert chance_recall(10, [1], ks=(1, 5)) == {"R@1": 10.0, "R@5": 50.0}
    assert chance_recall(10, [2], ks=(1,)) == {"R@1": 20.0}


def _candidate(cid: str, rank: int, satisfied: list[bool], accepted: bool | None) -> Candidate:
    verdicts = [
        Verdict(question=f"q{n}", expected=True, answer=ok, satisfied=ok)
        for n, ok in enumerate(satisfied)
    ]
    evaluation = None if accepted is None else Evaluation(accepted=accepted)
    return Candidate(
        id=cid,
        score=1.0 / rank,
        stage1_rank=rank,
        verdicts=verdicts,
        satisfied=sum(satisfied),
        evaluation=evaluation,
    )


def test_stage_costs_are_what_each_stage_adds_to_the_one_before() -> None:
    timings = {"intent": 0.5, "retrieve": 0.25}
    first = Trace(timings=timings, costs={"reasoner": CostRecord(calls=2)})
    second = first.model_copy(
        update={
            "timings": {**first.timings, "propositions": 0.125, "verify": 1.0},
            "costs": {"reasoner": CostRecord(calls=3), "verifier": CostRecord(calls=1)},
        }
    )
    third = second.model_copy(
        update={
            "timings": {**second.timings, "evaluate": 2.0},
            "costs": {**second.costs, "evaluator": CostRecord(calls=2)},
        }
    )
    verified = [_candidate("a", 1, [True, False, True], accepted=None)]
    costs = stage_costs(
        (
            SearchResult(candidates=[], trace=first),
            SearchResult(candidates=verified, trace=second),
            SearchResult(candidates=verified, trace=third),
        )
    )
    calls = ("reasoner_calls", "verifier_calls", "evaluator_calls")
    assert costs["1"] == {"seconds": 0.75, **dict(zip(calls, (2, 0, 0), strict=True))}
    assert costs["2"] == {
        "seconds": 1.125,
        **dict(zip(calls, (1, 1, 0), strict=True)),
        "questions": 3,
    }
    assert costs["3"] == {"seconds": 2.0, **dict(zip(calls, (0, 0, 2), strict=True))}
    assert all(isinstance(costs[s]["reasoner_calls"], int) for s in costs)


def test_judge_signal_compares_ground_truth_with_the_others() -> None:
    query = SyntheticQuery(
        id="q", kind="text", query=TextQuery(text="a red star"), target={}, ground_truth=("a",)
    )
    candidates = [
        _candidate("a", 1, [True, True], accepted=True),
        _candidate("b", 2, [True, False], accepted=False),
        _candidate("c", 3, [False, False], accepted=None),
    ]
    result = SearchResult(candidates=candidates, trace=Trace())
    signal = judge_signal(query, verified=result, evaluated=result)
    assert signal == {
        "verifier_gt": 1.0,
        "verifier_other": 0.25,
        "evaluator_gt": 1.0,
        "evaluator_other": 0.0,
    }


# --------------------------------------------------------------------------- the tiny CLIP


@pytest.mark.slow
def test_a_short_training_run_lowers_the_contrastive_loss(tmp_path: Path) -> None:
    config = TrainConfig(n_items=32, steps=60, batch_size=32, group_size=1, warmup_steps=10)
    report = train_tiny_clip(tmp_path / "synth.safetensors", config)
    assert len(report.losses) == 60
    # Learning, not just reaching the uniform guess ln(batch size): clearly below both.
    assert report.mean_loss(last=5) < report.mean_loss(first=5) - 0.5
    assert report.mean_loss(last=5) < math.log(config.batch_size) - 0.5
    loaded = OpenClipEmbedder(
        MODEL_NAME, str(report.checkpoint), batch_size=8, config_dir=CONFIG_DIR
    )
    assert loaded.dim == 64
    assert training_card(report.checkpoint).is_file()


@pytest.mark.slow
def test_training_is_deterministic_by_seed(tmp_path: Path) -> None:
    config = TrainConfig(n_items=16, steps=4, batch_size=8, warmup_steps=2)
    first = train_tiny_clip(tmp_path / "a.safetensors", config)
    again = train_tiny_clip(tmp_path / "b.safetensors", config)
    other = train_tiny_clip(tmp_path / "c.safetensors", replace(config, seed=1))
    assert first.losses == again.losses
    assert other.losses != first.losses


def test_shipped_checkpoint_loads_through_open_clip_embedder(shipped: OpenClipEmbedder) -> None:
    assert SHIPPED_CHECKPOINT.is_file() and SHIPPED_CHECKPOINT.stat().st_size < 5_000_000
    assert shipped.model_id == f"open_clip:{MODEL_NAME}/{SHIPPED_CHECKPOINT.name}"
    vectors = shipped.embed_texts(["a red star", "two blue squares"])
    assert vectors.shape == (2, 64) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)


def test_shipped_model_tells_colours_apart(shipped: OpenClipEmbedder) -> None:
    items = make_catalog(24, seed=11)
    images = shipped.embed_images([draw(i) for i in items])
    correct = 0
    for item, vector in zip(items, images, strict=True):
        texts = [describe({**item.attributes, "colour": c}) for c in VALUES["colour"]]
        best = int(np.argmax(shipped.embed_texts(texts) @ vector))
        correct += VALUES["colour"][best] == item.attributes["colour"]
    assert correct >= 20  # chance is 3 of 24


# --------------------------------------------------------------------------- the benchmark


@pytest.mark.slow
def test_benchmark_reports_recall_and_cost_per_stage(
    tmp_path: Path, shipped: OpenClipEmbedder
) -> None:
    config = BenchConfig(n_items=80, n_per_kind=2, store="memory", top_k=5, alpha=2, limit=30)
    report = run_synthetic_bench(tmp_path, config, embedder=shipped)
    assert len(report["per_query"]) == 6
    for kind in ("text", "composed", "dialog", "all"):
        by_stage = report["recall"][kind]
        assert list(by_stage) == ["clip", "1", "1+2", "1+2+3"]
        for values in by_stage.values():
            assert 0.0 <= values["R@1"] <= values["R@5"] <= values["R@10"] <= 100.0
    cost = report["cost"]["all"]
    assert cost["1"]["reasoner_calls"] >= 1 and cost["1"]["verifier_calls"] == 0
    assert cost["2"]["questions"] >= 5
    for kind in ("text", "dialog"):
        assert report["cost"][kind]["2"]["verifier_calls"] == 1
    # A composed query's reference may be asked about first: one more call.
    assert 1 <= report["cost"]["composed"]["2"]["verifier_calls"] <= 2
    assert 1 <= cost["3"]["evaluator_calls"] <= 2
    assert report["models"]["verifier"].startswith("learned:ImageScope-Judge")
    for outcome in report["per_query"]:
        assert set(outcome["ranks"]) == {"clip", "1", "1+2", "1+2+3"}
        for value in outcome["signal"].values():
            assert value is None or 0.0 <= value <= 1.0
    assert "verify gt" in format_table(report)


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    return names | {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}


def test_eval_and_synthetic_meet_only_at_the_dataset_adapter() -> None:
    package = Path(imagescope.__file__).parent

    def importers(under: str, prefix: str) -> set[str]:
        return {
            str(p.relative_to(package))
            for p in (package / under).rglob("*.py")
            if any(m == prefix or m.startswith(prefix + ".") for m in _imported_modules(p))
        }

    assert importers("synthetic", "imagescope.eval") == set()
    assert importers("eval", "imagescope.synthetic") == {"eval/datasets/synthetic.py"}
    shared = _imported_modules(package / "measures.py")
    assert not any(m.startswith(("imagescope.eval", "imagescope.synthetic")) for m in shared)
