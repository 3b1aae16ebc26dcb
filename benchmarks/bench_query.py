"""One query through stages 1+2+3 with the CPU judges: the re-encoding path vs vector reuse.

Gallery: ``--n`` (5,000) synthetic catalog images and captions, embedded once
with a ViT-B-32-sized open_clip (random weights, ``pretrained=None``: the
same compute as the real model; torch seeded, so the weights are the same in
every run) into an embedded store. ``--gallery-path DIR`` keeps it and reuses
it on later runs (the catalog's stored vectors are checked against the model).

Queries: synthetic text, composed and dialog queries (``--per-kind`` each).
Every query runs, in the same process, through:

- ``reencode`` (the baseline, the path before vector reuse): the CLIP verifier
  and evaluator encode every candidate image again, embed every text of every
  call over open_clip's whole context (``encode_text``, 77 positions), and
  stage 3 asks the evaluator about one candidate per call;
- ``reuse_untrimmed``: stored image vectors, all texts of a call in one batch,
  the shortlist in one evaluator call, the text-vector cache kept across
  queries, texts still over the whole context (the path before trimming);
- ``reuse_cold``: the same with texts run only up to the longest prompt of a
  batch (``open_clip_text``), and the text-vector cache emptied before the
  query (a first query);
- ``reuse``: trimmed texts, the cache kept across queries (a serving process).

Reported: p50/p90 of the stage 1+2+3 wall time per path, per-stage p50s, the
ratio to the baseline, whether every ranking (ids, propositions satisfied,
evaluator verdicts) was identical to the baseline's, the cache's hit rate, and
the load average before and after (other jobs on the machine slow every path).

    nice .venv/bin/python benchmarks/bench_query.py --gallery-path /tmp/bench-query-5k

Results: benchmarks/results/query-<n>.json (baseline key ``reencode``).
"""

from __future__ import annotations

import os

# Set before torch loads OpenMP: idle OpenMP threads sleep instead of spinning. On a
# shared machine a spinning thread burns the time slice its partner needs, and the
# judges run many small text forwards (measured here under load 5: the stage-2 texts of
# five queries took 10-19 s with spinning, 2.3 s passive). OMP_WAIT_POLICY=ACTIVE
# in the environment keeps spinning; the policy is recorded in the results.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import logging
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from imagescope.models.clip_judge import clip_judges
from imagescope.models.open_clip_embedder import OpenClipEmbedder
from imagescope.models.rule_reasoner import RuleReasoner
from imagescope.models.text_cache import TextVectorCache
from imagescope.pipeline.context import Components, StoreImageSource
from imagescope.pipeline.rerank import rerank
from imagescope.pipeline.stage1 import run_stage1
from imagescope.schemas import RerankRequest, SearchResult
from imagescope.settings import EmbeddedStoreSettings, ImageLimits, PipelineSettings
from imagescope.store.base import CatalogRecord
from imagescope.store.embedded import EmbeddedStore
from imagescope.synthetic.catalog import make_catalog, write_catalog
from imagescope.synthetic.queries import make_queries

