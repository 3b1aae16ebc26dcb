"""k-NN benchmark: OpenSearch (Lucene HNSW) and the embedded store against exact numpy.

For N random unit vectors (default 100,000 x 512) it measures, per backend:
bulk ingest rate (records/s, including the final refresh and force merge for
OpenSearch), single-client k-NN latency p50/p99 for k=10 and k=100 (through
the store's ``knn``, so JSON and HTTP are included), and recall@k against the
exact top-k computed with numpy in the same run. Exact numpy is also the
latency baseline; the table shows each backend's p50 as a ratio of it.

Data (queries come from the same distribution and are not in the catalog):
``--data lowrank`` (the default) draws Gaussian vectors in a random
``--intrinsic-dim`` (32) subspace plus a little isotropic noise: embedding sets
such as CLIP's have a low intrinsic dimension, which is what makes graph
search work on them. ``--data uniform`` draws vectors uniformly on the sphere:
no structure, the true neighbours barely nearer than the rest, the worst case
for any HNSW index. ``--data clustered`` draws them around ``--clusters``
well-separated centres, an easy case.

    .venv/bin/python benchmarks/bench_knn.py                        # 100k x 512
    .venv/bin/python benchmarks/bench_knn.py --million              # 1,000,000 x 512
    .venv/bin/python benchmarks/bench_knn.py --n 20000 --ef-search 100,200

OpenSearch: ``--opensearch-url`` (default ``$IMAGESCOPE_TEST_OPENSEARCH_URL`` or
http://127.0.0.1:9250, the node of ``scripts/opensearch-node.sh start``). The
benchmark index is deleted afterwards. Results: benchmarks/results/knn-<N>.json
(``knn-<N>-uniform.json``, ``knn-<N>-clustered.json`` for the other data; a run
that skips a backend adds the ones it ran, e.g. ``knn-<N>-embedded.json``).

The embedded store runs with its default settings (run ``default``) and, for
each ``--embedded-ef-search`` value, again with that ``ef_search``::

    .venv/bin/python benchmarks/bench_knn.py --skip opensearch --embedded-ef-search 64

Against raw faiss (baseline key ``faiss_raw``), in the same run: the index
build (a raw ``IndexHNSWFlat`` with the store's M and efConstruction, one
``add`` of the same vectors, paired with the store's ingest, ``--build-repeats``
pairs, min and median reported) and the query overhead (raw faiss ``search``
on the store's own graph, one OpenMP thread as the store uses for one query,
the same efSearch; the two measured alternately ``--query-repeats`` times,
the median p50 kept). Peak RSS is reported at the end::

    nice .venv/bin/python benchmarks/bench_knn.py --skip opensearch --n 20000 --build-repeats 3

``--embedded-path DIR`` keeps that catalog in ``DIR`` and reuses it when it
already holds the benchmark's vectors (then the ingest is not timed): latency
can be re-measured in seconds, e.g. once the machine is quiet.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import resource
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from imagescope.settings import EmbeddedStoreSettings, OpenSearchSettings
from imagescope.store.base import CatalogRecord, VectorStore
from imagescope.store.embedded_storage import SQ8_RANGE_MARGIN
from imagescope.store.opensearch import OpenSearchStore

RESULTS_DIR = Path(__file__).resolve().parent / "results"
KS = (10, 100)
DATA_KINDS = ("lowrank", "uniform", "clustered")
STORES = ("opensearch", "embedded")
#: Isotropic noise (per coordinate) added to lowrank data before normalising.
LOWRANK_NOISE = 0.075
Search = Callable[[np.ndarray, int], list[str]]
log = logging.getLogger("bench_knn")
#: faiss, untyped where its stubs lack the search parameters.
FAISS: Any = faiss


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="catalog size")
    parser.add_argument("--million", action="store_true", help="shorthand for --n 1000000")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=200, help="timed queries per k")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--data", choices=DATA_KINDS, default="lowrank")
    parser.add_argument("--intrinsic-dim", type=int, default=32, help="lowrank data only")
    parser.add_argument("--clusters", type=int, default=1000, help="clustered data only")
    parser.add_argument("--seed", type=int, default=0)
    default_url = os.environ.get("IMAGESCOPE_TEST_OPENSEARCH_URL", "http://127.0.0.1:9250")
    parser.add_argument("--opensearch-url", default=default_url)
    parser.add_argument("--m", type=int, default=16, help="HNSW m (OpenSearch)")
    parser.add_argument("--ef-construction", type=int, default=128)
    parser.add_argument("--ef-search", default="100", help="comma list: one run per value")
    parser.add_argument("--bulk-size", type=int, default=500)
    parser.add_argument(
        "--embedded-ef-search",
        default="",
        help="comma list: embedded runs besides its default settings (ef_search values)",
    )
    parser.add_argument(
        "--embedded-path",
        type=Path,
        help="keep the embedded catalog here and reuse it on later runs (ingest not timed)",
    )
    parser.add_argument("--skip", nargs="*", default=[], choices=STORES)
    parser.add_argument(
        "--build-repeats", type=int, default=1, help="paired builds vs faiss (0: store only)"
    )
    parser.add_argument("--query-repeats", type=int, default=3, help="alternated query runs")
    parser.add_argument(
        "--index-storage",
        choices=("flat", "fp16", "sq8"),
        default="flat",
        help="the embedded store's index_storage (results file gets a -fp16/-sq8 suffix)",
    )
    parser.add_argument(
        "--embedded-ef-construction",
        type=int,
        help="the embedded store's ef_construction (default: its setting; file suffix -efcN)",
    )
    parser.add_argument(
        "--exact-queries",
        type=int,
        help="time exact numpy on only this many queries (it scans all N per query)",
    )
    args = parser.parse_args()
    if args.million:
        args.n = 1_000_000
    args.ef_search = [int(v) for v in str(args.ef_search).split(",")]
    args.embedded_ef_search = [int(v) for v in str(args.embedded_ef_search).split(",") if v]
    return args


# --------------------------------------------------------------------------- data


def unit_rows(rows: np.ndarray) -> np.ndarray:
    unit: np.ndarray = (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)
    return unit


def make_vectors(n: int, args: argparse.Namespace, *, seed: int) -> np.ndarray:
    """``n`` unit vectors from the chosen distribution, built in chunks."""
    rng = np.random.default_rng(seed)
    shared = np.random.default_rng(args.seed)  # the same subspace / centres for every call
    if args.data == "lowrank":
        basis = np.linalg.qr(shared.normal(size=(args.dim, args.intrinsic_dim)))[0].T
    elif args.data == "clustered":
        centres = unit_rows(shared.normal(size=(args.clusters, args.dim)))
    out = np.empty((n, args.dim), dtype=np.float32)
    for start in range(0, n, 50_000):
        size = min(50_000, n - start)
        rows = rng.normal(size=(size, args.dim))
        if args.data == "lowrank":
            rows = rng.normal(size=(size, args.intrinsic_dim)) @ basis + LOWRANK_NOISE * rows
        elif args.data == "clustered":
            rows = centres[rng.integers(0, args.clusters, size)] + 0.045 * rows
        out[start : start + size] = unit_rows(rows)
    return out


def describe_data(args: argparse.Namespace) -> str:
    if args.data == "lowrank":
        return f"lowrank ({args.intrinsic_dim}-d subspace, noise {LOWRANK_NOISE})"
    if args.data == "clustered":
        return f"clustered ({args.clusters} centres)"
    return "uniform"


def exact_top(data: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Indices of the exact top-k rows per query, best first (chunked over queries)."""
    found = []
    for start in range(0, len(queries), 16):
        scores = queries[start : start + 16] @ data.T
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.take_along_axis(scores, part, axis=1).argsort(axis=1)[:, ::-1]
        found.append(np.take_along_axis(part, order, axis=1))
    return np.concatenate(found)


