"""Catalog browsing for the search page (fields, reference picker) and the page's files."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from imagescope.api import catalog_routes, create_app
from imagescope.api.catalog_routes import catalog_images, describe_field
from imagescope.engine import Engine
from imagescope.jobs.inprocess import InProcessJobBackend
from imagescope.models.fakes import FakeEmbedder, FakeReasoner
from imagescope.pipeline.context import Components, MemoryImageSource
from imagescope.pipeline.fusion import fused_search
from imagescope.settings import ApiSettings, PipelineSettings, Settings
from imagescope.store.base import CatalogRecord
from imagescope.store.memory import MemoryStore

pytestmark = pytest.mark.unit

CATALOG: dict[str, tuple[str, dict[str, Any]]] = {
    "a": ("a red dress with long sleeves", {"colour": "red", "price": 30, "sale": True}),
    "b": ("a blue dress with short sleeves", {"colour": "blue", "price": 12.5, "sale": False}),
    "c": ("a red shirt", {"colour": "red", "price": 20, "sale": False}),
    "d": ("a green hat", {"colour": "green", "price": 8}),
    "e": ("a yellow scarf", {"colour": "yellow", "price": 15, "tags": ["wool", "winter"]}),
}


def make_engine() -> Engine:
    embedder = FakeEmbedder(dim=32)
    store = MemoryStore()
    store.ensure(32)
    ids = list(CATALOG)
    vectors = embedder.embed_texts([CATALOG[i][0] for i in ids])
    store.upsert(
        CatalogRecord(
            id=i,
            image_vector=vectors[n],
            caption_vector=vectors[n],
            caption=CATALOG[i][0],
            metadata=CATALOG[i][1],
        )
        for n, i in enumerate(ids)
    )
    components = Components(
        embedder=embedder, store=store, reasoner=FakeReasoner(), images=MemoryImageSource({})
    )
    return Engine(components, PipelineSettings(limit=10, top_k=3, alpha=1))


def make_client(**api: Any) -> Iterator[TestClient]:
    engine = make_engine()
    jobs = InProcessJobBackend(engine.components, workers=1)
    settings = Settings(_env_file=None, api=ApiSettings(**api))  # type: ignore[call-arg]
    try:
        yield TestClient(create_app(engine, jobs, settings))
    finally:
        jobs.close()


@pytest.fixture
def client() -> Iterator[TestClient]:
    yield from make_client()


# --------------------------------------------------------------------------- fields


def test_describe_field_tells_kinds_values_and_ranges() -> None:
    keyword = describe_field("colour", ["red", "blue", "red"])
    assert (keyword.kind, keyword.values) == ("keyword", ["blue", "red"])
    number = describe_field("price", [30, 12.5, float("nan"), 8])
    assert (number.kind, number.min, number.max) == ("number", 8.0, 30.0)
    assert number.values == [8, 12.5, 30]
    flag = describe_field("sale", [True, False])
    assert (flag.kind, flag.values) == ("boolean", [False, True])
    listed = describe_field("tags", [["wool", "winter"], ["wool"]])
    assert (listed.kind, listed.values) == ("keyword", ["winter", "wool"])
    mixed = describe_field("size", ["XL", 42])
    assert mixed.kind == "text"
    assert describe_field("unseen", []).kind == "text"


def test_describe_field_lists_no_values_when_there_are_too_many() -> None:
    many = describe_field("sku", [f"sku-{i}" for i in range(catalog_routes.MAX_LISTED_VALUES + 1)])
    assert many.kind == "keyword" and many.values == []
    few = describe_field("sku", [f"sku-{i}" for i in range(catalog_routes.MAX_LISTED_VALUES)])
    assert len(few.values) == catalog_routes.MAX_LISTED_VALUES


def test_fields_endpoint_describes_every_metadata_field(client: TestClient) -> None:
    response = client.get("/v1/catalog/fields")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["count"] == len(CATALOG) and body["sampled"] == len(CATALOG)
    fields = {f["name"]: f for f in body["fields"]}
    assert sorted(fields) == ["colour", "price", "sale", "tags"]
    assert fields["colour"]["values"] == ["blue", "green", "red", "yellow"]
    assert (fields["price"]["kind"], fields["price"]["min"], fields["price"]["max"]) == (
        "number",
        8.0,
        30.0,
    )
    assert fields["sale"]["kind"] == "boolean"


# --------------------------------------------------------------------------- picker


def test_images_are_ranked_by_the_fused_score_for_q(client: TestClient) -> None:
    engine = make_engine()
    vector = engine.components.embedder.embed_texts(["red dress with long sleeves"])
    want = [
        h.id
        for h in fused_search(
            engine.components.store,
            np.asarray(vector),
            limit=3,
            tau=engine.pipeline.tau,
            num_candidates=10,
        )
    ]
    response = client.get(
        "/v1/catalog/images", params={"q": "red dress with long sleeves", "limit": 3}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert [item["id"] for item in body["items"]] == want
    assert want[0] == "a"
    first = body["items"][0]
    assert first["caption"] == CATALOG["a"][0] and first["metadata"] == CATALOG["a"][1]
    assert first["thumbnail"] == "v1/images/a/thumbnail?size=256"
    assert body["total"] == len(CATALOG) and body["next_offset"] == 3


def test_paging_visits_every_image_once(client: TestClient) -> None:
    seen: list[str] = []
    offset: int | None = 0
    pages = 0
    while offset is not None:
        body = client.get("/v1/catalog/images", params={"limit": 2, "offset": offset}).json()
        seen += [item["id"] for item in body["items"]]
        offset = body["next_offset"]
        pages += 1
    assert sorted(seen) == sorted(CATALOG)
    assert pages == 3


def test_paging_stops_at_the_browse_depth(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(catalog_routes, "MAX_BROWSE_DEPTH", 3)
    engine = make_engine()
    page = catalog_images(engine, limit=2, offset=2)
    assert len(page.items) == 1 and page.next_offset is None
    assert catalog_images(engine, limit=2, offset=3).items == []


@pytest.mark.parametrize(
    ("params", "field"),
    [({"limit": 0}, "limit"), ({"limit": 101}, "limit"), ({"offset": -1}, "offset")],
)
def test_bad_paging_parameters_are_refused(
    client: TestClient, params: dict[str, int], field: str
) -> None:
    response = client.get("/v1/catalog/images", params=params)
    assert response.status_code == 422
    assert field in response.text


def test_catalog_routes_need_the_api_key_when_keys_are_set() -> None:
    for client in make_client(api_keys=[SecretStr("k1")]):
        assert client.get("/v1/catalog/fields").status_code == 401
        ok = client.get("/v1/catalog/fields", headers={"X-API-Key": "k1"})
        assert ok.status_code == 200


# --------------------------------------------------------------------------- the page


def test_the_search_page_and_its_assets_are_served(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="app.js"' in page.text and 'href="style.css"' in page.text
    # app.js and every module it imports, transitively, are served as JavaScript.
    todo, seen = ["app.js"], set()
    while todo:
        name = todo.pop()
        seen.add(name)
        script = client.get(f"/{name}")
        assert script.status_code == 200 and "javascript" in script.headers["content-type"]
        todo += [m for m in re.findall(r'from "\./([\w.]+\.js)"', script.text) if m not in seen]
    assert {"app.js", "search.js", "api.js", "urlstate.js"} <= seen
    assert "v1/rerank-jobs" in client.get("/search.js").text
    assert client.get("/style.css").headers["content-type"].startswith("text/css")
