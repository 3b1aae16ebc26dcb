"""Evaluation that never reports stale numbers: run fingerprints, content-keyed
gallery indexes, per-query cost log, partial submissions, bad images, official
layouts, errors that name the query and the file."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from imagescope.cli import app
from imagescope.errors import UnknownIdError
from imagescope.eval.benchmark import Benchmark, BenchmarkQuery, GalleryImage
from imagescope.eval.datasets import load_cirr, load_visdial
from imagescope.eval.fingerprint import FingerprintMismatch, check_fingerprint
from imagescope.eval.harness import CostLog, _check_partial
from imagescope.eval.runner import RunError, run_benchmark
from imagescope.schemas import SearchResult, TextQuery, Trace
from imagescope.settings import get_settings
from tests.unit.test_eval_loaders import make_cirr, make_visdial

pytestmark = pytest.mark.unit


@pytest.fixture()
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("IMAGESCOPE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def run(data_dir: Path, *extra: str) -> tuple[int, str]:
    args = ["eval", "synthetic", "--data", str(data_dir / "synth"), "--size", "40"]
    args += ["--queries-per-kind", "2", "--out", str(data_dir / "run"), *extra]
    result = CliRunner().invoke(app, args)
    return result.exit_code, result.output.replace("\n", "")  # the console wraps lines


@pytest.mark.slow
def test_a_changed_run_is_refused_naming_what_changed(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, output = run(data_dir, "--stages", "1", "--max-queries", "3")
    assert code == 0, output
    code, output = run(data_dir, "--stages", "1")  # same inputs: resumes, 3 more queries
    assert code == 0, output
    costs = json.loads((data_dir / "run" / "costs.json").read_text())
    assert costs["queries"] == {"1": 6}  # each query counted once across the two runs
    code, output = run(data_dir, "--stages", "1,2")
    assert code == 2 and "stages: 1 -> 1,2" in output and "--fresh" in output
    monkeypatch.setenv("IMAGESCOPE_PIPELINE__TAU", "0.3")
    get_settings.cache_clear()
    code, output = run(data_dir, "--stages", "1")
    assert code == 2 and "pipeline settings" in output
    monkeypatch.delenv("IMAGESCOPE_PIPELINE__TAU")
    get_settings.cache_clear()
    # Regenerated images (same ids, other pixels) are a different gallery...
    image = next((data_dir / "synth").glob("catalog-*/images/*.png"))
    Image.new("RGB", (32, 32), (1, 2, 3)).save(image)
    code, output = run(data_dir, "--stages", "1")
    assert code == 2 and "gallery images" in output
    # ...indexed anew when started over.
    code, output = run(data_dir, "--stages", "1", "--fresh")
    assert code == 0, output
    indexes = list((data_dir / "data" / "eval").glob("synthetic-*"))
    assert len(indexes) == 2, indexes
    metrics = json.loads((data_dir / "run" / "metrics.json").read_text())
    assert metrics["fingerprint"]["stages"] == "1" and metrics["skipped_images"] == {}


@pytest.mark.slow
def test_bad_gallery_images_stop_the_run_unless_skipped(data_dir: Path) -> None:
    code, output = run(data_dir, "--stages", "1", "--max-queries", "1")
    assert code == 0, output
    image = sorted((data_dir / "synth").glob("catalog-*/images/*.png"))[-1]
    image.write_bytes(b"not a png")
    code, output = run(data_dir, "--stages", "1", "--fresh")
    assert code == 2 and image.stem in output and str(image) in output
    assert "--skip-bad-images" in output
    code, output = run(data_dir, "--stages", "1", "--fresh", "--skip-bad-images")
    assert code == 0, output
    skipped = json.loads((data_dir / "run" / "metrics.json").read_text())["skipped_images"]
    assert list(skipped) == [image.stem] and str(image) in skipped[image.stem]


def test_fingerprint_check_records_refuses_and_starts_over(tmp_path: Path) -> None:
    check_fingerprint(tmp_path, {"model embedder": "a", "split": "val"}, resume=True)
    check_fingerprint(tmp_path, {"model embedder": "a", "split": "val"}, resume=True)
    with pytest.raises(FingerprintMismatch, match="model embedder: a -> b"):
        check_fingerprint(tmp_path, {"model embedder": "b", "split": "val"}, resume=True)
    check_fingerprint(tmp_path, {"model embedder": "b", "split": "val"}, resume=False)
    check_fingerprint(tmp_path, {"model embedder": "b", "split": "val"}, resume=True)
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "rankings.jsonl").write_text("")
    with pytest.raises(FingerprintMismatch, match="without a fingerprint"):
        check_fingerprint(legacy, {"x": "1"}, resume=True)


def test_cost_log_counts_a_redone_query_once(tmp_path: Path) -> None:
    result = SearchResult(candidates=[], trace=Trace(timings={"retrieve": 1.0}))
    log = CostLog(tmp_path, resume=True)
    for query_id in ("q1", "q2", "q2"):  # q2 redone after a crash before its batch synced
        log.add({"1": result})
        log.finish(query_id)
    again = CostLog(tmp_path, resume=True)
    summary = again.summary({"q1", "q2"})
    assert summary["queries"] == {"1": 2}
    assert summary["totals"]["1"]["seconds.retrieve"] == 2.0
    assert CostLog(tmp_path, resume=False).summary({"q1", "q2"})["queries"] == {}


def _server_scored(n: int) -> Benchmark:
    queries = [BenchmarkQuery(id=str(i), query=TextQuery(text="x")) for i in range(n)]
    return Benchmark(name="cirr", split="test1", gallery=[], queries=queries,
                     scorer=lambda b, r: {}, submitter=lambda b, r, out_dir: [])  # fmt: skip


def test_partial_test_submission_needs_the_flag() -> None:
    with pytest.raises(RunError, match="--partial-submission") as err:
        _check_partial(_server_scored(10), 3, False)
    assert "3 of its 10" in str(err.value)
    _check_partial(_server_scored(10), 3, True)
    _check_partial(_server_scored(10), None, False)
    _check_partial(_server_scored(10), 10, False)


def test_search_errors_name_the_query_and_the_annotation_file(tmp_path: Path) -> None:
    annotations = tmp_path / "val.json"
    annotations.write_text("[]")
    bench = _server_scored(3)
    bench = Benchmark(name="circo", split="val", gallery=[GalleryImage("a", tmp_path / "a")],
                      queries=bench.queries, scorer=lambda b, r: {},
                      files=(annotations,))  # fmt: skip

    def search(query: object) -> list[tuple[str, float]]:
        raise UnknownIdError("image", "ref-9")

    with pytest.raises(RunError) as err:
        run_benchmark(bench, search={"1": search}, out_dir=tmp_path / "out", progress=False)
    assert "query '0'" in str(err.value) and str(annotations) in str(err.value)
    assert "ref-9" in str(err.value)


def test_official_cirr_layout_is_found_with_data_as_the_root(tmp_path: Path) -> None:
    data = tmp_path / "data"
    make_cirr(data, data / "cirr", nested=True)  # annotations and images in data/cirr/
    bench = load_cirr(data)
    assert len(bench.queries) == 2 and bench.gallery[0].path.is_file()
    assert bench.files[0] == data / "cirr" / "captions" / "cap.rc2.val.json"
    other = tmp_path / "other"
    make_cirr(other, other / "cirr" / "img_raw", nested=True)
    assert load_cirr(other).gallery[0].path.is_file()


def test_chatir_protocol_layout_is_found(tmp_path: Path) -> None:
    make_visdial(tmp_path)
    protocol = tmp_path / "ChatIR_Protocol"
    protocol.mkdir()
    (tmp_path / "Search_Space_val_50k.json").rename(protocol / "Search_Space_val_50k.json")
    bench = load_visdial(tmp_path)
    assert len(bench.gallery) == 3 and bench.gallery[0].path.is_file()
    assert bench.files[0] == protocol / "Search_Space_val_50k.json"
