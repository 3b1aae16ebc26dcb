"""Train the tiny "ImageScope-Synth" CLIP on a synthetic catalog, on the CPU.

The architecture is the open_clip config ``models/configs/ImageScope-Synth.json``
(a 64-px ViT with 16-px patches and a small text transformer over open_clip's
own tokenizer). Training is plain CLIP: open_clip's contrastive loss over
(image, description) pairs of a *training* catalog drawn with its own seed, so
the benchmark catalog is never seen. Descriptions are redrawn at every step
(varied phrasing; some name only a few attributes), so the text tower learns
the attribute words rather than one caption per image.

The checkpoint is saved as fp16 safetensors (about 4 MB) that
``OpenClipEmbedder("ImageScope-Synth", <path>)`` loads through open_clip's
normal loader. The package ships one trained with the default
:class:`TrainConfig` (see :data:`SHIPPED_CHECKPOINT`); :func:`synth_checkpoint`
falls back to training one into a cache folder when it is missing.

Runs are seeded (catalog, descriptions, initialisation, batches). On one
machine with the same thread count a run repeats exactly; across machines or
thread counts float summation order may differ slightly.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock

from imagescope.errors import ConfigError, InputError
from imagescope.models.open_clip_embedder import OpenClipEmbedder, register_model_configs
from imagescope.synthetic.catalog import (
    ATTRIBUTES,
    VALUES,
    Attributes,
    SyntheticItem,
    describe,
    draw,
    is_drawable,
    random_attributes,
)

log = logging.getLogger(__name__)

MODEL_NAME = "ImageScope-Synth"
CONFIG_DIR = Path(__file__).resolve().parent.parent / "models" / "configs"
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
#: The checkpoint trained with the default TrainConfig, shipped as package data.
SHIPPED_CHECKPOINT = WEIGHTS_DIR / f"{MODEL_NAME}.safetensors"
_OPTIONAL = ("count", "pattern", "position", "background")
#: How often each attribute is the one a training variant changes. Colour and
#: background are learnt first from any batch; position and shape need the push.
VARIANT_WEIGHTS = {
    "category": 2.0,
    "colour": 1.0,
    "count": 1.0,
    "pattern": 1.0,
    "position": 3.0,
    "background": 0.5,
}
#: Openings real captions and CLIP prompts use ("a photo of ..."), half the time none.
_PREFIXES = ("", "", "", "", "a photo of ", "a picture of ", "an image of ", "a photo with ")


@dataclass(frozen=True)
class TrainConfig:
    """Knobs of one training run (the defaults made the shipped checkpoint)."""

    n_items: int = 6000
    #: Items per group: a random item and one-attribute variants of it. Batches are
    #: made of whole groups, so every batch holds hard negatives for every attribute.
    group_size: int = 4
    #: Seed of the training catalog; benchmarks draw theirs with other seeds.
    catalog_seed: int = 7
    steps: int = 1500
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_steps: int = 60
    #: Share of descriptions that name only category, colour and a random subset.
    partial_rate: float = 0.2
    seed: int = 0
    #: torch CPU threads during training (None: leave torch's setting).
    threads: int | None = 1

    def __post_init__(self) -> None:
        if self.steps < 1 or self.group_size < 1 or self.batch_size < 2 * self.group_size:
            raise InputError("steps and group_size need at least 1, batch_size two groups")
        if self.n_items < self.batch_size:
            raise InputError(f"n_items={self.n_items} must be at least batch_size")
        if not 0.0 <= self.partial_rate <= 1.0:
            raise InputError(f"partial_rate={self.partial_rate} must be within [0, 1]")


@dataclass
class TrainReport:
    checkpoint: Path
    config: TrainConfig
    #: Contrastive loss at every step.
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def mean_loss(self, first: int | None = None, last: int | None = None) -> float:
        """Mean loss over the first or last ``n`` steps."""
        values = self.losses[:first] if first else self.losses[-(last or len(self.losses)) :]
        return sum(values) / len(values)

    def summary(self) -> dict[str, Any]:
        return {
            "checkpoint": str(self.checkpoint),
            "config": asdict(self.config),
            "seconds": round(self.seconds, 1),
            "loss_first_50": round(self.mean_loss(first=50), 4),
            "loss_last_50": round(self.mean_loss(last=50), 4),
        }


def build_model(seed: int) -> tuple[Any, Any, Any]:
    """A randomly initialised ImageScope-Synth model, its preprocessing and tokenizer."""
    import open_clip

    register_model_configs(CONFIG_DIR)
    torch.manual_seed(seed)
    model, _, preprocess = open_clip.create_model_and_transforms(
        MODEL_NAME, None, pretrained_text=False
    )
    return model, preprocess, open_clip.get_tokenizer(MODEL_NAME)


def training_description(item: SyntheticItem, rng: random.Random, *, partial_rate: float) -> str:
    """One varied description; with ``partial_rate`` only some attributes are named."""
    mention = None
    if rng.random() < partial_rate:
        mention = {"category", "colour", *rng.sample(_OPTIONAL, rng.randint(0, 3))}
    return rng.choice(_PREFIXES) + describe(item.attributes, rng=rng, mention=mention)


def training_items(n_items: int, *, group_size: int, seed: int) -> list[SyntheticItem]:
    """Groups of ``group_size`` distinct items: a random one, then variants of it."""
    rng = random.Random(seed)
    items: list[SyntheticItem] = []
    for group in range(n_items // group_size):
        members = [random_attributes(rng)]
        while len(members) < group_size:
            candidate = _variant(members[0], rng)
            if candidate not in members and is_drawable(candidate):
                members.append(candidate)
        items.extend(
            SyntheticItem(f"train-{group:05d}-{m}", attrs) for m, attrs in enumerate(members)
        )
    return items


def _variant(base: Attributes, rng: random.Random) -> Attributes:
    name = rng.choices(ATTRIBUTES, weights=[VARIANT_WEIGHTS[a] for a in ATTRIBUTES])[0]
    return {**base, name: rng.choice([v for v in VALUES[name] if v != base[name]])}


def _batch_index(config: TrainConfig, n_items: int, *, generator: torch.Generator) -> torch.Tensor:
    groups = torch.randperm(n_items // config.group_size, generator=generator)
    chosen = groups[: config.batch_size // config.group_size]
    offsets = torch.arange(config.group_size)
    return (chosen[:, None] * config.group_size + offsets[None, :]).reshape(-1)


def _pixels(items: Sequence[SyntheticItem], preprocess: Any) -> torch.Tensor:
    return torch.stack([preprocess(draw(item)) for item in items]).to(torch.float16)


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """No weight decay on gains, biases and the temperature (as CLIP training does)."""
    decay: list[torch.nn.Parameter] = []
    plain: list[torch.nn.Parameter] = []
    for name, param in model.named_parameters():
        skip = param.ndim < 2 or "ln" in name or "bias" in name or "logit_scale" in name
        (plain if skip else decay).append(param)
    return [{"params": plain, "weight_decay": 0.0}, {"params": decay, "weight_decay": weight_decay}]


def _schedule(config: TrainConfig) -> Any:
    def factor(step: int) -> float:
        if step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


@contextmanager
def _threads(count: int | None) -> Iterator[None]:
    before = torch.get_num_threads()
    if count:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def save_checkpoint(model: torch.nn.Module, path: Path) -> Path:
    """Write the state dict as fp16 safetensors, atomically."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    tmp = path.with_name(path.name + ".tmp")
    save_file(state, str(tmp), metadata={"model": MODEL_NAME, "format": "pt"})
    tmp.replace(path)
    return path


