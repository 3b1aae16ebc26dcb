"""The VectorStore contract (store/base.py), checked against every backend.

Each test gets ``store_factory`` (see conftest.py) and compares the store with
an exact numpy computation over the same records.
"""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray

from imagescope.errors import (
    DimensionMismatchError,
    InputError,
    InvalidVectorError,
    UnknownFilterFieldError,
)
from imagescope.pipeline.fusion import fused_search
from imagescope.schemas import Filters
from imagescope.store.base import CaptionUpdate, CatalogRecord, VectorStore, matches_filters
from tests.conformance.conftest import StoreFactory

# Markers come from the store_factory params (conftest.py): unit or integration.

DIM = 32
COLORS = ["red", "green", "blue", "black"]


def unit_vectors(rng: np.random.Generator, n: int, dim: int = DIM) -> NDArray[np.float32]:
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    normalised: NDArray[np.float32] = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    return normalised


def vec(vector: NDArray[np.float32] | None) -> NDArray[np.float32]:
    """A vector that must be there."""
    assert vector is not None
    return vector


def catalog(
    rng: np.random.Generator, n: int, *, with_captions: bool = False
) -> list[CatalogRecord]:
    """``n`` records with varied metadata; every third one has no caption vector."""
    images = unit_vectors(rng, n)
    captions = unit_vectors(rng, n)
    records = []
    for i in range(n):
        has_caption = with_captions and i % 3 != 0
        records.append(
            CatalogRecord(
                id=f"img-{i:05d}",
                image_vector=images[i],
                caption_vector=captions[i] if has_caption else None,
                caption=f"caption {i}" if has_caption else "",
                uri=f"/photos/{i}.jpg",
                metadata={
                    "color": COLORS[i % len(COLORS)],
                    "price": i % 100,
                    "rating": round(float(rng.uniform(0, 5)), 2),
                },
            )
        )
    return records


def exact_ranking(
    query: NDArray[np.float32],
    records: list[CatalogRecord],
    *,
    k: int,
    field: str = "image",
    filters: Filters | None = None,
) -> list[tuple[str, float]]:
    """Brute-force cosine top ``k`` (ties by id) among records matching ``filters``."""
    eligible = [
        (record.id, vector)
        for record in records
        if (vector := record.image_vector if field == "image" else record.caption_vector)
        is not None
        and matches_filters(record.metadata, filters)
    ]
    if not eligible:
        return []
    matrix = np.stack([vector for _, vector in eligible]).astype(np.float64)
    cosines = matrix @ query / np.linalg.norm(matrix, axis=1) / np.linalg.norm(query)
    scored = [(record_id, float(c)) for (record_id, _), c in zip(eligible, cosines, strict=True)]
    return sorted(scored, key=lambda item: (-item[1], item[0]))[:k]


def ingest(store: VectorStore, records: list[CatalogRecord]) -> None:
    report = store.upsert(records)
    assert report.failed == {}
    assert sorted(report.succeeded) == sorted(r.id for r in records)


# --------------------------------------------------------------------------- writes and reads


def test_ingest_then_get_returns_records_in_the_order_asked(store_factory: StoreFactory) -> None:
    rng = np.random.default_rng(1)
    store = store_factory(DIM)
    records = catalog(rng, 60, with_captions=True)
    ingest(store, records)

    assert store.count() == 60
    assert {"color", "price", "rating"} <= store.metadata_fields()
    got = store.get(["img-00007", "no-such-image", "img-00003"], with_vectors=True)
    assert [r.id for r in got] == ["img-00007", "img-00003"]
    for record in got:
        original = records[int(record.id.split("-")[1])]
        assert record.caption == original.caption
        assert record.uri == original.uri
        assert record.metadata == original.metadata
        np.testing.assert_allclose(vec(record.image_vector), vec(original.image_vector), atol=1e-6)
    assert got[0].caption_vector is not None  # 7 % 3 != 0: has a caption
    np.testing.assert_allclose(
        vec(got[0].caption_vector), vec(records[7].caption_vector), atol=1e-6
    )
    assert got[1].caption_vector is None  # 3 % 3 == 0: no caption
    plain = store.get(["img-00007"])
    assert plain[0].image_vector is None and plain[0].metadata == records[7].metadata


