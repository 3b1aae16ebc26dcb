"""The journey of a team with its own OpenSearch image search, on a real node.

Their index ``products-v1`` is made with plain opensearch-py (own field names:
``title``, ``category``, ``colour``, ``price``, ``img_path``, ``clip_emb``), once
with unit vectors and once with vectors of any length. They adopt it (plan,
then ``--apply``), search it (text, composed, filtered), ingest new items,
backfill captions, install the search pipeline and run their unchanged query
with ``?search_pipeline=imagescope``. Throughout, their data must stay as it
was: every user field of every document byte-identical, the mapping changed by
exactly the plan.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from opensearchpy import OpenSearch, helpers

from imagescope.errors import ConfigError
from imagescope.ingest.sources import IngestItem
from imagescope.schemas import ComposedQuery, ImageRef, TextQuery
from imagescope.settings import Settings
from imagescope.wiring import load_embedder
from imagescope.wiring import open as open_engine
from tests.fixtures.opensearch import (
    INDEX,
    N_NEW,
    N_USER,
    USER_FIELDS,
    create_user_index,
    run_cli,
)

pytestmark = pytest.mark.integration
OWN_FIELDS = ("caption", "caption_vector")


def snapshot(client: OpenSearch) -> tuple[dict[str, Any], dict[str, str]]:
    """The mapping, and each document's user fields as exact JSON text."""
    mapping = client.indices.get_mapping(index=INDEX)[INDEX]["mappings"]
    docs = helpers.scan(client, index=INDEX, query={"query": {"match_all": {}}})
    users = {
        d["_id"]: json.dumps({k: d["_source"].get(k) for k in USER_FIELDS}, sort_keys=True)
        for d in docs
    }
    return mapping, users


def plain_knn(client: OpenSearch, vector: np.ndarray, k: int, flt: Any = None) -> list[str]:
    clause: dict[str, Any] = {"vector": [float(x) for x in vector], "k": k}
    if flt:
        clause["filter"] = flt
    body = {"size": k, "_source": False, "query": {"knn": {"clip_emb": clause}}}
    return [h["_id"] for h in client.search(index=INDEX, body=body)["hits"]["hits"]]


# --------------------------------------------------------------------------- the journey


def adopt_step(client: OpenSearch, dim: int) -> dict[str, Any]:
    """Plan (changes nothing), then --apply (changes exactly the plan)."""
    before, _ = snapshot(client)
    plan = json.loads(run_cli("adopt").split("\nplan only")[0])
    method = {"name": "hnsw", "engine": "lucene", "space_type": "cosinesimil"}
    assert plan["index"] == INDEX
    assert plan["add"]["caption"] == {"type": "text"}
    assert plan["add"]["caption_vector"]["dimension"] == dim
    assert plan["add"]["caption_vector"]["method"] == {**method, "parameters": {}}
    assert sorted(plan["add"]) == sorted(OWN_FIELDS)
    assert snapshot(client)[0] == before  # the plan changed nothing
    run_cli("adopt", "--apply")
    after = snapshot(client)[0]
    assert after["properties"] == {**before["properties"], **after_only(after, before)}
    assert sorted(after_only(after, before)) == sorted(plan["add"])
    return dict(plan["add"])


def after_only(after: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in after["properties"].items() if k not in before["properties"]}


def search_step(client: OpenSearch, engine: Any, rows: list[dict[str, str]]) -> None:
    """Text, composed and filtered searches; stage 1 equals a plain k-NN query."""
    text = "red stars"
    vector = engine.components.embedder.embed_texts([text])[0]
    assert [h.id for h in engine.rank_catalog(text, depth=10)] == plain_knn(client, vector, 10)
    first = engine.search(TextQuery(text=text), stages=[1])
    if len(first.trace.descriptions) == 1:
        described = engine.components.embedder.embed_texts(first.trace.descriptions)[0]
        assert [c.id for c in first.candidates[:10]] == plain_knn(client, described, 10)
    red = engine.search(TextQuery(text="stars", filters={"colour": "red"}), stages=[1])
    assert red.candidates and all(c.metadata["colour"] == "red" for c in red.candidates)
    red_ids = {r["id"] for r in rows[:N_USER] if r["colour"] == "red"}
    assert {c.id for c in red.candidates} == red_ids  # the filter ran inside the k-NN
    composed = ComposedQuery(reference=ImageRef(id=rows[0]["id"]), instruction="make it blue")
    result = engine.search(composed, stages=[1, 2])
    assert result.candidates and result.stages == [1, 2]


