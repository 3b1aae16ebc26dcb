"""OpenSearch bulk ingest: ``OpenSearchStore.upsert`` against plain opensearch-py.

Same node, same mapping (the catalog index the store creates), same vectors
(``--n`` random unit vectors of ``--dim``): the baseline (key
``opensearch_py``) is ``helpers.parallel_bulk`` with ``--threads`` threads and
``--chunk`` documents per request into a copy of the store's index, then one
refresh; the project is ``store.upsert`` (chunks in flight on ``bulk_threads``
threads, one refresh at the end), once with the defaults (``project``) and once
with ``bulk_pause_refresh`` (``project_refresh_paused``: ``refresh_interval: -1``
during the bulk, restored after).
The two run alternately ``--repeats`` times; the best of each is kept.

    .venv/bin/python benchmarks/bench_os_bulk.py        # the node of opensearch-node.sh

Results: benchmarks/results/os-bulk.json (docs/s of each, the ratio project /
baseline, and the node's CPU time per document as a hint of what bounds it).
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from opensearchpy import OpenSearch, helpers

from imagescope.settings import OpenSearchSettings
from imagescope.store.base import CatalogRecord
from imagescope.store.mappings import render_catalog_index
from imagescope.store.opensearch import OpenSearchStore

REPO = Path(__file__).resolve().parents[1]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--opensearch-url", default="http://127.0.0.1:9250")
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--chunk", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results/os-bulk.json")
    return parser.parse_args()


def node_cpu_s(client: OpenSearch) -> float:
    stats = client.nodes.stats(metric="process")["nodes"]
    return sum(n["process"]["cpu"]["total_in_millis"] for n in stats.values()) / 1000


def baseline(client: OpenSearch, vectors: np.ndarray, args: argparse.Namespace) -> float:
    settings = OpenSearchSettings(hosts=[args.opensearch_url], number_of_replicas=0)
    index = f"bench-bulk-raw-{uuid.uuid4().hex[:8]}"
    client.indices.create(index=index, body=render_catalog_index(settings, args.dim))
    actions = (
        {"_index": index, "_id": f"r{i}", "_source": {"image_vector": v.tolist(), "uri": f"/{i}"}}
        for i, v in enumerate(vectors)
    )
    started = time.perf_counter()
    for ok, item in helpers.parallel_bulk(
        client, actions, thread_count=args.threads, chunk_size=args.chunk
    ):
        assert ok, item
    client.indices.refresh(index=index)
    elapsed = time.perf_counter() - started
    assert client.count(index=index)["count"] == len(vectors)
    client.indices.delete(index=index)
    return elapsed


def project(vectors: np.ndarray, args: argparse.Namespace, *, pause: bool) -> float:
    settings = OpenSearchSettings(
        hosts=[args.opensearch_url],
        index=f"bench-bulk-store-{uuid.uuid4().hex[:8]}",
        number_of_replicas=0,
        bulk_threads=args.threads,
        bulk_pause_refresh=pause,
        bulk_chunk_size=args.chunk,
        timeout_s=120,
    )
    store = OpenSearchStore(settings)
    store.create_index(args.dim)
    records = (
        CatalogRecord(id=f"r{i}", image_vector=v, uri=f"/{i}") for i, v in enumerate(vectors)
    )
    started = time.perf_counter()
    report = store.upsert(records)
    elapsed = time.perf_counter() - started
    assert not report.failed and store.count() == len(vectors)
    store.client.indices.delete(index=f"{settings.index}-v1")
    store.close()
    return elapsed


def main() -> None:
    args = parse_args()
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(args.n, args.dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    client = OpenSearch([args.opensearch_url], timeout=300)
    modes = ("opensearch_py", "project", "project_refresh_paused")
    runs: dict[str, list[float]] = {name: [] for name in modes}
    cpu: dict[str, list[float]] = {name: [] for name in modes}
    for _ in range(args.repeats):
        for name in modes:
            before = node_cpu_s(client)
            if name == "opensearch_py":
                seconds = baseline(client, vectors, args)
            else:
                seconds = project(vectors, args, pause=name == "project_refresh_paused")
            cpu[name].append(node_cpu_s(client) - before)
            runs[name].append(seconds)
    best = {name: min(values) for name, values in runs.items()}
    result: dict[str, Any] = {
        "what": f"bulk ingest {args.n} x {args.dim}, same node and mapping, one refresh at the end",
        "n": args.n,
        "dim": args.dim,
        "threads": args.threads,
        "chunk": args.chunk,
        "repeats": args.repeats,
        "baseline": "opensearch_py",
        **{
            name: {"docs_per_s": round(args.n / best[name], 1), "runs_s": runs[name]}
            for name in modes
        },
        "ratio": round(best["opensearch_py"] / best["project"], 2),
        "ratio_refresh_paused": round(best["opensearch_py"] / best["project_refresh_paused"], 2),
        "node_cpu_ms_per_doc": {k: round(1000 * min(v) / args.n, 2) for k, v in cpu.items()},
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
