"""benchmarks/report.py: the README's performance table comes from the results files."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def load_report() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_report", ROOT / "benchmarks/report.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def query_result(identical: bool) -> dict[str, object]:
    def stages(total: float) -> dict[str, dict[str, float]]:
        return {s: {"p50_ms": total / 4, "p90_ms": total} for s in ("1", "2", "3")} | {
            "total": {"p50_ms": total, "p90_ms": total}
        }

    return {
        "n": 5000,
        "baseline": "reencode",
        "identical_rankings": identical,
        "reencode": stages(4000.0),
        "reuse_cold": stages(2000.0),
        "reuse": stages(500.0),
        "ratio_p50": {"reencode": 1.0, "reuse_cold": 0.5, "reuse": 0.125},
    }


def test_table_rows_come_from_the_files_and_only_the_marked_part_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    report = load_report()
    monkeypatch.setattr(report, "RESULTS", tmp_path)
    (tmp_path / "query-5000.json").write_text(json.dumps(query_result(True)))
    (tmp_path / "jobs.json").write_text(
        json.dumps(
            {
                "baseline": "in_process",
                "latency": {
                    "celery": {"p50_ms": 15.0},
                    "in_process": {"p50_ms": 7.0},
                    "overhead_p50_ms": 8.0,
                },
            }
        )
    )
    readme = f"# Title\n\nintro\n\n{report.START}\nold table\n{report.END}\n\n## After\nkept\n"
    out = report.rewritten(readme)
    assert out.startswith("# Title\n\nintro\n\n") and out.endswith("\n\n## After\nkept\n")
    assert "old table" not in out
    assert "p50 500 ms" in out and "re-encoding every candidate: 4000 ms" in out
    assert "0.12x" in out and "identical rankings" in out
    assert "+8.0 ms" in out
    assert report.rewritten(out) == out  # stable: a second run changes nothing


def test_a_ranking_difference_is_shown_and_missing_files_give_no_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    report = load_report()
    monkeypatch.setattr(report, "RESULTS", tmp_path)
    assert report.table().count("\n") == len(report.HEADER) + 1  # markers and header only
    (tmp_path / "query-5000.json").write_text(json.dumps(query_result(False)))
    assert "RANKINGS DIFFER" in report.table()
    assert "load average" not in report.table()  # older files: no machine section


def test_query_rows_show_the_load_average_of_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    report = load_report()
    monkeypatch.setattr(report, "RESULTS", tmp_path)
    result = query_result(True)
    result["machine"] = {
        "load_average_at_start": [3.52, 2.0, 1.0],
        "load_average_at_end": [7.04, 3.0, 1.0],
    }
    (tmp_path / "query-5000.json").write_text(json.dumps(result))
    assert "identical rankings (load average 3.5 to 7.0)" in report.table()
