"""The public Python API: ``imagescope.open`` (the one wiring), top-level exports,
the engine as a context manager, per-request settings, the model registries."""

from __future__ import annotations

import re
import subprocess
import sys
from contextlib import redirect_stdout
from io import StringIO
from pathlib import Path

import pytest

import imagescope
from imagescope.errors import ConfigError, InputError
from imagescope.models.factory import (
    BUNDLED_SWITCH,
    build_embedder,
    build_reasoner,
    build_verifier,
    known_kinds,
)
from imagescope.models.fakes import FakeEmbedder
from imagescope.schemas import TextQuery
from imagescope.settings import EmbedderSettings, PipelineSettings, RoleSettings, Settings
from imagescope.store.memory import MemoryStore
from imagescope.wiring import with_overrides

pytestmark = pytest.mark.unit

README = Path(__file__).resolve().parents[2] / "README.md"
FAKE_MODELS = {
    "embedder": {"kind": "fake"},
    "reasoner": {"kind": "fake"},
    "verifier": {"kind": "fake"},
    "evaluator": {"kind": "fake"},
}


def readme_python_snippet() -> str:
    """The first ```python block of the README's "## Python" section."""
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Python\n", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "README's Python section has no python code block"
    return match.group(1)


@pytest.mark.slow  # draws and indexes 400 images with the bundled model (~10 s)
def test_readme_snippet_is_three_lines_and_searches_the_bundled_catalog(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    snippet = readme_python_snippet()
    # three statements; ruff format adds a blank line after the import
    assert len([line for line in snippet.splitlines() if line.strip()]) == 3
    monkeypatch.setenv("IMAGESCOPE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    out = StringIO()
    with redirect_stdout(out):
        exec(compile(snippet, "README.md", "exec"), {})  # noqa: S102 - the documented snippet
    caption = out.getvalue().strip()
    assert "blue" in caption and "triangle" in caption
    assert (tmp_path / "data" / "demo").is_dir()  # data went under IMAGESCOPE_DATA_DIR


def test_import_is_light_and_exports_are_curated() -> None:
    code = (
        "import sys, imagescope\n"
        "names = [getattr(imagescope, n) for n in imagescope.__all__]\n"
        "imagescope.Settings(); imagescope.TextQuery(text='x')\n"
        "print('torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
    assert {"open", "Engine", "Settings", "TextQuery", "SearchResult"} <= set(imagescope.__all__)
    assert not any(name.startswith("_") for name in imagescope.__all__ if name != "__version__")
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = imagescope.nope  # type: ignore[attr-defined]


class ClosingStore(MemoryStore):
    closed = 0

    def close(self) -> None:
        self.closed += 1


def test_open_wires_the_settings_and_the_engine_closes_its_store() -> None:
    store = ClosingStore()
    settings = Settings.model_validate({"models": FAKE_MODELS})
    with imagescope.open(settings, store=store, pipeline__top_k=4, pipeline={"alpha": 1}) as engine:
        assert isinstance(engine, imagescope.Engine)
        assert engine.pipeline.top_k == 4 and engine.pipeline.alpha == 1
        assert store.dim == FakeEmbedder().dim  # the store was made for the embedder
        assert set(engine.model_ids()) == {"embedder", "reasoner", "verifier", "evaluator"}
        assert engine.search("a red dress", stages=[1]).candidates == []
    assert store.closed == 1


def test_settings_overrides_are_validated() -> None:
    base = Settings.model_validate({})
    assert with_overrides(base, pipeline__tau=0.3).pipeline.tau == 0.3
    with pytest.raises(ConfigError, match="sections: .*pipeline"):
        with_overrides(base, nosuch__thing=1)
    with pytest.raises(ConfigError, match="alpha"):
        with_overrides(base, pipeline={"top_k": 2, "alpha": 5})


def test_data_dir_moves_the_embedded_catalog(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IMAGESCOPE_DATA_DIR", str(tmp_path))
    assert Settings().store.embedded.path == tmp_path / "catalog"
    explicit = tmp_path / "elsewhere"
    monkeypatch.setenv("IMAGESCOPE_STORE__EMBEDDED__PATH", str(explicit))
    assert Settings().store.embedded.path == explicit
    monkeypatch.delenv("IMAGESCOPE_STORE__EMBEDDED__PATH")
    moved = with_overrides(Settings(), data_dir=tmp_path / "d2")
    assert moved.store.embedded.path == tmp_path / "d2" / "catalog"


def test_per_request_knobs_are_checked_together() -> None:
    pipeline = PipelineSettings(top_k=5, alpha=2)
    assert pipeline.for_request(top_k=3).top_k == 3
    with pytest.raises(InputError, match=r"alpha \(4\) must not exceed top_k \(3\)"):
        pipeline.for_request(top_k=3, alpha=4)
    settings = Settings.model_validate({"models": FAKE_MODELS})
    with imagescope.open(settings, store=MemoryStore()) as engine:
        with pytest.raises(InputError, match="must not exceed top_k"):
            engine.search(TextQuery(text="red"), top_k=2, alpha=3)
        with pytest.raises(InputError, match="stages"):
            engine.search("red", stages=[2])


def test_model_registries_name_the_known_kinds() -> None:
    kinds = known_kinds("verifier")
    assert kinds == sorted(kinds) and {"clip", "fake", "none", "openai", "vllm"} <= set(kinds)
    bogus = RoleSettings.model_construct(kind="nope")
    with pytest.raises(ConfigError, match="use one of: " + ", ".join(known_kinds("reasoner"))):
        build_reasoner(bogus)
    with pytest.raises(ConfigError, match="use one of: " + ", ".join(kinds)):
        build_verifier(bogus, FakeEmbedder())
    with pytest.raises(ConfigError, match="known: bundled:synthetic"):
        build_embedder(EmbedderSettings(model="bundled:nope"))


def test_bundled_model_switch_loads_without_a_download() -> None:
    embedder = build_embedder(EmbedderSettings(model="bundled:synthetic"))
    assert "ImageScope-Synth" in embedder.model_id


def test_a_model_that_cannot_load_names_the_bundled_switch(tmp_path: Path) -> None:
    missing = EmbedderSettings(model="ViT-B-32", pretrained=str(tmp_path / "none.safetensors"))
    with pytest.raises(ConfigError) as caught:
        build_embedder(missing)
    assert BUNDLED_SWITCH in str(caught.value)


def test_store_registry_names_the_known_kinds() -> None:
    from imagescope.settings import StoreSettings
    from imagescope.store.factory import build_store, known_kinds

    assert known_kinds() == ["embedded", "memory", "opensearch"]
    assert isinstance(build_store(StoreSettings(kind="memory")), MemoryStore)
    with pytest.raises(ConfigError, match="use one of: embedded, memory, opensearch"):
        build_store(StoreSettings.model_construct(kind="nope"))


def test_store_section_as_a_dict_is_a_settings_override() -> None:
    settings = Settings.model_validate({"models": FAKE_MODELS})
    with imagescope.open(settings, store={"kind": "memory"}, pipeline__limit=7) as engine:
        assert engine.count() == 0 and engine.pipeline.limit == 7
        assert engine.metadata_fields() == set() and engine.records(["x"]) == []