def test_upsert_of_an_existing_id_replaces_it_in_place(store_factory: StoreFactory) -> None:
    rng = np.random.default_rng(2)
    store = store_factory(DIM)
    records = catalog(rng, 200)
    ingest(store, records)
    old_vector = vec(records[10].image_vector)
    new_vector = unit_vectors(rng, 1)[0]

    updated = CatalogRecord(
        id="img-00010", image_vector=new_vector, uri="/moved.jpg", metadata={"color": "gold"}
    )
    assert store.upsert([updated]).succeeded == ["img-00010"]

    assert store.count() == 200
    (got,) = store.get(["img-00010"], with_vectors=True)
    assert got.uri == "/moved.jpg" and got.metadata == {"color": "gold"}
    np.testing.assert_allclose(vec(got.image_vector), new_vector, atol=1e-6)
    (top,) = store.knn("image", new_vector[None], k=1)
    assert top[0].id == "img-00010" and top[0].score == pytest.approx(1.0, abs=1e-4)
    (near_old,) = store.knn("image", old_vector[None], k=200)
    by_id = {h.id: h.score for h in near_old}
    assert by_id["img-00010"] == pytest.approx(float(old_vector @ new_vector), abs=1e-4)
    (gold,) = store.knn("image", old_vector[None], k=5, filters={"color": "gold"})
    assert [h.id for h in gold] == ["img-00010"]


def test_upsert_is_idempotent(store_factory: StoreFactory) -> None:
    rng = np.random.default_rng(3)
    store = store_factory(DIM)
    records = catalog(rng, 300)
    queries = unit_vectors(rng, 5)
    ingest(store, records)
    before = store.knn("image", queries, k=10)

    ingest(store, records)

    assert store.count() == 300
    after = store.knn("image", queries, k=10)
    assert [[h.id for h in hits] for hits in after] == [[h.id for h in hits] for hits in before]


def test_delete_removes_records_from_get_count_and_search(store_factory: StoreFactory) -> None:
    rng = np.random.default_rng(4)
    store = store_factory(DIM)
    records = catalog(rng, 150)
    ingest(store, records)

    assert store.delete(["img-00001", "img-00002", "never-existed"]) == 2

    assert store.count() == 148
    assert store.get(["img-00001", "img-00002", "img-00003"]) == store.get(["img-00003"])
    (hits,) = store.knn("image", vec(records[1].image_vector)[None], k=148)
    assert len(hits) == 148
    assert {"img-00001", "img-00002"}.isdisjoint(h.id for h in hits)
    (red,) = store.knn(
        "image", vec(records[1].image_vector)[None], k=10, filters={"color": "green"}
    )
    assert "img-00001" not in {h.id for h in red}  # img-00001 is green


# --------------------------------------------------------------------------- search


def test_knn_agrees_with_exact_search(store_factory: StoreFactory) -> None:
    rng = np.random.default_rng(5)
    store = store_factory(DIM)
    records = catalog(rng, 3000)
    ingest(store, records)
    queries = unit_vectors(rng, 40)

    results = store.knn("image", queries, k=10)

    assert len(results) == len(queries)
    recalls = []
    for query, hits in zip(queries, results, strict=True):
        expected = exact_ranking(query, records, k=10)
        assert len(hits) == 10
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
        exact_scores = dict(exact_ranking(query, records, k=len(records)))
        for hit in hits:
            assert hit.score == pytest.approx(exact_scores[hit.id], abs=1e-4)
        recalls.append(len({h.id for h in hits} & {i for i, _ in expected}) / 10)
    assert np.mean(recalls) >= 0.9


def test_a_stored_vector_finds_itself_first(store_factory: StoreFactory) -> None:
    rng = np.random.default_rng(6)
    store = store_factory(DIM)
    records = catalog(rng, 2000)
    ingest(store, records)
    sample = [records[i] for i in rng.choice(len(records), size=40, replace=False)]

    results = store.knn("image", np.stack([r.image_vector for r in sample]), k=3)

    for record, hits in zip(sample, results, strict=True):
        assert hits[0].id == record.id
        assert hits[0].score == pytest.approx(1.0, abs=1e-4)


def test_ties_are_broken_by_ascending_id(store_factory: StoreFactory) -> None:
    rng = np.random.default_rng(7)
    store = store_factory(DIM)
    shared = unit_vectors(rng, 1)[0]
    twins = [CatalogRecord(id=i, image_vector=shared) for i in ["tie-c", "tie-a", "tie-b"]]
    ingest(store, twins + catalog(rng, 100))

    (hits,) = store.knn("image", shared[None], k=3)

    assert [h.id for h in hits] == ["tie-a", "tie-b", "tie-c"]


