"""The hardened HTTP API: tenants, image tokens, input bounds, idempotent resubmit,
strict JSON on every route, ErrorBody everywhere, a job backend that is down."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from imagescope.api import create_app
from imagescope.api.schemas import ErrorBody
from imagescope.api.tenancy import tenant_id
from imagescope.engine import Engine
from imagescope.jobs.celery_backend import CeleryJobBackend
from imagescope.jobs.fakes import HashVerifier
from imagescope.jobs.inprocess import InProcessJobBackend
from imagescope.settings import ApiSettings, JobSettings, LimitSettings, Settings
from tests.fixtures.redis import free_port
from tests.unit.test_api import PIPELINE
from tests.unit.test_jobs import GatedVerifier, make_components

pytestmark = pytest.mark.unit

KEYS = {"a": {"X-API-Key": "key-a"}, "b": {"X-API-Key": "key-b"}, "root": {"X-API-Key": "root"}}
TEXT = {"kind": "text", "text": "a red dress"}


def make_settings(**limits: Any) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        pipeline=PIPELINE,
        api=ApiSettings(
            api_keys=[SecretStr("key-a"), SecretStr("key-b")], admin_keys=[SecretStr("root")]
        ),
        jobs=JobSettings(sync_deadline_s=5),
        limits=LimitSettings(**limits),
    )


class Service:
    def __init__(self, settings: Settings, *, gated: bool = False) -> None:
        self.verifier = GatedVerifier(HashVerifier())
        if not gated:
            self.verifier.gate.set()
        components = make_components(verifier=self.verifier)
        self.engine = Engine(components, PIPELINE)
        self.jobs = InProcessJobBackend(
            components, workers=2, max_open=settings.limits.max_open_jobs
        )
        self.app = create_app(self.engine, self.jobs, settings)
        self.client = TestClient(self.app)

    def close(self) -> None:
        self.verifier.gate.set()
        self.jobs.close()


@pytest.fixture
def service() -> Iterator[Service]:
    running = Service(make_settings(), gated=True)
    yield running
    running.close()


def submit(service: Service, who: str, **body: Any) -> Any:
    return service.client.post("/v1/rerank-jobs", json={"query": TEXT, **body}, headers=KEYS[who])


def test_other_keys_get_404_for_every_job_action(service: Service) -> None:
    assert submit(service, "a", job_id="order-1").status_code == 202
    client = service.client
    for response in (
        client.get("/v1/rerank-jobs/order-1", headers=KEYS["b"]),
        client.delete("/v1/rerank-jobs/order-1", headers=KEYS["b"]),
        client.post("/v1/rerank-jobs/order-1/cancel", headers=KEYS["b"]),
        client.post("/v1/rerank-jobs/order-1/webhook", headers=KEYS["b"]),
    ):
        assert response.status_code == 404, response.text
        assert response.json() == {"error": "UnknownIdError", "detail": "unknown job id: 'order-1'"}
    assert submit(service, "b", job_id="order-1").status_code == 202  # ids are per key
    assert client.get("/v1/rerank-jobs/order-1", headers=KEYS["a"]).status_code == 200
    full = f"{tenant_id('key-a')}~order-1"
    assert client.get(f"/v1/rerank-jobs/{full}", headers=KEYS["root"]).status_code == 200
    assert client.get(f"/v1/rerank-jobs/{full}", headers=KEYS["b"]).status_code == 404


def test_delete_makes_the_job_unreadable(service: Service) -> None:
    job_id = submit(service, "a").json()["id"]
    deleted = service.client.delete(f"/v1/rerank-jobs/{job_id}", headers=KEYS["a"])
    assert deleted.status_code == 200 and deleted.json()["state"] == "cancelled"
    for method in ("get", "delete"):
        again = getattr(service.client, method)(f"/v1/rerank-jobs/{job_id}", headers=KEYS["a"])
        assert again.status_code == 404
    kept = submit(service, "a").json()["id"]
    cancelled = service.client.post(f"/v1/rerank-jobs/{kept}/cancel", headers=KEYS["a"])
    assert cancelled.json()["state"] == "cancelled"
    assert service.client.get(f"/v1/rerank-jobs/{kept}", headers=KEYS["a"]).status_code == 200


def test_resubmit_returns_the_same_job_without_rerunning_stage1(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    stage1 = service.engine.stage1
    monkeypatch.setattr(
        service.engine, "stage1", lambda *a, **k: calls.append(1) or stage1(*a, **k)
    )
    first = submit(service, "a", job_id="idem-1", top_k=5)
    again = submit(service, "a", job_id="idem-1", top_k=5)
    assert first.status_code == again.status_code == 202
    assert again.json() == first.json() == {"id": "idem-1", "state": "queued"}
    assert again.headers["Location"] == first.headers["Location"]
    assert len(calls) == 1  # the resubmit found the job before running stage 1
    other = submit(service, "a", job_id="idem-1", top_k=6)
    assert other.status_code == 409 and "idem-1" in other.json()["detail"]


def test_limits_are_refused_naming_the_limit() -> None:
    running = Service(make_settings(max_query_chars=50, max_dialog_turns=1, max_candidates=2,
                                    max_open_jobs=1), gated=True)  # fmt: skip
    client = running.client
    try:
        huge = {"query": {"kind": "text", "text": "x" * 10_000_000}, "mode": "fast"}
        response = client.post("/v1/search", json=huge, headers=KEYS["a"])
        assert response.status_code == 422 and "max_query_chars" in response.json()["detail"]
        turns = [{"question": "q", "answer": "a"}] * 2
        dialog = {"query": {"kind": "dialog", "caption": "c", "turns": turns}, "mode": "fast"}
        response = client.post("/v1/search", json=dialog, headers=KEYS["a"])
        assert response.status_code == 422 and "max_dialog_turns" in response.json()["detail"]
        stage1 = client.post("/v1/search", json={"query": TEXT, "mode": "fast"},
                             headers=KEYS["a"]).json()  # fmt: skip
        response = submit(running, "a", stage1=stage1)
        assert response.status_code == 422 and "max_candidates" in response.json()["detail"]
        assert submit(running, "a").status_code == 202
        response = submit(running, "a")
        assert response.status_code == 429 and "max_open_jobs" in response.json()["detail"]
        assert submit(running, "b").status_code == 202  # per key
    finally:
        running.close()


def test_images_load_with_a_cookie_or_a_signed_url_when_keys_are_on(service: Service) -> None:
    path = "/v1/images/img-0/thumbnail?size=32"
    bare = TestClient(service.app)
    assert bare.get(path).status_code == 401
    issued = service.client.post("/v1/image-token", headers=KEYS["a"])
    assert issued.status_code == 200
    cookie = issued.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/v1;" in cookie
    page = TestClient(service.app)  # a browser: it keeps the cookie, sends no key
    page.post("/v1/image-token", headers=KEYS["a"])
    response = page.get(path)
    assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
    assert page.get("/v1/rerank-jobs/x").status_code == 401  # the cookie is for images only
    token = issued.json()["token"]
    assert bare.get(f"{path}&token={token}").status_code == 200
    forged = token[:-1] + ("1" if token.endswith("0") else "0")  # one hex digit changed
    assert bare.get(f"{path}&token={forged}").status_code == 401
    assert bare.get(path, headers=KEYS["b"]).status_code == 200


EDGES = [
    b'{"query": {"kind": "text", "text": "a"}, "deadline_s": NaN}',
    b'{"query": {"kind": "text", "text": "a"}, "limit": Infinity}',
    b'{"query": {"kind": "text", "text": "\\ud800"}}',
    b'{"query": {"kind": "text", "text": "a", "filters": {"price": 1e999}}}',
    b'{"query": {"kind": "text", "text": "a", "filters": {"n": 123456789012345678901234567890}}}',
    b'{"query": {"kind": "text", "text": "a", "filters": {"n": -9223372036854775808}}}',
    b'{"\\udc00": 1}',
    b"[" * 5000 + b"]" * 5000,
    b'{"a":' * 3000 + b"1" + b"}" * 3000,
    b"NaN",
    b'"\\ud800"',
    b"not json",
]


def test_json_edges_never_cause_a_5xx_on_any_route(service: Service) -> None:
    paths = service.app.openapi()["paths"]
    assert len(paths) >= 8
    checked = 0
    for template, operations in paths.items():
        path = re.sub(r"\{[^}]+\}", "%ED%A0%80x", template)  # a lone surrogate in the path
        for method in operations:
            for body in EDGES:
                response = service.client.request(
                    method.upper(), path, content=body,
                    headers={**KEYS["a"], "Content-Type": "application/json"},
                )  # fmt: skip
                assert response.status_code < 500, (method, path, body[:60], response.text)
                if response.status_code >= 400:
                    ErrorBody.model_validate(response.json())
                checked += 1
    assert checked >= len(paths) * len(EDGES)


def test_every_documented_422_is_the_error_body(service: Service) -> None:
    schema = json.dumps(service.app.openapi())
    assert "HTTPValidationError" not in schema  # FastAPI's own 422 shape is never promised
    assert '"422"' in schema


def test_nan_and_surrogates_are_422_in_the_error_shape(service: Service) -> None:
    for body in EDGES[:3]:
        response = service.client.post("/v1/search", content=body, headers=KEYS["a"])
        assert response.status_code == 422
        error = ErrorBody.model_validate(response.json())
        assert error.error == "InvalidJsonError"
    schema = service.client.post("/v1/search", json={"query": {"kind": "text", "text": ""}},
                                 headers=KEYS["a"])  # fmt: skip
    assert schema.status_code == 422
    assert ErrorBody.model_validate(schema.json()).error == "RequestValidationError"
    assert "body.query.text" in schema.json()["detail"]


def test_redis_down_search_returns_stage1_at_once_and_health_is_degraded() -> None:
    port = free_port()
    settings = make_settings()
    jobs = CeleryJobBackend.from_settings(
        JobSettings(broker_url=f"redis://127.0.0.1:{port}/0"), reconcile=False
    )
    client = TestClient(create_app(Engine(make_components(), PIPELINE), jobs, settings))
    try:
        for mode in ("sync", "async"):
            started = time.monotonic()
            response = client.post("/v1/search", json={"query": TEXT, "mode": mode,
                                   "deadline_s": 2}, headers=KEYS["a"])  # fmt: skip
            assert time.monotonic() - started < 2.0
            assert response.status_code == 200, response.text
            result = response.json()
            assert result["stages"] == [1] and len(result["candidates"]) > 0
            assert result["rerank"]["state"] == "unavailable"
            assert str(port) not in response.text
        health = client.get("/healthz")
        assert health.status_code == 503 and health.json()["status"] == "degraded"
        assert str(port) not in health.text and "127.0.0.1" not in health.text
        job = submit_plain(client)
        assert job.status_code == 503 and str(port) not in job.text
    finally:
        jobs.close()


def submit_plain(client: TestClient) -> Any:
    return client.post("/v1/rerank-jobs", json={"query": TEXT}, headers=KEYS["a"])


def test_the_pages_own_requests_get_the_image_cookie(service: Service) -> None:
    path = "/v1/images/img-0/thumbnail?size=32"
    script = TestClient(service.app)  # no browser headers: no cookie
    script.get("/v1/catalog/fields", headers=KEYS["a"])
    assert script.get(path).status_code == 401
    page = TestClient(service.app)
    same_origin = {**KEYS["a"], "Sec-Fetch-Site": "same-origin"}
    first = page.get("/v1/catalog/fields", headers=same_origin)
    assert "imagescope_image_token=" in first.headers.get("set-cookie", "")
    assert page.get(path).status_code == 200  # the <img> request: cookie, no key
    again = page.get("/v1/catalog/fields", headers=same_origin)
    assert "set-cookie" not in again.headers  # still fresh: not renewed
    cross = TestClient(service.app)
    cross.get("/v1/catalog/fields", headers={**KEYS["a"], "Sec-Fetch-Site": "cross-site"})
    assert cross.get(path).status_code == 401


def test_owner_can_replay_a_finished_jobs_webhook(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = make_settings()
    settings.jobs.webhook_secret = SecretStr("s")
    settings.jobs.webhook_allow_private = True
    running = Service(settings)
    sent: list[tuple[str, bytes]] = []

    def deliver(self: object, url: str, body: bytes) -> str:
        sent.append((url, body))
        return "delivered"

    monkeypatch.setattr("imagescope.jobs.webhook.WebhookSender.deliver", deliver)
    try:
        url = "http://127.0.0.1:9/hook?token=t"
        job_id = submit(running, "a", webhook_url=url).json()["id"]
        running.jobs.wait(job_id, 10, owner=tenant_id("key-a"))
        replay = running.client.post(f"/v1/rerank-jobs/{job_id}/webhook", headers=KEYS["a"])
        assert replay.status_code == 200 and replay.json() == {"id": job_id, "outcome": "delivered"}
        assert sent[-1][0] == url and json.loads(sent[-1][1])["id"] == job_id
        plain = submit(running, "a").json()["id"]
        running.jobs.wait(plain, 10, owner=tenant_id("key-a"))
        none = running.client.post(f"/v1/rerank-jobs/{plain}/webhook", headers=KEYS["a"])
        assert none.status_code == 400 and "no webhook_url" in none.json()["detail"]
    finally:
        running.close()
