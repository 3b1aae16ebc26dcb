"""Bulk upserts: committed per transaction, added to the graphs in large batches."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from imagescope.settings import EmbeddedStoreSettings
from imagescope.store import embedded
from imagescope.store.base import CatalogRecord
from imagescope.store.embedded import EmbeddedStore
from imagescope.store.embedded_index import HnswIndex

pytestmark = pytest.mark.unit

DIM = 16


def vector_of(i: int) -> np.ndarray:
    v = np.random.default_rng(i).standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def record(i: int) -> CatalogRecord:
    return CatalogRecord(id=f"r{i:04d}", image_vector=vector_of(i), metadata={"odd": i % 2})


def open_store(path: Path) -> EmbeddedStore:
    settings = EmbeddedStoreSettings(
        path=path, hnsw_m=8, ef_construction=32, write_batch_size=5, exact_search_max=0
    )
    store = EmbeddedStore(settings)
    store.ensure(DIM)
    return store


def test_one_graph_add_per_batch_and_every_record_searchable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(embedded, "INDEX_ADD_BATCH", 20)
    adds: list[int] = []
    original = HnswIndex.add

    def counting_add(self: HnswIndex, slots: np.ndarray, vectors: np.ndarray) -> None:
        if len(slots):
            adds.append(len(slots))
        original(self, slots, vectors)

    monkeypatch.setattr(HnswIndex, "add", counting_add)
    with open_store(tmp_path / "c") as store:
        report = store.upsert(record(i) for i in range(47))
        assert len(report.succeeded) == 47
        assert adds == [20, 20, 7]  # transactions of 5, graph adds of 20 (then the rest)
        for i in (0, 23, 46):
            assert store.knn("image", vector_of(i), k=1)[0][0].id == f"r{i:04d}"
        assert store.count() == 47


def test_searches_during_a_bulk_upsert_see_a_consistent_catalog(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(embedded, "INDEX_ADD_BATCH", 1000)
    with open_store(tmp_path / "c") as store:
        store.upsert(record(i) for i in range(10))
        seen: list[tuple[int, int, int]] = []

        def stream() -> Iterator[CatalogRecord]:
            for i in range(10, 40):
                if i % 10 == 0:  # between transactions: committed, not yet in the graph
                    hits = store.knn("image", vector_of(3), k=50, filters={"odd": 1})[0]
                    seen.append((store.count(), len(hits), len(store.get([f"r{i - 1:04d}"]))))
                yield record(i)

        store.upsert(stream())
        assert seen == [(10, 5, 1)] * 3  # the table and graph as before; SQLite up to date
        assert store.count() == 40
        assert len(store.knn("image", vector_of(3), k=50, filters={"odd": 1})[0]) == 20


def test_a_delete_during_a_bulk_upsert_applies_in_commit_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(embedded, "INDEX_ADD_BATCH", 1000)
    with open_store(tmp_path / "c") as store:

        def stream() -> Iterator[CatalogRecord]:
            for i in range(30):
                if i == 20:  # r0003 is committed but still pending in memory
                    assert store.delete(["r0003"]) == 1
                yield record(i)

        store.upsert(stream())
        assert store.count() == 29
        ids = [h.id for h in store.knn("image", vector_of(3), k=30)[0]]
        assert "r0003" not in ids and len(ids) == 29
    with open_store(tmp_path / "c") as reopened:  # the files and SQLite agree
        assert reopened.count() == 29
        assert reopened.knn("image", vector_of(4), k=1)[0][0].id == "r0004"