RESULTS_DIR = Path(__file__).resolve().parent / "results"
PATHS = ("reencode", "reuse_untrimmed", "reuse_cold", "reuse")
log = logging.getLogger("bench_query")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=5000, help="gallery size")
    parser.add_argument("--model", default="ViT-B-32", help="open_clip architecture")
    parser.add_argument("--per-kind", type=int, default=5, help="queries per query kind")
    parser.add_argument("--top-k", type=int, default=20)
    parser.add_argument("--alpha", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--gallery-path", type=Path, default=Path("/tmp/bench-query-gallery"))
    parser.add_argument("--out", type=Path, help="results file (default: results/query-<n>.json)")
    return parser.parse_args()


# --------------------------------------------------------------------------- gallery


def open_gallery(args: argparse.Namespace, embedder: OpenClipEmbedder) -> tuple[Any, ImageLimits]:
    folder = args.gallery_path / f"{args.model}-{args.n}"
    csv_path = folder / "catalog" / "catalog.csv"
    if not csv_path.is_file():
        write_catalog(csv_path.parent, n=args.n, seed=args.seed + 1)
    limits = ImageLimits(allowed_roots=[folder.resolve()])
    store = EmbeddedStore(EmbeddedStoreSettings(path=folder / "store"))
    store.ensure(embedder.dim)
    if store.count() != args.n:
        build_gallery(store, csv_path.parent.resolve(), args, embedder, limits)
    check_gallery(store, limits, embedder)
    return store, limits


def build_gallery(
    store: EmbeddedStore,
    root: Path,
    args: argparse.Namespace,
    embedder: OpenClipEmbedder,
    limits: ImageLimits,
) -> None:
    """Image vectors of every picture, caption vectors (each distinct caption once)."""
    from imagescope.ingest.images import load_image

    items = make_catalog(args.n, seed=args.seed + 1)
    captions = sorted({item.caption for item in items})
    caption_rows = dict(zip(captions, embedder.embed_texts(captions), strict=True))
    started = time.perf_counter()
    for start in range(0, len(items), 256):
        chunk = items[start : start + 256]
        uris = [str(root / "images" / f"{item.id}.png") for item in chunk]
        images = [load_image(uri, limits=limits) for uri in uris]
        vectors = embedder.embed_images(images)
        store.upsert(
            CatalogRecord(
                id=item.id,
                image_vector=vector,
                caption_vector=caption_rows[item.caption],
                caption=item.caption,
                uri=uri,
                metadata=dict(item.attributes),
            )
            for item, uri, vector in zip(chunk, uris, vectors, strict=True)
        )
        log.info(
            "gallery: %d/%d (%.0fs)", start + len(chunk), len(items), time.perf_counter() - started
        )
    store.flush()


def check_gallery(store: EmbeddedStore, limits: ImageLimits, embedder: OpenClipEmbedder) -> None:
    """The stored vectors must be this model's (same seed), else reuse would be wrong."""
    record = store.get([make_catalog(1, seed=0)[0].id], with_vectors=True)[0]
    image = StoreImageSource(store, limits).by_id(record.id)
    again = embedder.embed_images([image])[0]
    if record.image_vector is None or float(again @ record.image_vector) < 0.999:
        raise SystemExit(f"{store.path} holds another model's vectors; give another --gallery-path")


# --------------------------------------------------------------------------- paths


def components(
    store: Any, limits: ImageLimits, embedder: OpenClipEmbedder, path: str
) -> Components:
    if path in ("reencode", "reuse_untrimmed"):
        embedder = embedder.untrimmed()
    verifier, evaluator = clip_judges(
        embedder, reuse=path != "reencode", text_cache=TextVectorCache()
    )
    return Components(
        embedder=embedder,
        store=store,
        reasoner=RuleReasoner(),
        images=StoreImageSource(store, limits),
        verifier=verifier,
        evaluator=evaluator,
    )


def run(
    parts: Components, query: Any, args: argparse.Namespace
) -> tuple[SearchResult, dict[str, float]]:
    started = time.perf_counter()
    first = run_stage1(parts, query, params=PipelineSettings())
    stage1 = time.perf_counter() - started
    request = RerankRequest(
        query=query, stage1=first, stages=[2, 3], top_k=args.top_k, alpha=args.alpha
    )
    result = rerank(parts, request)
    total = time.perf_counter() - started
    timings = result.trace.timings
    stage2 = timings.get("propositions", 0.0) + timings.get("verify", 0.0)
    seconds = {"total": total, "1": stage1, "2": stage2, "3": timings.get("evaluate", 0.0)}
    return result, seconds


def summary(result: SearchResult) -> list[Any]:
    return [
        (c.id, c.satisfied, None if c.evaluation is None else c.evaluation.accepted)
        for c in result.candidates
    ]


def percentiles(values: list[float]) -> dict[str, float]:
    return {
        "p50_ms": float(np.percentile(values, 50)) * 1000,
        "p90_ms": float(np.percentile(values, 90)) * 1000,
    }


Timings = dict[str, list[dict[str, float]]]


def time_queries(
    paths: dict[str, Components], queries: list[Any], args: argparse.Namespace
) -> tuple[Timings, dict[str, list[bool]]]:
    """Each query through every path in turn; per path, whether it ranked as the baseline."""
    seconds: Timings = {path: [] for path in PATHS}
    identical: dict[str, list[bool]] = {path: [] for path in PATHS}
    for number, query in enumerate(queries, 1):
        results = {}
        for path in PATHS:
            if path == "reuse_cold":
                paths[path].verifier.text_cache.clear()  # type: ignore[union-attr]
            results[path], took = run(paths[path], query.query, args)
            seconds[path].append(took)
            identical[path].append(summary(results[path]) == summary(results["reencode"]))
        log.info(
            "query %d/%d (%s): %s identical=%s",
            number,
            len(queries),
            query.kind,
            {p: round(s[-1]["total"], 2) for p, s in seconds.items()},
            all(same[-1] for same in identical.values()),
        )
    return seconds, identical


def make_report(
    args: argparse.Namespace,
    paths: dict[str, Components],
    seconds: Timings,
    identical: dict[str, list[bool]],
) -> dict[str, Any]:
    cache = paths["reuse"].verifier.text_cache  # type: ignore[union-attr]
    report: dict[str, Any] = {
        "n": args.n,
        "model": f"{args.model} (random weights, pretrained=None)",
        "queries": len(seconds["reuse"]),
        "top_k": args.top_k,
        "alpha": args.alpha,
        "baseline": "reencode",
        "identical_rankings": all(all(same) for same in identical.values()),
        "identical_rankings_by_path": {p: all(same) for p, same in identical.items()},
        "text_cache_hit_rate": cache.hits / max(1, cache.hits + cache.misses),
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "omp_wait_policy": os.environ["OMP_WAIT_POLICY"],
            "platform": platform.platform(),
            "load_average_at_start": args.load_at_start,
            "load_average_at_end": os.getloadavg(),
        },
    }
    for path in PATHS:
        report[path] = {
            stage: percentiles([s[stage] for s in seconds[path]])
            for stage in ("total", "1", "2", "3")
        }
    base = report["reencode"]["total"]["p50_ms"]
    report["ratio_p50"] = {p: report[p]["total"]["p50_ms"] / base for p in PATHS}
    return report


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args = parse_args()
    torch.manual_seed(args.seed)
    embedder = OpenClipEmbedder(args.model, None, batch_size=64)
    store, limits = open_gallery(args, embedder)
    paths = {path: components(store, limits, embedder, path) for path in PATHS}
    queries = make_queries(
        make_catalog(args.n, seed=args.seed + 1), n_per_kind=args.per_kind, seed=args.seed + 2
    )
    args.load_at_start = os.getloadavg()
    seconds, identical = time_queries(paths, queries, args)
    report = make_report(args, paths, seconds, identical)
    out = args.out or RESULTS_DIR / f"query-{args.n}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    for path in PATHS:
        p50 = {stage: round(v["p50_ms"]) for stage, v in report[path].items()}
        print(f"{path:>15}: p50 ms {p50}; x{report['ratio_p50'][path]:.2f} of reencode")
    print(f"identical rankings: {report['identical_rankings_by_path']}; saved {out}")
    print(f"load average: {args.load_at_start} at start, {os.getloadavg()} at the end")
    store.close()


if __name__ == "__main__":
    main()
