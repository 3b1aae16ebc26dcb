"""Rerank jobs on a real Redis and real Celery worker processes, with faults.

The API runs in this process (FastAPI TestClient over the Celery backend); the
workers are ``celery -A rerank_workers.app worker`` subprocesses configured by
``IMAGESCOPE_*`` variables only (fake embedder, embedded catalog on disk, the
scripted components hook). Every result is compared with the in-process
``rerank`` of the same request.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

import imagescope
from imagescope.api import create_app
from imagescope.engine import Engine
from imagescope.jobs.base import JobRecord
from imagescope.jobs.celery_backend import CeleryJobBackend
from imagescope.jobs.redis_store import RedisJobStore
from imagescope.jobs.webhook import SIGNATURE_HEADER, verify_signature
from imagescope.pipeline.rerank import rerank
from imagescope.schemas import JobState, RerankRequest, SearchResult, TextQuery
from imagescope.settings import ApiSettings, Settings
from tests.fixtures.redis import COLOURS, OBJECTS, JobCluster, wait_until

pytestmark = pytest.mark.integration
SECRET = "hook-secret"


def comparable(result: SearchResult) -> list[dict[str, Any]]:
    """Candidates without the cache flags (a second run may hit the shared cache)."""
    out = []
    for candidate in result.candidates:
        data = candidate.model_dump()
        for verdict in data["verdicts"]:
            verdict.pop("cached")
        out.append(data)
    return out


@dataclass
class Service:
    cluster: JobCluster
    settings: Settings
    engine: Engine
    jobs: CeleryJobBackend
    client: TestClient

    @property
    def store(self) -> RedisJobStore:
        assert isinstance(self.jobs.store, RedisJobStore)
        return self.jobs.store

    def request(self, text: str, **kw: Any) -> RerankRequest:
        query = TextQuery(text=text)
        return self.engine.rerank_request(query, self.engine.stage1(query), **kw)

    def reference(self, request: RerankRequest) -> list[dict[str, Any]]:
        """The in-process rerank of the same request: what a worker must produce."""
        return comparable(rerank(self.engine.components, request))

    def problems(self) -> str:
        """Warnings and errors from the workers' logs (for failure messages)."""
        lines = [
            line
            for worker in self.cluster.workers
            for line in worker.log_text().splitlines()
            if "WARNING" in line or "ERROR" in line
        ]
        return "\n".join(lines[-40:])

    def assert_same(self, record: JobRecord, request: RerankRequest) -> None:
        """The worker's result equals the in-process rerank; else say where they differ."""
        assert record.state is JobState.SUCCEEDED, f"{record.error}\n{self.problems()}"
        assert record.result_writes == 1
        assert record.result is not None
        got, want = comparable(record.result), self.reference(request)
        if got != want:
            diff = next(i for i, (g, w) in enumerate(zip(got, want, strict=True)) if g != w)
            raise AssertionError(
                f"job {record.id} differs at candidate {diff}:\n worker: {got[diff]}\n"
                f" in-process: {want[diff]}\n{self.problems()}"
            )

    def wait_final(self, job_ids: list[str], timeout_s: float) -> None:
        def all_final() -> bool:
            return all(self.store.get(i).final for i in job_ids)

        try:
            wait_until(all_final, timeout_s=timeout_s, what="jobs to finish", every_s=0.1)
        except AssertionError:
            logs = "\n".join(w.log_text()[-2500:] for w in self.cluster.workers)
            states = {i: self.store.get(i).state.value for i in job_ids[:20]}
            raise AssertionError(f"jobs not final: {states}\n{logs}") from None


@pytest.fixture
def service(job_cluster: JobCluster) -> Iterator[Service]:
    settings = job_cluster.settings(IMAGESCOPE_JOBS__WEBHOOK_SECRET=SECRET)
    assert isinstance(settings, Settings)
    engine = imagescope.open(settings)  # applies the scripted components hook, as workers do
    # The reconciler under test is the workers'; this process only submits and reads.
    jobs = CeleryJobBackend.from_settings(settings.jobs, reconcile=False)
    client = TestClient(create_app(engine, jobs, settings))
    yield Service(job_cluster, settings, engine, jobs, client)
    jobs.close()
    engine.close()