@dataclass
class _Run:
    """Everything one training loop touches."""

    model: Any
    tokenizer: Any
    pixels: torch.Tensor
    items: list[SyntheticItem]
    optimizer: torch.optim.Optimizer
    scheduler: Any
    loss_fn: Any

    def step(self, index: torch.Tensor, texts: list[str]) -> float:
        image_f, text_f, scale = self.model(self.pixels[index].float(), self.tokenizer(texts))[:3]
        loss = self.loss_fn(image_f, text_f, scale)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        with torch.no_grad():
            self.model.logit_scale.clamp_(0, math.log(100))
        return float(loss.item())


def _prepare(config: TrainConfig) -> _Run:
    import open_clip

    model, preprocess, tokenizer = build_model(config.seed)
    items = training_items(config.n_items, group_size=config.group_size, seed=config.catalog_seed)
    optimizer = torch.optim.AdamW(_param_groups(model, config.weight_decay), lr=config.lr)
    return _Run(
        model=model,
        tokenizer=tokenizer,
        pixels=_pixels(items, preprocess),
        items=items,
        optimizer=optimizer,
        scheduler=torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(config)),
        loss_fn=open_clip.ClipLoss(),
    )


def train_tiny_clip(
    out_path: Path, config: TrainConfig | None = None, *, progress: bool = False
) -> TrainReport:
    """Train ImageScope-Synth from scratch, save it to ``out_path`` with its training card."""
    from tqdm import tqdm

    config = config or TrainConfig()
    start = time.perf_counter()
    report = TrainReport(checkpoint=out_path, config=config)
    with _threads(config.threads):
        run = _prepare(config)
        rng = random.Random(config.seed)
        batches = torch.Generator().manual_seed(config.seed)
        run.model.train()
        for step in tqdm(range(config.steps), disable=not progress, desc="train"):
            index = _batch_index(config, len(run.items), generator=batches)
            rate = config.partial_rate
            texts = [training_description(run.items[i], rng, partial_rate=rate) for i in index]
            report.losses.append(run.step(index, texts))
            if (step + 1) % 100 == 0:
                log.info("step %d/%d loss %.4f", step + 1, config.steps, report.mean_loss(last=100))
        run.model.eval()
        save_checkpoint(run.model, out_path)
    report.seconds = time.perf_counter() - start
    training_card(out_path).write_text(json.dumps(report.summary(), indent=2) + "\n")
    return report


