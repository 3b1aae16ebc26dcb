"""The `imagescope` command end to end: ingest a folder into the embedded store,
then search with the CPU backends (tiny open_clip loaded by path, rule-based
reasoner, CLIP zero-shot verifier and evaluator), through all three stages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image, ImageDraw
from typer.testing import CliRunner

from imagescope.cli import app, parse_filters, parse_stages
from imagescope.errors import InputError
from imagescope.settings import get_settings

pytestmark = [pytest.mark.unit, pytest.mark.slow]

COLOURS = {"red": (220, 30, 30), "blue": (30, 60, 220), "green": (30, 180, 60)}
SHAPES = ("square", "circle")


@pytest.fixture()
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_open_clip_files):  # type: ignore[no-untyped-def]
    config_dir, name, checkpoint = tiny_open_clip_files
    env = {
        "IMAGESCOPE_DATA_DIR": str(tmp_path / "data"),
        "IMAGESCOPE_STORE__KIND": "embedded",
        "IMAGESCOPE_STORE__EMBEDDED__PATH": str(tmp_path / "index"),
        "IMAGESCOPE_MODELS__EMBEDDER__KIND": "open_clip",
        "IMAGESCOPE_MODELS__EMBEDDER__MODEL": name,
        "IMAGESCOPE_MODELS__EMBEDDER__PRETRAINED": str(checkpoint),
        "IMAGESCOPE_MODELS__EMBEDDER__CONFIG_DIR": str(config_dir),
        "IMAGESCOPE_MODELS__REASONER__KIND": "rule",
        "IMAGESCOPE_MODELS__VERIFIER__KIND": "clip",
        "IMAGESCOPE_MODELS__EVALUATOR__KIND": "clip",
        "IMAGESCOPE_PIPELINE__TOP_K": "5",
        "IMAGESCOPE_PIPELINE__ALPHA": "2",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    folder = tmp_path / "photos"
    folder.mkdir()
    for colour, rgb in COLOURS.items():
        for shape in SHAPES:
            image = Image.new("RGB", (48, 48), "white")
            draw = ImageDraw.Draw(image)
            box = (8, 8, 40, 40)
            (draw.rectangle if shape == "square" else draw.ellipse)(box, fill=rgb)
            image.save(folder / f"{colour}-{shape}.png")
    yield folder
    get_settings.cache_clear()


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def test_ingest_then_search_runs_all_three_stages(cli_env: Path, tmp_path: Path) -> None:
    code, out = _run("ingest", str(cli_env))
    assert code == 0, out
    assert "ingest: 6 new, 0 updated, 0 unchanged, 0 failed" in out
    code, out = _run("ingest", str(cli_env))  # unchanged files are skipped
    assert code == 0 and "ingest: 0 new, 0 updated, 6 unchanged, 0 failed" in out
    code, out = _run("ingest", str(cli_env), "--force")  # idempotent: updated in place
    assert code == 0 and "ingest: 0 new, 6 updated, 0 unchanged, 0 failed" in out

    code, out = _run("search", "a red square", "--json", "--limit", "6")
    assert code == 0, out
    result = json.loads(out)
    assert result["stages"] == [1, 2, 3]
    ids = [c["id"] for c in result["candidates"]]
    assert sorted(ids) == sorted(f"{c}-{s}" for c in COLOURS for s in SHAPES)
    trace = result["trace"]
    assert trace["models"]["reasoner"] == "rule"
    assert trace["models"]["verifier"].startswith("clip")
    assert trace["propositions"], "the rule reasoner makes at least one proposition"
    top = result["candidates"][:5]
    assert all(len(c["verdicts"]) == len(trace["propositions"]) for c in top)
    assert {"intent", "retrieve", "verify", "evaluate"} <= set(trace["timings"])

    dialog = tmp_path / "dialog.json"
    dialog.write_text(
        json.dumps(
            {"caption": "a shape", "turns": [{"question": "what colour?", "answer": "blue"}]}
        )
    )
    code, out = _run("search", "--dialog", str(dialog), "--json", "--stages", "1,2")
    assert code == 0, out
    assert json.loads(out)["stages"] == [1, 2]
    assert len(json.loads(out)["trace"]["dialog_rounds"]) == 2

    code, out = _run("search", "--ref", "green-circle", "--edit", "make it a square")
    assert code == 0, out
    assert "green-circle" not in out.split("descriptions")[0]  # the reference is left out
    assert "results (stages 1, 2, 3)" in out


def test_cli_errors_say_how_to_fix(cli_env: Path) -> None:
    assert _run("ingest", str(cli_env))[0] == 0
    code, out = _run("search", "--ref", "no-such-image", "--edit", "red")
    assert code == 2 and "unknown image id" in out
    code, out = _run("search")
    assert code == 2 and "nothing to search for" in out
    code, out = _run("search", "red", "--stages", "2,3")
    assert code == 2 and "stages must include 1" in out
    code, out = _run("search", "red", "--filter", "nosuchfield=1")
    assert code == 2 and "unknown filter field" in out
    code, out = _run("ingest", "does-not-exist")
    assert code == 2 and "does not exist" in out


def test_parse_filters() -> None:
    assert parse_filters(["colour=red", "colour=blue", "price>=10", "price<20", "n=3"]) == {
        "colour": ["red", "blue"],
        "price": {"gte": 10.0, "lt": 20.0},
        "n": 3,
    }
    assert parse_filters(["code=0042", "w=0.5"]) == {"code": "0042", "w": 0.5}
    with pytest.raises(InputError, match="not a number"):
        parse_filters(["price>=cheap"])
    with pytest.raises(InputError, match="key=value"):
        parse_filters(["colour"])


def test_parse_stages() -> None:
    assert parse_stages("1, 2,3") == [1, 2, 3]
    with pytest.raises(InputError, match="stage numbers"):
        parse_stages("1,two")
