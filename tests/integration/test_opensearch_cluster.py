"""A local 3-node cluster from scripts/opensearch-node.sh, and a node killed under load.

The cluster listens above the runner's own limit of 9299 (HTTP 19250-19252,
transport 19350-19352), which the script's launcher allows. With all three
hosts configured, killing a node (SIGKILL) while searches and writes run must
fail no search and lose no acknowledged document.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from imagescope.settings import OpenSearchSettings
from imagescope.store.base import CatalogRecord
from imagescope.store.opensearch import OpenSearchStore
from tests.fixtures.services import service_missing

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "scripts" / "opensearch-node.sh"
PORT, TPORT, DIM = 19250, 19350, 16


def node_script(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    command = ["bash", str(SCRIPT), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def cluster() -> Iterator[list[str]]:
    ports = ("--port", str(PORT), "--transport-port", str(TPORT))
    started = node_script("start", "--nodes", "3", "--fresh", *ports)
    if started.returncode != 0:
        node_script("stop", "--port", str(PORT))
        service_missing("OpenSearch cluster", started.stderr[-3000:])
    try:
        yield started.stdout.strip().splitlines()[-1].split(",")
    finally:
        node_script("stop", "--port", str(PORT))


def test_a_taken_port_is_a_clear_error_at_once() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        began = time.monotonic()
        result = node_script("start", "--port", str(port), timeout=60)
    assert result.returncode == 1
    assert f"port {port} is taken" in result.stderr and "--port" in result.stderr
    assert time.monotonic() - began < 30


def vectors(n: int, seed: int) -> np.ndarray:
    raw = np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)
    unit: np.ndarray = raw / np.linalg.norm(raw, axis=1, keepdims=True)
    return unit


class Load:
    """Searches in a loop and writes batches until told to stop; counts outcomes."""

    def __init__(self, store: OpenSearchStore) -> None:
        self.store = store
        self.stop = threading.Event()
        self.searches = self.failed_searches = 0
        self.written: list[str] = []
        self.failed_writes: dict[str, str] = {}
        self.errors: list[str] = []

    def search(self) -> None:
        rng = np.random.default_rng(5)
        while not self.stop.is_set():
            try:
                self.store.knn("image", rng.normal(size=DIM).astype(np.float32), k=5)
                self.searches += 1
                time.sleep(0.02)  # a steady load, not a busy loop on two shared cores
            except Exception as exc:  # noqa: BLE001 - counted, reported below
                self.failed_searches += 1
                self.errors.append(f"search: {exc}")

    def write(self, batches: int, size: int) -> None:
        for b in range(batches):
            records = [
                CatalogRecord(id=f"new-{b}-{i}", image_vector=v)
                for i, v in enumerate(vectors(size, seed=100 + b))
            ]
            try:
                report = self.store.upsert(records)
            except Exception as exc:  # noqa: BLE001 - counted, reported below
                self.failed_writes.update({r.id: str(exc) for r in records})
                continue
            self.written += report.succeeded
            self.failed_writes.update(report.failed)
            time.sleep(0.2)


def kill_node(index: int) -> None:
    pid_file = REPO_ROOT / ".cache" / "opensearch" / f"node-{PORT}" / f"n{index}" / "node.pid"
    os.kill(int(pid_file.read_text().strip()), signal.SIGKILL)


def test_killing_a_node_fails_no_search_and_loses_no_document(cluster: list[str]) -> None:
    assert len(cluster) == 3 and cluster[0] == f"http://127.0.0.1:{PORT}"
    settings = OpenSearchSettings(
        hosts=cluster,
        index=f"cluster-{uuid.uuid4().hex[:8]}",
        number_of_shards=3,
        number_of_replicas=1,
        max_retries=20,
        budget_s=90,
        timeout_s=20,
    )
    store = OpenSearchStore(settings)
    store.create_index(DIM)
    seed = [CatalogRecord(id=f"seed-{i}", image_vector=v) for i, v in enumerate(vectors(200, 1))]
    assert not store.upsert(seed).failed
    load = Load(store)
    searchers = [threading.Thread(target=load.search) for _ in range(2)]
    writer = threading.Thread(target=load.write, args=(25, 40))
    for thread in [*searchers, writer]:
        thread.start()
    time.sleep(3)
    kill_node(1)
    writer.join(300)
    time.sleep(3)
    load.stop.set()
    for thread in searchers:
        thread.join(120)
    written, failed = len(load.written), load.failed_searches
    print(f"searches ok={load.searches} failed={failed}; written={written}")  # noqa: T201 - the figures of the run, shown with -s
    assert load.failed_searches == 0, load.errors[:3]
    assert load.failed_writes == {}, list(load.failed_writes.values())[:1]
    assert len(load.written) == 25 * 40
    expected = {r.id for r in seed} | set(load.written)
    assert store.count() == len(expected)
    assert {r.id for r in store.get(sorted(expected))} == expected
    store.close()