FILTERS: dict[str, Filters] = {
    "equality": {"color": "red"},
    "any_of": {"color": ["green", "black"]},
    "range": {"price": {"gte": 20, "lt": 45}},
    "float_range": {"rating": {"gt": 1.5, "lte": 3.0}},
    "combined": {"color": ["red", "blue"], "price": {"lte": 60}, "rating": {"gte": 1.0}},
}


@pytest.mark.parametrize("filters", list(FILTERS.values()), ids=list(FILTERS))
def test_filters_restrict_the_search_to_matching_records(
    store_factory: StoreFactory, filters: Filters
) -> None:
    rng = np.random.default_rng(8)
    store = store_factory(DIM)
    records = catalog(rng, 800)
    ingest(store, records)
    matching = {r.id for r in records if matches_filters(r.metadata, filters)}
    assert 0 < len(matching) < len(records)

    queries = unit_vectors(rng, 10)

    results = store.knn("image", queries, k=10, filters=filters)

    recalls = []
    for query, hits in zip(queries, results, strict=True):
        assert len(hits) == 10
        assert {h.id for h in hits} <= matching
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
        expected = {i for i, _ in exact_ranking(query, records, k=10, filters=filters)}
        recalls.append(len(expected & {h.id for h in hits}) / 10)
    assert np.mean(recalls) >= 0.9


def test_a_selective_filter_still_returns_k_hits(store_factory: StoreFactory) -> None:
    rng = np.random.default_rng(9)
    store = store_factory(DIM)
    records = catalog(rng, 2000)
    for i in range(0, 2000, 100):  # 20 rare records, spread over the catalog
        records[i].metadata["color"] = "rare"
    for i in range(1, 2000, 400):  # 5 unique records
        records[i].metadata["color"] = "unique"
    ingest(store, records)
    queries = unit_vectors(rng, 5)

    cases: list[tuple[Filters, int]] = [({"color": "rare"}, 10), ({"color": "unique"}, 5)]
    for filters, expected_len in cases:
        results = store.knn("image", queries, k=10, filters=filters)
        for query, hits in zip(queries, results, strict=True):
            expected = exact_ranking(query, records, k=10, filters=filters)
            assert len(hits) == expected_len
            assert [h.id for h in hits] == [i for i, _ in expected]


# --------------------------------------------------------------------------- fused scoring


def exact_fused(
    descriptions: np.ndarray, records: list[CatalogRecord], *, tau: float
) -> list[tuple[str, float]]:
    """The method's formula, computed directly: mean over descriptions of the mix."""
    scored = []
    for record in records:
        image = record.image_vector
        caption = record.caption_vector if record.caption_vector is not None else image
        per_description = [
            (1 - tau) * float(t @ image) + tau * float(t @ caption) for t in descriptions
        ]
        scored.append((record.id, float(np.mean(per_description))))
    return sorted(scored, key=lambda item: (-item[1], item[0]))


@pytest.mark.parametrize("tau", [0.15, 0.5])
def test_fused_search_equals_the_exact_formula(store_factory: StoreFactory, tau: float) -> None:
    rng = np.random.default_rng(10)
    store = store_factory(DIM)
    records = catalog(rng, 300, with_captions=True)
    ingest(store, records)
    descriptions = unit_vectors(rng, 3)

    hits = fused_search(store, descriptions, limit=25, tau=tau, num_candidates=300)

    expected = exact_fused(descriptions, records, tau=tau)[:25]
    assert [h.id for h in hits] == [i for i, _ in expected]
    np.testing.assert_allclose([h.score for h in hits], [s for _, s in expected], atol=1e-5)


def test_fused_search_applies_filters(store_factory: StoreFactory) -> None:
    rng = np.random.default_rng(11)
    store = store_factory(DIM)
    records = catalog(rng, 400, with_captions=True)
    ingest(store, records)
    descriptions = unit_vectors(rng, 2)
    filters: Filters = {"color": ["red", "blue"], "price": {"lt": 50}}

    hits = fused_search(
        store, descriptions, limit=10, tau=0.15, num_candidates=400, filters=filters
    )

    allowed = [r for r in records if matches_filters(r.metadata, filters)]
    expected = exact_fused(descriptions, allowed, tau=0.15)[:10]
    assert [h.id for h in hits] == [i for i, _ in expected]
    np.testing.assert_allclose([h.score for h in hits], [s for _, s in expected], atol=1e-5)


# --------------------------------------------------------------------------- captions


