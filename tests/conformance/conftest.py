"""The conformance suite runs every test against each VectorStore backend.

``store_factory`` is a callable ``(dim, **overrides) -> VectorStore`` that makes
a fresh, empty catalog of ``dim``-d vectors. The embedded store lives in
``tmp_path``; ``MemoryStore`` (the exact reference) is a backend like the others;
the OpenSearch store comes from the ``opensearch_store_factory``
fixture (tests/fixtures/opensearch.py), which skips (or fails under CI=true)
when no node is reachable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from imagescope.settings import EmbeddedStoreSettings
from imagescope.store.base import VectorStore
from tests.fixtures.services import service_missing

StoreFactory = Callable[..., VectorStore]

#: The embedded store searches small filtered subsets exactly; these tests use
#: catalogs of a few thousand vectors, so lower the threshold to exercise HNSW,
#: and a lighter graph than the defaults (built faster, as accurate at this size).
EMBEDDED_TEST_SETTINGS: dict[str, Any] = {
    "exact_search_max": 64,
    "hnsw_m": 16,
    "ef_construction": 64,
    "lock_timeout_s": 5.0,
}


def _embedded_factory(
    tmp_path: Path, made: list[VectorStore], *, storage: str = "flat"
) -> StoreFactory:
    from imagescope.store.embedded import EmbeddedStore

    def make(dim: int, **overrides: Any) -> VectorStore:
        folder = tmp_path / f"catalog-{len(made)}"
        options = {**EMBEDDED_TEST_SETTINGS, "index_storage": storage, **overrides}
        settings = EmbeddedStoreSettings(path=folder, **options)
        store = EmbeddedStore(settings)
        made.append(store)
        store.ensure(dim)
        return store

    return make


@pytest.fixture(autouse=True)
def one_faiss_thread() -> Iterator[None]:
    """faiss's OpenMP threads spin on busy shared CPUs; one thread keeps tests quick."""
    import faiss

    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(threads)


def _memory_factory(dim: int, **_overrides: Any) -> VectorStore:
    from imagescope.store.memory import MemoryStore

    store = MemoryStore()
    store.ensure(dim)
    return store


# Each backend's marker says what its tests need: ``-m unit`` selects the two
# in-process stores only and starts no service; OpenSearch is ``integration``.
@pytest.fixture(
    params=[
        pytest.param("memory", id="memory", marks=pytest.mark.unit),
        pytest.param("embedded", id="embedded", marks=pytest.mark.unit),
        # Compressed index vectors, re-scored exactly: the same contract.
        pytest.param("embedded-sq8", id="embedded-sq8", marks=pytest.mark.unit),
        pytest.param("opensearch", id="opensearch", marks=pytest.mark.integration),
    ]
)
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    if request.param == "memory":
        yield _memory_factory
        return
    if request.param.startswith("embedded"):
        made: list[VectorStore] = []
        storage = request.param.partition("-")[2] or "flat"
        yield _embedded_factory(tmp_path, made, storage=storage)
        for store in made:
            store.close()
        return
    try:
        factory = request.getfixturevalue("opensearch_store_factory")
    except pytest.FixtureLookupError:
        service_missing(
            "OpenSearch", "no opensearch_store_factory fixture (tests/fixtures/opensearch.py)"
        )
    yield factory
