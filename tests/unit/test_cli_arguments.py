"""The CLI answers argument errors before it loads any model (torch is never imported)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

#: Runs the CLI in a fresh interpreter and reports the exit code, the output and
#: whether torch was imported on the way.
_RUNNER = """
import json, sys
from typer.testing import CliRunner
from imagescope.cli import app
result = CliRunner().invoke(app, sys.argv[1:])
print(json.dumps({"code": result.exit_code, "out": result.output,
                  "torch": "torch" in sys.modules}))
"""


def run_cli(tmp_path: Path, *args: str) -> dict[str, object]:
    env = {
        "IMAGESCOPE_DATA_DIR": str(tmp_path / "data"),
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
    }
    done = subprocess.run(
        [sys.executable, "-c", _RUNNER, *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=True,
    )
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["search", "red", "--stages", "4"], "stages must include 1"),
        (["search", "red", "--stages", "x"], "write stage numbers"),
        (["search", "red", "--filter", "nosuchfield=1"], "unknown filter field"),
        (["search", "--ref", "no-such-id", "--edit", "red"], "unknown image id"),
        (["serve", "--port", "70000"], "65535"),
        (["demo", "--stages", "2"], "stages must include 1"),
        (["eval", "synthetic", "--data", "d", "--stages", "0"], "stages must include 1"),
    ],
)
def test_argument_errors_come_before_any_model_loads(
    tmp_path: Path, args: list[str], message: str
) -> None:
    result = run_cli(tmp_path, *args)
    assert result["code"] == 2, result
    assert message in str(result["out"])
    assert result["torch"] is False


def test_serve_on_a_busy_port_is_refused_at_once(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        result = run_cli(tmp_path, "serve", "--port", str(port))
    assert result["code"] == 2, result
    assert f"cannot listen on 127.0.0.1:{port}" in str(result["out"])
    assert result["torch"] is False
