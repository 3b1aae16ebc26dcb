"""The offline synthetic benchmark: R@1/5/10 per stage set and query kind, and cost per stage.

A procedurally drawn catalog (``--items``, default 2,000) is ingested through
``catalog.csv`` into the embedded store (or ``--store memory``); ``--queries``
queries of each kind (text, composed, dialog) with exact ground truth run
through the engine with the CPU backends: RuleReasoner on the tiny
ImageScope-Synth CLIP, and as verifier and evaluator the learned
ImageScope-Judge (``--judge clip``: ClipVerifier and ClipEvaluator). Rankings are scored after
stage 1, 1+2 and 1+2+3, beside a plain CLIP baseline and chance; costs
(seconds, model calls, verifier questions) are the per-query means of each
stage, read from the result traces; the judges' signal compares how they treat
ground-truth candidates and the others.

    .venv/bin/python benchmarks/bench_synthetic.py
    .venv/bin/python benchmarks/bench_synthetic.py --queries 20 --store memory
    .venv/bin/python benchmarks/bench_synthetic.py --train   # retrain the CLIP first

The CLIP is the checkpoint shipped with the package unless ``--checkpoint`` or
``--train`` says otherwise. Results: benchmarks/results/synthetic.json (the
per-query outcomes included).
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import tempfile
from pathlib import Path

import torch

from imagescope.synthetic.bench import BenchConfig, format_table, run_synthetic_bench
from imagescope.synthetic.train import (
    SHIPPED_CHECKPOINT,
    TrainConfig,
    load_synth_embedder,
    train_tiny_clip,
    training_card,
)

RESULTS = Path(__file__).resolve().parent / "results" / "synthetic.json"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=2000, help="catalog size")
    parser.add_argument("--queries", type=int, default=100, help="queries per kind")
    parser.add_argument("--catalog-seed", type=int, default=1)
    parser.add_argument("--query-seed", type=int, default=0)
    parser.add_argument("--store", choices=("embedded", "memory"), default="embedded")
    parser.add_argument("--top-k", type=int, default=None, help="default: the settings'")
    parser.add_argument("--alpha", type=int, default=None, help="default: the settings'")
    parser.add_argument(
        "--judge", choices=("learned", "clip"), default="learned", help="verifier and evaluator"
    )
    parser.add_argument("--checkpoint", type=Path, default=None, help="an ImageScope-Synth file")
    parser.add_argument("--train", action="store_true", help="train a fresh checkpoint first")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--out", type=Path, default=RESULTS)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    config = BenchConfig(
        n_items=args.items,
        catalog_seed=args.catalog_seed,
        n_per_kind=args.queries,
        query_seed=args.query_seed,
        store=args.store,
        top_k=args.top_k,
        alpha=args.alpha,
        judge=args.judge,
    )
    with tempfile.TemporaryDirectory(prefix="imagescope-synth-") as tmp:
        work = Path(tmp)
        checkpoint = args.checkpoint or SHIPPED_CHECKPOINT
        if args.train:
            checkpoint = work / "ImageScope-Synth.safetensors"
            train_tiny_clip(checkpoint, TrainConfig(), progress=True)
        card = training_card(checkpoint)
        training = json.loads(card.read_text()) if card.is_file() else None
        embedder = load_synth_embedder(checkpoint)
        report = run_synthetic_bench(work, config, embedder=embedder, progress=True)
    report["checkpoint"] = str(args.checkpoint or "shipped") if not args.train else "trained"
    report["training"] = training
    report["machine"] = {
        "platform": platform.platform(),
        "torch_threads": torch.get_num_threads(),
        "device": "cpu",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(format_table(report))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
