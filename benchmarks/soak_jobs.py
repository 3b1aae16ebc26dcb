"""Fault soak of the rerank-job layer: no accepted job is lost, run twice, or stuck.

Real processes throughout: a redis-server (AOF, ``appendfsync always``), Celery
worker processes, the HTTP API (``imagescope serve``, API keys on), and a local
TCP proxy between every process and the broker socket. Each round submits a few
rerank jobs over HTTP (each with its own ``job_id`` and a webhook; a failed
submit is retried with the same id, so idempotent resubmit is exercised too)
and injects one fault, drawn at random:

- ``worker_kill``: SIGKILL a worker (a replacement is started);
- ``redis_kill``: SIGKILL redis-server, restart it on the same AOF;
- ``api_restart``: SIGKILL the API process and start it again;
- ``broker_delay``: the proxy delays every chunk on the broker socket.

Every job the API accepted (202/200) goes into a ledger. After the last round
the soak waits for every ledger job to be final and counts:

- ``lost``: accepted, and the record is gone;
- ``duplicated``: executed twice with a visible effect (its final state written
  more than once, or its webhook delivered more than once);
- ``stuck``: not final when the wait ends.

    .venv/bin/python benchmarks/soak_jobs.py --rounds 100 --seed 1

Results: benchmarks/results/soak_jobs.json (the ledger goes next to it, as
JSON lines). ``tests/integration/test_soak_jobs.py`` runs 10 rounds in CI.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the Redis/worker launchers live with the test fixtures

from imagescope.api.tenancy import tenant_id  # noqa: E402
from imagescope.errors import UnknownIdError  # noqa: E402
from imagescope.jobs.base import store_key  # noqa: E402
from imagescope.jobs.redis_store import RedisJobStore  # noqa: E402
from imagescope.jobs.webhook import SIGNATURE_HEADER, verify_signature  # noqa: E402
from tests.fixtures.redis import (  # noqa: E402
    COLOURS,
    OBJECTS,
    JobCluster,
    RedisServer,
    _write_catalog,
    free_port,
    wait_until,
)

API_KEY = "soak-key"
WEBHOOK_SECRET = "soak-webhook-secret"
FAULTS = ("worker_kill", "redis_kill", "api_restart", "broker_delay")
RESULTS = ROOT / "benchmarks" / "results"


class DelayProxy:
    """A TCP proxy to ``127.0.0.1:<target>``; ``delay_s`` holds back every chunk."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.delay_s = 0.0
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._server.getsockname()[1])
        self._closed = False
        threading.Thread(target=self._accept, name="proxy-accept", daemon=True).start()

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=2)
                upstream.settimeout(None)
            except OSError:
                client.close()  # Redis is down: the caller sees a dropped connection
                continue
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while chunk := src.recv(65536):
                if self.delay_s:
                    time.sleep(self.delay_s)
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()

    def close(self) -> None:
        self._closed = True
        self._server.close()


