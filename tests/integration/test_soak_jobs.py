"""Ten rounds of the job fault soak (benchmarks/soak_jobs.py): worker SIGKILLs,
Redis SIGKILL + AOF restart, API restarts and a slow broker socket, with real
processes. No accepted job may be lost, run twice with a visible effect, or stuck."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.fixtures.redis import REPO_ROOT, JobCluster

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def load_soak() -> ModuleType:
    path = REPO_ROOT / "benchmarks" / "soak_jobs.py"
    spec = importlib.util.spec_from_file_location("soak_jobs", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["soak_jobs"] = module
    spec.loader.exec_module(module)
    return module


def test_ten_fault_rounds_lose_duplicate_and_strand_nothing(
    job_cluster: JobCluster, tmp_path: Path
) -> None:
    soak = load_soak()
    report = soak.run_soak(job_cluster, tmp_path, rounds=10, seed=11, jobs_per_round=3)
    assert report["accepted"] >= 25, report
    assert report["lost"] == [], report
    assert report["duplicated"] == [], report
    assert report["stuck"] == [], report
    assert report["webhook_bad_signatures"] == 0
    assert sum(report["faults"].values()) == 10
    lines = Path(report["ledger"]).read_text().splitlines()
    assert len(lines) == report["accepted"]  # every accepted job is in the ledger
