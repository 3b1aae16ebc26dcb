"""What the `imagescope` command prints: caption and path columns, --json honouring
--limit, empty catalogs and empty results, help with plain metavars and examples."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console

from imagescope.cli_output import print_empty
from tests.unit.test_cli import _run, cli_env  # noqa: F401  (the fixture)

pytestmark = [pytest.mark.unit, pytest.mark.slow]


def test_search_prints_captions_paths_and_honours_limit(cli_env: Path) -> None:  # noqa: F811
    assert _run("ingest", str(cli_env))[0] == 0
    code, out = _run("search", "a red square", "--stages", "1", "--limit", "3")
    assert code == 0, out
    table = out.split("descriptions")[0]
    for column in ("caption", "path", "score", "checks"):
        assert column in table
    assert table.count("photos/") == 3, "one path (relative to the current folder) per row"
    assert "model: reasoner (reads the request and writes what to look for)" in out

    code, out = _run("search", "a red square", "--stages", "1", "--limit", "2", "--json")
    assert code == 0, out
    assert len(json.loads(out)["candidates"]) == 2


def test_empty_results_say_what_to_try() -> None:
    console = Console(record=True, width=200)
    print_empty(console, {"colour": "red", "size": {"gte": 3.0}})
    print_empty(console, {})
    text = console.export_text()
    assert "no results with the filters on colour, size; remove a --filter" in text
    assert "no results; try other or fewer words" in text


def test_an_empty_catalog_says_to_ingest(cli_env: Path) -> None:  # noqa: F811
    code, out = _run("search", "a red square")
    assert code == 2
    assert "the catalog is empty: ingest images first (imagescope ingest ./photos)" in out


def test_help_uses_plain_metavars_and_shows_defaults() -> None:
    code, out = _run("search", "--help")
    assert code == 0
    assert "<bool>" not in out and "<list[str]>" not in out
    assert "--dialog FILE.json" in out and '"turns": [{"question":' in out
    assert "--filter KEY=VALUE" in out and "--limit N" in out
    assert "imagescope search --dialog turns.json" in out
    code, out = _run("serve", "--help")
    assert code == 0
    assert "127.0.0.1" in out and "8080" in out
    code, out = _run("ingest", "--help")
    assert code == 0 and "--force" in out and "unchanged" in out