class Hooks:
    """Receives completion webhooks; counts deliveries per job id."""

    def __init__(self) -> None:
        self.deliveries: Counter[str] = Counter()
        self.bad_signatures = 0
        hooks = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if verify_signature(WEBHOOK_SECRET, body, self.headers[SIGNATURE_HEADER]):
                    hooks.deliveries[json.loads(body)["id"]] += 1
                else:
                    hooks.bad_signatures += 1
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class ApiProcess:
    """``imagescope serve`` with the cluster's settings; SIGKILL and start again."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.env = {**env, "IMAGESCOPE_API__PORT": str(self.port)}
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 90.0) -> None:
        command = [str(Path(sys.executable).parent / "imagescope"), "serve"]
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=out,
                                            stderr=subprocess.STDOUT)  # fmt: skip

        def up() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"API exited:\n{self.log.read_text()[-3000:]}")
            try:
                return httpx.get(f"{self.url}/healthz", timeout=1).status_code in (200, 503)
            except httpx.HTTPError:
                return False

        wait_until(up, timeout_s=timeout_s, what="the API", every_s=0.2)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class Ledger:
    path: Path
    accepted: list[str] = field(default_factory=list)
    refused: Counter[str] = field(default_factory=Counter)
    not_accepted: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def accept(self, job_id: str, round_no: int, status: int, tries: int) -> None:
        entry = {"job_id": job_id, "round": round_no, "status": status, "tries": tries}
        with self.lock:
            self.accepted.append(job_id)
            with self.path.open("a") as out:
                out.write(json.dumps(entry) + "\n")


@dataclass
class Soak:
    cluster: JobCluster
    workdir: Path
    rng: random.Random
    jobs_per_round: int = 4
    submit_budget_s: float = 60.0
    workers: int = 2
    faults: Counter[str] = field(default_factory=Counter)
    fault_log: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.proxy = DelayProxy(self.cluster.redis.port)
        self.hooks = Hooks()
        self.ledger = Ledger(self.workdir / "ledger.jsonl")
        self.ledger.path.write_text("")
        env = self.env()
        base = {k: v for k, v in os.environ.items() if not k.startswith("IMAGESCOPE_")}
        self.api = ApiProcess({**base, **env, "PYTHONPATH": str(ROOT)}, self.workdir / "api.log")

    def env(self) -> dict[str, str]:
        return self.cluster.env(
            IMAGESCOPE_JOBS__BROKER_URL=self.proxy.url(),
            IMAGESCOPE_JOBS__RESULT_URL=self.cluster.redis.url(),
            IMAGESCOPE_JOBS__WEBHOOK_SECRET=WEBHOOK_SECRET,
            IMAGESCOPE_JOBS__WEBHOOK_ALLOW_PRIVATE="true",
            IMAGESCOPE_JOBS__MAX_RETRIES="3",
            IMAGESCOPE_API__API_KEYS=json.dumps([API_KEY]),
            IMAGESCOPE_LIMITS__MAX_OPEN_JOBS="0",
        )

    # ------------------------------------------------------------------ processes

    def start_worker(self, *, wait: bool) -> None:
        env = self.env()
        self.cluster.start_worker(wait=wait, delay_s=0.2, **env)  # type: ignore[arg-type]

    def alive_workers(self) -> list[Any]:
        return [w for w in self.cluster.workers if w.process.poll() is None]

    def start(self) -> None:
        for _ in range(self.workers):
            self.start_worker(wait=True)
        self.api.start()

    def close(self) -> None:
        self.api.stop()
        self.cluster.stop_all()
        self.proxy.close()
        self.hooks.close()

    # ------------------------------------------------------------------ clients

    def submit(self, job_id: str, round_no: int) -> None:
        text = f"a {self.rng.choice(COLOURS)} {self.rng.choice(OBJECTS)}"
        body = {"query": {"kind": "text", "text": text}, "stages": [2, 3], "job_id": job_id,
                "webhook_url": self.hooks.url}  # fmt: skip
        deadline = time.monotonic() + self.submit_budget_s
        tries = 0
        while time.monotonic() < deadline:
            tries += 1
            try:
                response = httpx.post(f"{self.api.url}/v1/rerank-jobs", json=body, timeout=10,
                                      headers={"X-API-Key": API_KEY})  # fmt: skip
            except httpx.HTTPError:
                time.sleep(0.3)
                continue
            if response.status_code in (200, 202):
                self.ledger.accept(job_id, round_no, response.status_code, tries)
                return
            with self.ledger.lock:
                self.ledger.refused[str(response.status_code)] += 1
            if response.status_code < 500 and response.status_code != 429:
                break  # a 4xx will not change on retry
            time.sleep(0.3)
        with self.ledger.lock:
            self.ledger.not_accepted.append(job_id)

    # ------------------------------------------------------------------ faults

    def inject(self, fault: str) -> None:
        self.faults[fault] += 1
        self.fault_log.append(fault)
        if fault == "worker_kill":
            alive = self.alive_workers()
            if alive:
                self.rng.choice(alive).kill()
            self.start_worker(wait=False)
        elif fault == "redis_kill":
            self.cluster.redis.kill()
            time.sleep(self.rng.uniform(0.1, 1.5))
            self.cluster.redis.start()
        elif fault == "api_restart":
            self.api.kill()
            self.api.start()
        else:
            self.proxy.delay_s = self.rng.uniform(0.1, 0.8)
            time.sleep(self.rng.uniform(1.0, 3.0))
            self.proxy.delay_s = 0.0

    def round(self, round_no: int) -> None:
        ids = [f"soak-{round_no}-{n}" for n in range(self.jobs_per_round)]
        threads = [threading.Thread(target=self.submit, args=(i, round_no)) for i in ids]
        for thread in threads:
            thread.start()
            time.sleep(self.rng.uniform(0.0, 0.2))
        time.sleep(self.rng.uniform(0.0, 1.0))
        self.inject(self.rng.choice(FAULTS))
        for thread in threads:
            thread.join()
        # Old workers that were killed are replaced; keep the pool from growing.
        while len(self.alive_workers()) > self.workers:
            self.alive_workers()[0].stop()

    # ------------------------------------------------------------------ verdict

    def settle(self, timeout_s: float) -> dict[str, Any]:
        """Waits for every accepted job to be final, then counts."""
        self.proxy.delay_s = 0.0
        if not self.alive_workers():
            self.start_worker(wait=True)
        store = RedisJobStore.from_url(self.cluster.redis.url(),
                                       prefix=self.cluster.env()["IMAGESCOPE_JOBS__KEY_PREFIX"],
                                       result_ttl_s=3600)  # fmt: skip
        owner = tenant_id(API_KEY)
        deadline = time.monotonic() + timeout_s
        records: dict[str, Any] = {}
        try:
            while True:
                records = {
                    i: self._record(store, store_key(owner, i)) for i in self.ledger.accepted
                }
                open_jobs = [i for i, r in records.items() if r is not None and not r.final]
                if not open_jobs or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            time.sleep(2.0)  # webhooks go out after the final write
        finally:
            store.close()
        return self.count(records)

    @staticmethod
    def _record(store: RedisJobStore, key: str) -> Any:
        try:
            return store.get(key)
        except UnknownIdError:
            return None

    def count(self, records: dict[str, Any]) -> dict[str, Any]:
        deliveries = self.hooks.deliveries
        found = {i: r for i, r in records.items() if r is not None}
        finished = [r for r in found.values() if r.state.value in ("succeeded", "failed")]
        return {
            "accepted": len(self.ledger.accepted),
            "lost": sorted(i for i, r in records.items() if r is None),
            "stuck": sorted(i for i, r in found.items() if not r.final),
            "duplicated": sorted(
                i for i, r in found.items() if r.result_writes > 1 or deliveries[i] > 1
            ),
            "states": dict(Counter(r.state.value for r in found.values())),
            "attempts": dict(Counter(str(r.attempts) for r in found.values())),
            "failure_reasons": dict(
                Counter((r.error or "")[:80] for r in found.values() if r.state.value == "failed")
            ),  # fmt: skip
            "webhook_missing": {
                r.public_id: {"attempts": r.attempts, "outcome": r.webhook or "(not sent)"}
                for r in finished
                if not deliveries[r.public_id]
            },
            "webhook_bad_signatures": self.hooks.bad_signatures,
            "not_accepted": sorted(self.ledger.not_accepted),
            "refused_statuses": dict(self.ledger.refused),
            "faults": dict(self.faults),
            "fault_per_round": list(self.fault_log),
        }


def run_soak(cluster: JobCluster, workdir: Path, *, rounds: int, seed: int,
             jobs_per_round: int = 4, settle_s: float = 240.0,
             progress: Callable[[str], None] = lambda _: None) -> dict[str, Any]:  # fmt: skip
    """``rounds`` randomized fault rounds on ``cluster``; returns the counts."""
    soak = Soak(cluster, workdir, random.Random(seed), jobs_per_round=jobs_per_round)
    started = time.monotonic()
    try:
        soak.start()
        for n in range(rounds):
            soak.round(n)
            progress(f"round {n + 1}/{rounds}: {len(soak.ledger.accepted)} accepted")
        report = soak.settle(settle_s)
    finally:
        soak.close()
    report.update(rounds=rounds, seed=seed, seconds=round(time.monotonic() - started, 1))
    report["ledger"] = str(soak.ledger.path)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--jobs-per-round", type=int, default=4)
    parser.add_argument("--out", type=Path, default=RESULTS / "soak_jobs.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="imagescope-soak-") as tmp:
        root = Path(tmp)
        (root / "redis").mkdir()
        (root / "catalog").mkdir()
        (root / "run").mkdir()
        redis_server = RedisServer("/usr/bin/redis-server", root / "redis")
        redis_server.start()
        try:
            cluster = JobCluster(redis_server, _write_catalog(root / "catalog"), root / "run")
            report = run_soak(cluster, root / "run", rounds=args.rounds, seed=args.seed,
                              jobs_per_round=args.jobs_per_round,
                              progress=lambda line: print(line, flush=True))  # fmt: skip
            ledger = Path(report["ledger"])
            args.out.parent.mkdir(parents=True, exist_ok=True)
            kept = args.out.with_name(args.out.stem + "-ledger.jsonl")
            kept.write_text(ledger.read_text())
            report["ledger"] = str(kept.relative_to(ROOT) if kept.is_relative_to(ROOT) else kept)
        finally:
            redis_server.stop()
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    summary = {k: len(report[k]) for k in ("lost", "duplicated", "stuck")}
    print(json.dumps({"accepted": report["accepted"], **summary, "faults": report["faults"]}))


if __name__ == "__main__":
    main()