def training_card(checkpoint: Path) -> Path:
    """Where the summary of the run that made ``checkpoint`` is kept (JSON)."""
    return checkpoint.with_name(checkpoint.name.removesuffix(".safetensors") + ".training.json")


def synth_checkpoint(cache_dir: Path | None = None, *, progress: bool = False) -> Path:
    """The shipped checkpoint, or one trained once into ``cache_dir`` and reused."""
    if SHIPPED_CHECKPOINT.is_file():
        return SHIPPED_CHECKPOINT
    if cache_dir is None:
        raise ConfigError(
            f"{SHIPPED_CHECKPOINT} is missing and no cache folder was given to train one into; "
            "pass cache_dir (e.g. settings.data_dir / 'synthetic')"
        )
    path = cache_dir / f"{MODEL_NAME}.safetensors"
    cache_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        if not path.is_file():
            log.info("training %s into %s (a few minutes on a CPU)", MODEL_NAME, path)
            train_tiny_clip(path, progress=progress)
    return path


def load_synth_embedder(
    checkpoint: Path | None = None, *, device: str = "cpu", batch_size: int = 64
) -> OpenClipEmbedder:
    """OpenClipEmbedder over an ImageScope-Synth checkpoint (default: the shipped one)."""
    path = checkpoint or SHIPPED_CHECKPOINT
    if not path.is_file():
        raise ConfigError(
            f"no ImageScope-Synth checkpoint at {path}; train one with "
            "imagescope.synthetic.train.train_tiny_clip or use synth_checkpoint(cache_dir)"
        )
    return OpenClipEmbedder(
        MODEL_NAME, str(path), device=device, batch_size=batch_size, config_dir=CONFIG_DIR
    )


__all__ = [
    "MODEL_NAME",
    "SHIPPED_CHECKPOINT",
    "TrainConfig",
    "TrainReport",
    "build_model",
    "load_synth_embedder",
    "save_checkpoint",
    "synth_checkpoint",
    "train_tiny_clip",
    "training_card",
    "training_description",
]
