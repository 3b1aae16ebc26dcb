"""Rerank-job benchmark: Celery dispatch overhead, throughput, batching, answer cache.

Every job reranks the same kind of request (fake embedder, the scripted
reasoner/verifier/evaluator of ``imagescope.jobs.fakes``, a small embedded
catalog with real PNG files), so the differences come from the job layer:

1. dispatch overhead: end-to-end latency of one job at a time (submit -> final
   record) through Redis + a Celery worker process vs the in-process backend
   running the same components; p50/p99 and their difference.
2. sustained throughput: ``--burst`` jobs submitted at once, jobs/s until all
   finish, for both backends (``--threads`` concurrent jobs each).
3. batching: ``--burst`` concurrent in-process jobs over a verifier that costs
   ``--call-ms`` per call plus ``--item-ms`` per item (a GPU-like cost model),
   with and without ``BatchingVerifier``: backend calls per verified pair, jobs/s.
4. answer cache: fresh requests twice, one at a time, through the Redis answer
   cache the workers share (in-process runner, the costly verifier of 3.):
   latency, hit rate read from the result traces, verifier calls.

    .venv/bin/python benchmarks/bench_jobs.py
    .venv/bin/python benchmarks/bench_jobs.py --jobs 200 --burst 400 --threads 8

It starts its own redis-server (``/usr/bin/redis-server``) and worker. Results:
benchmarks/results/jobs.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the Redis/worker launchers live with the test fixtures

import imagescope  # noqa: E402
from imagescope.jobs.base import JobBackend  # noqa: E402
from imagescope.jobs.batching import BatchingVerifier  # noqa: E402
from imagescope.jobs.cache import RedisAnswerCache  # noqa: E402
from imagescope.jobs.celery_backend import CeleryJobBackend  # noqa: E402
from imagescope.jobs.inprocess import InProcessJobBackend  # noqa: E402
from imagescope.jobs.redis_store import connect  # noqa: E402
from imagescope.models.base import VerifyItem  # noqa: E402
from imagescope.models.fakes import HashVerifier  # noqa: E402
from imagescope.pipeline.context import Components  # noqa: E402
from imagescope.schemas import Answer, JobState, RerankRequest, TextQuery  # noqa: E402
from tests.fixtures.redis import (  # noqa: E402
    COLOURS,
    OBJECTS,
    JobCluster,
    RedisServer,
    _write_catalog,
)

RESULTS = ROOT / "benchmarks" / "results" / "jobs.json"
WORDS = ["shiny", "small", "large", "old", "new", "striped", "plain", "bright", "dark", "soft"]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=100, help="sequential jobs per latency run")
    parser.add_argument("--burst", type=int, default=200, help="jobs submitted at once")
    parser.add_argument("--threads", type=int, default=4, help="concurrent jobs per backend")
    parser.add_argument("--top-k", type=int, default=20)
    parser.add_argument("--call-ms", type=float, default=20.0)
    parser.add_argument("--item-ms", type=float, default=0.2)
    return parser.parse_args()


def texts(n: int, salt: str) -> list[str]:
    """``n`` distinct queries; ``salt`` (a word) leads, so each run asks new questions."""
    combos = [f"{w} {c} {o}" for w in WORDS for c in COLOURS for o in OBJECTS]
    assert n <= len(combos), f"at most {len(combos)} distinct queries"
    return [f"{salt} {combos[i]}" for i in range(n)]


def fresh_texts(n: int) -> list[str]:
    """Queries whose three checked words were never asked before (a cold cache)."""

    def word(i: int, tag: str) -> str:
        letters = "".join(chr(97 + int(d)) for d in str(i))
        return f"{tag}{letters}"

    return [f"{word(i, 'qx')} {word(i, 'qy')} {word(i, 'qz')}" for i in range(n)]


def pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def run_one_by_one(backend: JobBackend, requests: list[RerankRequest]) -> list[float]:
    latencies = []
    for request in requests:
        start = time.perf_counter()
        ref = backend.submit(request)
        status = backend.wait(ref.id, 60)
        assert status.state is JobState.SUCCEEDED, status.error
        latencies.append(time.perf_counter() - start)
    return latencies


def run_burst(backend: JobBackend, requests: list[RerankRequest]) -> tuple[float, list[Any]]:
    start = time.perf_counter()
    refs = [backend.submit(r) for r in requests]
    statuses = [backend.wait(ref.id, 300) for ref in refs]
    elapsed = time.perf_counter() - start
    assert all(s.state is JobState.SUCCEEDED for s in statuses)
    return len(requests) / elapsed, statuses


def latency_row(latencies: Sequence[float]) -> dict[str, float]:
    return {
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": pct(latencies, 99) * 1000,
        "mean_ms": statistics.fmean(latencies) * 1000,
    }


class CostlyVerifier(HashVerifier):
    """HashVerifier answers at a GPU-like cost: one device (calls run one at a time),
    a fixed cost per call plus a cost per item."""

    def __init__(self, *, call_s: float, item_s: float) -> None:
        super().__init__()
        self.call_s, self.item_s, self.pairs = call_s, item_s, 0
        self._device = threading.Lock()

    def verify(self, items: Sequence[VerifyItem]) -> list[Answer]:
        with self._device:
            self.pairs += len(items)
            time.sleep(self.call_s + self.item_s * len(items))
            return super().verify(items)


def batching(
    base: Components, requests: list[RerankRequest], args: argparse.Namespace
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for label, batched in (("unbatched", False), ("batched", True)):
        inner = CostlyVerifier(call_s=args.call_ms / 1000, item_s=args.item_ms / 1000)
        verifier = BatchingVerifier(inner, max_batch=256, window_ms=20) if batched else inner
        components = Components(**{**base.__dict__, "verifier": verifier, "cache": None})
        backend = InProcessJobBackend(components, workers=args.threads)
        try:
            rate, _ = run_burst(backend, requests)
        finally:
            backend.close()
        out[label] = {
            "jobs_per_s": rate,
            "backend_calls": inner.calls,
            "pairs": inner.pairs,
            "calls_per_pair": inner.calls / max(1, inner.pairs),
        }
    out["speedup"] = out["batched"]["jobs_per_s"] / out["unbatched"]["jobs_per_s"]
    return out


def cache_effect(
    base: Components, requests: list[RerankRequest], redis_url: str, args: argparse.Namespace
) -> dict[str, Any]:
    """The same requests twice, one at a time, through the shared Redis answer cache."""
    inner = CostlyVerifier(call_s=args.call_ms / 1000, item_s=args.item_ms / 1000)
    cache = RedisAnswerCache(connect(redis_url), ttl_s=600, prefix=f"bench-{time.time_ns()}:")
    components = Components(**{**base.__dict__, "verifier": inner, "cache": cache})
    backend = InProcessJobBackend(components, workers=1)
    out: dict[str, Any] = {}
    try:
        for label in ("cold", "warm"):
            calls_before = inner.calls
            latencies, hits, pairs = [], 0, 0
            for request in requests:
                start = time.perf_counter()
                status = backend.wait(backend.submit(request).id, 60)
                latencies.append(time.perf_counter() - start)
                assert status.result is not None
                hits += status.result.trace.costs["verifier"].cache_hits
                pairs += sum(len(c.verdicts) for c in status.result.candidates)
            out[label] = {
                **latency_row(latencies),
                "hit_rate": hits / max(1, pairs),
                "verifier_calls": inner.calls - calls_before,
            }
    finally:
        backend.close()
    out["warm_over_cold_p50"] = out["warm"]["p50_ms"] / out["cold"]["p50_ms"]
    return out


def main() -> None:
    args = parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-jobs-"))
    for sub in ("redis", "catalog", "cluster"):
        (work / sub).mkdir()
    server = RedisServer("/usr/bin/redis-server", work / "redis")
    server.start()
    cluster = JobCluster(redis=server, catalog=_write_catalog(work / "catalog"), workdir=work)
    try:
        results = run(cluster, args)
    finally:
        cluster.stop_all()
        server.stop()
    results["machine"] = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "processor": platform.machine(),
        "load_avg_1m_at_end": os.getloadavg()[0],
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2))
    report(results)


def run(cluster: JobCluster, args: argparse.Namespace) -> dict[str, Any]:
    settings = cluster.settings(IMAGESCOPE_JOBS__REQUEUE_AFTER_S="120")
    engine = imagescope.open(settings)  # type: ignore[arg-type]  # the hook: scripted roles
    components = engine.components

    def requests(salt: str, n: int, given: list[str] | None = None) -> list[RerankRequest]:
        queries = [TextQuery(text=t) for t in (given or texts(n, salt))]
        return [engine.rerank_request(q, engine.stage1(q), top_k=args.top_k) for q in queries]

    cluster.start_worker(concurrency=args.threads, IMAGESCOPE_JOBS__REQUEUE_AFTER_S="120")
    jobs_settings = settings.jobs  # type: ignore[attr-defined]
    celery = CeleryJobBackend.from_settings(jobs_settings, reconcile=False)
    uncached = Components(**{**components.__dict__, "cache": None})
    local = InProcessJobBackend(uncached, workers=args.threads)
    try:
        run_one_by_one(celery, requests("warmup", 5))
        run_one_by_one(local, requests("warmup", 5))
        sequential = requests("sequential", args.jobs)
        celery_lat = run_one_by_one(celery, sequential)
        local_lat = run_one_by_one(local, sequential)
        celery_rate, _ = run_burst(celery, requests("burst", args.burst))
        local_rate, _ = run_burst(local, requests("burst", args.burst))
        fresh = requests("", min(50, args.jobs), fresh_texts(min(50, args.jobs)))
        cached = cache_effect(components, fresh, cluster.redis.url(), args)
        batched = batching(components, requests("batch", args.burst), args)
    finally:
        celery.close()
        local.close()
        engine.close()
    return {
        "config": vars(args),
        "baseline": "in_process",
        **compare(celery_lat, local_lat, celery_rate, local_rate),
        "batching": batched,
        "cache": cached,
    }


def compare(
    celery_lat: list[float], local_lat: list[float], celery_rate: float, local_rate: float
) -> dict[str, Any]:
    celery_row, local_row = latency_row(celery_lat), latency_row(local_lat)
    return {
        "latency": {
            "celery": celery_row,
            "in_process": local_row,
            "overhead_p50_ms": celery_row["p50_ms"] - local_row["p50_ms"],
            "overhead_p99_ms": celery_row["p99_ms"] - local_row["p99_ms"],
        },
        "throughput": {
            "celery_jobs_per_s": celery_rate,
            "in_process_jobs_per_s": local_rate,
            "ratio": celery_rate / local_rate,
        },
    }


def report(r: dict[str, Any]) -> None:
    lat, thr, bat, cache = r["latency"], r["throughput"], r["batching"], r["cache"]
    rows = [
        ("job latency p50 (ms)", lat["in_process"]["p50_ms"], lat["celery"]["p50_ms"]),
        ("job latency p99 (ms)", lat["in_process"]["p99_ms"], lat["celery"]["p99_ms"]),
        ("sustained jobs/s", thr["in_process_jobs_per_s"], thr["celery_jobs_per_s"]),
    ]
    print(f"{'':28}{'in-process':>12}{'celery':>12}{'ratio':>8}")
    for name, base, value in rows:
        print(f"{name:28}{base:12.2f}{value:12.2f}{value / base:8.2f}")
    print(
        f"dispatch overhead: p50 +{lat['overhead_p50_ms']:.1f} ms, "
        f"p99 +{lat['overhead_p99_ms']:.1f} ms"
    )
    print(f"\n{'batching':28}{'calls/pair':>12}{'jobs/s':>12}")
    for label in ("unbatched", "batched"):
        row = bat[label]
        print(f"{label:28}{row['calls_per_pair']:12.4f}{row['jobs_per_s']:12.2f}")
    print(f"batched/unbatched jobs/s: {bat['speedup']:.2f}x")
    print(f"\n{'answer cache (Redis)':28}{'p50 ms':>12}{'hit rate':>12}{'calls':>8}")
    for label in ("cold", "warm"):
        row = cache[label]
        print(f"{label:28}{row['p50_ms']:12.2f}{row['hit_rate']:12.2f}{row['verifier_calls']:8d}")
    print(f"warm/cold p50: {cache['warm_over_cold_p50']:.2f}")
    print(f"\nsaved to {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