def ids_of(rows: np.ndarray) -> list[str]:
    return [f"{i:08d}" for i in rows]


def catalog(data: np.ndarray) -> Iterator[CatalogRecord]:
    for i, vector in enumerate(data):
        yield CatalogRecord(id=f"{i:08d}", image_vector=vector)


# --------------------------------------------------------------------------- measuring


def measure(
    search: Search, queries: np.ndarray, truth: np.ndarray, k: int, warmup: int
) -> dict[str, Any]:
    """Latency percentiles and recall@k of ``search`` over ``queries``."""
    for query in queries[:warmup]:
        search(query, k)
    latencies, recalls = [], []
    for query, expected in zip(queries, truth, strict=True):
        started = time.perf_counter()
        found = search(query, k)
        latencies.append((time.perf_counter() - started) * 1000.0)
        recalls.append(len(set(found) & set(ids_of(expected[:k]))) / k)
    return {
        "p50_ms": float(np.percentile(latencies, 50)),
        "p99_ms": float(np.percentile(latencies, 99)),
        "recall": float(np.mean(recalls)),
    }


def store_search(store: VectorStore) -> Search:
    def search(query: np.ndarray, k: int) -> list[str]:
        return [hit.id for hit in store.knn("image", query, k=k)[0]]

    return search


