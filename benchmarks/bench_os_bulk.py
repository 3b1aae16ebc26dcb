"""OpenSearch bulk ingest: ``OpenSearchStore.upsert`` against plain opensearch-py.

Same node, same mapping (the catalog index the store creates), same documents
(``--n`` random unit vectors of ``--dim``, an empty caption, a uri, empty
metadata): the baseline (key ``opensearch_py``) is ``helpers.parallel_bulk``
with ``--chunk`` documents per request into a copy of the store's index, then
one refresh; the project is ``store.upsert`` (``bulk_chunk_size`` = ``--chunk``,
one refresh at the end). With ``--with-paused`` the project also runs with
``bulk_pause_refresh`` (``project_refresh_paused``: ``refresh_interval: -1``
during the bulk, restored after; not swept, it takes the project's count).

Each mode gets its own best thread count: a sweep runs every count of
``--threads`` once per mode (modes alternating), then each mode runs
``--repeats`` times at its best count, modes alternating so that load from
other processes falls on both. Best and median of the repeats are reported.

    .venv/bin/python benchmarks/bench_os_bulk.py --opensearch-url http://127.0.0.1:9250

After them, unless ``--skip-without-graph``, the baseline's bulk runs twice
into an index without the vector field (the vectors kept in ``_source`` only):
with opensearch-py's own serializer and with the project's orjson one. The
node's CPU per document there is the request, ``_source``, translog and the
other fields (the vector's JSON is only skipped over, not read into floats), so
the difference to the full runs is the vector field: its floats and the graph.

Results: benchmarks/results/os-bulk.json: docs/s of each mode, the ratio project
/ baseline (docs/s), and per document the client's CPU time (this process, all
threads) and the node's CPU time, with the cores each side kept busy, which
tells whether the node (HNSW graph building) or the client bounds the rate.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from opensearchpy import OpenSearch, helpers

from imagescope.settings import OpenSearchSettings
from imagescope.store.base import CatalogRecord
from imagescope.store.mappings import render_catalog_index
from imagescope.store.opensearch import OpenSearchStore
from imagescope.store.opensearch_json import OrjsonSerializer

REPO = Path(__file__).resolve().parents[1]
#: A little over ``monitor.process.refresh_interval`` (1 s by default).
NODE_STATS_CACHE_S = 1.2


@dataclass
class Run:
    """One bulk load: wall seconds, this process's CPU seconds, the node's CPU seconds."""

    wall_s: float
    client_cpu_s: float
    node_cpu_s: float


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--opensearch-url", default="http://127.0.0.1:9250")
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument(
        "--threads", default="1,2,3,4", help="thread counts to try per mode (comma-separated)"
    )
    parser.add_argument("--chunk", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--with-paused", action="store_true", help="also run bulk_pause_refresh")
    parser.add_argument(
        "--skip-without-graph",
        action="store_true",
        help="skip the two runs into an index without the vector field (node cost of the rest)",
    )
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results/os-bulk.json")
    args = parser.parse_args()
    try:
        args.thread_counts = sorted({int(t) for t in args.threads.split(",")})
    except ValueError:
        parser.error(f"--threads takes comma-separated integers, not {args.threads!r}")
    if not args.thread_counts or min(args.thread_counts) < 1:
        parser.error("--threads needs at least one count, each >= 1")
    return args


def node_cpu_s(client: OpenSearch) -> float:
    stats = client.nodes.stats(metric="process")["nodes"]
    return float(sum(n["process"]["cpu"]["total_in_millis"] for n in stats.values()) / 1000)


def measured(client: OpenSearch, load: Callable[[], float]) -> Run:
    """Run ``load`` (which returns its wall seconds) and take both sides' CPU time."""
    node_before, cpu_before = node_cpu_s(client), time.process_time()
    wall = load()
    client_cpu = time.process_time() - cpu_before
    time.sleep(NODE_STATS_CACHE_S)  # the node answers process stats from a 1 s cache
    return Run(wall, client_cpu, node_cpu_s(client) - node_before)


def catalog_index(args: Any, *, graph: bool = True) -> dict[str, Any]:
    """The store's index body; without ``graph`` the image vector is kept in
    ``_source`` only (a disabled object: not parsed into a field, no HNSW graph)."""
    settings = OpenSearchSettings(hosts=[args.opensearch_url], number_of_replicas=0)
    body = render_catalog_index(settings, args.dim)
    if not graph:
        body["mappings"]["properties"]["image_vector"] = {"type": "object", "enabled": False}
    return body


def baseline(
    client: OpenSearch, vectors: np.ndarray, threads: int, args: Any, *, graph: bool = True
) -> float:
    index = f"bench-bulk-raw-{uuid.uuid4().hex[:8]}"
    client.indices.create(index=index, body=catalog_index(args, graph=graph))
    as_array = isinstance(client.transport.serializer, OrjsonSerializer)
    actions = (
        {
            "_index": index,
            "_id": f"r{i}",
            "_source": {
                "image_vector": v if as_array else v.tolist(),
                "caption": "",
                "uri": f"/{i}",
                "metadata": {},
            },
        }
        for i, v in enumerate(vectors)
    )
    started = time.perf_counter()
    for ok, item in helpers.parallel_bulk(
        client, actions, thread_count=threads, chunk_size=args.chunk
    ):
        assert ok, item
    client.indices.refresh(index=index)
    elapsed = time.perf_counter() - started
    assert client.count(index=index)["count"] == len(vectors)
    client.indices.delete(index=index)
    return elapsed


