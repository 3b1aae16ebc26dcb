"""The embedded store's search fast paths agree with the plain ones."""

from __future__ import annotations

import threading
from pathlib import Path

import faiss
import numpy as np
import pytest

from imagescope.schemas import Filters
from imagescope.settings import EmbeddedStoreSettings
from imagescope.store.base import CatalogRecord
from imagescope.store.embedded import EmbeddedStore
from imagescope.store.embedded_index import HnswIndex, Selection, faiss_threads

pytestmark = pytest.mark.unit

DIM = 16


def unit_vectors(n: int, *, seed: int) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    unit: np.ndarray = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    return unit


def small_index(n: int) -> tuple[HnswIndex, np.ndarray, np.ndarray]:
    """An index of ``n`` vectors under sparse slots (3, 6, 9, ...), added out of order."""
    index = HnswIndex.empty(DIM, m=8, ef_construction=32)
    slots = np.arange(1, n + 1, dtype=np.int64) * 3
    vectors = unit_vectors(n, seed=1)
    index.add(slots[n // 2 :], vectors[n // 2 :])
    index.scores(vectors[:1], slots[-1:])  # caches slot positions, which the next add changes
    index.add(slots[: n // 2], vectors[: n // 2])
    return index, slots, vectors


def test_faiss_threads_applies_to_its_block_and_this_thread_only() -> None:
    before = faiss.omp_get_max_threads()
    seen: list[int] = []
    with faiss_threads(before + 1):
        inside = faiss.omp_get_max_threads()
        other = threading.Thread(target=lambda: seen.append(faiss.omp_get_max_threads()))
        other.start()
        other.join()
    with faiss_threads(0):
        unchanged = faiss.omp_get_max_threads()
    assert inside == before + 1
    assert seen == [before]
    assert unchanged == before
    assert faiss.omp_get_max_threads() == before


@pytest.mark.parametrize("queries", [1, 3, 9])  # in place (few queries) and via BLAS (many)
def test_scores_match_the_stored_vectors(queries: int) -> None:
    index, slots, vectors = small_index(200)
    subset = np.array([0, 5, 17, 120, 199])
    x = unit_vectors(queries, seed=2)

    scores = index.scores(x, slots[subset])

    np.testing.assert_allclose(scores, x @ vectors[subset].T, rtol=0, atol=1e-5)


@pytest.mark.parametrize("unknown", [0, 4, 10_000])  # below, between, above the slots
def test_scoring_a_slot_outside_the_index_fails(unknown: int) -> None:
    index, slots, _ = small_index(50)
    with pytest.raises(KeyError, match="not in the index"):
        index.scores(unit_vectors(1, seed=3), np.array([slots[0], unknown]))


def test_a_partial_selection_excludes_slots_and_a_full_one_needs_no_selector() -> None:
    index, slots, vectors = small_index(300)
    query = vectors[:1]
    everything = Selection(slots)
    _, full = index.search(query, 5, allowed=everything, ef_search=64)
    without_best = Selection(np.delete(slots, 0))
    _, partial = index.search(query, 5, allowed=without_best, ef_search=64)

    assert full[0][0] == slots[0]
    assert slots[0] not in partial[0]
    assert not everything._selectors  # never built for a full selection
    assert without_best._selectors  # a bitmap over the graph's positions


def test_a_batch_gets_the_same_hits_as_single_queries(tmp_path: Path) -> None:
    settings = EmbeddedStoreSettings(
        path=tmp_path / "catalog", hnsw_m=8, ef_construction=32, exact_search_max=0
    )
    vectors = unit_vectors(400, seed=4)
    with EmbeddedStore(settings.model_copy(update={"search_threads": 2})) as store:
        store.ensure(DIM)
        store.upsert(
            CatalogRecord(id=f"r{i:03d}", image_vector=v, metadata={"odd": i % 2 == 1})
            for i, v in enumerate(vectors)
        )
        queries = unit_vectors(6, seed=5)
        cases: list[Filters | None] = [None, {"odd": True}]
        for filters in cases:
            batch = store.knn("image", queries, k=7, filters=filters)
            single = [store.knn("image", q, k=7, filters=filters)[0] for q in queries]
            assert batch == single
            assert all(len(hits) == 7 for hits in batch)
        assert all(int(h.id[1:]) % 2 == 1 for h in batch[0])
