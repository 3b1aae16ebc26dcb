"""Job ownership, limits, delete and fail-fast behaviour on a real redis-server."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from imagescope.errors import JobBackendError
from imagescope.jobs.base import JobRecord, StoreJobBackend, store_key
from imagescope.jobs.redis_store import RedisJobStore
from imagescope.schemas import JobState, RerankRequest
from tests.fixtures.redis import free_port
from tests.unit.test_jobs import make_components, make_request
from tests.unit.test_jobs_tenancy import (
    check_idempotent_resubmit,
    check_open_job_limit,
    check_owner_scoping,
)

pytestmark = pytest.mark.integration


class QueueOnly(StoreJobBackend):
    """Records jobs and sends them nowhere (they stay QUEUED)."""

    def dispatch(self, job_id: str) -> None:
        return None


@pytest.fixture(scope="module")
def request_() -> RerankRequest:
    return make_request(make_components())


def test_redis_jobs_are_scoped_to_their_owner(
    job_store: RedisJobStore, request_: RerankRequest
) -> None:
    check_owner_scoping(QueueOnly(job_store), request_)
    record = job_store.get(store_key("tenant-a", "order-1"))
    assert record.deleted and record.state is JobState.CANCELLED
    assert 0 < job_store._client.ttl(job_store.key(record.id)) <= 120  # deleted records expire


def test_redis_resubmit_is_idempotent_on_client_input(
    job_store: RedisJobStore, request_: RerankRequest
) -> None:
    check_idempotent_resubmit(QueueOnly(job_store), request_)


def test_redis_open_jobs_per_owner_are_bounded(
    job_store: RedisJobStore, request_: RerankRequest
) -> None:
    jobs = QueueOnly(job_store, max_open=2)
    check_open_job_limit(jobs, request_)
    key = next(k for k in job_store.open_ids() if k.startswith("t~"))
    job_store.finish(key, state=JobState.SUCCEEDED, result=request_.stage1)
    jobs.submit(request_, owner="t")  # a finished job frees its slot


def test_finished_jobs_expire(job_store: RedisJobStore, request_: RerankRequest) -> None:
    job_store.create(JobRecord.new("a", request_))
    assert job_store._client.ttl(job_store.key("a")) == -1  # open: kept
    job_store.finish("a", state=JobState.FAILED, error="x")
    assert 0 < job_store._client.ttl(job_store.key("a")) <= 120


class SilentServer:
    """A TCP port that accepts connections and never answers."""

    def __init__(self) -> None:
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.socket.settimeout(0.1)
        self.port = int(self.socket.getsockname()[1])
        self.accepted: list[socket.socket] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                self.accepted.append(self.socket.accept()[0])
            except TimeoutError:
                continue

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=2)
        for sock in [*self.accepted, self.socket]:
            sock.close()


@pytest.mark.parametrize("kind", ["refused", "silent"])
def test_api_store_fails_fast_without_naming_the_address(kind: str) -> None:
    server = SilentServer() if kind == "silent" else None
    port = server.port if server is not None else free_port()
    store = RedisJobStore.from_url(
        f"redis://127.0.0.1:{port}/0", prefix="x:", result_ttl_s=60, fail_fast=True
    )
    try:
        started = time.monotonic()
        with pytest.raises(JobBackendError) as err:
            store.ping()
        first = time.monotonic() - started
        assert first < 3.0, first  # one ~1 s timeout and one retry, not 13 s
        assert str(port) not in str(err.value) and "127.0.0.1" not in str(err.value)
        started = time.monotonic()
        with pytest.raises(JobBackendError):
            store.get("a")
        assert time.monotonic() - started < 0.05  # the circuit is open: no new attempt
    finally:
        store.close()
        if server is not None:
            server.close()