def project(vectors: np.ndarray, threads: int, args: Any, *, pause: bool) -> float:
    settings = OpenSearchSettings(
        hosts=[args.opensearch_url],
        index=f"bench-bulk-store-{uuid.uuid4().hex[:8]}",
        number_of_replicas=0,
        bulk_threads=threads,
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


def without_graph(client: OpenSearch, vectors: np.ndarray, threads: int, args: Any) -> Any:
    """The baseline's bulk into an index without the vector field, once with
    opensearch-py's serializer (``tolist()`` payload) and once with the project's
    (orjson, arrays): the node's CPU per document for all but the vector field."""
    fast = OpenSearch([args.opensearch_url], timeout=300, serializer=OrjsonSerializer())
    result: dict[str, Any] = {"threads": threads}
    for name, sender in (("stdlib_payload", client), ("orjson_payload", fast)):
        run = measured(client, partial(baseline, sender, vectors, threads, args, graph=False))
        result[name] = {
            "docs_per_s": round(args.n / run.wall_s, 1),
            "client_cpu_ms_per_doc": round(1000 * run.client_cpu_s / args.n, 3),
            "node_cpu_ms_per_doc": round(1000 * run.node_cpu_s / args.n, 3),
        }
    return result


def run_mode(name: str, threads: int, client: OpenSearch, vectors: np.ndarray, args: Any) -> Run:
    if name == "opensearch_py":
        run = measured(client, lambda: baseline(client, vectors, threads, args))
    else:
        pause = name == "project_refresh_paused"
        run = measured(client, lambda: project(vectors, threads, args, pause=pause))
    print(f"{name} threads={threads}: {args.n / run.wall_s:.0f} docs/s", flush=True)
    return run


def sweep(modes: tuple[str, ...], client: OpenSearch, vectors: np.ndarray, args: Any) -> Any:
    """docs/s of each mode at each thread count (one run each, modes alternating)."""
    rates: dict[str, dict[int, float]] = {name: {} for name in modes}
    for threads in args.thread_counts:
        for name in modes:
            rates[name][threads] = round(
                args.n / run_mode(name, threads, client, vectors, args).wall_s, 1
            )
    return rates


def summary(runs: list[Run], threads: int, n: int) -> dict[str, Any]:
    walls = [r.wall_s for r in runs]
    best = min(runs, key=lambda r: r.wall_s)
    return {
        "threads": threads,
        "docs_per_s": round(n / best.wall_s, 1),
        "docs_per_s_median": round(n / statistics.median(walls), 1),
        "runs_s": [round(w, 2) for w in walls],
        "client_cpu_ms_per_doc": round(1000 * best.client_cpu_s / n, 3),
        "node_cpu_ms_per_doc": round(1000 * best.node_cpu_s / n, 3),
        "client_cores_busy": round(best.client_cpu_s / best.wall_s, 2),
        "node_cores_busy": round(best.node_cpu_s / best.wall_s, 2),
    }


def main() -> None:
    args = parse_args()
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(args.n, args.dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    client = OpenSearch([args.opensearch_url], timeout=300)
    load_at_start = os.getloadavg()
    swept = ("opensearch_py", "project")
    modes = (*swept, *(("project_refresh_paused",) if args.with_paused else ()))
    rates = sweep(swept, client, vectors, args) if len(args.thread_counts) > 1 else {}
    best_threads = {
        name: max(rates[name], key=rates[name].__getitem__) if rates else args.thread_counts[0]
        for name in swept
    }
    best_threads["project_refresh_paused"] = best_threads["project"]
    runs: dict[str, list[Run]] = {name: [] for name in modes}
    for _ in range(args.repeats):
        for name in modes:
            runs[name].append(run_mode(name, best_threads[name], client, vectors, args))
    result: dict[str, Any] = {
        "what": f"bulk ingest {args.n} x {args.dim}, same node and mapping, one refresh at the end",
        "n": args.n,
        "dim": args.dim,
        "chunk": args.chunk,
        "repeats": args.repeats,
        "baseline": "opensearch_py",
        "load_average_at_start": load_at_start,
        "thread_sweep_docs_per_s": rates,
        **{name: summary(runs[name], best_threads[name], args.n) for name in modes},
    }
    result["ratio"] = round(
        result["project"]["docs_per_s"] / result["opensearch_py"]["docs_per_s"], 2
    )
    result["ratio_median"] = round(
        result["project"]["docs_per_s_median"] / result["opensearch_py"]["docs_per_s_median"], 2
    )
    if args.with_paused:
        paused = result["project_refresh_paused"]["docs_per_s"]
        result["ratio_refresh_paused"] = round(paused / result["opensearch_py"]["docs_per_s"], 2)
    if not args.skip_without_graph:
        result["without_graph"] = without_graph(
            client, vectors, best_threads["opensearch_py"], args
        )
    result["load_average_at_end"] = os.getloadavg()
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
