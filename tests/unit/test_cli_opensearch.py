"""``imagescope opensearch ...``: argument and settings errors answered before any work."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from imagescope.cli import app
from imagescope.settings import get_settings

pytestmark = pytest.mark.unit


def run(monkeypatch: pytest.MonkeyPatch, *args: str, **env: str):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    try:
        return CliRunner().invoke(app, ["opensearch", *args])
    finally:
        get_settings.cache_clear()


def test_the_commands_are_listed() -> None:
    result = CliRunner().invoke(app, ["opensearch", "--help"])
    assert result.exit_code == 0
    for command in ("adopt", "create-index", "backfill-captions", "install-pipeline"):
        assert command in result.output


def test_an_embedded_store_is_told_to_switch_to_opensearch(monkeypatch) -> None:
    result = run(monkeypatch, "adopt", IMAGESCOPE_STORE__KIND="embedded")
    assert result.exit_code == 2
    assert "IMAGESCOPE_STORE__KIND=opensearch" in result.output


def test_pipeline_arguments_are_checked_first(monkeypatch) -> None:
    env = {"IMAGESCOPE_STORE__KIND": "opensearch"}
    bad_stages = run(
        monkeypatch, "install-pipeline", "--endpoint", "http://x:1", "--stages", "4", **env
    )
    assert bad_stages.exit_code == 2 and "--stages" in bad_stages.output
    bad_url = run(monkeypatch, "install-pipeline", "--endpoint", "x:8080", **env)
    assert bad_url.exit_code == 2 and "http://127.0.0.1:8080" in bad_url.output


def test_an_unreachable_node_fails_fast_with_the_hosts_named(monkeypatch) -> None:
    env = {
        "IMAGESCOPE_STORE__KIND": "opensearch",
        "IMAGESCOPE_STORE__OPENSEARCH__HOSTS": '["http://127.0.0.1:9"]',
    }
    result = run(monkeypatch, "adopt", **env)
    assert result.exit_code == 1
    assert "cannot be reached" in result.output and "127.0.0.1:9" in result.output
