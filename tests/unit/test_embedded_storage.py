"""Compressed HNSW vector storage (fp16, sq8) with exact float32 re-scoring."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from imagescope.settings import EmbeddedStoreSettings, Settings
from imagescope.store.base import CatalogRecord
from imagescope.store.embedded import EmbeddedStore
from imagescope.store.embedded_index import read_header

pytestmark = pytest.mark.unit

DIM = 32
N = 3000
K = 10


def lowrank(n: int, *, seed: int) -> np.ndarray:
    """Vectors near a 8-d subspace (as embeddings are), not normalised."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(np.random.default_rng(0).normal(size=(DIM, 8)))[0].T
    rows = rng.normal(size=(n, 8)) @ basis + 0.05 * rng.normal(size=(n, DIM))
    return (3.0 * rows).astype(np.float32)


def units(rows: np.ndarray) -> np.ndarray:
    wide = rows.astype(np.float64)
    return (wide / np.linalg.norm(wide, axis=1, keepdims=True)).astype(np.float32)


def open_store(path: Path, storage: str, **extra: object) -> EmbeddedStore:
    settings = EmbeddedStoreSettings(
        path=path,
        index_storage=storage,  # type: ignore[arg-type]
        exact_search_max=0,  # every search goes through the graph
        hnsw_m=16,
        ef_construction=64,
        ef_search=32,
        **extra,  # type: ignore[arg-type]
    )
    return EmbeddedStore(settings)


def filled(path: Path, storage: str, data: np.ndarray) -> EmbeddedStore:
    store = open_store(path, storage)
    store.ensure(DIM)
    store.upsert(CatalogRecord(id=f"r{i:05d}", image_vector=v) for i, v in enumerate(data))
    return store


def recall(store: EmbeddedStore, data: np.ndarray, queries: np.ndarray) -> float:
    exact = units(queries) @ units(data).T
    found = 0
    for query, row in zip(queries, exact, strict=True):
        truth = {f"r{i:05d}" for i in np.argsort(-row)[:K]}
        found += len(truth & {hit.id for hit in store.knn("image", query, k=K)[0]})
    return found / (K * len(queries))


@pytest.fixture(scope="module")
def data() -> np.ndarray:
    return lowrank(N, seed=1)


@pytest.fixture(scope="module")
def queries() -> np.ndarray:
    return lowrank(50, seed=2)


@pytest.mark.parametrize("storage", ["fp16", "sq8"])
def test_compressed_recall_is_close_to_flat(
    tmp_path: Path, data: np.ndarray, queries: np.ndarray, storage: str
) -> None:
    with filled(tmp_path / "flat", "flat", data) as flat:
        flat_recall = recall(flat, data, queries)
    with filled(tmp_path / storage, storage, data) as compressed:
        assert compressed.index("image").storage == storage
        compressed_recall = recall(compressed, data, queries)
    assert flat_recall > 0.9
    assert compressed_recall >= flat_recall - 0.03


@pytest.mark.parametrize("storage", ["fp16", "sq8"])
def test_compressed_scores_are_exact_float32(
    tmp_path: Path, data: np.ndarray, queries: np.ndarray, storage: str
) -> None:
    with filled(tmp_path, storage, data) as store:
        for query in queries[:10]:
            hits = store.knn("image", query, k=K)[0]
            rows = [int(hit.id[1:]) for hit in hits]
            expected = units(data[rows]) @ units(query[None, :])[0]
            assert np.allclose([hit.score for hit in hits], expected, rtol=0, atol=1e-6)
            assert [hit.score for hit in hits] == sorted((h.score for h in hits), reverse=True)


def test_sq8_graph_scores_alone_are_not_exact(tmp_path: Path, data: np.ndarray) -> None:
    """What the re-scoring repairs: the quantised graph's own scores are off."""
    with filled(tmp_path, "sq8", data) as store:
        index = store.index("image")
        query = units(data[:1])
        scores, slots = index.search(
            query, K, allowed=store._table.selection("image", None), ef_search=64
        )
        exact, _ = index.exact_scores(query, slots)
    assert np.abs(scores - exact).max() > 1e-4


@pytest.mark.parametrize("exact_max", [0, 10_000])  # the graph path, the exact path
@pytest.mark.parametrize("storage", ["fp16", "sq8"])
def test_deleted_records_are_excluded_with_compressed_storage(
    tmp_path: Path, data: np.ndarray, storage: str, exact_max: int
) -> None:
    with filled(tmp_path, storage, data[:500]) as store:
        store.settings = store.settings.model_copy(update={"exact_search_max": exact_max})
        store.delete([f"r{i:05d}" for i in range(0, 500, 2)])
        query = data[1]
        hits = store.knn("image", query, k=K)[0]
    kept = np.arange(1, 500, 2)
    scores = units(data[kept]) @ units(query[None, :])[0]
    best = kept[np.argsort(-scores)[:K]]
    assert [hit.id for hit in hits] == [f"r{i:05d}" for i in best]
    assert np.allclose([hit.score for hit in hits], np.sort(scores)[::-1][:K], atol=1e-6)


def test_compressed_index_is_saved_and_reopened(
    tmp_path: Path, data: np.ndarray, queries: np.ndarray
) -> None:
    with filled(tmp_path, "sq8", data[:1000]) as store:
        before = [store.knn("image", q, k=K)[0] for q in queries[:5]]
    header = read_header(tmp_path / "image.hnsw")
    assert header is not None and header.storage == "sq8" and header.ntotal == 1000
    with open_store(tmp_path, "sq8") as reopened:
        assert reopened.index("image").storage == "sq8"
        assert reopened.index("image").ntotal == 1000
        reopened.upsert([CatalogRecord(id="extra", image_vector=data[1000])])
        assert [reopened.knn("image", q, k=K)[0] for q in queries[:5]] == before
        assert reopened.knn("image", data[1000], k=1)[0][0].id == "extra"


def test_changing_the_storage_setting_rebuilds_the_index(
    tmp_path: Path, data: np.ndarray, queries: np.ndarray
) -> None:
    with filled(tmp_path, "sq8", data[:1000]):
        pass
    with open_store(tmp_path, "flat") as flat:
        assert flat.index("image").storage == "flat"
        assert flat.index("image").ntotal == 1000
        hits = flat.knn("image", queries[0], k=K)[0]
    exact = units(data[:1000]) @ units(queries[:1])[0]
    assert [hit.id for hit in hits][:3] == [f"r{i:05d}" for i in np.argsort(-exact)[:3]]
    header = read_header(tmp_path / "image.hnsw")
    assert header is not None and header.storage == "flat"


def test_an_unknown_storage_is_a_settings_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError, match=r"index_storage[\s\S]*'flat', 'fp16' or 'sq8'"):
        EmbeddedStoreSettings(index_storage="pq")  # type: ignore[arg-type]
    monkeypatch.setenv("IMAGESCOPE_STORE__EMBEDDED__INDEX_STORAGE", "int4")
    with pytest.raises(ValidationError, match=r"store\.embedded\.index_storage"):
        Settings()
    with pytest.raises(ValidationError, match="rescore_factor"):
        EmbeddedStoreSettings(rescore_factor=0)