def ingest_step(engine: Any, settings: Settings, root: Path, rows: list[dict[str, str]]) -> None:
    """New items are created whole; an existing one only gets ImageScope's fields."""

    def item(row: dict[str, str], **extra: Any) -> IngestItem:
        meta = {"category": row["category"], "colour": row["colour"], "price": 99.0, **extra}
        return IngestItem(id=row["id"], uri=str(root / row["path"]), metadata=meta)

    new = [item(row) for row in rows[N_USER:]]
    existing = item(rows[0], colour="changed-by-ingest")
    undeclared = dataclasses.replace(item(rows[N_USER], brand="acme"), id="new-with-brand")
    report = engine.ingest([*new, existing, undeclared], limits=settings.images, progress=False)
    assert report.ok == len(new) + 1
    assert list(report.failed) == ["new-with-brand"]
    assert "not in the index mapping" in report.failed["new-with-brand"]


@pytest.mark.parametrize("scaled", [False, True], ids=["unit-vectors", "scaled-vectors"])
def test_adopt_search_ingest_backfill_without_touching_user_data(
    products_env, products_catalog, opensearch_url, scaled
):
    root, rows = products_catalog
    client = OpenSearch([opensearch_url])
    settings = Settings()
    with pytest.raises(ConfigError, match="no index or alias 'products-v1'"):
        open_engine(settings)  # nothing exists yet: an error, not a new index
    assert not client.indices.exists(index=INDEX)
    embedder = load_embedder(settings)  # the one the engine loads too
    create_user_index(client, embedder, root, rows[:N_USER], scaled=scaled)
    misspelt = settings.model_copy(deep=True)
    misspelt.store.opensearch.index = "prodcts-v1"
    with pytest.raises(ConfigError, match="did you mean 'products-v1'"):
        open_engine(misspelt)
    mapping0, users0 = snapshot(client)
    settings0 = client.indices.get_settings(index=INDEX)[INDEX]["settings"]

    with open_engine(settings) as engine:  # searching before adoption changes nothing
        engine.search(TextQuery(text="blue circles"), stages=[1])
    assert snapshot(client) == (mapping0, users0)

    plan = adopt_step(client, embedder.dim)
    with open_engine(settings) as engine:
        search_step(client, engine, rows)
        ingest_step(engine, settings, root, rows)
    out = run_cli("backfill-captions", "--batch-size", "16")
    assert "0 failed" in out and "captioned" in out
    assert "captioned 0 record(s)" in run_cli("backfill-captions")  # resumable: nothing left

    mapping, users = snapshot(client)
    assert {k: users[k] for k in users0} == users0  # every user field byte-identical
    assert mapping["properties"] == {**mapping0["properties"], **plan}
    assert set(mapping) == set(mapping0)  # no dynamic templates, no _meta added
    assert client.indices.get_settings(index=INDEX)[INDEX]["settings"] == settings0
    docs = {d["_id"]: d["_source"] for d in helpers.scan(client, index=INDEX)}
    assert len(docs) == N_USER + N_NEW
    assert all(d.get("caption") and d.get("caption_vector") for d in docs.values())
    assert all(set(d) <= set(USER_FIELDS) | set(OWN_FIELDS) for d in docs.values())
    assert docs[rows[N_USER]["id"]]["price"] == 99.0  # a new item, created whole
