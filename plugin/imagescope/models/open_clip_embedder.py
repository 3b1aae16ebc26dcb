"""open_clip backend of the Embedder role.

Weights load through open_clip's own loader, from one of:

- a pretrained tag of the architecture (``ViT-B-32`` + ``laion2b_s34b_b79k``);
- a local checkpoint file (``pretrained=/models/clip.safetensors``);
- an ``hf-hub:org/repo`` or ``local-dir:/path`` model name (``pretrained`` unused).

Tagged weights already in the local Hugging Face cache load from the cache
without touching the network. Weights that are not cached are downloaded,
unless downloads are off (``HF_HUB_OFFLINE=1``): then start-up fails at once
with a ``ConfigError`` naming the setting to change, instead of waiting on
network retries.

Custom architectures are JSON files named ``<Name>.json`` in open_clip's config
format; the package's own folder (``models/configs``, e.g. ``ImageScope-Tiny``)
is always registered and ``config_dir`` adds another.
"""

from __future__ import annotations

import copy
import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from difflib import get_close_matches
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import open_clip
import torch
from huggingface_hub import try_to_load_from_cache
from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME
from PIL.Image import Image

from imagescope.errors import ConfigError, ImageError, ModelBackendError
from imagescope.models.base import Embedder, Vectors
from imagescope.models.hub import hub_offline
from imagescope.models.open_clip_text import trimmed_text_encoder

logger = logging.getLogger(__name__)

#: Model configs shipped with the package; always registered.
PACKAGE_CONFIG_DIR = Path(__file__).parent / "configs"
MODEL_ENV = "IMAGESCOPE_MODELS__EMBEDDER__MODEL"
PRETRAINED_ENV = "IMAGESCOPE_MODELS__EMBEDDER__PRETRAINED"
CONFIG_DIR_ENV = "IMAGESCOPE_MODELS__EMBEDDER__CONFIG_DIR"
DEVICE_ENV = "IMAGESCOPE_MODELS__EMBEDDER__DEVICE"

_SCHEMAS = ("hf-hub:", "local-dir:")
_CHECKPOINT_SUFFIXES = frozenset({".pt", ".pth", ".bin", ".safetensors", ".npz", ".npy"})
_PREPROCESS_KEYS = {
    "mean": "image_mean",
    "std": "image_std",
    "interpolation": "image_interpolation",
    "resize_mode": "image_resize_mode",
}
_registered: dict[Path, frozenset[str]] = {}
_registry_lock = threading.Lock()
_Item = TypeVar("_Item")


def register_model_configs(config_dir: Path) -> None:
    """Make the open_clip architectures in ``config_dir`` (``<Name>.json``) known by name.

    Registering a folder again is cheap; new files in it are picked up.
    Raises ``ConfigError`` when the folder does not exist.
    """
    folder = Path(config_dir).expanduser().resolve()
    if not folder.is_dir():
        raise ConfigError(
            f"open_clip config folder {folder} does not exist; set {CONFIG_DIR_ENV} to a "
            "folder of <ModelName>.json open_clip model configs"
        )
    names = frozenset(p.name for p in folder.glob("*.json"))
    with _registry_lock:
        if _registered.get(folder) != names:
            open_clip.add_model_config(folder)
            _registered[folder] = names


@dataclass(frozen=True)
class _Weights:
    """What to hand open_clip as ``pretrained`` and how to name it in ``model_id``."""

    source: str | None
    label: str
    quick_gelu: bool = False
    preprocess: dict[str, Any] = field(default_factory=dict)


def _config_name(model: str) -> str:
    """open_clip's registry name ("ViT-B/32" -> "ViT-B-32"); schema names pass through."""
    return model if model.startswith(_SCHEMAS) else model.replace("/", "-")


def _tags_hint(model: str) -> str:
    tags = open_clip.list_pretrained_tags_by_model(_config_name(model))
    if not tags:
        return f"open_clip knows no pretrained tags for {model}: give a checkpoint file"
    return "known tags: " + ", ".join(tags)


