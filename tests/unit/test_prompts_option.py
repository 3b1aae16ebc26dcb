"""`imagescope eval --prompts DIR` and the prompts.dir setting."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from imagescope.cli import app
from imagescope.settings import Settings, get_settings
from imagescope.wiring import with_overrides

pytestmark = pytest.mark.unit


@pytest.fixture()
def clean_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    monkeypatch.setenv("IMAGESCOPE_DATA_DIR", str(tmp_path / "data"))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_bad_prompt_folder_is_refused_before_models_load(
    tmp_path: Path, clean_settings: None
) -> None:
    folder = tmp_path / "prompts"
    folder.mkdir()
    (folder / "caption.txt").write_text("Describe it.")
    started = time.perf_counter()
    args = ["eval", "synthetic", "--data", str(tmp_path / "synth"), "--prompts", str(folder)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    output = " ".join(result.output.split())  # the console wraps long lines
    assert "--prompts: prompt folder" in output
    assert "lacks prompt1_stage1_reasoner.txt, prompt2_stage2_reasoner.txt" in output
    assert time.perf_counter() - started < 10
    assert not (tmp_path / "synth").exists()  # nothing drawn or indexed


def test_prompts_override_reaches_roles_even_over_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IMAGESCOPE_PROMPTS__DIR", str(tmp_path / "from-env"))
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.models.reasoner.prompts_dir == tmp_path / "from-env"
    chosen = with_overrides(settings, prompts__dir=tmp_path / "from-cli")
    models = chosen.models
    assert models.reasoner.prompts_dir == tmp_path / "from-cli"
    assert models.evaluator.prompts_dir == models.captioner.prompts_dir == tmp_path / "from-cli"
    assert models.verifier.prompts_dir is None  # the verifier has no prompt file
