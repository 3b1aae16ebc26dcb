"""sentence-transformers backend of the Embedder role.

For CLIP models packaged for sentence-transformers, e.g. ``clip-ViT-B-32`` for
images and ``sentence-transformers/clip-ViT-B-32-multilingual-v1`` for text in
50+ languages (its text vectors live in the image model's space). A model is a
Hugging Face id or a local folder written by ``SentenceTransformer.save``.

Models that are not cached are downloaded unless ``HF_HUB_OFFLINE=1``; then
only local files are read and a missing model is a ``ConfigError`` at once.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image as PILImage
from PIL.Image import Image

from imagescope.errors import ConfigError, ImageError, ModelBackendError
from imagescope.models.base import Embedder, Vectors
from imagescope.models.hub import hub_offline

logger = logging.getLogger(__name__)

MODEL_ENV = "IMAGESCOPE_MODELS__EMBEDDER__MODEL"
IMAGE_MODEL_ENV = "IMAGESCOPE_MODELS__EMBEDDER__IMAGE_MODEL"
_PROBE_TEXT = "a photo"
_PROBE_IMAGE_SIZE = (224, 224)


def _model_label(name: str) -> str:
    """How a model appears in ``model_id``: a hub id as given, a folder by its name."""
    path = Path(name).expanduser()
    return path.name if path.is_dir() else name


def _load(name: str, *, env: str, device: str) -> Any:
    from sentence_transformers import SentenceTransformer

    offline = hub_offline()
    try:
        return SentenceTransformer(name, device=device, local_files_only=offline)
    except Exception as err:  # hub, file and model-building errors come in many types
        if offline:
            fix = (
                "it is not a local folder and not in the Hugging Face cache, and downloads "
                "are off (HF_HUB_OFFLINE=1); fetch it once with network access or give a "
                "folder written by SentenceTransformer.save"
            )
        else:
            fix = "check the name (a Hugging Face id or a local model folder) and network access"
        raise ConfigError(
            f"cannot load sentence-transformers model {name!r}: {err}; {fix}; the setting is {env}"
        ) from err


def _probe_dim(model: Any, name: str, *, modality: str, env: str) -> int:
    """Embed one probe input to learn the dimension and prove the modality works."""
    probe: object = _PROBE_TEXT if modality == "text" else PILImage.new("RGB", _PROBE_IMAGE_SIZE)
    try:
        vectors = model.encode([probe], convert_to_numpy=True, show_progress_bar=False)
    except Exception as err:  # a text-only model fed an image fails deep inside transformers
        raise ConfigError(
            f"sentence-transformers model {name!r} cannot embed {modality}s ({err}); set "
            f"{env} to a CLIP-style model that does (e.g. clip-ViT-B-32)"
        ) from err
    return int(np.asarray(vectors).shape[-1])


class SentenceTransformersEmbedder(Embedder):
    """Text through ``model``, images through ``image_model`` (``model`` when None).

    Both must map into one space of the same dimension: a mismatch is a
    ``ConfigError`` at construction, as is a model that cannot be loaded or
    cannot embed its modality. ``model_id`` reads like
    ``sentence_transformers:<text model>`` or ``...:<text model>+<image model>``.
    Outputs follow the ``Embedder`` contract (float32, unit rows, input order);
    a failure while embedding raises ``ModelBackendError``.
    """

    def __init__(
        self,
        model: str,
        *,
        image_model: str | None = None,
        device: str = "cpu",
        batch_size: int = 32,
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
        self.batch_size = batch_size
        self._text_model = _load(model, env=MODEL_ENV, device=device)
        same = image_model is None or image_model == model
        image_name = model if image_model is None else image_model
        self._image_model = (
            self._text_model if same else _load(image_name, env=IMAGE_MODEL_ENV, device=device)
        )
        text_dim = _probe_dim(self._text_model, model, modality="text", env=MODEL_ENV)
        image_env = MODEL_ENV if same else IMAGE_MODEL_ENV
        image_dim = _probe_dim(self._image_model, image_name, modality="image", env=image_env)
        if text_dim != image_dim:
            raise ConfigError(
                f"text model {model!r} makes {text_dim}-d vectors but image model "
                f"{image_name!r} makes {image_dim}-d vectors; set {IMAGE_MODEL_ENV} to the "
                "image model the text model was trained against"
            )
        self.dim = text_dim
        label = _model_label(model)
        if not same:
            label += "+" + _model_label(image_name)
        self.model_id = f"sentence_transformers:{label}"
        logger.info("loaded %s (%d-d) on %s", self.model_id, self.dim, device)

    def embed_texts(self, texts: Sequence[str]) -> Vectors:
        return self._encode(self._text_model, list(texts))

    def embed_images(self, images: Sequence[Image]) -> Vectors:
        rgb = []
        for image in images:
            try:
                rgb.append(image if image.mode == "RGB" else image.convert("RGB"))
            except OSError as err:
                raise ImageError(f"an image cannot be read: {err}; re-encode or drop it") from err
        return self._encode(self._image_model, rgb)

    def _encode(self, model: Any, inputs: list[Any]) -> Vectors:
        if not inputs:
            return np.zeros((0, self.dim), dtype=np.float32)
        try:
            vectors = model.encode(
                inputs,
                batch_size=self.batch_size,
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
        except (RuntimeError, ValueError) as err:
            raise ModelBackendError(
                f"{self.model_id} failed to embed {len(inputs)} input(s): {err}"
            ) from err
        return np.asarray(vectors, dtype=np.float32).reshape(len(inputs), self.dim)
