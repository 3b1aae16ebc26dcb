"""The HTTP API over Celery workers and a real Redis: jobs owned by API keys end
to end, and a Redis outage answered at once (stage 1, rerank unavailable,
/healthz degraded, no internal address), then recovered from."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient

import imagescope
from imagescope.api import create_app
from imagescope.jobs.celery_backend import CeleryJobBackend
from imagescope.settings import Settings
from tests.fixtures.redis import JobCluster, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

A = {"X-API-Key": "key-a"}
B = {"X-API-Key": "key-b"}
TEXT = {"kind": "text", "text": "a red dress"}


@dataclass
class Api:
    cluster: JobCluster
    client: TestClient


@pytest.fixture
def api(job_cluster: JobCluster) -> Iterator[Api]:
    settings = job_cluster.settings(IMAGESCOPE_API__API_KEYS=json.dumps(["key-a", "key-b"]))
    assert isinstance(settings, Settings)
    engine = imagescope.open(settings)
    jobs = CeleryJobBackend.from_settings(settings.jobs, reconcile=False)
    yield Api(job_cluster, TestClient(create_app(engine, jobs, settings)))
    jobs.close()
    engine.close()


def test_jobs_run_on_workers_and_stay_with_their_key(api: Api) -> None:
    api.cluster.start_worker()
    body = {"query": TEXT, "job_id": "order-1"}
    assert api.client.post("/v1/rerank-jobs", json=body, headers=A).status_code == 202
    assert api.client.post("/v1/rerank-jobs", json=body, headers=B).status_code == 202

    def done(headers: dict[str, str]) -> bool:
        status = api.client.get("/v1/rerank-jobs/order-1", headers=headers).json()
        return bool(status["state"] == "succeeded")

    wait_until(lambda: done(A) and done(B), timeout_s=60, what="both keys' jobs")
    other = {"X-API-Key": "key-c"}
    assert api.client.get("/v1/rerank-jobs/order-1", headers=other).status_code == 401
    assert api.client.delete("/v1/rerank-jobs/order-1", headers=A).status_code == 200
    assert api.client.get("/v1/rerank-jobs/order-1", headers=A).status_code == 404
    assert api.client.get("/v1/rerank-jobs/order-1", headers=B).status_code == 200


def test_redis_outage_is_answered_at_once_and_recovered_from(api: Api) -> None:
    port = str(api.cluster.redis.port)
    api.cluster.redis.kill()
    try:
        started = time.monotonic()
        body = {"query": TEXT, "mode": "sync", "deadline_s": 2}
        response = api.client.post("/v1/search", json=body, headers=A)
        assert time.monotonic() - started < 2.0
        assert response.status_code == 200, response.text
        result = response.json()
        assert result["stages"] == [1] and result["candidates"]
        assert result["rerank"]["state"] == "unavailable"
        started = time.monotonic()
        health = api.client.get("/healthz")
        assert time.monotonic() - started < 1.0  # the circuit is open: no new timeout
        assert health.status_code == 503 and health.json()["status"] == "degraded"
        job = api.client.post("/v1/rerank-jobs", json={"query": TEXT}, headers=A)
        assert job.status_code == 503
        for text in (response.text, health.text, job.text):
            assert port not in text and "127.0.0.1" not in text
    finally:
        api.cluster.redis.start()

    def healthy() -> bool:
        return api.client.get("/healthz").status_code == 200

    wait_until(healthy, timeout_s=10, what="the API to see Redis again", every_s=0.2)
    job = api.client.post("/v1/rerank-jobs", json={"query": TEXT}, headers=A)
    assert job.status_code == 202
