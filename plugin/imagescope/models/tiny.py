"""Tiny random-weight CLIP models, built and saved on the local disk.

They go through the same loading code as real weights (open_clip's checkpoint
loader, ``SentenceTransformer(path)``), so tests and the offline demo exercise
the production path where no weights can be downloaded. Their vectors carry no
meaning: the towers are random. Building one takes well under a second; files
are written to a temporary name first, so a reader never sees half a model.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import open_clip
import torch
from safetensors.torch import save_file

from imagescope.models.open_clip_embedder import (
    PACKAGE_CONFIG_DIR,
    OpenClipEmbedder,
    register_model_configs,
)

logger = logging.getLogger(__name__)

#: The open_clip architecture shipped in ``models/configs`` (32-d, 32x32 pixels).
TINY_OPEN_CLIP = "ImageScope-Tiny"
_TINY_IMAGE_SIZE = 32
_TINY_CONTEXT = 32


def _tiny_open_clip_config(embed_dim: int) -> tuple[str, dict[str, Any]]:
    """The shipped tiny config with ``embed_dim`` set, and its registry name."""
    config: dict[str, Any] = json.loads(
        (PACKAGE_CONFIG_DIR / f"{TINY_OPEN_CLIP}.json").read_text(encoding="utf-8")
    )
    name = TINY_OPEN_CLIP if embed_dim == config["embed_dim"] else f"{TINY_OPEN_CLIP}-{embed_dim}d"
    config["embed_dim"] = embed_dim
    return name, config


def _replace_atomically(write: Any, target: Path) -> None:
    """Call ``write(tmp_path)`` then move the result onto ``target`` in one step."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)


def write_tiny_open_clip(
    dir: Path, *, embed_dim: int = 32, seed: int = 0
) -> tuple[Path, str, Path]:
    """Build a random ``ImageScope-Tiny`` open_clip model and save it under ``dir``.

    Returns ``(config_dir, model_name, checkpoint)``: ``OpenClipEmbedder(model_name,
    str(checkpoint), config_dir=config_dir)`` loads it. The same ``embed_dim`` and
    ``seed`` always give the same weights.
    """
    if embed_dim < 1:
        raise ValueError(f"embed_dim must be positive, got {embed_dim}")
    folder = Path(dir)
    config_dir = folder / "configs"
    name, config = _tiny_open_clip_config(embed_dim)
    _replace_atomically(
        lambda tmp: tmp.write_text(json.dumps(config, indent=2), encoding="utf-8"),
        config_dir / f"{name}.json",
    )
    register_model_configs(config_dir)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = open_clip.create_model(name, pretrained=None)
    state = {key: tensor.detach().contiguous() for key, tensor in model.state_dict().items()}
    checkpoint = folder / f"{name}-seed{seed}.safetensors"
    _replace_atomically(lambda tmp: save_file(state, str(tmp)), checkpoint)
    logger.info("wrote tiny open_clip model %s to %s", name, checkpoint)
    return config_dir, name, checkpoint


def tiny_open_clip_embedder(
    dir: Path, *, embed_dim: int = 32, seed: int = 0, device: str = "cpu", batch_size: int = 32
) -> OpenClipEmbedder:
    """An embedder over the tiny model in ``dir``, writing the model first if it is missing."""
    name, _ = _tiny_open_clip_config(embed_dim)
    config_dir = Path(dir) / "configs"
    checkpoint = Path(dir) / f"{name}-seed{seed}.safetensors"
    if not (checkpoint.is_file() and (config_dir / f"{name}.json").is_file()):
        config_dir, name, checkpoint = write_tiny_open_clip(dir, embed_dim=embed_dim, seed=seed)
    return OpenClipEmbedder(
        name, str(checkpoint), device=device, batch_size=batch_size, config_dir=config_dir
    )


def _byte_level_vocab() -> dict[str, int]:
    """A CLIP BPE vocabulary without merges: every byte, alone and word-final."""
    from tokenizers.pre_tokenizers import ByteLevel

    alphabet = sorted(ByteLevel.alphabet())
    tokens = ["<|startoftext|>", "<|endoftext|>", *alphabet, *(c + "</w>" for c in alphabet)]
    return {token: index for index, token in enumerate(tokens)}


def _tiny_hf_clip_config(*, vocab_size: int, dim: int) -> Any:
    """A two-layer, 32-wide transformers CLIPConfig projecting to ``dim``."""
    from transformers import CLIPConfig

    tower = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
    }
    text = {
        "vocab_size": vocab_size,
        "max_position_embeddings": _TINY_CONTEXT,
        "bos_token_id": 0,
        "eos_token_id": 1,
        "pad_token_id": 1,
    }
    vision = {"image_size": _TINY_IMAGE_SIZE, "patch_size": 8}
    return CLIPConfig(
        text_config={**tower, **text}, vision_config={**tower, **vision}, projection_dim=dim
    )


def _save_tiny_hf_clip(folder: Path, *, dim: int, seed: int) -> None:
    """A random transformers CLIPModel with its processor, saved to ``folder``."""
    from transformers import CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    vocab = _byte_level_vocab()
    config = _tiny_hf_clip_config(vocab_size=len(vocab), dim=dim)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLIPModel(config)
    model.save_pretrained(folder)
    processor = CLIPProcessor(  # type: ignore[no-untyped-call]
        image_processor=CLIPImageProcessor(
            size={"shortest_edge": _TINY_IMAGE_SIZE},
            crop_size={"height": _TINY_IMAGE_SIZE, "width": _TINY_IMAGE_SIZE},
        ),
        tokenizer=CLIPTokenizer(vocab=vocab, merges=[], model_max_length=_TINY_CONTEXT),
    )
    processor.save_pretrained(folder)


def write_tiny_sentence_transformer(dir: Path, *, dim: int = 32, seed: int = 0) -> Path:
    """Build a random CLIP-style sentence-transformers model and save it as folder ``dir``.

    The folder loads with ``SentenceTransformer(str(dir))`` and embeds both text
    and images into ``dim`` dimensions. An existing folder is replaced.
    """
    if dim < 1:
        raise ValueError(f"dim must be positive, got {dim}")
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Transformer

    target = Path(dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}.") as tmp:
        hf_folder = Path(tmp) / "hf"
        _save_tiny_hf_clip(hf_folder, dim=dim, seed=seed)
        staged = Path(tmp) / "model"
        SentenceTransformer(modules=[Transformer(str(hf_folder))], device="cpu").save(str(staged))
        if target.exists():
            shutil.rmtree(target)
        os.replace(staged, target)
    logger.info("wrote tiny sentence-transformers model to %s", target)
    return target
