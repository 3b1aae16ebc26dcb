"""Rewrites the README's performance table from ``benchmarks/results/*.json``.

Each row compares the project with the baseline its benchmark ran in the same
process (named by the ``baseline`` key of the results file). The table sits
between two marker comments in README.md; everything else is left alone.
Files that do not exist yet are skipped (their row is missing, never stale).

    .venv/bin/python benchmarks/report.py            # rewrite README.md
    .venv/bin/python benchmarks/report.py --check    # exit 1 when README.md is out of date
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
README = ROOT / "README.md"
START = "<!-- performance-table:start (benchmarks/report.py writes this part) -->"
END = "<!-- performance-table:end -->"
HEADER = [
    "| what | project | baseline (same run) | ratio | file |",
    "|---|---|---|---|---|",
]
Row = list[str]


def _load(name: str) -> dict[str, Any] | None:
    path = RESULTS / name
    return json.loads(path.read_text()) if path.is_file() else None


def _n(value: int) -> str:
    return f"{value // 1000}k" if value < 1_000_000 else f"{value / 1e6:g}M"


def knn_rows() -> Iterator[Row]:
    """Embedded store vs raw faiss: build, and query p50 on the same graph."""
    # Variants (``--index-storage``, ``--embedded-ef-construction``) add a suffix.
    files = sorted(RESULTS.glob("knn-*-embedded*.json"), key=lambda p: int(p.name.split("-")[1]))
    for path in files:
        r = json.loads(path.read_text())
        embedded = r.get("embedded") or {}
        if r.get("baseline") != "faiss_raw" or "faiss_raw" not in embedded:
            continue
        size = f"{_n(r['n'])} x {r['dim']}{_knn_variant(embedded.get('hnsw') or {})}"
        build = embedded.get("build_vs_faiss_raw") or {}
        if "faiss_raw_s" in build:
            store, raw = build["store_s"], build["faiss_raw_s"]
            pairs = [s / r for s, r in zip(store["all"], raw["all"], strict=True)]
            shown = ", ".join(f"{p:.2f}" for p in pairs)
            yield [
                f"embedded index build, {size} ({len(pairs)} back-to-back pairs)",
                f"median {store['median']:.1f} s",
                f"raw faiss IndexHNSWFlat, one add: median {raw['median']:.1f} s",
                f"{statistics.median(pairs):.2f}x median of pairs ({shown})",
                path.name,
            ]
        for run, ratio in embedded["ratio_p50_vs_faiss_raw"].items():
            mine, raw = embedded["runs"][run]["k10"], embedded["faiss_raw"][run]["k10"]
            yield [
                f"embedded k-NN query, {size}, k=10, {run}",
                f"p50 {mine['p50_ms']:.2f} ms, recall@10 {mine['recall']:.3f}",
                f"raw faiss on the same graph: {raw['p50_ms']:.2f} ms",
                f"{ratio['k10']:.2f}x",
                path.name,
            ]
        if r.get("peak_rss_mib") and "faiss_raw_s" not in build:
            yield [
                f"embedded store, {size}: build, peak RSS",
                f"{build['store_s']['min']:.0f} s, {r['peak_rss_mib']:.0f} MiB",
                "-",
                "-",
                path.name,
            ]


def _knn_variant(hnsw: dict[str, Any]) -> str:
    """`` (sq8 vectors, efConstruction 64)`` for a run off the store's defaults."""
    storage, efc = hnsw.get("index_storage", "flat"), hnsw.get("ef_construction", 200)
    parts = [f"{storage} vectors"] if storage != "flat" else []
    parts += [f"efConstruction {efc}"] if efc != 200 else []
    return f" ({', '.join(parts)})" if parts else ""


def query_rows() -> Iterator[Row]:
    """Stages 1+2+3 with the CPU judges: vector reuse vs re-encoding."""
    for path in sorted(RESULTS.glob("query-*.json")):
        r = json.loads(path.read_text())
        base = r[r["baseline"]]["total"]["p50_ms"]
        same = "identical rankings" if r["identical_rankings"] else "RANKINGS DIFFER"
        machine = r.get("machine", {})
        loads = [
            machine[k][0] for k in ("load_average_at_start", "load_average_at_end") if k in machine
        ]
        if loads:
            same += f" (load average {' to '.join(f'{v:.1f}' for v in loads)})"
        for path_name, label in (("reuse", "warm text cache"), ("reuse_cold", "cold text cache")):
            stages = r[path_name]
            yield [
                f"one query, stages 1+2+3, CPU judges, {_n(r['n'])} images ({label})",
                f"p50 {stages['total']['p50_ms']:.0f} ms (stage 1 {stages['1']['p50_ms']:.0f}, "
                f"2 {stages['2']['p50_ms']:.0f}, 3 {stages['3']['p50_ms']:.0f}); {same}",
                f"re-encoding every candidate: {base:.0f} ms",
                f"{r['ratio_p50'][path_name]:.2f}x",
                path.name,
            ]


def jobs_rows() -> Iterator[Row]:
    r = _load("jobs.json")
    if r is None:
        return
    latency = r["latency"]
    yield [
        "rerank job latency p50, Celery + Redis worker",
        f"{latency['celery']['p50_ms']:.1f} ms",
        f"in-process backend: {latency['in_process']['p50_ms']:.1f} ms",
        f"+{latency['overhead_p50_ms']:.1f} ms",
        "jobs.json",
    ]


def bulk_rows() -> Iterator[Row]:
    """OpenSearch bulk ingest (``bench_os_bulk.py``): throughput, so the ratio is inverted."""
    r = _load("os-bulk.json")
    if r is None or r.get("baseline") != "opensearch_py":
        return
    yield [
        f"OpenSearch bulk ingest, {_n(r['n'])} x {r['dim']}",
        f"{r['project']['docs_per_s']:.0f} docs/s",
        f"opensearch-py parallel_bulk: {r['opensearch_py']['docs_per_s']:.0f} docs/s",
        f"{r['ratio']:.2f} (docs/s, project / baseline)",
        "os-bulk.json",
    ]


#: Row builders in table order; a benchmark adds its own here.
SECTIONS: list[Callable[[], Iterator[Row]]] = [query_rows, knn_rows, bulk_rows, jobs_rows]


def table() -> str:
    rows = [row for section in SECTIONS for row in section()]
    lines = HEADER + ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join([START, *lines, END])


def rewritten(text: str) -> str:
    """``text`` with the marked section replaced (appended under a heading if absent)."""
    if START in text and END in text:
        before, rest = text.split(START, 1)
        _, after = rest.split(END, 1)
        return before + table() + after
    return text.rstrip("\n") + "\n\n## Performance against the raw libraries\n\n" + table() + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only check README.md is current")
    args = parser.parse_args()
    text = README.read_text()
    new = rewritten(text)
    if args.check:
        if new != text:
            sys.exit("README.md's performance table is out of date: run benchmarks/report.py")
        return
    README.write_text(new)
    print(table())


if __name__ == "__main__":
    main()
