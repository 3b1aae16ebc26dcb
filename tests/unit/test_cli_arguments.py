"""The CLI answers argument errors before it loads any model (torch is never imported)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.unit

#: Runs the CLI once per argument list in one fresh interpreter; reports each exit
#: code and output, and whether torch was imported along the way.
_RUNNER = """
import json, sys
from typer.testing import CliRunner
from imagescope.cli import app
results = []
for args in json.loads(sys.argv[1]):
    result = CliRunner().invoke(app, args)
    results.append({"code": result.exit_code, "out": result.output})
print(json.dumps({"results": results, "torch": "torch" in sys.modules}))
"""

CASES = [
    (["search", "red", "--stages", "4"], "stages must include 1"),
    (["search", "red", "--stages", "x"], "write stage numbers"),
    (["search", "red", "--filter", "nosuchfield=1"], "unknown filter field"),
    (["search", "--ref", "no-such-id", "--edit", "red"], "unknown image id"),
    (["serve", "--port", "70000"], "65535"),
    (["demo", "--stages", "2"], "stages must include 1"),
    (["eval", "synthetic", "--data", "d", "--stages", "0"], "stages must include 1"),
]


def run_cli(tmp_path: Path, *arg_lists: list[str]) -> dict[str, Any]:
    env = {
        "IMAGESCOPE_DATA_DIR": str(tmp_path / "data"),
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
    }
    done = subprocess.run(
        [sys.executable, "-c", _RUNNER, json.dumps(arg_lists)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_argument_errors_come_before_any_model_loads(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        busy_case = (["serve", "--port", str(port)], f"cannot listen on 127.0.0.1:{port}")
        cases = [*CASES, busy_case]
        report = run_cli(tmp_path, *(args for args, _ in cases))
    for (args, message), result in zip(cases, report["results"], strict=True):
        assert result["code"] == 2, (args, result)
        assert message in result["out"], (args, result)
    assert report["torch"] is False
