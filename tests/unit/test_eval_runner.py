"""The resumable benchmark runner, on in-memory benchmarks and fake searches."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from imagescope.eval.benchmark import Benchmark, BenchmarkQuery, GalleryImage
from imagescope.eval.datasets.cirr import submit_cirr
from imagescope.eval.datasets.t2i import score_text_to_image
from imagescope.eval.datasets.visdial import score_visdial
from imagescope.eval.runner import RANKINGS_FILE, RunError, run_benchmark
from imagescope.schemas import ComposedQuery, DialogQuery, DialogTurn, ImageRef, TextQuery

pytestmark = pytest.mark.unit

GALLERY = [GalleryImage(f"g{i}", Path(f"/images/g{i}.jpg")) for i in range(3)]


def text_benchmark(name: str = "toy", n: int = 6) -> Benchmark:
    queries = [
        BenchmarkQuery(id=f"q{i}", query=TextQuery(text=f"q{i}"), targets=(f"g{i % 3}",))
        for i in range(n)
    ]
    return Benchmark(
        name=name, split="test", gallery=GALLERY, queries=queries, scorer=score_text_to_image
    )


class Stage1:
    """Target first for even queries, last for odd ones; records what it searched."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.calls: list[str] = []
        self.fail_after = fail_after

    def __call__(self, query: object) -> list[tuple[str, float]]:
        assert isinstance(query, TextQuery)
        if self.fail_after is not None and len(self.calls) == self.fail_after:
            raise RuntimeError("interrupted")
        self.calls.append(query.text)
        index = int(query.text[1:])
        target = f"g{index % 3}"
        others = [g.id for g in GALLERY if g.id != target]
        target_score = 1.0 if index % 2 == 0 else 0.0
        return [(target, target_score), (others[0], 0.5), (others[1], 0.5)]


def stage2(query: object) -> list[tuple[str, float]]:
    """Always ranks the target first."""
    assert isinstance(query, TextQuery)
    index = int(query.text[1:])
    return [(f"g{index % 3}", 1.0)] + [(g.id, 0.0) for g in GALLERY if g.id != f"g{index % 3}"]


def read_ids(out_dir: Path) -> list[str]:
    lines = (out_dir / RANKINGS_FILE).read_text().splitlines()
    return [json.loads(line)["id"] for line in lines]


def test_full_run_scores_each_stage_and_writes_metrics(tmp_path: Path) -> None:
    result = run_benchmark(
        text_benchmark(),
        search={"stage1": Stage1(), "stage2": stage2},
        out_dir=tmp_path,
        progress=False,
    )
    assert result.metrics["stage1"] == {"R@1": 50.0, "R@5": 100.0, "R@10": 100.0}
    assert result.metrics["stage2"] == {"R@1": 100.0, "R@5": 100.0, "R@10": 100.0}
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["stages"] == result.metrics
    assert (saved["benchmark"], saved["queries"]) == ("toy", 6)
    # Ties (0.5, 0.5) are broken by ascending id in the stored ranking.
    first = json.loads((tmp_path / RANKINGS_FILE).read_text().splitlines()[1])
    assert first["rankings"]["stage1"] == [["g0", "g2", "g1"]]


def test_interrupted_run_resumes_without_recomputing(tmp_path: Path) -> None:
    reference = run_benchmark(
        text_benchmark(), search={"stage1": Stage1()}, out_dir=tmp_path / "ref", progress=False
    )
    out = tmp_path / "run"
    failing = Stage1(fail_after=3)
    with pytest.raises(RuntimeError, match="interrupted"):
        run_benchmark(
            text_benchmark(),
            search={"stage1": failing},
            out_dir=out,
            batch_size=2,  # the failure hits mid-batch: q2 must still be saved
            progress=False,
        )
    assert read_ids(out) == ["q0", "q1", "q2"]
    resumed = Stage1()
    result = run_benchmark(
        text_benchmark(), search={"stage1": resumed}, out_dir=out, batch_size=2, progress=False
    )
    assert resumed.calls == ["q3", "q4", "q5"]
    assert (result.searched, result.resumed) == (3, 3)
    assert result.metrics == reference.metrics
    assert read_ids(out) == [f"q{i}" for i in range(6)]


def test_partly_written_last_line_is_dropped_and_redone(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError):
        run_benchmark(
            text_benchmark(),
            search={"stage1": Stage1(fail_after=2)},
            out_dir=tmp_path,
            progress=False,
        )
    with (tmp_path / RANKINGS_FILE).open("a") as fh:
        fh.write('{"id": "q2", "rankings": {"stage1": [["g')  # killed mid-write
    resumed = Stage1()
    result = run_benchmark(
        text_benchmark(), search={"stage1": resumed}, out_dir=tmp_path, progress=False
    )
    assert resumed.calls == ["q2", "q3", "q4", "q5"]
    assert result.metrics["stage1"]["R@1"] == 50.0
    assert read_ids(tmp_path) == [f"q{i}" for i in range(6)]


