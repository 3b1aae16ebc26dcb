"""OpenClipEmbedder over the tiny random-weight model, loaded by checkpoint path."""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imagescope.errors import ConfigError, ImageError

pytestmark = pytest.mark.unit


def _images(count: int, *, seed: int = 0) -> list[Image.Image]:
    """Random images of varied sizes and modes (RGB, L, RGBA)."""
    rng = np.random.default_rng(seed)
    modes = ["RGB", "L", "RGBA"]
    out = []
    for n in range(count):
        pixels = (rng.random((24 + 7 * n, 40 + 3 * n, 3)) * 255).astype("uint8")
        out.append(Image.fromarray(pixels, "RGB").convert(modes[n % 3]))
    return out


TEXTS = ["a red dress", "a dog on a sofa", "", "a very long caption " * 30, "ein Hund"]


def test_model_id_names_architecture_and_checkpoint_file(tiny_open_clip, tiny_open_clip_files):
    _, name, checkpoint = tiny_open_clip_files
    assert tiny_open_clip.model_id == f"open_clip:{name}/{checkpoint.name}"
    assert tiny_open_clip.dim == 32


def test_outputs_are_float32_unit_rows_in_input_order(tiny_open_clip):
    texts = tiny_open_clip.embed_texts(TEXTS)
    images = tiny_open_clip.embed_images(_images(5))
    for vectors, count in ((texts, len(TEXTS)), (images, 5)):
        assert vectors.shape == (count, 32)
        assert vectors.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # distinct inputs give distinct vectors (the towers are not constant)
    assert np.max(np.triu(images @ images.T, k=1)) < 0.9999
    swapped = tiny_open_clip.embed_texts([TEXTS[1], TEXTS[0]])
    np.testing.assert_allclose(swapped, texts[[1, 0]], atol=1e-5)


def test_empty_input_gives_zero_rows(tiny_open_clip):
    assert tiny_open_clip.embed_texts([]).shape == (0, 32)
    assert tiny_open_clip.embed_images([]).shape == (0, 32)


def test_same_input_same_vectors(tiny_open_clip):
    images = _images(3)
    np.testing.assert_array_equal(
        tiny_open_clip.embed_images(images), tiny_open_clip.embed_images(images)
    )
    np.testing.assert_array_equal(
        tiny_open_clip.embed_texts(TEXTS), tiny_open_clip.embed_texts(TEXTS)
    )


def test_batch_size_does_not_change_vectors(tiny_open_clip, tiny_open_clip_files):
    from imagescope.models.open_clip_embedder import OpenClipEmbedder

    config_dir, name, checkpoint = tiny_open_clip_files
    one_by_one = OpenClipEmbedder(name, str(checkpoint), config_dir=config_dir, batch_size=1)
    three = OpenClipEmbedder(name, str(checkpoint), config_dir=config_dir, batch_size=3)
    images = _images(7, seed=1)
    batched = tiny_open_clip.embed_images(images)
    np.testing.assert_allclose(one_by_one.embed_images(images), batched, atol=1e-5)
    np.testing.assert_allclose(three.embed_images(images), batched, atol=1e-5)
    np.testing.assert_allclose(
        one_by_one.embed_texts(TEXTS), tiny_open_clip.embed_texts(TEXTS), atol=1e-5
    )


def test_seed_fixes_the_weights(tmp_path, tiny_open_clip, tiny_open_clip_files):
    from imagescope.models.tiny import tiny_open_clip_embedder

    again = tiny_open_clip_embedder(tmp_path / "same", seed=0)
    other = tiny_open_clip_embedder(tmp_path / "other", seed=1)
    images = _images(2)
    reference = tiny_open_clip.embed_images(images)
    np.testing.assert_allclose(again.embed_images(images), reference, atol=1e-6)
    assert not np.allclose(other.embed_images(images), reference, atol=1e-3)


def test_tiny_embedder_reuses_an_existing_checkpoint(tmp_path):
    from imagescope.models.tiny import tiny_open_clip_embedder

    first = tiny_open_clip_embedder(tmp_path, embed_dim=16)
    checkpoint = next(tmp_path.glob("*.safetensors"))
    stamp = checkpoint.stat().st_mtime_ns
    second = tiny_open_clip_embedder(tmp_path, embed_dim=16)
    assert checkpoint.stat().st_mtime_ns == stamp
    assert first.dim == second.dim == 16
    assert first.model_id == second.model_id == f"open_clip:ImageScope-Tiny-16d/{checkpoint.name}"


def test_missing_checkpoint_file_names_the_setting(tiny_open_clip_files, tmp_path):
    from imagescope.models.open_clip_embedder import OpenClipEmbedder

    config_dir, name, _ = tiny_open_clip_files
    missing = tmp_path / "nowhere" / "weights.safetensors"
    with pytest.raises(ConfigError, match="IMAGESCOPE_MODELS__EMBEDDER__PRETRAINED") as info:
        OpenClipEmbedder(name, str(missing), config_dir=config_dir)
    assert str(missing) in str(info.value)


def test_unknown_model_suggests_close_names():
    from imagescope.models.open_clip_embedder import OpenClipEmbedder

    with pytest.raises(ConfigError, match="IMAGESCOPE_MODELS__EMBEDDER__MODEL") as info:
        OpenClipEmbedder("ViT-B-33", None)
    assert "ViT-B-32" in str(info.value)


def test_unknown_tag_lists_the_known_tags():
    from imagescope.models.open_clip_embedder import OpenClipEmbedder

    with pytest.raises(ConfigError, match="laion2b_s34b_b79k") as info:
        OpenClipEmbedder("ViT-B-32", "no_such_tag")
    assert "IMAGESCOPE_MODELS__EMBEDDER__PRETRAINED" in str(info.value)


