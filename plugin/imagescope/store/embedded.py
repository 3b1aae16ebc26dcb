"""The embedded vector store: SQLite records plus faiss HNSW indexes, on local disk.

No server: one folder (``settings.path``) holds the catalog::

    catalog.sqlite3   records, vectors and metadata (WAL mode): the source of truth
    image.hnsw        HNSW graph over image vectors     (derived, rebuilt when needed)
    caption.hnsw      HNSW graph over caption vectors   (derived, rebuilt when needed)
    writer.lock       held by the one process that writes at a time

Durability: a write is a series of SQLite transactions (``write_batch_size``
records each, ``synchronous=FULL``). A process killed mid-write loses at most
the transaction in flight; the others are on disk. The HNSW files are saved
from time to time (every ``index_flush_every`` new vectors, and on ``close``),
atomically, with a header recording the slot counter they cover (see
``embedded_index``). Opening a catalog loads them and adds the vectors that
SQLite committed after them; a missing, corrupt, foreign or too-new file is
rebuilt from SQLite.

Concurrency: writers take ``writer.lock`` (filelock) for each write; readers
take no lock. Every call first checks SQLite's ``data_version`` and catches up
when another process has committed since, so several processes (an API server
and an ingest job) can share a catalog. Within a process, calls are serialised
by a lock, so one store object may be shared by threads.

Search: cosine similarity (vectors are normalised in the index; ``get``
returns them as written). Filters are turned into the set of slots a search
may return and applied inside the HNSW search; a filter that leaves at most
``exact_search_max`` vectors is searched exactly, and an HNSW search that finds
fewer than ``k`` allowed hits is redone exactly. A single query vector is
searched on one OpenMP thread, a batch on ``search_threads``.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import filelock
import numpy as np
from numpy.typing import NDArray

from imagescope.errors import (
    ConfigError,
    DimensionMismatchError,
    StoreUnavailableError,
)
from imagescope.schemas import Filters
from imagescope.settings import EmbeddedStoreSettings
from imagescope.store.base import (
    BulkReport,
    CaptionUpdate,
    CatalogRecord,
    Hit,
    VectorField,
    VectorStore,
    validate_filters,
)
from imagescope.store.embedded_index import HnswIndex, remove_temp_files
from imagescope.store.embedded_search import search_approximate, search_exact
from imagescope.store.embedded_sql import (
    CatalogDb,
    CatalogMeta,
    PreparedRecord,
    Vector,
    batched,
    prepare_captions,
    prepare_records,
    query_units,
)
from imagescope.store.embedded_sync import CatalogIndexes
from imagescope.store.embedded_table import VECTOR_FIELDS, RecordTable

log = logging.getLogger(__name__)

LOCK_NAME = "writer.lock"
#: An upsert adds its vectors to the HNSW graphs in batches of this many records
#: (one faiss add per batch: small adds cost graph-building time, see ``upsert``).
INDEX_ADD_BATCH = 100_000
Written = list[tuple[int, PreparedRecord, dict[VectorField, int | None]]]


class EmbeddedStore(VectorStore):
    """A ``VectorStore`` in a local folder (see the module docstring).

    Besides the interface: ``flush()`` saves the HNSW files now, ``close()``
    saves them and releases the database; the store is a context manager.
    Errors: ``StoreUnavailableError`` when the folder or database cannot be
    used or another writer holds the lock past ``lock_timeout_s``.
    """

    name = "embedded"

    def __init__(self, settings: EmbeddedStoreSettings) -> None:
        self.settings = settings
        self.path = Path(settings.path)
        self._mutex = threading.RLock()
        self._closed = False
        self._stale = True
        self._data_version = -1
        #: Committed upsert batches not yet mirrored in memory (see ``upsert``).
        self._pending: list[tuple[Written, range]] = []
        self._table = RecordTable()
        self._indexes = CatalogIndexes(
            self.path,
            m=settings.hnsw_m,
            ef_construction=settings.ef_construction,
            flush_every=settings.index_flush_every,
            storage=settings.index_storage,
            rescore_factor=settings.rescore_factor,
            full_vectors=lambda field: partial(self._db.unit_vectors, field),
        )
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreUnavailableError(
                f"cannot create the catalog folder {self.path}: {exc}"
            ) from exc
        self._lock = filelock.FileLock(
            self.path / LOCK_NAME, timeout=settings.lock_timeout_s, thread_local=False
        )
        self._db = CatalogDb.open(self.path, busy_timeout_s=settings.lock_timeout_s)
        with self._reading():
            self._save_rebuilt_indexes()

    # ----------------------------------------------------------------- lifecycle

    def close(self) -> None:
        """Save unsaved index changes (when the writer lock is free) and close."""
        with self._mutex:
            if self._closed:
                return
            try:
                if self._indexes.has_unsaved():
                    with self._lock.acquire(timeout=min(self.settings.lock_timeout_s, 5.0)):
                        self._indexes.save(force=True)
            except (filelock.Timeout, OSError) as exc:
                log.warning(
                    "index files of %s not saved (%s); next open catches up", self.path, exc
                )
            finally:
                self._closed = True
                self._db.close()

    def flush(self) -> None:
        """Save every index with unsaved vectors now."""
        with self._writing():
            try:
                self._indexes.save(force=True)
            except OSError as exc:
                raise StoreUnavailableError(
                    f"cannot save the indexes of {self.path}: {exc}"
                ) from exc

    # ----------------------------------------------------------------- interface

    def ensure(self, dim: int) -> None:
        """Create the catalog for ``dim``-d vectors, or check it has that dimension."""
        if dim < 1:
            raise ConfigError(f"vector dimension must be positive, got {dim}")
        with self._reading():
            if self.dim is None:
                with self._writing():
                    if self.dim is None:
                        with self._db.transaction():
                            self._db.create_catalog(dim=dim, catalog=uuid.uuid4().hex)
                        self._stale = True
                        self._refresh()
            if self.dim != dim:
                raise DimensionMismatchError(
                    index=str(self.path), index_dim=self.dim or 0, embedder_dim=dim
                )

    def upsert(self, records: Iterable[CatalogRecord]) -> BulkReport:
        """Insert or replace records by id, ``write_batch_size`` per transaction.

        Each transaction is durable when it commits; the in-memory table and
        the HNSW graphs take the committed records up to ``INDEX_ADD_BATCH`` at
        a time, and all of them before ``upsert`` returns (searches in the
        meantime see the catalog as it was before the not-yet-added batches;
        ``get`` sees every committed record). One large faiss add builds the
        graph faster than many small ones.
        """
        dim = self._require_dim()
        report = BulkReport()
        try:
            for chunk in batched(records, self.settings.write_batch_size):
                prepared, failed = prepare_records(chunk, dim)
                report.failed.update(failed)
                if prepared:
                    self._write_records(prepared)
                    report.succeeded.extend(record.id for record in prepared)
        finally:
            if self._pending:
                with self._writing():
                    self._apply(lambda: None)  # mirrors whatever is still pending
        return report

    def update_captions(self, updates: Iterable[CaptionUpdate]) -> BulkReport:
        """Set captions and caption vectors of existing records; unknown ids fail."""
        dim = self._require_dim()
        report = BulkReport()
        for chunk in batched(updates, self.settings.write_batch_size):
            prepared, failed = prepare_captions(chunk, dim)
            report.failed.update(failed)
            if prepared:
                report.merge(self._write_captions(prepared))
        return report

    def delete(self, ids: Sequence[str]) -> int:
        """Delete records by id; returns how many existed."""
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            return 0
        with self._writing():
            with self._db.transaction():
                deleted = self._db.delete(wanted)
            self._apply(lambda: self._table.remove(wanted))
            return deleted

    def get(self, ids: Sequence[str], *, with_vectors: bool = False) -> list[CatalogRecord]:
        with self._reading():
            found = self._db.fetch_records(list(dict.fromkeys(ids)), with_vectors=with_vectors)
        return [found[i] for i in ids if i in found]

    def knn(
        self,
        field: VectorField,
        vectors: NDArray[np.float32],
        *,
        k: int,
        filters: Filters | None = None,
    ) -> list[list[Hit]]:
        """Per query, the ``k`` allowed vectors of ``field`` most similar to it
        (``field`` and ``k`` are checked by ``VectorStore``)."""
        with self._reading():
            if self.dim is None:
                validate_filters(filters, set())
                return [[] for _ in np.atleast_2d(np.asarray(vectors))]
            units = query_units(vectors, self.dim)
            if filters:
                validate_filters(filters, self._table.fields())
            allowed = self._table.selection(field, filters)
            if len(allowed) == 0 or len(units) == 0:
                return [[] for _ in units]
            index, ids_of = self._indexes[field], partial(self._table.ids_of_slots, field)
            if len(allowed) <= max(self.settings.exact_search_max, k):
                return search_exact(index, units, k=k, allowed=allowed, ids_of=ids_of)
            return search_approximate(
                index,
                units,
                k=k,
                allowed=allowed,
                ef_search=self.settings.ef_search,
                ids_of=ids_of,
                threads=1 if len(units) == 1 else self.settings.search_threads,
            )

    def index(self, field: VectorField) -> HnswIndex:
        """The HNSW index of one vector field, caught up (diagnostics, benchmarks)."""
        with self._reading():
            return self._indexes[field]

    def count(self) -> int:
        with self._reading():
            return len(self._table)

    def metadata_fields(self) -> set[str]:
        """The metadata field names filters may use."""
        with self._reading():
            return self._table.fields()

    # ----------------------------------------------------------------- writes

    def _write_records(self, records: list[PreparedRecord]) -> None:
        """Commit ``records``; queue their in-memory mirror (applied in batches)."""
        with self._writing():
            with self._db.transaction():
                written, new_slots = self._db.write_records(records)
            self._pending.append((written, new_slots))
            if sum(len(w) for w, _ in self._pending) >= INDEX_ADD_BATCH:
                self._apply(lambda: None)

    def _mirror_pending(self) -> None:
        """Put the pending committed records in the table and their new vectors in
        the indexes (one add per field). Runs under the mutex, in commit order."""
        pending, self._pending = self._pending, []
        if not pending:
            return
        for written, _ in pending:
            for row, record, slots in written:
                self._table.put(row, record.id, metadata=record.metadata, slots=slots)
        for field in VECTOR_FIELDS:
            fresh = [
                (slot, vector.unit)
                for written, new_slots in pending
                for _, record, slots in written
                if (slot := slots[field]) is not None
                and slot in new_slots
                and (vector := record.vectors[field]) is not None
            ]
            self._indexes.add(field, fresh, next_slot=pending[-1][1].stop)

    def _write_captions(self, updates: dict[str, tuple[str, Vector]]) -> BulkReport:
        with self._writing():
            with self._db.transaction():
                slots, new_slots = self._db.write_captions(updates)

            def apply() -> None:
                for record_id, slot in slots.items():
                    self._table.set_slot(record_id, "caption", slot=slot)
                fresh = [(s, updates[i][1].unit) for i, s in slots.items() if s in new_slots]
                self._indexes.add("caption", fresh, next_slot=new_slots.stop)

            self._apply(apply)
        unknown = [i for i in updates if i not in slots]
        return BulkReport(
            succeeded=list(slots),
            failed={i: f"unknown catalog id {i!r}; ingest the image first" for i in unknown},
        )

    def _apply(self, change: Any) -> None:
        """Mirror a committed write in memory (after the pending upserts committed
        before it), then compact and save indexes as due.

        On failure the in-memory state is dropped and reloaded by the next call.
        """
        try:
            self._mirror_pending()
            change()
            self._compact_sparse_indexes()
        except BaseException:
            self._stale = True
            self._indexes.forget()
            raise
        self._save_quietly()

    # ----------------------------------------------------------------- state

    def _require_dim(self) -> int:
        with self._reading():
            if self.dim is None:
                raise ConfigError(
                    f"the catalog at {self.path} has no vector dimension yet; "
                    "call ensure(dim) first"
                )
            return self.dim

    @contextmanager
    def _reading(self) -> Iterator[None]:
        with self._mutex:
            if self._closed:
                raise StoreUnavailableError(f"the store at {self.path} is closed")
            with self._db.errors_translated():
                self._refresh()
                yield

    @contextmanager
    def _writing(self) -> Iterator[None]:
        with self._mutex:
            try:
                self._lock.acquire()
            except filelock.Timeout as exc:
                raise StoreUnavailableError(
                    f"another process is writing to the catalog at {self.path} (lock "
                    f"{self._lock.lock_file} held for over {self.settings.lock_timeout_s}s); "
                    "wait for it to finish or raise store.embedded.lock_timeout_s"
                ) from exc
            try:
                if self._lock.lock_counter == 1:
                    remove_temp_files(self.path)
                with self._reading():
                    yield
            finally:
                self._lock.release()

    def _refresh(self) -> None:
        """Catch up with commits made by other connections (or reload after a failure)."""
        version = self._db.data_version()
        if not self._stale and version == self._data_version:
            return
        try:
            with self._db.snapshot():
                catalog = self._db.catalog_meta()
                table = self._db.load_table() if catalog else RecordTable()
                if catalog is not None:
                    self._catch_up_indexes(catalog, table)
        except BaseException:
            self._stale = True
            self._indexes.forget()
            raise
        self._pending = []  # the reload read every committed record
        self.dim = catalog.dim if catalog else None
        self._table = table
        self._data_version, self._stale = version, False

    def _catch_up_indexes(self, catalog: CatalogMeta, table: RecordTable) -> None:
        """Runs inside a snapshot, so the catalog facts and vectors agree."""
        self._indexes.catch_up(
            catalog.catalog,
            dim=catalog.dim,
            next_slot=catalog.next_slot,
            live={field: len(table.live_slots(field)) for field in VECTOR_FIELDS},
            vectors_since=lambda field, slot: self._db.iter_vectors(field, since=slot),
        )

    def _compact_sparse_indexes(self) -> None:
        """Rebuild indexes whose dead vectors (replaced, deleted) outnumber the live ones."""
        live = {field: len(self._table.live_slots(field)) for field in VECTOR_FIELDS}
        if self._indexes.sparse_fields(live):
            with self._db.snapshot():
                catalog = self._db.catalog_meta()
                if catalog is not None:
                    self._catch_up_indexes(catalog, self._table)

    def _save_rebuilt_indexes(self) -> None:
        """After opening, save indexes that needed much rebuilding, if no one is writing."""
        try:
            with self._lock.acquire(timeout=0):
                self._save_quietly()
        except filelock.Timeout:
            log.debug("writer lock busy; %s indexes saved later", self.path)

    def _save_quietly(self) -> None:
        """Save due indexes; a failure only costs a catch-up at the next open."""
        try:
            self._indexes.save(force=False)
        except OSError as exc:
            log.warning("index files of %s not saved (%s); next open catches up", self.path, exc)
