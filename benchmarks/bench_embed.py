"""Embedding throughput of OpenClipEmbedder: images/s and texts/s, one by one vs batched.

For each model it embeds the same ``--images`` random photos (``--image-size``
pixels square, so decoding-free preprocessing is included) and ``--texts``
captions, first with batch size 1 (the baseline, same process, same inputs),
then with ``--batch-size``; each timing is the median of ``--repeats`` runs
after one warm-up batch. Models:

- the tiny random-weight model (always; built in a temporary folder);
- ``--real ViT-B-32/laion2b_s34b_b79k`` (repeatable) when its weights are in the
  local cache: the run sets HF_HUB_OFFLINE=1 so it never downloads, and a
  model without cached weights is reported as skipped.

    .venv/bin/python benchmarks/bench_embed.py
    .venv/bin/python benchmarks/bench_embed.py --real ViT-B-32/laion2b_s34b_b79k --device cuda

Results: benchmarks/results/embed-<device>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from imagescope.errors import ConfigError
from imagescope.models.open_clip_embedder import OpenClipEmbedder
from imagescope.models.tiny import write_tiny_open_clip

RESULTS_DIR = Path(__file__).resolve().parent / "results"
WORDS = "a red dress dog on sofa man walking street at night with long sleeves kitchen".split()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--texts", type=int, default=256)
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--real", action="append", default=[], metavar="MODEL/TAG")
    parser.add_argument("--out", type=Path, default=None)
    return parser.parse_args()


def make_inputs(args: argparse.Namespace) -> tuple[list[Image.Image], list[str]]:
    rng = np.random.default_rng(0)
    side = args.image_size
    images = [
        Image.fromarray((rng.random((side, side, 3)) * 255).astype("uint8"))
        for _ in range(args.images)
    ]
    texts = [" ".join(rng.choice(WORDS, size=int(rng.integers(3, 12)))) for _ in range(args.texts)]
    return images, texts


def timed(run: Callable[[], object], repeats: int, device: str) -> float:
    """Median wall seconds of ``run`` (CUDA work is waited for)."""
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


def measure(
    build: Callable[[int], OpenClipEmbedder],
    inputs: dict[str, Sequence[Any]],
    args: argparse.Namespace,
) -> list[dict[str, Any]]:
    rows = []
    for batch_size in (1, args.batch_size):
        embedder = build(batch_size)
        for kind, items in inputs.items():
            embed = embedder.embed_images if kind == "images" else embedder.embed_texts
            embed(list(items[: max(batch_size, 1)]))  # warm-up
            seconds = timed(partial(embed, list(items)), args.repeats, args.device)
            rows.append(
                {
                    "model_id": embedder.model_id,
                    "input": kind,
                    "batch_size": batch_size,
                    "items": len(items),
                    "seconds": round(seconds, 4),
                    "per_second": round(len(items) / seconds, 1),
                }
            )
            print(
                f"{embedder.model_id:60s} {kind:6s} batch {batch_size:3d}: "
                f"{len(items) / seconds:9.1f}/s"
            )
    return rows


def real_embedder(model: str, tag: str | None, *, device: str) -> Callable[[int], OpenClipEmbedder]:
    """Builds the cached-weights embedder at a given batch size."""

    def build(batch_size: int) -> OpenClipEmbedder:
        return OpenClipEmbedder(model, tag, device=device, batch_size=batch_size)

    return build


def speedups(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Batched throughput over batch-size-1 throughput, per model and input."""
    out = {}
    for row in rows:
        if row["batch_size"] == 1:
            continue
        base = next(
            r
            for r in rows
            if r["batch_size"] == 1
            and r["model_id"] == row["model_id"]
            and r["input"] == row["input"]
        )
        out[f"{row['model_id']} {row['input']}"] = round(row["per_second"] / base["per_second"], 2)
    return out


def make_report(
    args: argparse.Namespace, rows: list[dict[str, Any]], skipped: dict[str, str]
) -> dict[str, Any]:
    return {
        "device": args.device,
        "gpu": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else None,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_1m": os.getloadavg()[0],
        "torch": torch.__version__,
        "image_size": args.image_size,
        "repeats": args.repeats,
        "results": rows,
        "speedup_batched_over_one_by_one": speedups(rows),
        "skipped": skipped,
    }


def main() -> None:
    args = parse_args()
    images, texts = make_inputs(args)
    inputs: dict[str, Sequence[Any]] = {"images": images, "texts": texts}
    rows: list[dict[str, Any]] = []
    skipped: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        config_dir, name, checkpoint = write_tiny_open_clip(Path(tmp))
        rows += measure(
            lambda bs: OpenClipEmbedder(
                name, str(checkpoint), config_dir=config_dir, device=args.device, batch_size=bs
            ),
            inputs,
            args,
        )
    os.environ["HF_HUB_OFFLINE"] = "1"  # cached weights only: never download here
    for spec in args.real:
        model, _, tag = spec.partition("/")
        try:
            rows += measure(real_embedder(model, tag or None, device=args.device), inputs, args)
        except ConfigError as err:
            skipped[spec] = str(err)
            print(f"skipped {spec}: {err}")
    report = make_report(args, rows, skipped)
    out = args.out or RESULTS_DIR / f"embed-{args.device.split(':')[0]}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"speedups: {report['speedup_batched_over_one_by_one']}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