def test_checkpoint_of_another_architecture_is_a_config_error(tmp_path, tiny_open_clip_files):
    from imagescope.models.open_clip_embedder import OpenClipEmbedder
    from imagescope.models.tiny import write_tiny_open_clip

    config_dir, name, _ = tiny_open_clip_files
    _, _, checkpoint_16d = write_tiny_open_clip(tmp_path, embed_dim=16)
    with pytest.raises(ConfigError, match="could not load"):
        OpenClipEmbedder(name, str(checkpoint_16d), config_dir=config_dir)


def test_missing_config_dir_is_a_config_error(tmp_path):
    from imagescope.models.open_clip_embedder import OpenClipEmbedder

    with pytest.raises(ConfigError, match="IMAGESCOPE_MODELS__EMBEDDER__CONFIG_DIR"):
        OpenClipEmbedder("ImageScope-Tiny", None, config_dir=tmp_path / "absent")


def test_uncached_tag_fails_fast_when_offline(monkeypatch):
    import open_clip

    from imagescope.models import open_clip_embedder as module

    def no_network(*args, **kwargs):
        raise AssertionError("offline mode must not try to download")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(module, "try_to_load_from_cache", lambda *a, **k: None)  # empty cache
    monkeypatch.setattr(open_clip, "download_pretrained", no_network)
    started = time.monotonic()
    with pytest.raises(ConfigError, match="HF_HUB_OFFLINE=1") as info:
        module.OpenClipEmbedder("ViT-B-32", "laion2b_s34b_b79k")
    assert time.monotonic() - started < 5
    assert "IMAGESCOPE_MODELS__EMBEDDER__PRETRAINED" in str(info.value)


def test_failed_download_is_a_config_error(monkeypatch):
    import open_clip
    from huggingface_hub import constants

    from imagescope.models import open_clip_embedder as module

    def unreachable(*args, **kwargs):
        raise OSError("Name or service not known")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(module, "try_to_load_from_cache", lambda *a, **k: None)
    monkeypatch.setattr(open_clip, "download_pretrained", unreachable)
    monkeypatch.setattr(module, "hub_offline", lambda: False)  # the Hub answers the probe
    with pytest.raises(ConfigError, match="Name or service not known") as info:
        module.OpenClipEmbedder("ViT-B-32", "laion2b_s34b_b79k")
    assert "HF_HUB_OFFLINE=1" in str(info.value)


def test_an_unreachable_hub_means_offline_at_once(monkeypatch):
    from huggingface_hub import constants

    from imagescope.models import hub
    from imagescope.models import open_clip_embedder as module

    probe = hub.hub_reachable.__wrapped__  # the uncached probe
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub, "hub_reachable", lambda: False)
    monkeypatch.setattr(module, "try_to_load_from_cache", lambda *a, **k: None)
    assert hub.hub_offline()
    with pytest.raises(ConfigError, match="the Hub is unreachable"):
        module.OpenClipEmbedder("ViT-B-32", "laion2b_s34b_b79k")
    # A closed port is refused without waiting for the timeout.
    assert not probe("http://127.0.0.1:9", 1.0)


def test_undecodable_image_is_an_image_error(tiny_open_clip):
    buffer = io.BytesIO()
    _images(1)[0].save(buffer, format="PNG")
    truncated = Image.open(io.BytesIO(buffer.getvalue()[:60]))
    with pytest.raises(ImageError, match="cannot be read"):
        tiny_open_clip.embed_images([truncated])


def test_bad_batch_size_and_device_are_config_errors(tiny_open_clip_files):
    from imagescope.models.open_clip_embedder import OpenClipEmbedder

    config_dir, name, checkpoint = tiny_open_clip_files
    with pytest.raises(ConfigError, match="batch_size"):
        OpenClipEmbedder(name, str(checkpoint), config_dir=config_dir, batch_size=0)
    with pytest.raises(ConfigError, match="IMAGESCOPE_MODELS__EMBEDDER__DEVICE"):
        OpenClipEmbedder(name, str(checkpoint), config_dir=config_dir, device="no-such-device")


def test_shipped_config_is_package_data():
    from imagescope.models.open_clip_embedder import PACKAGE_CONFIG_DIR

    assert (PACKAGE_CONFIG_DIR / "ImageScope-Tiny.json").is_file()
    assert isinstance(PACKAGE_CONFIG_DIR, Path)


def test_local_dir_model_matches_loading_by_path(tmp_path, tiny_open_clip, tiny_open_clip_files):
    import json
    import shutil

    from imagescope.models.open_clip_embedder import OpenClipEmbedder

    config_dir, name, checkpoint = tiny_open_clip_files
    model_cfg = json.loads((config_dir / f"{name}.json").read_text())
    (tmp_path / "open_clip_config.json").write_text(json.dumps({"model_cfg": model_cfg}))
    shutil.copy(checkpoint, tmp_path / "open_clip_model.safetensors")
    folder = OpenClipEmbedder(f"local-dir:{tmp_path}", "ignored-for-schema-names")
    assert folder.model_id == f"open_clip:local-dir:{tmp_path}"
    np.testing.assert_allclose(
        folder.embed_texts(TEXTS), tiny_open_clip.embed_texts(TEXTS), atol=1e-6
    )


def test_local_dir_without_config_is_a_config_error(tmp_path):
    from imagescope.models.open_clip_embedder import OpenClipEmbedder

    with pytest.raises(ConfigError, match="open_clip_config.json"):
        OpenClipEmbedder(f"local-dir:{tmp_path}", None)