def test_resume_false_starts_over(tmp_path: Path) -> None:
    run_benchmark(text_benchmark(), search={"stage1": Stage1()}, out_dir=tmp_path, progress=False)
    again = Stage1()
    result = run_benchmark(
        text_benchmark(), search={"stage1": again}, out_dir=tmp_path, resume=False, progress=False
    )
    assert len(again.calls) == 6 and result.resumed == 0
    assert len(read_ids(tmp_path)) == 6


def test_out_dir_of_another_benchmark_is_refused(tmp_path: Path) -> None:
    run_benchmark(text_benchmark(), search={"stage1": Stage1()}, out_dir=tmp_path, progress=False)
    with pytest.raises(RunError, match="holds a run of toy test"):
        run_benchmark(
            text_benchmark(name="other"),
            search={"stage1": Stage1()},
            out_dir=tmp_path,
            progress=False,
        )


def test_changing_stages_on_resume_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError):
        run_benchmark(
            text_benchmark(),
            search={"stage1": Stage1(fail_after=2)},
            out_dir=tmp_path,
            progress=False,
        )
    with pytest.raises(RunError, match="stages"):
        run_benchmark(
            text_benchmark(),
            search={"stage1": Stage1(), "stage2": stage2},
            out_dir=tmp_path,
            progress=False,
        )


def test_one_callable_may_return_every_stage_and_rankings_can_be_truncated(
    tmp_path: Path,
) -> None:
    stage1 = Stage1()

    def both(query: object) -> dict[str, list[tuple[str, float]]]:
        return {"stage1": stage1(query), "stage2": stage2(query)}

    result = run_benchmark(
        text_benchmark(), search=both, out_dir=tmp_path, keep_top=1, progress=False
    )
    # With only the top id kept, odd queries (target last) are misses at every K.
    assert result.metrics["stage1"] == {"R@1": 50.0, "R@5": 50.0, "R@10": 50.0}
    assert result.metrics["stage2"]["R@1"] == 100.0


def test_dialog_rounds_are_searched_and_scored_cumulatively(tmp_path: Path) -> None:
    def dialog(i: int) -> BenchmarkQuery:
        rounds = (
            DialogQuery(caption=f"d{i}"),
            DialogQuery(caption=f"d{i}", turns=[DialogTurn(question="q?", answer="a")]),
        )
        return BenchmarkQuery(id=str(i), query=rounds[-1], targets=(f"g{i}",), rounds=rounds)

    bench = Benchmark(
        name="visdial",
        split="val",
        gallery=GALLERY,
        queries=[dialog(0), dialog(1)],
        scorer=score_visdial,
    )
    seen: list[tuple[str, int]] = []

    def search(query: object) -> list[tuple[str, float]]:
        assert isinstance(query, DialogQuery)
        seen.append((query.caption, len(query.turns)))
        # Dialog 0 is found at round 0 only; dialog 1 never (its target is absent).
        return [("g0", 1.0)] if query.caption == "d0" and not query.turns else [("g2", 1.0)]

    result = run_benchmark(bench, search={"s1": search}, out_dir=tmp_path, progress=False)
    assert seen == [("d0", 0), ("d0", 1), ("d1", 0), ("d1", 1)]
    assert result.metrics["s1"] == {"Hits@10/round0": 50.0, "Hits@10/round1": 50.0}


def test_server_scored_split_writes_submissions_per_stage(tmp_path: Path) -> None:
    members = ("r", "t", "m1", "m2", "m3", "m4")
    query = BenchmarkQuery(
        id="7",
        query=ComposedQuery(reference=ImageRef(id="r"), instruction="make it blue"),
        extras={"reference": "r", "members": members},
    )
    bench = Benchmark(
        name="cirr",
        split="test1",
        gallery=[GalleryImage(m, Path(f"/i/{m}.png")) for m in members],
        queries=[query],
        scorer=score_text_to_image,
        submitter=submit_cirr,
    )

    def search(_: object) -> list[tuple[str, float]]:
        return [("r", 0.9), ("m2", 0.8), ("t", 0.7)]

    result = run_benchmark(bench, search={"stage1": search}, out_dir=tmp_path, progress=False)
    assert result.metrics == {"stage1": {}}
    recall, subset = result.submissions["stage1"]
    assert recall.parent == tmp_path / "submissions" / "stage1"
    assert json.loads(recall.read_text())["7"] == ["m2", "t"]
    assert json.loads(subset.read_text())["7"] == ["m2", "t", "m1"]
