"""OpenSearchStore against a real single-node OpenSearch with the k-NN plugin."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from opensearchpy import OpenSearch, helpers

from imagescope.errors import (
    ConfigError,
    DimensionMismatchError,
    InputError,
    InvalidVectorError,
    StoreUnavailableError,
    UnknownFilterFieldError,
)
from imagescope.pipeline.fusion import fuse_scores, fused_search
from imagescope.schemas import Filters
from imagescope.settings import OpenSearchSettings
from imagescope.store.base import CaptionUpdate, CatalogRecord, matches_filters
from imagescope.store.opensearch import OpenSearchStore

pytestmark = pytest.mark.integration
DIM = 8


def unit_vectors(n: int, *, seed: int, dim: int = DIM) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    unit: np.ndarray = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    return unit


def catalog(vectors: np.ndarray, *, prefix: str = "img") -> list[CatalogRecord]:
    return [
        CatalogRecord(
            id=f"{prefix}-{i:03d}",
            image_vector=v,
            caption_vector=vectors[(i + 1) % len(vectors)],
            caption=f"caption {i}",
            uri=f"/images/{i}.jpg",
            metadata={"color": ["red", "green", "blue"][i % 3], "price": float(i)},
        )
        for i, v in enumerate(vectors)
    ]


def exact_top(vectors: np.ndarray, ids: list[str], query: np.ndarray, k: int) -> list[str]:
    scores = vectors @ query
    order = sorted(range(len(ids)), key=lambda i: (-float(scores[i]), ids[i]))
    return [ids[i] for i in order[:k]]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --------------------------------------------------------------------------- index life cycle


def test_ensure_creates_a_versioned_index_behind_the_alias(opensearch_store_factory):
    store = opensearch_store_factory(DIM, hnsw_m=8, ef_construction=64)
    concrete = f"{store.alias}-v1"
    assert list(store.client.indices.get_alias(name=store.alias)) == [concrete]
    props = store.client.indices.get_mapping(index=concrete)[concrete]["mappings"]["properties"]
    for name in ("image_vector", "caption_vector"):
        assert props[name]["dimension"] == DIM
        method = props[name]["method"]
        assert (method["engine"], method["space_type"]) == ("lucene", "cosinesimil")
        assert method["parameters"] == {"m": 8, "ef_construction": 64}
    store.ensure(DIM)  # validating again changes nothing
    assert list(store.client.indices.get_alias(name=store.alias)) == [concrete]
    assert store.dim == DIM and store.count() == 0


def test_dimension_mismatch_is_a_clear_error(opensearch_store_factory):
    store = opensearch_store_factory(DIM)
    other = OpenSearchStore(store.settings)
    with pytest.raises(DimensionMismatchError, match=r"stores 8-d vectors.*makes 16-d") as info:
        other.ensure(16)
    assert (info.value.index_dim, info.value.embedder_dim) == (DIM, 16)
    other.close()


def test_a_store_over_an_existing_catalog_learns_its_dimension(opensearch_store_factory):
    store = opensearch_store_factory(DIM)
    store.upsert(catalog(unit_vectors(4, seed=1)))
    reader = OpenSearchStore(store.settings)
    assert reader.count() == 4
    assert [h.id for h in reader.knn("image", unit_vectors(1, seed=1)[0], k=1)[0]] == ["img-000"]
    assert reader.dim == DIM
    reader.close()


# --------------------------------------------------------------------------- writes


def test_bulk_reports_each_failed_document_by_id(opensearch_store_factory):
    store = opensearch_store_factory(DIM)
    good = catalog(unit_vectors(5, seed=2))
    nan = np.full(DIM, np.nan, dtype=np.float32)
    bad = [
        CatalogRecord(id="nan", image_vector=nan),
        CatalogRecord(id="short", image_vector=np.ones(DIM - 1, dtype=np.float32)),
        # Passes the local checks; OpenSearch refuses a zero vector in cosine space.
        CatalogRecord(id="zero", image_vector=np.zeros(DIM, dtype=np.float32)),
        CatalogRecord(id="no-image"),
        CatalogRecord(id="bad-meta", image_vector=good[0].image_vector, metadata={"x": {"a": 1}}),
    ]
    report = store.upsert([*good[:2], *bad, *good[2:]])
    assert sorted(report.succeeded) == sorted(r.id for r in good)
    assert set(report.failed) == {r.id for r in bad}
    assert "NaN" in report.failed["nan"]
    assert "7" in report.failed["short"] and "8" in report.failed["short"]
    assert "zero vector" in report.failed["zero"]
    assert store.count() == len(good)
    assert store.get([r.id for r in bad]) == []


def test_upsert_is_idempotent_by_id(opensearch_store_factory):
    store = opensearch_store_factory(DIM)
    first = catalog(unit_vectors(3, seed=3))
    store.upsert(first)
    changed = CatalogRecord(id="img-001", image_vector=first[0].image_vector, caption="changed")
    report = store.upsert([changed, changed])
    assert report.failed == {}
    assert store.count() == 3
    (record,) = store.get(["img-001"], with_vectors=True)
    assert record.caption == "changed" and record.metadata == {}
    assert record.caption_vector is None
    np.testing.assert_array_equal(record.image_vector, first[0].image_vector)


def test_bulk_writes_pause_refreshes_and_restore_them(opensearch_store_factory):
    store = opensearch_store_factory(
        DIM, bulk_chunk_size=7, bulk_threads=3, bulk_pause_refresh=True
    )
    records = catalog(unit_vectors(50, seed=30))
    report = store.upsert(records)
    assert sorted(report.succeeded) == sorted(r.id for r in records) and not report.failed
    assert store.count() == 50  # one refresh at the end made every write visible
    concrete = f"{store.alias}-v1"
    index_settings = store.client.indices.get_settings(index=concrete)[concrete]["settings"]
    assert index_settings["index"]["refresh_interval"] == "1s"


def test_get_keeps_the_order_asked_and_leaves_out_missing_ids(opensearch_store_factory):
    store = opensearch_store_factory(DIM)
    records = catalog(unit_vectors(4, seed=4))
    store.upsert(records)
    got = store.get(["img-003", "missing", "img-000"], with_vectors=True)
    assert [r.id for r in got] == ["img-003", "img-000"]
    np.testing.assert_array_equal(got[0].image_vector, records[3].image_vector)
    np.testing.assert_array_equal(got[0].caption_vector, records[3].caption_vector)
    assert (got[0].uri, got[0].caption) == ("/images/3.jpg", "caption 3")
    assert got[0].metadata == {"color": "red", "price": 3.0}
    light = store.get(["img-000"])
    assert light[0].image_vector is None and light[0].caption == "caption 0"


def test_delete_counts_the_records_that_existed(opensearch_store_factory):
    store = opensearch_store_factory(DIM)
    store.upsert(catalog(unit_vectors(4, seed=5)))
    assert store.delete(["img-000", "img-002", "missing", "img-000"]) == 2
    assert store.count() == 2
    assert [r.id for r in store.get(["img-000", "img-001"])] == ["img-001"]


# --------------------------------------------------------------------------- search


def test_knn_matches_exact_search_and_breaks_ties_by_id(opensearch_store_factory):
    store = opensearch_store_factory(DIM)
    vectors = unit_vectors(60, seed=6)
    records = catalog(vectors)
    twin = vectors[7]
    records += [CatalogRecord(id=i, image_vector=twin) for i in ("twin-b", "twin-a")]
    store.upsert(records)
    ids = [r.id for r in records]
    all_vectors = np.vstack([vectors, twin, twin])
    queries = unit_vectors(3, seed=7)
    for query, hits in zip(queries, store.knn("image", queries, k=10), strict=True):
        assert [h.id for h in hits] == exact_top(all_vectors, ids, query, 10)
        exact = {i: float(s) for i, s in zip(ids, all_vectors @ query, strict=True)}
        for hit in hits:
            assert hit.score == pytest.approx(exact[hit.id], abs=1e-5)
    (hits,) = store.knn("image", twin, k=3)
    assert [h.id for h in hits] == ["img-007", "twin-a", "twin-b"]
    assert hits[0].score == pytest.approx(1.0, abs=1e-5)


def test_several_query_vectors_give_the_same_hits_as_one_by_one(opensearch_store_factory):
    store = opensearch_store_factory(DIM)
    store.upsert(catalog(unit_vectors(40, seed=8)))
    queries = unit_vectors(4, seed=9)
    together = store.knn("caption", queries, k=5)
    alone = [store.knn("caption", q, k=5)[0] for q in queries]
    assert together == alone
    assert all(len(hits) == 5 for hits in together)


def test_filters_apply_inside_the_knn_search(opensearch_store_factory):
    store = opensearch_store_factory(DIM)
    query = unit_vectors(1, seed=10)[0]
    vectors = unit_vectors(300, seed=11)
    # The few "rare" records point away from the query: filtering after a top-k
    # search would find none of them.
    vectors[:4] = -query + 0.05 * vectors[:4]
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    records = catalog(vectors)
    for record in records[:4]:
        record.metadata["tag"] = "rare"
    store.upsert(records)
    ids = [r.id for r in records]
    cases: list[Filters] = [
        {"tag": "rare"},
        {"color": ["red", "blue"]},
        {"price": {"gte": 10, "lt": 25}},
    ]
    for filters in cases:
        (hits,) = store.knn("image", query, k=8, filters=filters)
        keep = [i for i, r in enumerate(records) if matches_filters(r.metadata, filters)]
        expected = exact_top(vectors[keep], [ids[i] for i in keep], query, 8)
        assert [h.id for h in hits] == expected, filters
    (both,) = store.knn("image", query, k=50, filters={"color": "red", "price": {"lt": 30}})
    assert {h.id for h in both} == {f"img-{i:03d}" for i in range(0, 30, 3)}


def test_filter_errors_say_what_is_wrong(opensearch_store_factory):
    store = opensearch_store_factory(DIM)
    store.upsert(catalog(unit_vectors(5, seed=12)))
    assert store.metadata_fields() == {"color", "price"}
    query = unit_vectors(1, seed=13)
    with pytest.raises(UnknownFilterFieldError, match=r"'size'.*color, price"):
        store.knn("image", query, k=3, filters={"size": "XL"})
    with pytest.raises(InputError, match="gt, gte, lt, lte"):
        store.knn("image", query, k=3, filters={"price": {"above": 3}})


def test_bad_query_vectors_are_rejected_before_searching(opensearch_store_factory):
    store = opensearch_store_factory(DIM)
    store.upsert(catalog(unit_vectors(3, seed=14)))
    with pytest.raises(InvalidVectorError, match="NaN"):
        store.knn("image", np.full(DIM, np.nan, dtype=np.float32), k=3)
    with pytest.raises(InvalidVectorError, match=r"\(n, 8\)"):
        store.knn("image", np.ones(DIM + 1, dtype=np.float32), k=3)
    with pytest.raises(InputError, match="k must be"):
        store.knn("image", unit_vectors(1, seed=15), k=0)


def test_inner_product_space_scores_are_cosines(opensearch_store_factory):
    store = opensearch_store_factory(DIM, space_type="innerproduct")
    vectors = unit_vectors(20, seed=16)
    store.upsert(catalog(vectors))
    query = -vectors[0]  # scores on both sides of zero
    (hits,) = store.knn("image", query, k=20)
    exact = vectors @ query
    assert sorted(h.score for h in hits) == pytest.approx(sorted(exact.tolist()), abs=1e-5)


def test_fused_search_runs_over_the_store(opensearch_store_factory):
    store = opensearch_store_factory(DIM)
    vectors = unit_vectors(50, seed=17)
    records = catalog(vectors)
    store.upsert(records)
    descriptions = unit_vectors(2, seed=18)
    found = fused_search(store, descriptions, limit=5, tau=0.15, num_candidates=50)
    captions = np.roll(vectors, -1, axis=0)  # catalog() gives record i the caption of i + 1
    images = vectors
    fused, _, _ = fuse_scores(descriptions, images, captions, tau=0.15)
    best = sorted(range(len(records)), key=lambda i: (-float(fused[i]), records[i].id))[:5]
    assert [h.id for h in found] == [records[i].id for i in best]


# --------------------------------------------------------------------------- failures


def test_unreachable_opensearch_raises_store_unavailable_in_bounded_time():
    settings = OpenSearchSettings(
        hosts=[f"http://127.0.0.1:{closed_port()}"],
        index="nowhere",
        max_retries=2,
        retry_backoff_s=0.1,
        timeout_s=2.0,
    )
    store = OpenSearchStore(settings)
    calls: list[Callable[[], Any]] = [
        lambda: store.ensure(DIM),
        store.count,
        lambda: store.upsert(catalog(unit_vectors(2, seed=19))),
    ]
    for call in calls:
        started = time.monotonic()
        with pytest.raises(StoreUnavailableError, match="cannot be reached"):
            call()
        assert time.monotonic() - started < 5.0
    store.close()


def test_a_store_needs_its_index_before_writing(opensearch_store_factory, opensearch_url):
    settings = OpenSearchSettings(hosts=[opensearch_url], index=f"absent-{uuid.uuid4().hex}")
    store = OpenSearchStore(settings)
    assert store.get(["x"]) == []
    for read in (store.count, store.metadata_fields):
        with pytest.raises(ConfigError, match=r"no index or alias"):
            read()
    with pytest.raises(ConfigError, match=r"no index or alias"):
        store.knn("image", unit_vectors(2, seed=20), k=3)
    with pytest.raises(ConfigError, match=r"no index or alias.*create-index"):
        store.upsert(catalog(unit_vectors(1, seed=21)))
    with pytest.raises(ConfigError, match=r"no index or alias"):
        store.ensure(DIM)
    assert not store.client.indices.exists(index=settings.index)  # nothing was created
    store.close()


def test_a_catalog_imagescope_owns_is_created_on_first_use(opensearch_store_factory):
    name = f"imagescope-test-own-{uuid.uuid4().hex[:8]}"
    store = opensearch_store_factory(DIM, index=name, create=False, create_missing=True)
    store.ensure(DIM)
    assert list(store.client.indices.get_alias(name=name)) == [f"{name}-v1"]
    assert store.count() == 0


# --------------------------------------------------------------------------- reindex


def test_reindex_moves_the_alias_to_a_complete_new_generation(opensearch_store_factory):
    store = opensearch_store_factory(DIM, hnsw_m=8)
    records = catalog(unit_vectors(30, seed=22))
    store.upsert(records)
    reader = OpenSearchStore(store.settings)
    query = unit_vectors(1, seed=23)
    before = reader.knn("image", query, k=5)
    tuned = OpenSearchStore(store.settings.model_copy(update={"hnsw_m": 24}))
    target = tuned.reindex(delete_old=True)
    assert target == f"{store.alias}-v2"
    assert list(store.client.indices.get_alias(name=store.alias)) == [target]
    assert not store.client.indices.exists(index=f"{store.alias}-v1")
    props = store.client.indices.get_mapping(index=target)[target]["mappings"]["properties"]
    assert props["image_vector"]["method"]["parameters"]["m"] == 24
    assert reader.count() == len(records)
    assert reader.knn("image", query, k=5) == before
    for other in (reader, tuned):
        other.close()


def test_reembedding_fills_a_new_generation_then_swaps(opensearch_store_factory):
    store = opensearch_store_factory(DIM)
    store.upsert(catalog(unit_vectors(5, seed=24)))
    new_index = store.next_index(DIM * 2)
    writer = OpenSearchStore(store.settings.model_copy(update={"index": new_index}))
    writer.ensure(DIM * 2)
    writer.upsert(catalog(unit_vectors(3, seed=25, dim=DIM * 2)))
    assert store.count() == 5  # readers still see the old generation
    store.swap_alias(new_index)
    assert (store.count(), store.dim) == (3, DIM * 2)
    with pytest.raises(ConfigError, match="not an alias"):
        writer.swap_alias(new_index)
    writer.close()


# --------------------------------------------------------------------------- adoption


def _existing_index(client: OpenSearch, name: str, vectors: np.ndarray) -> None:
    """An index made by someone else: other field names, l2 space, no captions."""
    body = {
        "settings": {"index": {"knn": True, "number_of_replicas": 0}},
        "mappings": {
            "properties": {
                "img_emb": {
                    "type": "knn_vector",
                    "dimension": DIM,
                    "method": {"name": "hnsw", "engine": "lucene", "space_type": "l2"},
                },
                "title": {"type": "text", "fields": {"raw": {"type": "keyword"}}},
                "link": {"type": "keyword"},
                "brand": {"type": "keyword"},
                "price": {"type": "float"},
            }
        },
    }
    client.indices.create(index=name, body=body)
    actions = (
        {
            "_index": name,
            "_id": f"p{i}",
            "img_emb": v.tolist(),
            "title": f"Product {i}",
            "link": f"https://shop.example/p{i}.jpg",
            "brand": "acme" if i % 2 else "globex",
            "price": 10.0 + i,
        }
        for i, v in enumerate(vectors)
    )
    helpers.bulk(client, actions, refresh=True)


def test_adopt_an_existing_index_and_backfill_captions(opensearch_store_factory, opensearch_url):
    name = f"imagescope-test-adopt-{uuid.uuid4().hex[:8]}"
    vectors = unit_vectors(20, seed=26)
    seed_store = opensearch_store_factory(DIM)  # only for its client
    _existing_index(seed_store.client, name, vectors)
    fields = {
        "image_vector": "img_emb",
        "caption_vector": "caption_emb",
        "caption": "generated_caption",
        "uri": "link",
        "metadata": "",
    }
    store = opensearch_store_factory(DIM, index=name, fields=fields, create=False)
    store.ensure(DIM)  # read-only: validates, adds nothing
    before = store.client.indices.get_mapping(index=name)[name]["mappings"]["properties"]
    assert "caption_emb" not in before
    index, plan = store.adoption_plan()
    assert index == name and sorted(plan) == ["caption_emb", "generated_caption"]
    assert plan["caption_emb"]["method"] == before["img_emb"]["method"]  # same engine/space
    assert store.adopt() == (name, plan)
    props = store.client.indices.get_mapping(index=name)[name]["mappings"]["properties"]
    assert {k: v for k, v in props.items() if k not in plan} == before
    assert props["caption_emb"]["dimension"] == DIM and props["img_emb"]["dimension"] == DIM
    assert store.metadata_fields() == {"title", "brand", "price"}
    assert store.count() == 20

    captions = unit_vectors(10, seed=27)
    updates = [
        CaptionUpdate(id=f"p{i}", caption=f"a photo of {i}", caption_vector=c)
        for i, c in enumerate(captions)
    ]
    report = store.update_captions([*updates, CaptionUpdate("nope", "x", captions[0])])
    assert sorted(report.succeeded) == sorted(u.id for u in updates)
    assert list(report.failed) == ["nope"] and "unknown id" in report.failed["nope"]

    got = store.get(["p3", "p15"], with_vectors=True)
    np.testing.assert_array_equal(got[0].image_vector, vectors[3])
    np.testing.assert_array_equal(got[0].caption_vector, captions[3])
    assert (got[0].caption, got[0].uri) == ("a photo of 3", "https://shop.example/p3.jpg")
    assert got[0].metadata == {"title": "Product 3", "brand": "acme", "price": 13.0}
    assert got[1].caption_vector is None and got[1].caption == ""

    (image_hits,) = store.knn("image", vectors[4], k=3)  # l2 scores turned into cosines
    assert image_hits[0].id == "p4" and image_hits[0].score == pytest.approx(1.0, abs=1e-5)
    (caption_hits,) = store.knn("caption", captions[6], k=20, filters={"brand": "globex"})
    assert caption_hits[0].id == "p6"
    assert {h.id for h in caption_hits} == {f"p{i}" for i in range(0, 10, 2)}
    (titled,) = store.knn("image", vectors[0], k=5, filters={"title": "Product 7"})
    assert [h.id for h in titled] == ["p7"]
    with pytest.raises(ConfigError, match="not an alias"):
        store.reindex()