@pytest.mark.slow
def test_http_job_completes_on_a_worker_and_merges_back(service: Service) -> None:
    service.cluster.start_worker()
    body = {"query": {"kind": "text", "text": "a red dress"}, "mode": "async"}
    first = service.client.post("/v1/search", json=body).json()
    assert first["stages"] == [1] and first["job"]["state"] == "queued"
    job_id = first["job"]["id"]
    service.wait_final([job_id], timeout_s=30)
    status = service.client.get(f"/v1/rerank-jobs/{job_id}").json()
    assert status["state"] == "succeeded" and status["progress"] == 1.0
    result = SearchResult.model_validate(status["result"])
    request = service.request("a red dress", stages=[1, 2, 3])
    assert request.stage1.candidates == SearchResult.model_validate(first).candidates
    assert comparable(result) == service.reference(request)
    assert [c.id for c in result.candidates] != [c.id for c in request.stage1.candidates]
    # The same query again, synchronously: answered within the deadline, from the
    # answer cache the first job filled in Redis (the trace counts the hits).
    sync = service.client.post("/v1/search", json={**body, "mode": "sync"}).json()
    assert sync["job"]["state"] == "succeeded" and sync["stages"] == [1, 2, 3]
    verifier_costs = sync["trace"]["costs"]["verifier"]
    assert verifier_costs["cache_hits"] == sum(len(c["verdicts"]) for c in sync["candidates"])
    assert verifier_costs["cache_hits"] > 0


@pytest.mark.slow
def test_a_worker_killed_mid_job_is_replaced_and_the_job_completes(service: Service) -> None:
    doomed = service.cluster.start_worker(delay_s=30)
    request = service.request("a blue shirt")
    ref = service.jobs.submit(request)

    def verifying() -> bool:
        record = service.store.get(ref.id)
        return record.state is JobState.RUNNING and record.progress >= 0.2

    wait_until(verifying, timeout_s=20, what="the job to reach verification")
    doomed.kill()
    assert service.store.get(ref.id).state is JobState.RUNNING
    service.cluster.start_worker()
    service.wait_final([ref.id], timeout_s=30)
    record = service.store.get(ref.id)
    service.assert_same(record, request)
    assert record.attempts == 2


@pytest.mark.slow
def test_redis_restart_with_jobs_queued_and_running_loses_none(service: Service) -> None:
    service.cluster.start_worker(concurrency=1, delay_s=0.3)
    texts = [f"a {colour} hat" for colour in COLOURS]
    requests = [service.request(t) for t in texts]
    refs = [service.jobs.submit(r) for r in requests]
    wait_until(
        lambda: service.store.get(refs[0].id).state is not JobState.QUEUED,
        timeout_s=20,
        what="the first job to start",
    )
    queued = sum(service.store.get(r.id).state is JobState.QUEUED for r in refs)
    assert queued >= 3  # several are still waiting in the broker queue
    service.cluster.redis.kill()
    time.sleep(0.5)
    service.cluster.redis.start()
    service.wait_final([r.id for r in refs], timeout_s=90)
    for ref, request in zip(refs, requests, strict=True):
        service.assert_same(service.store.get(ref.id), request)


@pytest.mark.slow
def test_a_lost_queue_is_refilled_by_the_reconciler(service: Service) -> None:
    requests = [service.request(f"a {o}") for o in OBJECTS[:4]]
    refs = [service.jobs.submit(r) for r in requests]
    client = redis.Redis.from_url(service.cluster.redis.url())
    queue = service.settings.jobs.queue
    assert client.llen(queue) == len(refs)
    client.delete(queue)  # the broker lost its queue; the job records survived
    service.cluster.start_worker(IMAGESCOPE_JOBS__REQUEUE_AFTER_S="1")
    service.wait_final([r.id for r in refs], timeout_s=30)
    for ref, request in zip(refs, requests, strict=True):
        service.assert_same(service.store.get(ref.id), request)
    client.close()


@pytest.mark.slow
def test_200_concurrent_jobs_none_lost_none_twice(service: Service) -> None:
    service.cluster.start_worker(concurrency=4)
    service.cluster.start_worker(concurrency=4)
    words = ["shiny", "small", "large", "old", "new"]
    texts = [f"a {c} {o} {w}" for c in COLOURS for o in OBJECTS for w in words][:200]

    def submit(text: str) -> str:
        body = {"query": {"kind": "text", "text": text}}
        response = service.client.post("/v1/rerank-jobs", json=body)
        assert response.status_code == 202, response.text
        return str(response.json()["id"])

    with ThreadPoolExecutor(8) as pool:
        job_ids = list(pool.map(submit, texts))
    assert len(set(job_ids)) == 200
    service.wait_final(job_ids, timeout_s=240)
    for job_id, text in zip(job_ids, texts, strict=True):
        record = service.store.get(job_id)
        service.assert_same(record, record.request)
        assert record.result is not None
        assert record.result.trace.descriptions[0] == text  # its own query, nobody else's
    assert list(service.store.open_ids()) == []


