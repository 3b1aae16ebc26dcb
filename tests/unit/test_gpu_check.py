"""scripts/gpu-check.sh on a machine without CUDA: skips the CUDA parts, passes."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_check_passes_in_cpu_mode(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "OUT": str(tmp_path),
        "CUDA_VISIBLE_DEVICES": "",  # even on a GPU machine: the CPU path
        "IMAGESCOPE_GPU_CHECK_STORE_N": "9000",  # above exact_search_max: HNSW is searched
    }
    done = subprocess.run(
        ["bash", "scripts/gpu-check.sh", "--queries", "20"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert any(line.startswith("SKIP torch-cuda: torch sees no CUDA device") for line in lines)
    assert any(line.startswith("SKIP open_clip-cuda: no CUDA device") for line in lines)
    assert lines[-1] == "gpu-check: passed (cpu)"
    results = json.loads((tmp_path / "gpu-check.json").read_text())
    assert results["mode"] == "cpu"
    assert results["torch"]["status"] == results["open_clip"]["status"] == "skipped"
    smoke = results["open_clip"]["cpu_smoke"]["batch_2"]
    assert smoke["images_per_s"] > 0 and smoke["texts_per_s"] > 0
    store = results["store"]
    assert (store["status"], store["n"], store["dim"]) == ("ok", 9000, 512)
    assert store["recall_at_10"] >= 0.9 and store["query_p50_ms"] > 0


def test_gpu_check_needs_the_bootstrap(tmp_path: Path) -> None:
    script = tmp_path / "scripts" / "gpu-check.sh"
    script.parent.mkdir()
    script.write_text((ROOT / "scripts" / "gpu-check.sh").read_text())
    done = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 1
    assert "run 'bash scripts/bootstrap.sh' first" in done.stderr
