"""Latency of ImageScope inside OpenSearch's search path (``?search_pipeline=``).

A user's index (the synthetic catalog, ``--n`` images, bundled CLIP) is made
with plain opensearch-py; ImageScope's API runs in this process with the CPU
judges (rule reasoner, CLIP verifier; stage 2 only unless ``--stages 2,3``);
the pipeline is installed with the CLI's installer. Then the same ``match``
query, ``size`` 20, runs ``--repeats`` times with the pipeline and without it
(the baseline, in the same run, alternating), after ``--warmup`` runs of each.

    .venv/bin/python benchmarks/bench_os_pipeline.py   # the node of opensearch-node.sh --with-ml

Needs a node with ml-commons and neural-search (``scripts/opensearch-node.sh
start --with-ml``) at ``--opensearch-url`` (default http://127.0.0.1:9250).
Results: benchmarks/results/os-pipeline.json (p50/p90 per mode, the ratio, and
how many runs came back reranked rather than past the deadline).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

QUERIES = [
    "red stars on a white background",
    "blue circles at the top",
    "three green squares",
    "dotted yellow triangles on a navy background",
]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--opensearch-url", default="http://127.0.0.1:9250")
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--stages", default="2")
    parser.add_argument("--deadline-ms", type=int, default=60_000)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results/os-pipeline.json")
    return parser.parse_args()


def environment(args: argparse.Namespace, root: Path) -> None:
    os.environ.update(
        {
            "IMAGESCOPE_STORE__KIND": "opensearch",
            "IMAGESCOPE_STORE__OPENSEARCH__HOSTS": json.dumps([args.opensearch_url]),
            "IMAGESCOPE_STORE__OPENSEARCH__INDEX": "products-v1",
            "IMAGESCOPE_STORE__OPENSEARCH__FIELDS__IMAGE_VECTOR": "clip_emb",
            "IMAGESCOPE_STORE__OPENSEARCH__FIELDS__URI": "img_path",
            "IMAGESCOPE_STORE__OPENSEARCH__FIELDS__METADATA": "",
            "IMAGESCOPE_STORE__OPENSEARCH__FIELDS__TEXT": "title",
            "IMAGESCOPE_MODELS__EMBEDDER__MODEL": "bundled:synthetic",
            "IMAGESCOPE_MODELS__EVALUATOR__KIND": "clip" if "3" in args.stages else "none",
            "IMAGESCOPE_IMAGES__ALLOWED_ROOTS": json.dumps([str(root)]),
            "IMAGESCOPE_DATA_DIR": str(root / "data"),
        }
    )


def start_api(engine: Any, settings: Any) -> tuple[Any, str]:
    import socket

    import uvicorn

    from imagescope.api import create_app
    from imagescope.wiring import open_jobs

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    app = create_app(engine, open_jobs(engine, settings), settings)
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return server, f"http://127.0.0.1:{port}"


def timed(client: Any, query: str, pipeline: str | None) -> tuple[float, bool]:
    params = {"search_pipeline": pipeline} if pipeline else {}
    body = {"size": 20, "query": {"match": {"title": query}}}
    started = time.perf_counter()
    hits = client.search(index="products-v1", body=body, params=params)["hits"]["hits"]
    elapsed = (time.perf_counter() - started) * 1000
    return elapsed, bool(hits) and all(h["_source"].get("imagescope_reranked") for h in hits)


def measure(client: Any, args: argparse.Namespace) -> dict[str, Any]:
    runs: dict[str, list[float]] = {"pipeline": [], "plain": []}
    reranked = 0
    for i in range(args.warmup + args.repeats):
        query = QUERIES[i % len(QUERIES)]
        piped, ok = timed(client, query, "imagescope")
        plain, _ = timed(client, query, None)
        if i >= args.warmup:
            runs["pipeline"].append(piped)
            runs["plain"].append(plain)
            reranked += ok

    def summary(values: list[float]) -> dict[str, float]:
        ordered = sorted(values)
        return {
            "p50_ms": round(statistics.median(ordered), 1),
            "p90_ms": round(ordered[int(0.9 * (len(ordered) - 1))], 1),
        }

    result = {mode: summary(values) for mode, values in runs.items()}
    result["ratio_p50"] = round(result["pipeline"]["p50_ms"] / result["plain"]["p50_ms"], 1)
    result["reranked_runs"] = reranked
    return result


def main() -> None:
    args = parse_args()
    root = Path(tempfile.mkdtemp(prefix="os-pipeline-"))
    environment(args, root)
    from opensearchpy import OpenSearch

    from imagescope.settings import Settings
    from imagescope.store.opensearch import OpenSearchStore
    from imagescope.store.opensearch_pipeline import PipelineInstaller, PipelineSpec
    from imagescope.synthetic.catalog import write_catalog
    from imagescope.wiring import load_embedder
    from imagescope.wiring import open as open_engine
    from tests.fixtures.opensearch import create_user_index

    settings = Settings()
    client = OpenSearch([args.opensearch_url], timeout=120)
    client.indices.delete(index="products-v1", params={"ignore_unavailable": "true"})
    rows = list(csv.DictReader(write_catalog(root, n=args.n, seed=7).open()))
    create_user_index(client, load_embedder(settings), root, rows, scaled=False)
    engine = open_engine(settings)
    server, url = start_api(engine, settings)
    store = OpenSearchStore(settings.store.opensearch)
    installer = PipelineInstaller(store.client, store.requests)
    stages = tuple(int(s) for s in args.stages.split(","))
    spec = PipelineSpec("imagescope", url, "img_path", args.deadline_ms, stages=stages)
    try:
        installer.install(spec)
        result = measure(client, args)
    finally:
        installer.uninstall("imagescope")
        client.indices.delete(index="products-v1", params={"ignore_unavailable": "true"})
        server.should_exit = True
        engine.close()
    report = {
        "what": "search_pipeline=imagescope vs the same match query without it, size 20",
        "n_images": args.n,
        "stages": list(stages),
        "judges": "rule reasoner, CLIP verifier (bundled synthetic CLIP), CPU",
        "repeats": args.repeats,
        "baseline": "plain_search",
        **result,
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