def bench_exact(
    data: np.ndarray, queries: np.ndarray, truth: np.ndarray, args: argparse.Namespace
) -> dict[str, Any]:
    def search(query: np.ndarray, k: int) -> list[str]:
        return ids_of(exact_top(data, query[None, :], k)[0])

    count = args.exact_queries or len(queries)
    warmup = min(args.warmup, count)
    return {f"k{k}": measure(search, queries[:count], truth[:count], k, warmup) for k in KS}


def ingest(store: VectorStore, data: np.ndarray) -> float:
    started = time.perf_counter()
    report = store.upsert(catalog(data))
    if report.failed:
        raise SystemExit(
            f"{len(report.failed)} records failed, e.g. {next(iter(report.failed.items()))}"
        )
    return time.perf_counter() - started


def bench_opensearch(
    data: np.ndarray, queries: np.ndarray, truth: np.ndarray, args: argparse.Namespace
) -> dict[str, Any]:
    settings = OpenSearchSettings(
        hosts=[args.opensearch_url],
        index=f"bench-knn-{uuid.uuid4().hex[:8]}",
        number_of_replicas=0,
        hnsw_m=args.m,
        ef_construction=args.ef_construction,
        bulk_chunk_size=args.bulk_size,
        timeout_s=600,
    )
    store = OpenSearchStore(settings)
    store.ensure(args.dim)
    client = store.client
    try:
        # One segment per refresh during the load would be merged (and its graph rebuilt) later.
        client.indices.put_settings(
            index=settings.index, body={"index": {"refresh_interval": "-1"}}
        )
        load_s = ingest(store, data)
        started = time.perf_counter()
        client.indices.forcemerge(
            index=settings.index, params={"max_num_segments": 1, "request_timeout": 7200}
        )
        client.indices.refresh(index=settings.index)
        merge_s = time.perf_counter() - started
        result: dict[str, Any] = {
            "ingest_s": load_s,
            "merge_s": merge_s,
            "ingest_per_s": len(data) / load_s,
            "ingest_per_s_with_merge": len(data) / (load_s + merge_s),
            "hnsw": {"m": args.m, "ef_construction": args.ef_construction, "engine": "lucene"},
            "runs": {},
        }
        for ef in args.ef_search:
            tuned = OpenSearchStore(settings.model_copy(update={"ef_search": ef}), client=client)
            runs = {
                f"k{k}": measure(store_search(tuned), queries, truth, k, args.warmup) for k in KS
            }
            result["runs"][f"ef_search={ef}"] = runs
            log.info("opensearch ef_search=%d: %s", ef, runs)
        return result
    finally:
        client.indices.delete(index=f"{settings.index}-v*")
        store.close()