def _check_known_model(model: str) -> None:
    if model.startswith("local-dir:"):
        folder = Path(model.removeprefix("local-dir:")).expanduser()
        if not (folder / "open_clip_config.json").is_file():
            raise ConfigError(
                f"{folder} is not an open_clip model folder (no open_clip_config.json); "
                f"set {MODEL_ENV} to an architecture name or a folder saved by open_clip"
            )
        return
    if model.startswith("hf-hub:"):
        repo_id = model.removeprefix("hf-hub:")
        cached = try_to_load_from_cache(repo_id, "open_clip_config.json")
        if not isinstance(cached, str) and hub_offline():
            raise ConfigError(
                f"open_clip model {model} is not in the local Hugging Face cache and "
                "downloads are off (HF_HUB_OFFLINE=1); download it once with network access, "
                f"or set {MODEL_ENV} to a local-dir: folder"
            )
        return
    if open_clip.get_model_config(_config_name(model)) is None:
        close = get_close_matches(_config_name(model), open_clip.list_models(), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ConfigError(
            f"unknown open_clip model {model!r}{hint}; set {MODEL_ENV} to a known "
            f"architecture such as ViT-B-32 or ViT-L-14, or put <Name>.json in a folder "
            f"named by {CONFIG_DIR_ENV}"
        )


def _cached_hub_file(hf_hub: str) -> str | None:
    """Local path of tagged weights in the Hugging Face cache, without network access."""
    repo_id, filename = os.path.split(hf_hub)
    names = [filename] if filename else [HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME]
    if filename.endswith((".bin", ".pth")):
        names.insert(0, filename[:-4] + ".safetensors")
    for name in names:
        hit = try_to_load_from_cache(repo_id, name)
        if isinstance(hit, str):
            return hit
    return None


def _fetch_tag(model: str, tag: str, cfg: dict[str, Any]) -> str:
    """A local file holding the tagged weights: from the cache, else downloaded."""
    local = cfg.get("file") or (_cached_hub_file(cfg["hf_hub"]) if cfg.get("hf_hub") else None)
    if local:
        logger.info("open_clip %s/%s: using cached weights %s", model, tag, local)
        return str(local)
    if hub_offline():
        raise ConfigError(
            f"open_clip weights {model}/{tag} are not in the local cache and downloads are "
            "off (HF_HUB_OFFLINE=1, or the Hub is unreachable); fetch them once with "
            "network access (they land in the "
            f"Hugging Face cache), or set {PRETRAINED_ENV} to a local checkpoint file"
        )
    logger.info("open_clip %s/%s: downloading weights (HF_HUB_OFFLINE=1 skips this)", model, tag)
    try:
        path = open_clip.download_pretrained(cfg)
    except Exception as err:  # huggingface_hub / urllib raise many unrelated types
        raise ConfigError(
            f"could not download open_clip weights {model}/{tag}: {err}; check network "
            f"access, or set {PRETRAINED_ENV} to a local checkpoint file (with "
            "HF_HUB_OFFLINE=1 a missing download fails at once)"
        ) from err
    if not path:
        raise ConfigError(
            f"open_clip has no download location for {model}/{tag}; {_tags_hint(model)}"
        )
    return str(path)


def _resolve_weights(model: str, pretrained: str | None) -> _Weights:
    _check_known_model(model)
    if model.startswith(_SCHEMAS):
        return _Weights(source=None, label="")
    if not pretrained:
        logger.warning(
            "open_clip %s: no pretrained weights (%s is empty): random initialisation",
            model,
            PRETRAINED_ENV,
        )
        return _Weights(source=None, label="random-init")
    path = Path(pretrained).expanduser()
    if path.is_file():
        return _Weights(source=str(path), label=path.name)
    cfg: dict[str, Any] = open_clip.get_pretrained_cfg(_config_name(model), pretrained)
    if cfg:
        preprocess = {arg: cfg[key] for key, arg in _PREPROCESS_KEYS.items() if cfg.get(key)}
        return _Weights(
            source=_fetch_tag(model, pretrained, cfg),
            label=pretrained,
            quick_gelu=bool(cfg.get("quick_gelu", False)),
            preprocess=preprocess,
        )
    if os.sep in pretrained or path.suffix in _CHECKPOINT_SUFFIXES:
        raise ConfigError(
            f"checkpoint file {path} does not exist; set {PRETRAINED_ENV} to an existing "
            f"checkpoint file or a pretrained tag ({_tags_hint(model)})"
        )
    raise ConfigError(
        f"{pretrained!r} is neither a pretrained tag of {model} nor a file; set "
        f"{PRETRAINED_ENV} to a checkpoint path or a tag ({_tags_hint(model)})"
    )


def _create(model: str, weights: _Weights, device: torch.device) -> tuple[Any, Any]:
    """open_clip model (eval mode) and its inference preprocessing."""
    try:
        net, _, preprocess = open_clip.create_model_and_transforms(
            model,
            weights.source,
            device=device,
            force_quick_gelu=weights.quick_gelu,
            pretrained_text=False,
            **weights.preprocess,
        )
    except (RuntimeError, ValueError, KeyError, OSError) as err:
        detail = str(err)
        detail = detail if len(detail) <= 400 else detail[:400] + " ..."
        source = weights.label or "named by the model"
        raise ConfigError(
            f"open_clip could not load {model} with weights {source}: {detail}; check that "
            f"{PRETRAINED_ENV} holds weights of the {MODEL_ENV} architecture"
        ) from err
    net.eval()
    return net, preprocess


def _device(name: str) -> torch.device:
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ConfigError(f"bad torch device {name!r}: {err}; set {DEVICE_ENV}=cpu") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"device {name!r} asked for but CUDA is not available; set {DEVICE_ENV}=cpu"
        )
    return device