@pytest.mark.slow
def test_cancelled_jobs_stop_and_are_never_rerun(service: Service) -> None:
    service.cluster.start_worker(concurrency=1, delay_s=2)
    running = service.jobs.submit(service.request("a green car"))
    waiting = service.jobs.submit(service.request("a black dog"))
    wait_until(
        lambda: service.store.get(running.id).state is JobState.RUNNING,
        timeout_s=20,
        what="the first job to run",
    )
    for ref in (running, waiting):
        response = service.client.delete(f"/v1/rerank-jobs/{ref.id}")
        assert response.status_code == 200 and response.json()["state"] == "cancelled"
    worker = service.cluster.workers[0]
    wait_until(lambda: "cancelled" in worker.log_text(), timeout_s=20, what="the stop")
    wait_until(lambda: "not run" in worker.log_text(), timeout_s=20, what="the skip")
    first, second = service.store.get(running.id), service.store.get(waiting.id)
    assert first.state is second.state is JobState.CANCELLED, service.problems()
    assert first.result is None and first.result_writes == 1 and first.attempts == 1, first
    assert second.attempts == 0, second  # never started


@pytest.mark.slow
def test_failing_backends_end_failed_with_a_reason(service: Service) -> None:
    service.cluster.start_worker()
    transient = service.jobs.submit(service.request("explode the red dress"))
    broken = service.jobs.submit(service.request("garbage dress"))
    service.wait_final([transient.id, broken.id], timeout_s=30)
    first, second = service.store.get(transient.id), service.store.get(broken.id)
    assert first.state is JobState.FAILED and "unreachable" in (first.error or "")
    assert first.attempts == 2  # one retry (IMAGESCOPE_JOBS__MAX_RETRIES=1), then failed
    assert second.state is JobState.FAILED and "ModelOutputError" in (second.error or "")
    assert second.attempts == 1  # not a transient error: never retried
    status = service.client.get(f"/v1/rerank-jobs/{transient.id}").json()
    assert status["state"] == "failed" and status["result"] is None


class _Hooks(BaseHTTPRequestHandler):
    received: list[tuple[dict[str, str], bytes]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((dict(self.headers), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.slow
def test_completion_webhook_is_signed_by_the_worker(service: Service) -> None:
    server = HTTPServer(("127.0.0.1", 0), _Hooks)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        service.cluster.start_worker(
            IMAGESCOPE_JOBS__WEBHOOK_SECRET=SECRET, IMAGESCOPE_JOBS__WEBHOOK_ALLOW_PRIVATE="true"
        )
        url = f"http://127.0.0.1:{server.server_port}/done"
        ref = service.jobs.submit(service.request("a white boat", webhook_url=url))
        service.wait_final([ref.id], timeout_s=30)
        wait_until(lambda: bool(_Hooks.received), timeout_s=10, what="the webhook")
    finally:
        server.shutdown()
    headers, body = _Hooks.received[0]
    assert verify_signature(SECRET, body, headers[SIGNATURE_HEADER])
    assert json.loads(body)["id"] == ref.id and json.loads(body)["state"] == "succeeded"
    wait_until(lambda: service.store.get(ref.id).webhook == "delivered", timeout_s=5, what="log")


def test_unknown_jobs_are_404_and_oversized_requests_413(service: Service) -> None:
    for response in (
        service.client.get("/v1/rerank-jobs/no-such-job"),
        service.client.delete("/v1/rerank-jobs/no-such-job"),
    ):
        assert response.status_code == 404 and response.json()["error"] == "UnknownIdError"
    small = service.settings.model_copy(update={"api": ApiSettings(max_request_bytes=512)})
    client = TestClient(create_app(service.engine, service.jobs, small))
    body = {"query": {"kind": "text", "text": "red " * 200}}
    response = client.post("/v1/rerank-jobs", json=body)
    assert response.status_code == 413 and "512" in response.json()["detail"]
    assert list(service.store.open_ids()) == []  # nothing was half-written
