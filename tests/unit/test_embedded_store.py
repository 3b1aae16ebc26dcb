"""Embedded-store behaviour beyond the shared contract: files, crashes, locks."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pytest

from imagescope.errors import ConfigError, InvalidVectorError, StoreUnavailableError
from imagescope.settings import EmbeddedStoreSettings
from imagescope.store.base import CatalogRecord, matches_filters, validate_filters
from imagescope.store.embedded import EmbeddedStore
from imagescope.store.embedded_index import read_header
from imagescope.store.embedded_table import RecordTable

pytestmark = pytest.mark.unit

DIM = 24
INDEX_LOG = "imagescope.store"


def vector_of(i: int, dim: int = DIM, *, version: int = 0) -> np.ndarray:
    """A deterministic unit vector per record (and version), reproducible in a child."""
    rng = np.random.default_rng([i, version])
    v = rng.standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


def records(start: int, stop: int, *, version: int = 0) -> list[CatalogRecord]:
    return [
        CatalogRecord(
            id=f"rec-{i:06d}",
            image_vector=vector_of(i, version=version),
            metadata={"part": i % 7, "even": i % 2 == 0},
        )
        for i in range(start, stop)
    ]


#: A lighter HNSW graph than the defaults keeps these tests fast on small catalogs.
LIGHT: dict[str, Any] = {"hnsw_m": 16, "ef_construction": 64, "lock_timeout_s": 5.0}


def open_store(path: Path, **overrides: Any) -> EmbeddedStore:
    settings = EmbeddedStoreSettings(path=path, **{**LIGHT, **overrides})
    store = EmbeddedStore(settings)
    store.ensure(DIM)
    return store


def assert_finds_itself(store: EmbeddedStore, indices: Iterable[int]) -> None:
    wanted = list(indices)
    queries = np.stack([vector_of(i) for i in wanted])
    for i, hits in zip(wanted, store.knn("image", queries, k=1), strict=True):
        assert hits[0].id == f"rec-{i:06d}"


@pytest.fixture
def catalog_path(tmp_path: Path) -> Path:
    return tmp_path / "catalog"


@pytest.fixture(autouse=True)
def one_faiss_thread() -> Iterator[None]:
    """faiss's OpenMP threads spin on busy shared CPUs; one thread keeps tests quick."""
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(threads)


# --------------------------------------------------------------------------- persistence


