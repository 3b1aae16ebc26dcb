"""Stages 2 and 3 with the learned judge on the held-out synthetic benchmark.

The same catalog, queries and scoring as ``bench_synthetic.py`` (2,000 drawn
images, 100 queries per kind, seeds 1 and 0, never seen in the judge's
training), with the verifier and evaluator of ``--judge`` (default
``learned``: ImageScope-Judge; ``clip``: the CLIP zero-shot judges). Reports
R@1/5/10 per kind for plain CLIP, stage 1, 1+2 and 1+2+3, and per stage the
mean seconds and model calls per query. Recall and the cost tally are eval's
(:mod:`imagescope.measures`), through :mod:`imagescope.synthetic.bench`.

    .venv/bin/python benchmarks/bench_synthetic_judge.py
    .venv/bin/python benchmarks/bench_synthetic_judge.py --queries 20 --store memory

Results: benchmarks/results/synthetic_judge.json (with the per-query ranks).
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import tempfile
from pathlib import Path
from typing import Any

import torch

from imagescope.synthetic import bench
from imagescope.synthetic.judge_model import SHIPPED_JUDGE
from imagescope.synthetic.judge_train import training_card
from imagescope.synthetic.train import load_synth_embedder

RESULTS = Path(__file__).resolve().parent / "results" / "synthetic_judge.json"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--queries", type=int, default=100, help="queries per kind")
    parser.add_argument("--catalog-seed", type=int, default=1)
    parser.add_argument("--query-seed", type=int, default=0)
    parser.add_argument("--store", choices=("embedded", "memory"), default="embedded")
    parser.add_argument("--judge", choices=("learned", "clip"), default="learned")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    return parser.parse_args()


def run(args: argparse.Namespace, work_dir: Path) -> dict[str, Any]:
    config = bench.BenchConfig(
        n_items=args.items,
        n_per_kind=args.queries,
        store=args.store,
        catalog_seed=args.catalog_seed,
        query_seed=args.query_seed,
        judge=args.judge,
    )
    report = bench.run_synthetic_bench(work_dir, config, embedder=load_synth_embedder())
    card = training_card(SHIPPED_JUDGE)
    report["judge_training"] = json.loads(card.read_text()) if card.is_file() else None
    return report


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        report = run(args, Path(tmp))
    report["machine"] = {"python": platform.python_version(), "torch_threads": args.threads}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(bench.format_table(report))
    print(f"\nwritten: {args.out}")


if __name__ == "__main__":
    main()