def raw_build_s(
    data: np.ndarray, *, m: int, ef_construction: int, storage: str = "flat"
) -> tuple[float, float]:
    """Wall and CPU seconds raw faiss takes to build the same HNSW graph (one add;
    sq8 trains its quantizer on the same first 100,000 vectors as the store)."""
    if storage == "flat":
        graph = faiss.IndexHNSWFlat(data.shape[1], m, faiss.METRIC_INNER_PRODUCT)
    else:
        qtype = (
            FAISS.ScalarQuantizer.QT_fp16 if storage == "fp16" else FAISS.ScalarQuantizer.QT_8bit
        )
        graph = FAISS.IndexHNSWSQ(data.shape[1], qtype, m, faiss.METRIC_INNER_PRODUCT)
        FAISS.downcast_index(graph.storage).sq.rangestat_arg = SQ8_RANGE_MARGIN
    graph.hnsw.efConstruction = ef_construction
    cpu, started = time.process_time(), time.perf_counter()
    if not graph.is_trained:
        graph.train(data[:100_000])
    graph.add(data)
    return time.perf_counter() - started, time.process_time() - cpu


def embedded_settings(args: argparse.Namespace, folder: Path | None = None) -> Any:
    """The store's settings with this run's storage and ef_construction."""
    update: dict[str, Any] = {"index_storage": args.index_storage}
    if args.embedded_ef_construction is not None:
        update["ef_construction"] = args.embedded_ef_construction
    if folder is not None:
        update["path"] = folder / "catalog"
    return EmbeddedStoreSettings().model_copy(update=update)


def open_embedded(folder: Path, args: argparse.Namespace) -> Any:
    from imagescope.store.embedded import EmbeddedStore

    return EmbeddedStore(embedded_settings(args, folder))