def test_caption_backfill_by_id(store_factory: StoreFactory) -> None:
    rng = np.random.default_rng(12)
    store = store_factory(DIM)
    records = catalog(rng, 120)
    ingest(store, records)
    caption_vectors = unit_vectors(rng, 40)
    assert store.knn("caption", caption_vectors[:1], k=5) == [[]]

    updates = [
        CaptionUpdate(id=f"img-{i:05d}", caption=f"a photo number {i}", caption_vector=v)
        for i, v in enumerate(caption_vectors)
    ]
    bad = np.full(DIM, np.nan, dtype=np.float32)
    updates += [
        CaptionUpdate(id="not-in-catalog", caption="x", caption_vector=caption_vectors[0]),
        CaptionUpdate(id="img-00100", caption="bad vector", caption_vector=bad),
    ]
    report = store.update_captions(updates)

    assert sorted(report.succeeded) == [f"img-{i:05d}" for i in range(40)]
    assert set(report.failed) == {"not-in-catalog", "img-00100"}
    (got,) = store.get(["img-00007"], with_vectors=True)
    assert got.caption == "a photo number 7"
    np.testing.assert_allclose(vec(got.caption_vector), caption_vectors[7], atol=1e-6)
    assert got.metadata == records[7].metadata  # the rest of the record is kept
    (top,) = store.knn("caption", caption_vectors[7][None], k=1)
    assert top[0].id == "img-00007"
    (red,) = store.knn("caption", caption_vectors[7][None], k=50, filters={"color": "red"})
    assert len(red) == 10 and all(int(h.id[4:]) % 4 == 0 for h in red)  # red: i % 4 == 0
    assert store.get(["img-00100"])[0].caption == ""


# --------------------------------------------------------------------------- bad input


def test_a_catalog_of_another_dimension_is_refused(store_factory: StoreFactory) -> None:
    store = store_factory(DIM)
    store.ensure(DIM)  # the same dimension is fine

    with pytest.raises(DimensionMismatchError) as caught:
        store.ensure(DIM + 8)

    assert (caught.value.index_dim, caught.value.embedder_dim) == (DIM, DIM + 8)


def test_bad_vectors_fail_only_their_record(store_factory: StoreFactory) -> None:
    rng = np.random.default_rng(13)
    store = store_factory(DIM)
    good = catalog(rng, 5)
    nan = unit_vectors(rng, 1)[0]
    nan[3] = np.nan
    inf = unit_vectors(rng, 1)[0]
    inf[0] = np.inf
    bad = [
        CatalogRecord(id="short", image_vector=np.ones(DIM - 1, dtype=np.float32)),
        CatalogRecord(id="nan", image_vector=nan),
        CatalogRecord(id="inf", image_vector=inf),
        CatalogRecord(
            id="bad-caption",
            image_vector=unit_vectors(rng, 1)[0],
            caption_vector=np.ones(DIM + 1, dtype=np.float32),
        ),
    ]

    report = store.upsert(good[:2] + bad + good[2:])

    assert set(report.failed) == {"short", "nan", "inf", "bad-caption"}
    assert sorted(report.succeeded) == sorted(r.id for r in good)
    assert store.count() == 5
    assert store.get([r.id for r in bad]) == []
    with pytest.raises(InvalidVectorError):
        store.knn("image", np.ones((1, DIM + 1), dtype=np.float32), k=3)
    with pytest.raises(InvalidVectorError):
        store.knn("image", nan[None], k=3)


def test_an_unknown_filter_field_is_an_error(store_factory: StoreFactory) -> None:
    rng = np.random.default_rng(14)
    store = store_factory(DIM)
    ingest(store, catalog(rng, 20))
    query = unit_vectors(rng, 1)

    with pytest.raises(UnknownFilterFieldError, match="no_such_field"):
        store.knn("image", query, k=3, filters={"no_such_field": "x"})
    with pytest.raises(InputError, match="range"):
        store.knn("image", query, k=3, filters={"price": {"between": 3}})


def test_bad_k_and_vector_field_are_input_errors(store_factory: StoreFactory) -> None:
    rng = np.random.default_rng(15)
    store = store_factory(DIM)
    ingest(store, catalog(rng, 5))
    query = unit_vectors(rng, 1)
    for k in (0, -1):
        with pytest.raises(InputError, match="k must be"):
            store.knn("image", query, k=k)
    with pytest.raises(InputError, match="unknown vector field"):
        store.knn("bogus", query, k=3)  # type: ignore[arg-type]
