"""Train ImageScope-Judge on the CPU, reproducibly: ``python -m imagescope.synthetic.judge_train``.

The training pool is a catalog drawn with its own seed (``pool_seed``); the
synthetic benchmark draws its catalog and queries with other seeds
(:data:`HELD_OUT_SEEDS`), which :class:`JudgeTrainConfig` refuses to train on.
Each step draws fresh samples (:mod:`~imagescope.synthetic.judge_data`): verify
questions about pool images, and pairs (reference, instruction, candidate) for
the stage-3 head. Beside the two heads' answers, the text side is taught
what it reads, with labels from the generator: which attributes a question
names and which values (:func:`reading_loss`), and how an edit maps each
reference value to the target's (:func:`edit_loss`). A held-out pool
(``pool_seed + 1``) gives the accuracies written to the training card next
to the weights.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from imagescope.errors import InputError
from imagescope.synthetic.catalog import ATTRIBUTES, VALUES, SyntheticItem, draw, make_catalog
from imagescope.synthetic.judge_data import (
    Sample,
    attribute_codes,
    composed_samples,
    constraints,
    described_samples,
    verify_samples,
    words,
)
from imagescope.synthetic.judge_model import (
    GROUPS,
    IMAGE_SIZE,
    SHIPPED_JUDGE,
    JudgeConfig,
    JudgeNet,
    Vocabulary,
    normalise,
    save_judge,
)

log = logging.getLogger(__name__)

#: Seeds of the synthetic benchmark's catalog and queries (BenchConfig defaults).
HELD_OUT_SEEDS = frozenset({0, 1})

Maker = Callable[[Sequence[SyntheticItem], np.ndarray, random.Random], list[Sample]]


@dataclass(frozen=True)
class JudgeTrainConfig:
    """Knobs of one run (the defaults made the shipped weights)."""

    pool_items: int = 8000
    pool_seed: int = 1515
    seed: int = 15
    #: Phase 1: steps of attribute reading, on batches of ``image_batch`` images.
    attribute_steps: int = 400
    image_batch: int = 96
    #: Phase 2 (image encoder frozen): steps of question answering.
    steps: int = 1200
    verify_batch: int = 128
    pair_batch: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.01
    warmup_steps: int = 100
    width: int = 128
    threads: int | None = 2
    eval_items: int = 1500

    def __post_init__(self) -> None:
        used = {self.pool_seed, self.pool_seed + 1}
        if used & HELD_OUT_SEEDS:
            raise InputError(
                f"pool_seed={self.pool_seed} draws a benchmark catalog "
                f"(seeds {sorted(HELD_OUT_SEEDS)}); pick another"
            )
        if min(self.steps, self.attribute_steps) < 1 or min(self.verify_batch, self.pair_batch) < 2:
            raise InputError("both phases need >= 1 step and batches of >= 2")


@dataclass
class JudgeTrainReport:
    path: Path
    config: JudgeTrainConfig
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    accuracy: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        head, tail = self.losses[:50], self.losses[-50:]
        return {
            "checkpoint": self.path.name,
            "config": asdict(self.config),
            "seconds": round(self.seconds, 1),
            "bytes": self.path.stat().st_size if self.path.is_file() else None,
            "loss_first_50": round(sum(head) / max(1, len(head)), 4),
            "loss_last_50": round(sum(tail) / max(1, len(tail)), 4),
            "held_out_accuracy": self.accuracy,
            "machine": f"CPU, torch threads={self.config.threads}",
        }


class _Data:
    """A drawn pool and a sample stream over it."""

    def __init__(self, n: int, seed: int, rng: random.Random) -> None:
        self.pool = make_catalog(n, seed=seed)
        self.codes = attribute_codes(self.pool)
        arrays = [np.asarray(draw(item, IMAGE_SIZE), dtype=np.uint8) for item in self.pool]
        self.pixels = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
        self.rng = rng
        #: Grid cells of every pool image once the image encoder is frozen (fp16).
        self.cells: torch.Tensor | None = None

    @torch.no_grad()
    def freeze(self, net: JudgeNet, chunk: int = 500) -> None:
        parts = [
            net.encode_images(normalise(self.pixels[i : i + chunk])).half()
            for i in range(0, len(self.pool), chunk)
        ]
        self.cells = torch.cat(parts)

    def grid(self, net: JudgeNet, index: list[int]) -> torch.Tensor:
        if self.cells is not None:
            return self.cells[torch.tensor(index)].float()
        return net.encode_images(normalise(self.pixels[torch.tensor(index)]))

    def verify(self, n: int) -> list[Sample]:
        out: list[Sample] = []
        while len(out) < n:
            out += verify_samples(self.pool, self.rng.randrange(len(self.pool)), self.rng)
        return out[:n]

    def pairs(self, n: int) -> list[Sample]:
        """Composed and described pairs, in runs: the kind drawn next is set by the
        parity of the samples so far (the sampler the shipped weights were trained with)."""
        out: list[Sample] = []
        makers: tuple[Maker, ...] = (composed_samples, described_samples)
        while len(out) < n:
            out += makers[len(out) % 2](self.pool, self.codes, self.rng)
        return out[:n]


def build_vocabulary(data: _Data, n_samples: int = 6000) -> Vocabulary:
    """Every word of a first batch of training texts, most frequent first."""
    counts: Counter[str] = Counter()
    for sample in data.verify(n_samples) + data.pairs(n_samples):
        counts.update(words(sample.text))
    return Vocabulary(sorted(counts, key=lambda w: (-counts[w], w)))


def _losses(
    net: JudgeNet, data: _Data, vocab: Vocabulary, verify: list[Sample], pairs: list[Sample]
) -> tuple[torch.Tensor, torch.Tensor]:
    """BCE of both heads, and the logits (verify then pair) for accuracy."""
    bce = nn.functional.binary_cross_entropy_with_logits
    texts = net.encode_texts(
        vocab.encode([s.text for s in verify + pairs], max_words=net.config.max_words)
    )
    images = [s.image for s in verify + pairs] + [max(s.reference, 0) for s in pairs]
    cells = data.grid(net, images)
    n_v, n_p = len(verify), len(pairs)
    v_logits = net.verify_logits(cells[:n_v], texts[:n_v])
    has_ref = torch.tensor([float(s.reference >= 0) for s in pairs])
    p_logits = net.pair_logits(cells[n_v : n_v + n_p], cells[n_v + n_p :], has_ref, texts[n_v:])
    v_labels = torch.tensor([s.label for s in verify])
    p_labels = torch.tensor([s.label for s in pairs])
    logits = torch.cat([v_logits, p_logits])
    read = [k for k, s in enumerate(verify + pairs) if k < n_v or s.reference < 0]
    parsing = reading_loss(net, texts[read], [(verify + pairs)[k].text for k in read])
    edits = edit_loss(net, texts[n_v:], pairs, data.codes)
    return bce(v_logits, v_labels) + bce(p_logits, p_labels) + parsing + edits, logits


def edit_loss(
    net: JudgeNet, texts: torch.Tensor, pairs: Sequence[Sample], codes: np.ndarray
) -> torch.Tensor:
    """Supervises the edit maps: each attribute's reference value maps to the target's
    (the edit's value, or the same value where the edit keeps it)."""
    rows = [k for k, s in enumerate(pairs) if s.reference >= 0 and s.target]
    if not rows:
        return torch.zeros(())
    reference = torch.from_numpy(codes[[pairs[k].reference for k in rows]].astype(np.int64))
    target = torch.tensor([pairs[k].target for k in rows], dtype=torch.long)
    maps = torch.split(net.edit(texts[rows]), [g * g for g in GROUPS], dim=1)
    loss = torch.zeros(())
    for column, (flat, g) in enumerate(zip(maps, GROUPS, strict=True)):
        mapped = flat.view(-1, g, g)[torch.arange(len(rows)), reference[:, column]]
        loss = loss + nn.functional.cross_entropy(mapped, target[:, column])
    return loss / len(GROUPS)


def reading_targets(texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """What each text asks about, read off its words (:func:`constraints`): per attribute,
    whether it is named (n, 6) and the value's index, -100 where not named (n, 6)."""
    asked = torch.zeros(len(texts), len(ATTRIBUTES))
    wanted = torch.full((len(texts), len(ATTRIBUTES)), -100, dtype=torch.long)
    for row, text in enumerate(texts):
        for name, value in (constraints(text) or {}).items():
            column = ATTRIBUTES.index(name)
            asked[row, column] = 1.0
            wanted[row, column] = VALUES[name].index(value)
    return asked, wanted


def reading_loss(net: JudgeNet, texts: torch.Tensor, raw: Sequence[str]) -> torch.Tensor:
    """Supervises the text side of the symbolic path: which attributes a question asks
    about and which value it wants (without it, an attribute's gate can close for good)."""
    asked, wanted = reading_targets(raw)
    loss = nn.functional.binary_cross_entropy_with_logits(net.asked(texts), asked)
    logits = torch.split(net.wanted(texts), [len(VALUES[a]) for a in ATTRIBUTES], dim=1)
    for column, group in enumerate(logits):
        if bool((wanted[:, column] >= 0).any()):
            loss = loss + nn.functional.cross_entropy(group, wanted[:, column], ignore_index=-100)
    return loss


def attribute_loss(net: JudgeNet, cells: torch.Tensor, codes: np.ndarray) -> torch.Tensor:
    """Cross-entropy of each attribute's value read off the image (exact labels)."""
    logits = net.attribute_logits(cells)
    target = torch.from_numpy(codes.astype(np.int64))
    total, start = torch.zeros(()), 0
    for column, name in enumerate(ATTRIBUTES):
        width = len(VALUES[name])
        ce = nn.functional.cross_entropy(logits[:, start : start + width], target[:, column])
        total, start = total + ce, start + width
    return total / len(ATTRIBUTES)


def evaluate(net: JudgeNet, data: _Data, vocab: Vocabulary, *, n: int = 1500) -> dict[str, float]:
    """Held-out accuracy of each head (and of the pair head with/without reference)."""
    net.eval()
    verify, pairs = data.verify(n), data.pairs(n)
    right: dict[str, list[bool]] = {"verify": [], "pair_reference": [], "pair_described": []}
    with torch.inference_mode():
        for i in range(0, n, 250):
            v, p = verify[i : i + 250], pairs[i : i + 250]
            logits = _losses(net, data, vocab, v, p)[1]
            for k, (sample, logit) in enumerate(zip(v + p, logits.tolist(), strict=True)):
                name = "verify" if k < len(v) else "pair_reference"
                if name != "verify" and sample.reference < 0:
                    name = "pair_described"
                right[name].append((logit > 0) == (sample.label > 0.5))
    net.train()
    return {k: round(100.0 * sum(v) / max(1, len(v)), 2) for k, v in right.items()}


def _schedule(steps: int, warmup: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def _optimizer(
    params: list[nn.Parameter], config: JudgeTrainConfig, steps: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    schedule = _schedule(steps, min(config.warmup_steps, steps // 5 + 1))
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)


def _step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scheduler: Any) -> float:
    optimizer.zero_grad(set_to_none=True)
    loss.backward()  # type: ignore[no-untyped-call]
    for group in optimizer.param_groups:
        nn.utils.clip_grad_norm_(group["params"], 1.0)
    optimizer.step()
    scheduler.step()
    return float(loss.item())


def _log(phase: str, step: int, steps: int, losses: list[float], start: float) -> None:
    if (step + 1) % 100 == 0:
        recent = losses[-100:]
        mean, seconds = sum(recent) / len(recent), time.perf_counter() - start
        log.info("%s step %d/%d loss %.4f (%.0fs)", phase, step + 1, steps, mean, seconds)


def read_attributes(net: JudgeNet, data: _Data, config: JudgeTrainConfig, start: float) -> None:
    """Phase 1: the image encoder learns to read every attribute (exact labels)."""
    params = [*net.cnn.parameters(), *net.cnn_out.parameters(), net.cells]
    optimizer, scheduler = _optimizer(
        [*params, *net.attribute_head.parameters()], config, config.attribute_steps
    )
    generator = torch.Generator().manual_seed(config.seed)
    losses: list[float] = []
    for step in range(config.attribute_steps):
        index = torch.randint(len(data.pool), (config.image_batch,), generator=generator)
        cells = net.encode_images(normalise(data.pixels[index]))
        loss = attribute_loss(net, cells, data.codes[index.numpy()])
        losses.append(_step(loss, optimizer, scheduler))
        _log("attributes", step, config.attribute_steps, losses, start)
    for param in [*params, *net.attribute_head.parameters()]:
        param.requires_grad_(False)


def reuse_encoder(net: JudgeNet, path: Path) -> None:
    """Phase 1 taken from another judge file (same sizes): image encoder and attribute head."""
    from safetensors.torch import load_file

    prefixes = ("cnn.", "cnn_out.", "cells", "attribute_head.")
    state = {k: v.float() for k, v in load_file(str(path)).items() if k.startswith(prefixes)}
    missing = [k for k in net.state_dict() if k.startswith(prefixes) and k not in state]
    if missing:
        raise InputError(f"{path} has no {missing[:3]}...; train phase 1 (drop --encoder-from)")
    net.load_state_dict(state, strict=False)
    for name, param in net.named_parameters():
        if name.startswith(prefixes):
            param.requires_grad_(False)


def train_judge(
    path: Path, config: JudgeTrainConfig | None = None, *, encoder_from: Path | None = None
) -> JudgeTrainReport:
    """Train from scratch with the config's seeds (``encoder_from``: phase 1 from that
    file), save weights and the training card."""
    config = config or JudgeTrainConfig()
    start = time.perf_counter()
    report = JudgeTrainReport(path=path, config=config)
    before = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    try:
        torch.manual_seed(config.seed)
        data = _Data(config.pool_items, config.pool_seed, random.Random(config.seed))
        log.info("drew %d pool images in %.1fs", config.pool_items, time.perf_counter() - start)
        vocab = build_vocabulary(data)
        net = JudgeNet(JudgeConfig(vocab_size=len(vocab), width=config.width))
        if encoder_from is None:
            read_attributes(net, data, config, start)
        else:
            reuse_encoder(net, encoder_from)
        data.freeze(net)
        trainable = [p for p in net.parameters() if p.requires_grad]
        optimizer, scheduler = _optimizer(trainable, config, config.steps)
        for step in range(config.steps):
            verify, pairs = data.verify(config.verify_batch), data.pairs(config.pair_batch)
            loss = _losses(net, data, vocab, verify, pairs)[0]
            report.losses.append(_step(loss, optimizer, scheduler))
            _log("judge", step, config.steps, report.losses, start)
        held_out = _Data(config.eval_items, config.pool_seed + 1, random.Random(config.seed + 1))
        held_out.freeze(net)
        report.accuracy = evaluate(net, held_out, vocab)
        net.eval()
        save_judge(net, vocab, path, extra={"seed": str(config.seed)})
    finally:
        torch.set_num_threads(before)
    report.seconds = time.perf_counter() - start
    training_card(path).write_text(json.dumps(report.summary(), indent=2) + "\n")
    return report


def training_card(path: Path) -> Path:
    return path.with_name(path.name.removesuffix(".safetensors") + ".training.json")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train ImageScope-Judge on the CPU.")
    parser.add_argument("--out", type=Path, default=SHIPPED_JUDGE, help="weights file to write")
    parser.add_argument("--steps", type=int, default=JudgeTrainConfig.steps)
    parser.add_argument("--attribute-steps", type=int, default=JudgeTrainConfig.attribute_steps)
    parser.add_argument("--pool-items", type=int, default=JudgeTrainConfig.pool_items)
    parser.add_argument(
        "--encoder-from", type=Path, default=None, help="skip phase 1: a judge file's encoder"
    )
    parser.add_argument("--threads", type=int, default=JudgeTrainConfig.threads)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    config = JudgeTrainConfig(
        steps=args.steps,
        attribute_steps=args.attribute_steps,
        pool_items=args.pool_items,
        threads=args.threads,
    )
    report = train_judge(args.out, config, encoder_from=args.encoder_from)
    sys.stdout.write(json.dumps(report.summary(), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