def paired_builds(data: np.ndarray, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Raw faiss and the store building the same graph, alternately; the last store kept."""
    defaults = embedded_settings(args)
    raw, store_s, raw_cpu, store_cpu = [], [], [], []
    for repeat in range(args.build_repeats):
        wall, cpu = raw_build_s(
            data,
            m=defaults.hnsw_m,
            ef_construction=defaults.ef_construction,
            storage=args.index_storage,
        )
        raw.append(wall)
        raw_cpu.append(cpu)
        folder = work / f"build-{repeat}"
        cpu = time.process_time()
        with open_embedded(folder, args) as store:
            store.ensure(args.dim)
            store_s.append(ingest(store, data))
        store_cpu.append(time.process_time() - cpu)
        log.info("build %d: faiss %.1fs, store %.1fs", repeat, raw[-1], store_s[-1])
        if repeat < args.build_repeats - 1:
            shutil.rmtree(folder)
    pairs = [s / r for s, r in zip(store_s, raw, strict=True)]
    return {
        # Both build with faiss's default OpenMP thread count, checked here.
        "faiss_threads": faiss.omp_get_max_threads(),
        "cpu_s": {"faiss_raw": raw_cpu, "store": store_cpu},
        "cpu_ratio_pairs": [s / r for s, r in zip(store_cpu, raw_cpu, strict=True)],
        "faiss_raw_s": {"min": min(raw), "median": statistics.median(raw), "all": raw},
        "store_s": {"min": min(store_s), "median": statistics.median(store_s), "all": store_s},
        # Each pair ran back to back: its ratio suffers least from a load that drifts.
        "ratio_pairs": pairs,
        "ratio_median_of_pairs": statistics.median(pairs),
        "ratio_min": min(store_s) / min(raw),
        "ratio_median": statistics.median(store_s) / statistics.median(raw),
        "folder": str(folder),
    }


def raw_search(store: Any, ef: int) -> Search:
    """Raw faiss on the store's own graph: one thread, the same efSearch."""
    index = store.index("image")
    params = FAISS.SearchParametersHNSW(efSearch=ef)

    def search(query: np.ndarray, k: int) -> list[str]:
        params.efSearch = max(ef, k)
        _, positions = index.graph.search(query[None, :], k, params=params)
        return ids_of(index.slots_at(positions[0]))

    return search


def alternated(
    store: Any, queries: np.ndarray, truth: np.ndarray, args: argparse.Namespace, ef: int
) -> dict[str, Any]:
    """Store vs raw faiss on the same graph, alternated; median of the per-run numbers."""
    runs: dict[str, list[dict[str, Any]]] = {"embedded": [], "faiss_raw": []}
    faiss.omp_set_num_threads(1)
    try:
        for _ in range(args.query_repeats):
            runs["embedded"].append(measure_ks(store, queries, truth, args))
            raw = raw_search(store, ef)
            runs["faiss_raw"].append(
                {f"k{k}": measure(raw, queries, truth, k, args.warmup) for k in KS}
            )
    finally:
        faiss.omp_set_num_threads(os.cpu_count() or 1)
    out: dict[str, Any] = {}
    for name, measured in runs.items():
        out[name] = {
            f"k{k}": {
                key: statistics.median(r[f"k{k}"][key] for r in measured)
                for key in ("p50_ms", "p99_ms", "recall")
            }
            for k in KS
        }
    out["ratio_p50"] = {
        f"k{k}": out["embedded"][f"k{k}"]["p50_ms"] / out["faiss_raw"][f"k{k}"]["p50_ms"]
        for k in KS
    }
    return out


def bench_embedded(
    data: np.ndarray, queries: np.ndarray, truth: np.ndarray, args: argparse.Namespace
) -> dict[str, Any]:
    defaults = embedded_settings(args)
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-knn-")))
        build: dict[str, Any] | None = None
        if args.embedded_path is not None:
            folder = args.embedded_path
            store = stack.enter_context(open_embedded(folder, args))
            store.ensure(args.dim)
            if not holds_catalog(store, data):
                build = {"store_s": {"min": ingest(store, data)}}
        elif args.build_repeats < 1:  # the store alone (a large run with no time to pair)
            store = stack.enter_context(open_embedded(work / "store", args))
            store.ensure(args.dim)
            build = {"store_s": {"min": ingest(store, data)}}
        else:
            build = paired_builds(data, args, work)
            store = stack.enter_context(open_embedded(Path(build.pop("folder")), args))
        index_file = store.path / "image.hnsw"
        store.flush()
        index_mib = index_file.stat().st_size / 2**20
        runs = {"default": alternated(store, queries, truth, args, defaults.ef_search)}
        for ef in args.embedded_ef_search:
            store.settings = store.settings.model_copy(update={"ef_search": ef})
            runs[f"ef_search={ef}"] = alternated(store, queries, truth, args, ef)
    load_s = None if build is None else build["store_s"]["min"]
    hnsw = {
        "m": defaults.hnsw_m,
        "ef_construction": defaults.ef_construction,
        "ef_search": defaults.ef_search,
        "index_storage": args.index_storage,
        "rescore_factor": None if args.index_storage == "flat" else defaults.rescore_factor,
    }
    return {
        "ingest_s": load_s,
        "ingest_per_s": None if load_s is None else len(data) / load_s,
        "build_vs_faiss_raw": build,
        "hnsw": hnsw,
        # The index file: the graph and its vectors, about what the index holds in memory.
        "index_file_mib": index_mib,
        "runs": {name: run["embedded"] for name, run in runs.items()},
        "faiss_raw": {name: run["faiss_raw"] for name, run in runs.items()},
        "ratio_p50_vs_faiss_raw": {name: run["ratio_p50"] for name, run in runs.items()},
    }


def holds_catalog(store: VectorStore, data: np.ndarray) -> bool:
    """Whether a reused ``--embedded-path`` catalog already holds exactly ``data``."""
    if store.count() != len(data):
        return False
    probe = [0, len(data) // 2, len(data) - 1]
    found = store.get(ids_of(np.array(probe)), with_vectors=True)
    same = len(found) == len(probe) and all(
        r.image_vector is not None and np.allclose(r.image_vector, data[i])
        for r, i in zip(found, probe, strict=True)
    )
    if not same:
        raise SystemExit("--embedded-path holds another catalog; give an empty folder")
    log.info("reusing the catalog in --embedded-path (ingest not timed)")
    return True


def measure_ks(
    store: VectorStore, queries: np.ndarray, truth: np.ndarray, args: argparse.Namespace
) -> dict[str, Any]:
    runs = {f"k{k}": measure(store_search(store), queries, truth, k, args.warmup) for k in KS}
    log.info("%s: %s", store.name, runs)
    return runs


# --------------------------------------------------------------------------- report


def table_rows(results: dict[str, Any]) -> Iterator[list[str]]:
    exact = results["exact"]
    yield ["backend", "run", "ingest/s", "k", "p50 ms", "p99 ms", "x exact p50", "recall"]
    for k in KS:
        e = exact[f"k{k}"]
        yield [
            "exact numpy",
            "-",
            "-",
            str(k),
            f"{e['p50_ms']:.2f}",
            f"{e['p99_ms']:.2f}",
            "1.00",
            "1.000",
        ]
    for backend in ("opensearch", "embedded"):
        entry = results.get(backend) or {}
        for run, by_k in entry.get("runs", {}).items():
            for k in KS:
                r = by_k[f"k{k}"]
                ratio = r["p50_ms"] / exact[f"k{k}"]["p50_ms"]
                per_s = entry.get("ingest_per_s_with_merge", entry["ingest_per_s"])
                rate = "-" if per_s is None else f"{per_s:.0f}"
                yield [
                    backend,
                    run,
                    rate,
                    str(k),
                    f"{r['p50_ms']:.2f}",
                    f"{r['p99_ms']:.2f}",
                    f"{ratio:.2f}",
                    f"{r['recall']:.3f}",
                ]


def print_table(results: dict[str, Any]) -> None:
    rows = list(table_rows(results))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)))


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("opensearch").setLevel(logging.WARNING)
    args = parse_args()
    started = time.perf_counter()
    data = make_vectors(args.n, args, seed=args.seed + 1)
    queries = make_vectors(args.queries, args, seed=args.seed + 2)
    truth = exact_top(data, queries, max(KS))
    results: dict[str, Any] = {
        "n": args.n,
        "dim": args.dim,
        "data": describe_data(args),
        "queries": args.queries,
        "exact_timed_queries": args.exact_queries or args.queries,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "load_average_at_start": os.getloadavg(),
        },
        "exact": bench_exact(data, queries, truth, args),
    }
    log.info("exact: %s", results["exact"])
    if "opensearch" not in args.skip:
        results["opensearch"] = bench_opensearch(data, queries, truth, args)
    if "embedded" not in args.skip:
        results["embedded"] = bench_embedded(data, queries, truth, args)
    results["total_s"] = time.perf_counter() - started
    results["baseline"] = "faiss_raw"
    results["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    results["machine"]["load_average_at_end"] = os.getloadavg()
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    suffix = "" if args.data == "lowrank" else f"-{args.data}"
    if args.skip:  # a partial run must not overwrite the full results
        suffix += "".join(f"-{store}" for store in STORES if store not in args.skip)
    if args.index_storage != "flat":
        suffix += f"-{args.index_storage}"
    if args.embedded_ef_construction is not None:
        suffix += f"-efc{args.embedded_ef_construction}"
    out = RESULTS_DIR / f"knn-{args.n}{suffix}.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print_table(results)
    print(f"saved {out}")


if __name__ == "__main__":
    main()