def test_a_reopened_catalog_loads_its_saved_index(
    catalog_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = open_store(catalog_path, exact_search_max=0)
    store.upsert(records(0, 600))
    queries = np.stack([vector_of(i, version=9) for i in range(5)])
    before = store.knn("image", queries, k=10, filters={"part": [1, 2]})
    store.close()

    with caplog.at_level(logging.INFO, logger=INDEX_LOG):
        reopened = open_store(catalog_path, exact_search_max=0)

    assert not [r for r in caplog.records if "building" in r.getMessage()]
    assert reopened.dim == DIM and reopened.count() == 600
    assert reopened.metadata_fields() == {"part", "even"}
    assert reopened.knn("image", queries, k=10, filters={"part": [1, 2]}) == before
    (record,) = reopened.get(["rec-000042"], with_vectors=True)
    np.testing.assert_array_equal(record.image_vector, vector_of(42))
    reopened.close()


def test_a_deleted_index_file_is_rebuilt_from_sqlite(
    catalog_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with open_store(catalog_path) as store:
        store.upsert(records(0, 400))
    (catalog_path / "image.hnsw").unlink()

    with caplog.at_level(logging.INFO, logger=INDEX_LOG):
        store = open_store(catalog_path, exact_search_max=0)

    assert any("building" in r.getMessage() for r in caplog.records)
    assert_finds_itself(store, range(0, 400, 13))
    store.close()
    header = read_header(catalog_path / "image.hnsw")
    assert header is not None and header.ntotal == 400


def test_a_stale_index_file_is_caught_up(
    catalog_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with open_store(catalog_path) as store:
        store.upsert(records(0, 300))
    shutil.copy(catalog_path / "image.hnsw", catalog_path.parent / "old.hnsw")
    with open_store(catalog_path) as store:
        store.upsert(records(300, 500))
        store.delete(["rec-000001"])
    shutil.copy(catalog_path.parent / "old.hnsw", catalog_path / "image.hnsw")

    with caplog.at_level(logging.INFO, logger=INDEX_LOG):
        store = open_store(catalog_path, exact_search_max=0)

    assert not [r for r in caplog.records if "building" in r.getMessage()]
    assert_finds_itself(store, [0, 150, 299, 300, 420, 499])
    (hits,) = store.knn("image", vector_of(1)[None], k=5)
    assert "rec-000001" not in {h.id for h in hits}
    store.close()


@pytest.mark.parametrize("damage", ["truncated", "garbage", "other_catalog", "ahead"])
def test_an_unusable_index_file_is_rebuilt(
    catalog_path: Path, tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    with open_store(catalog_path) as store:
        store.upsert(records(0, 300))
    image_file = catalog_path / "image.hnsw"
    if damage == "truncated":
        image_file.write_bytes(image_file.read_bytes()[: image_file.stat().st_size // 2])
    elif damage == "garbage":
        image_file.write_bytes(os.urandom(4096))
    elif damage == "other_catalog":
        with open_store(tmp_path / "other") as other:
            other.upsert(records(0, 300, version=1))
        shutil.copy(tmp_path / "other" / "image.hnsw", image_file)
    else:  # an index newer than the database it sits beside
        shutil.copytree(catalog_path, tmp_path / "later")
        with open_store(tmp_path / "later") as later:
            later.upsert(records(300, 400))
        shutil.copy(tmp_path / "later" / "image.hnsw", image_file)

    with caplog.at_level(logging.INFO, logger=INDEX_LOG):
        store = open_store(catalog_path, exact_search_max=0)

    assert any("building" in r.getMessage() for r in caplog.records)
    assert store.count() == 300
    assert_finds_itself(store, range(0, 300, 7))
    store.close()


def test_rewriting_unchanged_records_does_not_grow_the_index(catalog_path: Path) -> None:
    with open_store(catalog_path) as store:
        store.upsert(records(0, 500))
        store.upsert(records(0, 500))
        store.upsert(records(0, 100, version=1))  # 100 changed vectors

    header = read_header(catalog_path / "image.hnsw")
    assert header is not None and header.ntotal == 600


def test_an_index_of_mostly_replaced_vectors_is_compacted(catalog_path: Path) -> None:
    with open_store(catalog_path, exact_search_max=0) as store:
        for version in (0, 1, 2):  # 1200 replaced vectors: more than the 600 live ones
            store.upsert(records(0, 600, version=version))
        assert store.count() == 600
        (hits,) = store.knn("image", vector_of(5, version=2)[None], k=1)
        assert hits[0].id == "rec-000005" and hits[0].score == pytest.approx(1.0, abs=1e-5)

    header = read_header(catalog_path / "image.hnsw")
    assert header is not None and header.ntotal < 3 * 600


# --------------------------------------------------------------------------- search paths


@pytest.mark.parametrize("exact_search_max", [0, 10_000])
def test_filtered_search_is_exact_for_selective_filters(
    catalog_path: Path, exact_search_max: int
) -> None:
    store = open_store(catalog_path, exact_search_max=exact_search_max)
    batch = records(0, 2000)
    for i in range(0, 2000, 160):
        batch[i].metadata["tag"] = "rare"  # 13 records
    store.upsert(batch)
    query = vector_of(0, version=5)

    (hits,) = store.knn("image", query[None], k=10, filters={"tag": "rare"})

    rare = [r for r in batch if r.metadata.get("tag") == "rare"]
    expected = sorted(rare, key=lambda r: (-float(query @ r.image_vector), r.id))[:10]
    assert [h.id for h in hits] == [r.id for r in expected]
    store.close()


def _reference(metadata: dict[str, Any], filters: dict[str, Any]) -> bool:
    """``matches_filters``, where a list value (not a number) never satisfies a range."""
    try:
        return matches_filters(metadata, filters)
    except TypeError:
        return False


def test_repeated_searches_see_every_write(catalog_path: Path) -> None:
    store = open_store(catalog_path)
    store.upsert(records(0, 100))
    query = vector_of(500)[None]
    first = store.knn("image", query, k=3, filters={"part": 3})
    assert "rec-000500" not in {h.id for h in first[0]}

    store.upsert(records(500, 501))  # part 500 % 7 == 3
    assert store.knn("image", query, k=3, filters={"part": 3})[0][0].id == "rec-000500"
    store.delete(["rec-000500"])
    assert store.knn("image", query, k=3, filters={"part": 3}) == first
    store.close()


def test_filter_masks_agree_with_the_reference_semantics() -> None:
    rng = np.random.default_rng(0)
    values: list[Any] = [0, 1, 2, 1.0, 2.5, True, False, "1", "red", "blue", None, [1, 2], -3]
    table = RecordTable()
    metadata = {}
    for row in range(1, 400):
        meta = {f: values[rng.integers(len(values))] for f in ("a", "b") if rng.random() < 0.8}
        metadata[f"id{row}"] = meta
        table.put(row, f"id{row}", metadata=meta, slots={"image": row, "caption": None})
    table.remove([f"id{row}" for row in range(1, 400, 9)])
    live = {i: m for i, m in metadata.items() if int(i[2:]) % 9 != 1}
    conditions: list[Any] = [
        1,
        True,
        "red",
        2.5,
        [1, "blue"],
        [False, None],
        {"gte": 1},
        {"gt": 0, "lt": 2.5},
        {"lte": -3},
        [[1, 2]],
        [1, 2],
    ]
    for condition in conditions:
        for filters in ({"a": condition}, {"a": condition, "b": {"gte": 0}}):
            validate_filters(filters, table.fields())
            slots = table.allowed_slots("image", filters)
            got = set(table.ids_of_slots("image", slots))
            assert got == {i for i, m in live.items() if _reference(m, filters)}, filters


# --------------------------------------------------------------------------- processes

_INGEST_CHILD = textwrap.dedent(
    """
    import sys
    import numpy as np
    from imagescope.settings import EmbeddedStoreSettings
    from imagescope.store.base import CatalogRecord
    from imagescope.store.embedded import EmbeddedStore

    path, n, dim, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])

    def vector(i):
        v = np.random.default_rng([i, 0]).standard_normal(dim).astype(np.float32)
        return v / np.linalg.norm(v)

    def stream():
        for i in range(n):
            if i % batch == 0:  # the store asks for a batch once the last one committed
                sys.stdout.write(f"{i}\\n")
                sys.stdout.flush()
            yield CatalogRecord(id=f"rec-{i:06d}", image_vector=vector(i),
                                metadata={"part": i % 7, "even": i % 2 == 0})

    settings = EmbeddedStoreSettings(path=path, write_batch_size=batch, index_flush_every=1000,
                                     hnsw_m=16, ef_construction=64)
    store = EmbeddedStore(settings)
    store.ensure(dim)
    store.upsert(stream())
    store.close()
    sys.stdout.write("done\\n")
    """
)


def _ingest_until_killed(path: Path, *, n: int, batch: int, kill_after: int) -> int:
    """Run an ingest in a child; SIGKILL it once ``kill_after`` records committed."""
    child = subprocess.Popen(
        [sys.executable, "-c", _INGEST_CHILD, str(path), str(n), str(DIM), str(batch)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    committed = 0
    try:
        assert child.stdout is not None
        for line in child.stdout:
            assert line.strip() != "done", "the ingest finished before it could be killed"
            committed = int(line)
            if committed >= kill_after:
                os.kill(child.pid, signal.SIGKILL)
                break
    finally:
        child.kill()
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    return committed


def _assert_consistent_prefix(store: EmbeddedStore, *, n: int, batch: int, at_least: int) -> int:
    count = store.count()
    assert at_least <= count <= n and count % batch == 0
    present = store.get([f"rec-{i:06d}" for i in range(n)], with_vectors=True)
    assert [r.id for r in present] == [f"rec-{i:06d}" for i in range(count)]
    for record in present[:: max(1, count // 50)]:
        np.testing.assert_array_equal(record.image_vector, vector_of(int(record.id[4:])))
    assert_finds_itself(store, range(0, count, max(1, count // 40)))
    (even,) = store.knn("image", vector_of(1)[None], k=20, filters={"even": True})
    assert len(even) == 20 and all(int(h.id[4:]) % 2 == 0 for h in even)
    return count


@pytest.mark.slow
def test_sigkill_mid_ingest_never_corrupts_the_catalog(catalog_path: Path) -> None:
    n, batch = 6000, 100
    first = _ingest_until_killed(catalog_path, n=n, batch=batch, kill_after=1500)
    with open_store(catalog_path, exact_search_max=0) as store:
        count = _assert_consistent_prefix(store, n=n, batch=batch, at_least=first)

    second = _ingest_until_killed(catalog_path, n=n, batch=batch, kill_after=count + 2000)
    with open_store(catalog_path, exact_search_max=0) as store:
        _assert_consistent_prefix(store, n=n, batch=batch, at_least=second)
        report = store.upsert(records(0, n))  # re-running the ingest completes it
        assert report.failed == {} and store.count() == n
        assert_finds_itself(store, range(0, n, 97))

    header = read_header(catalog_path / "image.hnsw")
    assert header is not None and header.ntotal == n


_LOCK_HOLDER = textwrap.dedent(
    """
    import sys, time
    import filelock
    lock = filelock.FileLock(sys.argv[1])
    lock.acquire()
    sys.stdout.write("locked\\n")
    sys.stdout.flush()
    time.sleep(60)
    """
)


def test_a_second_writer_waits_for_the_lock_but_readers_do_not(catalog_path: Path) -> None:
    store = open_store(catalog_path, lock_timeout_s=0.3)
    store.upsert(records(0, 50))
    holder = subprocess.Popen(
        [sys.executable, "-c", _LOCK_HOLDER, str(catalog_path / "writer.lock")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"

        with pytest.raises(StoreUnavailableError, match="another process is writing"):
            store.upsert(records(50, 60))
        with pytest.raises(StoreUnavailableError, match="another process is writing"):
            store.delete(["rec-000001"])
        assert store.count() == 50
        assert_finds_itself(store, [3, 30])
    finally:
        holder.kill()
        holder.wait(timeout=30)

    assert store.upsert(records(50, 60)).failed == {}
    assert store.count() == 60
    store.close()


def test_a_store_sees_what_another_process_committed(catalog_path: Path) -> None:
    reader = open_store(catalog_path, exact_search_max=0)
    writer = open_store(catalog_path)
    assert reader.count() == 0

    writer.upsert(records(0, 300))
    assert reader.count() == 300
    assert_finds_itself(reader, [0, 299])
    writer.delete(["rec-000000"])
    (hits,) = reader.knn("image", vector_of(0)[None], k=3)
    assert "rec-000000" not in {h.id for h in hits}
    writer.upsert(records(0, 1, version=3))
    (hits,) = reader.knn("image", vector_of(0, version=3)[None], k=1)
    assert hits[0].id == "rec-000000"
    writer.close()
    reader.close()


def test_a_reader_far_behind_loads_the_writers_saved_index(
    catalog_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    reader = open_store(catalog_path, exact_search_max=0)
    with open_store(catalog_path) as writer:
        writer.upsert(records(0, 2500))
    header = read_header(catalog_path / "image.hnsw")
    assert header is not None and header.ntotal == 2500

    with caplog.at_level(logging.DEBUG, logger=INDEX_LOG):
        assert reader.count() == 2500

    assert any(
        "loaded" in r.getMessage() and "image.hnsw" in r.getMessage() for r in caplog.records
    )
    assert_finds_itself(reader, range(0, 2500, 101))
    reader.close()


# --------------------------------------------------------------------------- misuse


def test_writing_before_ensure_says_what_to_do(catalog_path: Path) -> None:
    store = EmbeddedStore(EmbeddedStoreSettings(path=catalog_path))
    assert store.dim is None and store.count() == 0
    assert store.knn("image", np.ones((2, DIM), dtype=np.float32), k=3) == [[], []]

    with pytest.raises(ConfigError, match="ensure"):
        store.upsert(records(0, 1))
    store.close()


def test_a_closed_store_refuses_calls(catalog_path: Path) -> None:
    store = open_store(catalog_path)
    store.close()
    store.close()  # closing twice is harmless

    with pytest.raises(StoreUnavailableError, match="closed"):
        store.count()


def test_an_unreadable_database_is_a_store_error(catalog_path: Path) -> None:
    catalog_path.mkdir()
    (catalog_path / "catalog.sqlite3").write_bytes(b"not a database" * 1000)

    with pytest.raises(StoreUnavailableError, match=r"catalog\.sqlite3"):
        EmbeddedStore(EmbeddedStoreSettings(path=catalog_path))


def test_zero_vectors_and_non_json_metadata_fail_their_record(catalog_path: Path) -> None:
    store = open_store(catalog_path)
    bad = [
        CatalogRecord(id="zero", image_vector=np.zeros(DIM, dtype=np.float32)),
        CatalogRecord(id="meta", image_vector=vector_of(1), metadata={"when": object()}),
    ]

    report = store.upsert(records(0, 3) + bad)

    assert set(report.failed) == {"zero", "meta"}
    assert "zero length" in report.failed["zero"] and "JSON" in report.failed["meta"]
    assert store.count() == 3
    with pytest.raises(InvalidVectorError, match="zero length"):
        store.knn("image", np.zeros((1, DIM), dtype=np.float32), k=2)
    assert store.knn("image", np.zeros((0, DIM), dtype=np.float32), k=2) == []
    store.close()
