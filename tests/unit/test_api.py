"""The HTTP API on fakes: FastAPI TestClient, in-process jobs, MemoryStore."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from pydantic import SecretStr

from imagescope.api import create_app
from imagescope.engine import Engine
from imagescope.errors import StoreUnavailableError
from imagescope.jobs.inprocess import InProcessJobBackend
from imagescope.models.fakes import HashVerifier
from imagescope.pipeline.context import Components
from imagescope.pipeline.rerank import rerank
from imagescope.schemas import RerankRequest, SearchResult, TextQuery
from imagescope.settings import ApiSettings, JobSettings, PipelineSettings, Settings
from imagescope.store.memory import MemoryStore
from tests.unit.test_jobs import GatedVerifier, make_components

pytestmark = pytest.mark.unit

PIPELINE = PipelineSettings(top_k=6, alpha=2, limit=10)


def make_settings(**api: object) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        pipeline=PIPELINE,
        api=ApiSettings(**api),  # type: ignore[arg-type]
        jobs=JobSettings(sync_deadline_s=5),
    )


class Api:
    def __init__(self, components: Components, settings: Settings) -> None:
        self.components = components
        self.engine = Engine(components, PIPELINE)
        self.jobs = InProcessJobBackend(components, workers=2)
        self.client = TestClient(create_app(self.engine, self.jobs, settings))

    def expected(self, text: str) -> SearchResult:
        """The in-process rerank of the same query (the reference result)."""
        stage1 = self.engine.stage1(TextQuery(text=text))
        request = self.engine.rerank_request(TextQuery(text=text), stage1, stages=[1, 2, 3])
        return rerank(make_components(), request)


@pytest.fixture
def api() -> Iterator[Api]:
    service = Api(make_components(), make_settings())
    yield service
    service.jobs.close()


def ids(result: dict[str, Any]) -> list[str]:
    return [c["id"] for c in result["candidates"]]


def search(api: Api, text: str, **body: object) -> dict[str, object]:
    response = api.client.post("/v1/search", json={"query": {"kind": "text", "text": text}, **body})
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def test_fast_search_is_stage1_only(api: Api) -> None:
    result = search(api, "a red dress", mode="fast")
    assert result["stages"] == [1] and result["job"] is None
    assert ids(result) == [
        c.id for c in api.engine.stage1(TextQuery(text="a red dress")).candidates
    ]


def test_sync_search_returns_the_reranked_result(api: Api) -> None:
    result = search(api, "a red dress", mode="sync")
    assert result["stages"] == [1, 2, 3]
    assert result["job"]["state"] == "succeeded"  # type: ignore[index]
    assert ids(result) == [c.id for c in api.expected("a red dress").candidates]


def test_async_search_returns_stage1_and_a_job_that_completes(api: Api) -> None:
    result = search(api, "a blue hat", mode="async")
    job_id = result["job"]["id"]  # type: ignore[index]
    assert result["stages"] == [1]
    deadline = time.monotonic() + 10
    while (status := api.client.get(f"/v1/rerank-jobs/{job_id}").json())["state"] != "succeeded":
        assert time.monotonic() < deadline, status
        time.sleep(0.02)
    assert status["progress"] == 1.0
    assert ids(status["result"]) == [c.id for c in api.expected("a blue hat").candidates]


def test_sync_search_past_its_deadline_returns_stage1_and_the_running_job() -> None:
    verifier = GatedVerifier(HashVerifier())
    service = Api(make_components(verifier=verifier), make_settings())
    try:
        result = search(service, "a red dress", mode="sync", deadline_s=0.2)
        assert result["stages"] == [1]
        assert result["job"]["state"] == "running"  # type: ignore[index]
        job_id = result["job"]["id"]  # type: ignore[index]
        cancelled = service.client.delete(f"/v1/rerank-jobs/{job_id}")
        assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    finally:
        verifier.gate.set()
        service.jobs.close()


def test_rerank_job_endpoint_accepts_a_given_stage1(api: Api) -> None:
    stage1 = search(api, "a green shirt", mode="fast")
    body = {
        "query": {"kind": "text", "text": "a green shirt"},
        "stage1": stage1,
        "job_id": "mine-1",
    }
    response = api.client.post("/v1/rerank-jobs", json=body)
    assert response.status_code == 202
    assert response.json() == {"id": "mine-1", "state": "queued"}
    assert response.headers["Location"] == "/v1/rerank-jobs/mine-1"
    status = api.jobs.wait("mine-1", 10)
    assert status.result is not None and status.result.stages == [1, 2, 3]
    other = {"query": {"kind": "text", "text": "a red hat"}, "job_id": "mine-1"}
    conflict = api.client.post("/v1/rerank-jobs", json=other)
    assert conflict.status_code == 409 and conflict.json()["error"] == "JobConflictError"


def test_unknown_ids_are_404_with_a_reason(api: Api) -> None:
    for response in (
        api.client.get("/v1/rerank-jobs/nope"),
        api.client.delete("/v1/rerank-jobs/nope"),
        api.client.get("/v1/images/nope"),
    ):
        assert response.status_code == 404
        assert response.json()["error"] == "UnknownIdError"
        assert "nope" in response.json()["detail"]


def test_input_errors_map_to_their_status(api: Api) -> None:
    bad_stages = api.client.post(
        "/v1/search", json={"query": {"kind": "text", "text": "x"}, "stages": [2]}
    )
    assert bad_stages.status_code == 400 and "stages" in bad_stages.json()["detail"]
    empty = api.client.post("/v1/search", json={"query": {"kind": "dialog", "caption": " . "}})
    assert empty.status_code == 400 and empty.json()["error"] == "EmptyQueryError"
    hook = api.client.post(
        "/v1/search",
        json={"query": {"kind": "text", "text": "x"}, "webhook_url": "https://example.com/h"},
    )
    assert hook.status_code == 400 and "WEBHOOK_SECRET" in hook.json()["detail"]
    schema = api.client.post("/v1/search", json={"query": {"kind": "text", "text": ""}})
    assert schema.status_code == 422


class DownStore(MemoryStore):
    """A store whose backend is unreachable."""

    dim = 32

    def _down(self, *args: object, **kwargs: object) -> Any:
        raise StoreUnavailableError("catalog unreachable: connection refused")

    knn = get = count = _down


def test_backend_errors_are_503_and_health_says_degraded() -> None:
    service = Api(make_components(store=DownStore()), make_settings())
    try:
        response = service.client.post(
            "/v1/search", json={"query": {"kind": "text", "text": "a red dress"}}
        )
        assert response.status_code == 503
        assert response.json() == {
            "error": "StoreUnavailableError",
            "detail": "catalog unreachable: connection refused",
        }
        health = service.client.get("/healthz")
        assert health.status_code == 503 and health.json()["status"] == "degraded"
    finally:
        service.jobs.close()


def test_health_is_ok_with_catalog_size(api: Api) -> None:
    health = api.client.get("/healthz")
    assert health.status_code == 200
    assert health.json()["catalog_size"] == 12 and health.json()["jobs"] == "ok"


def test_api_keys_are_required_when_configured() -> None:
    settings = make_settings(api_keys=[SecretStr("k1"), SecretStr("k2")])
    service = Api(make_components(), settings)
    try:
        body = {"query": {"kind": "text", "text": "a red dress"}, "mode": "fast"}
        assert service.client.post("/v1/search", json=body).status_code == 401
        wrong = service.client.post("/v1/search", json=body, headers={"X-API-Key": "k3"})
        assert wrong.status_code == 401 and "X-API-Key" in wrong.json()["detail"]
        ok = service.client.post("/v1/search", json=body, headers={"X-API-Key": "k2"})
        assert ok.status_code == 200
        assert service.client.get("/healthz").status_code == 200
    finally:
        service.jobs.close()


def test_oversized_requests_get_413_by_header_or_by_stream() -> None:
    service = Api(make_components(), make_settings(max_request_bytes=2000))
    try:
        big = {"query": {"kind": "text", "text": "a red dress " * 300}, "mode": "fast"}
        declared = service.client.post("/v1/search", json=big)
        assert declared.status_code == 413 and "limit of 2000" in declared.json()["detail"]

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it streams
            yield b'{"query": {"kind": "text", "text": "'
            for _ in range(50):
                yield b"a red dress " * 10
            yield b'"}}'

        streamed = service.client.post(
            "/v1/search", content=chunks(), headers={"Content-Type": "application/json"}
        )
        assert streamed.status_code == 413 and streamed.json() == declared.json()
        small = service.client.post(
            "/v1/search", json={"query": {"kind": "text", "text": "hat"}, "mode": "fast"}
        )
        assert small.status_code == 200
    finally:
        service.jobs.close()


def _jpeg_size(content: bytes) -> tuple[int, int]:
    image = Image.open(io.BytesIO(content))
    assert image.format == "JPEG"
    return image.size


def test_images_and_thumbnails_are_served_within_limits() -> None:
    service = Api(make_components(), make_settings(max_image_side=32, max_thumbnail_side=128))
    try:
        full = service.client.get("/v1/images/img-0")
        assert full.status_code == 200 and full.headers["content-type"] == "image/jpeg"
        assert _jpeg_size(full.content) == (32, 24)  # 64x48 scaled to the 32 px cap
        thumb = service.client.get("/v1/images/img-0/thumbnail", params={"size": 16})
        assert _jpeg_size(thumb.content) == (16, 12)
        too_big = service.client.get("/v1/images/img-0/thumbnail", params={"size": 4096})
        assert too_big.status_code == 400 and "128" in too_big.json()["detail"]
        assert service.client.get("/v1/images/img-0/thumbnail?size=4").status_code == 422
    finally:
        service.jobs.close()


def test_metrics_count_requests_by_route_template(api: Api) -> None:
    search(api, "a red dress", mode="fast")
    api.client.get("/v1/rerank-jobs/abc")
    text = api.client.get("/metrics").text
    assert 'route="/v1/search",status="200"' in text
    assert 'route="/v1/rerank-jobs/{job_id}",status="404"' in text
    assert "abc" not in text
    assert 'imagescope_searches_total{mode="fast"} 1.0' in text


def test_openapi_documents_examples_errors_and_the_api_key() -> None:
    service = Api(make_components(), make_settings())
    try:
        schema = service.client.get("/openapi.json").json()
    finally:
        service.jobs.close()
    search_op = schema["paths"]["/v1/search"]["post"]
    assert {"200", "404", "413", "503"} <= set(search_op["responses"])
    assert schema["components"]["schemas"]["SearchRequest"]["examples"]
    assert schema["components"]["securitySchemes"]["APIKeyHeader"]["name"] == "X-API-Key"
    assert "/v1/rerank-jobs/{job_id}" in schema["paths"]


def test_rerank_request_round_trips_through_json() -> None:
    engine = Engine(make_components(), PIPELINE)
    stage1 = engine.stage1(TextQuery(text="a red dress"))
    request = engine.rerank_request(TextQuery(text="a red dress"), stage1)
    assert RerankRequest.model_validate_json(request.model_dump_json()) == request
