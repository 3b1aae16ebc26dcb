"""`imagescope eval synthetic` end to end: draw, index, search per stage, score, resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from imagescope.cli import app
from imagescope.settings import get_settings

pytestmark = [pytest.mark.unit, pytest.mark.slow]


@pytest.fixture()
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("IMAGESCOPE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def test_eval_synthetic_scores_every_stage_and_resumes(data_dir: Path) -> None:
    out = data_dir / "run"
    args = ["eval", "synthetic", "--data", str(data_dir / "synth"), "--size", "60"]
    args += ["--queries-per-kind", "2", "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["benchmark"] == "synthetic"
    assert set(metrics["stages"]) == {"1", "1+2", "1+2+3"}
    for values in metrics["stages"].values():
        assert {"R@1", "R@5", "R@10", "text R@1", "composed R@1", "dialog R@1"} <= set(values)
        assert all(0.0 <= v <= 100.0 for v in values.values())
        assert values["R@1"] <= values["R@5"] <= values["R@10"]
    costs = json.loads((out / "costs.json").read_text())
    assert costs["queries"] == {"1": 6, "1+2": 6, "1+2+3": 6}
    per_query = costs["mean_per_query"]
    assert per_query["1"]["reasoner.calls"] >= 1
    assert "verifier.calls" not in per_query["1"]
    assert per_query["1+2"]["verifier.calls"] >= 1
    assert per_query["1+2+3"]["evaluator.calls"] >= 1
    lines = (out / "rankings.jsonl").read_text().splitlines()
    assert len(lines) == 6

    # A second run resumes: nothing is searched again, the metrics are the same.
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    assert (out / "rankings.jsonl").read_text().splitlines() == lines
    assert json.loads((out / "metrics.json").read_text())["stages"] == metrics["stages"]
    assert json.loads((out / "costs.json").read_text()) == costs  # nothing searched again


def test_eval_unknown_dataset_and_missing_files_are_clear(data_dir: Path) -> None:
    result = CliRunner().invoke(app, ["eval", "nope", "--data", str(data_dir)])
    assert result.exit_code == 2 and "unknown benchmark" in result.output
    result = CliRunner().invoke(app, ["eval", "cirr", "--data", str(data_dir / "missing")])
    assert result.exit_code == 2 and "not found" in result.output
