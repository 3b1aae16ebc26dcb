"""POST /v1/score: query text from OpenSearch queries, order, explanations, deadline."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from imagescope.api import create_app
from imagescope.api.score_routes import find_query_text, query_text, rerank_given
from imagescope.engine import Engine
from imagescope.errors import InputError
from imagescope.jobs.fakes import HashVerifier
from imagescope.jobs.inprocess import InProcessJobBackend
from imagescope.settings import PipelineSettings
from tests.unit.test_api import make_settings
from tests.unit.test_jobs import CAPTIONS, GatedVerifier, make_components

pytestmark = pytest.mark.unit
PIPELINE = PipelineSettings(top_k=6, alpha=2, limit=10)


@pytest.mark.parametrize(
    "query",
    [
        "red dress",
        {"match": {"title": "red dress"}},
        {"match": {"title": {"query": "red dress", "operator": "OR"}}},
        {"match_phrase": {"title": {"query": "red dress"}}},
        {"multi_match": {"query": "red dress", "fields": ["title", "caption"]}},
        {"neural": {"emb": {"query_text": "red dress", "model_id": "m", "k": 10}}},
        {"knn": {"emb": {"query_text": "red dress", "k": 10}}},
        {"bool": {"filter": [{"term": {"c": "x"}}], "must": [{"match": {"title": "red dress"}}]}},
        [{"match": {"title": "red dress"}}, {"match": {"title": "red dress"}}],
    ],
)
def test_the_query_text_is_found_in_every_supported_query(query: object) -> None:
    assert query_text(query) == "red dress"


def test_an_unsupported_query_is_a_clear_error() -> None:
    assert find_query_text({"term": {"colour": "red"}}) is None
    with pytest.raises(InputError, match=r"no query text found in a 'term' query.*multi_match"):
        query_text({"term": {"colour": "red"}})
    with pytest.raises(InputError, match="knn"):
        query_text({"knn": {"emb": {"vector": [0.1, 0.2], "k": 3}}})


@pytest.fixture
def client() -> Iterator[tuple[TestClient, Engine]]:
    components = make_components()
    engine = Engine(components, PIPELINE)
    jobs = InProcessJobBackend(components, workers=1)
    yield TestClient(create_app(engine, jobs, make_settings())), engine
    jobs.close()


def test_scores_give_imagescopes_own_stage2_order_for_the_given_hits(client) -> None:
    http, engine = client
    ids = list(CAPTIONS)[::-1]
    query = {"match": {"title": {"query": "a red dress"}}}
    response = http.post("/v1/score", json={"query": query, "ids": ids, "deadline_ms": 10_000})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["query_text"] == "a red dress" and body["timed_out"] is False
    assert len(body["scores"]) == len(body["explanations"]) == len(ids)
    assert body["reranked"] == [True] * len(ids)
    by_score = [i for _, i in sorted(zip(body["scores"], ids, strict=True), reverse=True)]
    expected = rerank_given(engine, "a red dress", ids, [2])
    assert by_score == [c.id for c in expected.candidates]
    assert any("propositions hold" in note for note in body["explanations"])


def test_unknown_ids_keep_their_place_after_the_known_ones(client) -> None:
    http, _ = client
    ids = ["nope", *list(CAPTIONS)[:3]]
    body = http.post("/v1/score", json={"query": "a red dress", "ids": ids}).json()
    assert body["reranked"][0] is False
    assert "not in the ImageScope catalog" in body["explanations"][0]
    assert body["scores"][0] < min(body["scores"][1:])


def test_past_the_deadline_the_original_order_comes_back_flagged() -> None:
    gated = GatedVerifier(HashVerifier())
    components = make_components(verifier=gated)
    engine = Engine(components, PIPELINE)
    jobs = InProcessJobBackend(components, workers=1)
    http = TestClient(create_app(engine, jobs, make_settings()))
    ids = list(CAPTIONS)[:4]
    try:
        body = http.post(
            "/v1/score", json={"query": "a red dress", "ids": ids, "deadline_ms": 200}
        ).json()
    finally:
        gated.gate.set()
        jobs.close()
    assert body["timed_out"] is True and body["reranked"] == [False] * 4
    assert body["scores"] == sorted(body["scores"], reverse=True)  # original order kept
    assert "deadline of 200 ms passed" in body["explanations"][0]


def test_bad_requests_are_400_with_the_reason(client) -> None:
    http, _ = client
    response = http.post("/v1/score", json={"query": {"term": {"a": "b"}}, "ids": ["x"]})
    assert response.status_code == 400 and "no query text found" in response.text
    response = http.post("/v1/score", json={"query": "red"})
    assert response.status_code == 400 and "ids or uris" in response.text
    response = http.post("/v1/score", json={"query": "red", "ids": ["x"], "stages": [5]})
    assert response.status_code == 400
    response = http.post("/v1/score", json={"query": "red", "uris": ["/a.png"]})
    assert response.status_code == 400 and "send ids" in response.text