def _unit_rows(features: torch.Tensor) -> np.ndarray:
    return torch.nn.functional.normalize(features.float(), dim=-1).cpu().numpy()


class OpenClipEmbedder(Embedder):
    """CLIP image and text towers from open_clip, one vector space.

    ``model`` is an open_clip architecture name (``ViT-B-32``), or an
    ``hf-hub:``/``local-dir:`` name; ``pretrained`` a tag of that architecture, a
    checkpoint path, or None for random weights. ``model_id`` reads like
    ``open_clip:ViT-B-32/laion2b_s34b_b79k`` (a checkpoint path contributes its
    file name). Outputs follow the ``Embedder`` contract: float32, unit rows,
    input order, computed in batches of ``batch_size`` without gradients.
    Texts run only up to their end-of-text token when the text tower is the
    standard CLIP one (:mod:`~imagescope.models.open_clip_text`; the same
    vectors up to float rounding); ``trim_texts=False`` or ``untrimmed()`` runs
    open_clip's ``encode_text`` over the whole context.

    Raises ``ConfigError`` at construction for an unknown model, a missing or
    unfit checkpoint, weights that cannot be fetched, or an unusable device;
    ``ImageError`` for an image that cannot be decoded; ``ModelBackendError``
    when the model fails while embedding.
    """

    def __init__(
        self,
        model: str = "ViT-B-32",
        pretrained: str | None = "laion2b_s34b_b79k",
        *,
        device: str = "cpu",
        batch_size: int = 32,
        config_dir: Path | None = None,
        trim_texts: bool = True,
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
        register_model_configs(PACKAGE_CONFIG_DIR)
        if config_dir is not None:
            register_model_configs(config_dir)
        self._device = _device(device)
        weights = _resolve_weights(model, pretrained)
        self._model, self._preprocess = _create(model, weights, self._device)
        self._tokenizer = open_clip.get_tokenizer(_config_name(model))
        self._trimmed = trimmed_text_encoder(self._model)
        self.trim_texts = trim_texts and self._trimmed is not None
        self.batch_size = batch_size
        self.model_id = (
            f"open_clip:{model}/{weights.label}" if weights.label else f"open_clip:{model}"
        )
        self.dim = 0  # set from one probe text; only empty inputs read it before
        self.dim = int(self.embed_texts(["a photo"]).shape[1])
        logger.info(
            "loaded %s (%d-d) on %s; texts %s",
            self.model_id,
            self.dim,
            self._device,
            "trimmed to their end token" if self.trim_texts else "over the whole context",
        )

    def untrimmed(self) -> OpenClipEmbedder:
        """The same model (shared, not copied) with texts through open_clip's own
        ``encode_text`` over the whole context: the baseline of the trimmed path."""
        twin = copy.copy(self)
        twin.trim_texts = False
        return twin

    def embed_texts(self, texts: Sequence[str]) -> Vectors:
        return self._run(list(texts), self._encode_texts)

    def embed_images(self, images: Sequence[Image]) -> Vectors:
        return self._run(list(images), self._encode_images)

    def _run(self, items: list[_Item], encode: Callable[[list[_Item]], np.ndarray]) -> Vectors:
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        chunks: list[np.ndarray] = []
        try:
            with torch.inference_mode():
                for start in range(0, len(items), self.batch_size):
                    chunks.append(encode(items[start : start + self.batch_size]))
        except (RuntimeError, ValueError) as err:
            raise ModelBackendError(
                f"{self.model_id} failed to embed {len(items)} input(s): {err}"
            ) from err
        return np.concatenate(chunks).astype(np.float32, copy=False)

    def _encode_texts(self, texts: list[str]) -> np.ndarray:
        tokens = self._tokenizer(texts).to(self._device)
        if self.trim_texts and self._trimmed is not None:
            return _unit_rows(self._trimmed(tokens))
        return _unit_rows(self._model.encode_text(tokens))

    def _encode_images(self, images: list[Image]) -> np.ndarray:
        tensors = []
        for image in images:
            try:
                tensors.append(self._preprocess(image))
            except OSError as err:
                width, height = image.size
                raise ImageError(
                    f"a {image.format or 'decoded'} image of {width}x{height} pixels cannot be "
                    f"read: {err}; re-encode or drop it"
                ) from err
        pixels = torch.stack(tensors).to(self._device)
        return _unit_rows(self._model.encode_image(pixels))
