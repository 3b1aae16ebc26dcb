"""SentenceTransformersEmbedder over tiny CLIP-style models, loaded by SentenceTransformer."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imagescope.errors import ConfigError

pytestmark = pytest.mark.unit

TEXTS = ["a red dress", "ein Hund auf dem Sofa", "", "word " * 100]


def _images(count: int, *, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    modes = ["RGB", "L", "RGBA"]
    return [
        Image.fromarray((rng.random((20 + 5 * n, 30, 3)) * 255).astype("uint8")).convert(
            modes[n % 3]
        )
        for n in range(count)
    ]


@pytest.fixture(scope="module")
def other_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A second 32-d model (another seed) and a 16-d one."""
    from imagescope.models.tiny import write_tiny_sentence_transformer

    root = tmp_path_factory.mktemp("st-others")
    return {
        "seed1": write_tiny_sentence_transformer(root / "seed1", seed=1),
        "dim16": write_tiny_sentence_transformer(root / "dim16", dim=16),
    }


def test_folder_loads_with_sentence_transformer(tiny_st_path):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(tiny_st_path), device="cpu")
    assert model.encode(["a cat"]).shape == (1, 32)


def test_model_id_and_dim(tiny_st_embedder, tiny_st_path):
    assert tiny_st_embedder.model_id == f"sentence_transformers:{tiny_st_path.name}"
    assert tiny_st_embedder.dim == 32


def test_outputs_are_float32_unit_rows(tiny_st_embedder):
    texts = tiny_st_embedder.embed_texts(TEXTS)
    images = tiny_st_embedder.embed_images(_images(4))
    for vectors, count in ((texts, len(TEXTS)), (images, 4)):
        assert vectors.shape == (count, 32)
        assert vectors.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.max(np.triu(texts @ texts.T, k=1)) < 0.9999
    assert tiny_st_embedder.embed_texts([]).shape == (0, 32)
    assert tiny_st_embedder.embed_images([]).shape == (0, 32)


def test_vectors_match_the_underlying_model(tiny_st_embedder, tiny_st_path):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(tiny_st_path), device="cpu")
    images = [im.convert("RGB") for im in _images(3)]
    raw_images = model.encode(images, normalize_embeddings=True)
    raw_texts = model.encode(TEXTS, normalize_embeddings=True)
    np.testing.assert_allclose(tiny_st_embedder.embed_images(images), raw_images, atol=1e-5)
    np.testing.assert_allclose(tiny_st_embedder.embed_texts(TEXTS), raw_texts, atol=1e-5)


def test_batch_size_does_not_change_vectors(tiny_st_embedder, tiny_st_path):
    from imagescope.models.st_embedder import SentenceTransformersEmbedder

    one_by_one = SentenceTransformersEmbedder(str(tiny_st_path), batch_size=1)
    images = _images(5, seed=2)
    np.testing.assert_allclose(
        one_by_one.embed_images(images), tiny_st_embedder.embed_images(images), atol=1e-5
    )
    np.testing.assert_allclose(
        one_by_one.embed_texts(TEXTS), tiny_st_embedder.embed_texts(TEXTS), atol=1e-5
    )


def test_separate_image_model_embeds_images(tiny_st_embedder, tiny_st_path, other_models):
    from imagescope.models.st_embedder import SentenceTransformersEmbedder

    image_only = SentenceTransformersEmbedder(str(other_models["seed1"]))
    mixed = SentenceTransformersEmbedder(str(tiny_st_path), image_model=str(other_models["seed1"]))
    images = _images(2)
    np.testing.assert_allclose(
        mixed.embed_images(images), image_only.embed_images(images), atol=1e-6
    )
    np.testing.assert_allclose(
        mixed.embed_texts(TEXTS), tiny_st_embedder.embed_texts(TEXTS), atol=1e-6
    )
    assert not np.allclose(mixed.embed_images(images), tiny_st_embedder.embed_images(images))
    assert mixed.model_id == f"sentence_transformers:{tiny_st_path.name}+seed1"


def test_dimension_mismatch_is_a_config_error(tiny_st_path, other_models):
    from imagescope.models.st_embedder import SentenceTransformersEmbedder

    with pytest.raises(ConfigError, match="IMAGESCOPE_MODELS__EMBEDDER__IMAGE_MODEL") as info:
        SentenceTransformersEmbedder(str(tiny_st_path), image_model=str(other_models["dim16"]))
    assert "32-d" in str(info.value) and "16-d" in str(info.value)


def test_missing_folder_names_the_setting(tmp_path):
    from imagescope.models.st_embedder import SentenceTransformersEmbedder

    with pytest.raises(ConfigError, match="IMAGESCOPE_MODELS__EMBEDDER__MODEL"):
        SentenceTransformersEmbedder(str(tmp_path / "no" / "such" / "model"))


def test_uncached_hub_model_fails_fast_offline(monkeypatch):
    from imagescope.models.st_embedder import SentenceTransformersEmbedder

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.monotonic()
    with pytest.raises(ConfigError, match="HF_HUB_OFFLINE=1"):
        SentenceTransformersEmbedder("imagescope-tests/no-such-model")
    assert time.monotonic() - started < 5


def test_bad_batch_size_is_a_config_error(tiny_st_path):
    from imagescope.models.st_embedder import SentenceTransformersEmbedder

    with pytest.raises(ConfigError, match="batch_size"):
        SentenceTransformersEmbedder(str(tiny_st_path), batch_size=0)


def test_rewriting_replaces_an_existing_folder(tmp_path):
    from imagescope.models.tiny import write_tiny_sentence_transformer

    target = tmp_path / "model"
    target.mkdir()
    (target / "stale.txt").write_text("old")
    assert write_tiny_sentence_transformer(target, dim=8) == target
    assert not (target / "stale.txt").exists()
    assert (target / "modules.json").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no staging folder left behind
