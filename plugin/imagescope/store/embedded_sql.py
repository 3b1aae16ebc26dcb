"""SQLite side of the embedded store: the catalog's source of truth.

One table of records (id, caption, uri, metadata as JSON, the two vectors as
float32 blobs and their *slots*) and one key/value table of catalog facts (the
catalog's random id, the vector dimension and the slot counter). Slots number
vector versions: a new or changed vector gets the next slot, an unchanged one
keeps its slot, so re-running an ingest does not grow the ANN index.

The database runs in WAL mode with ``synchronous=FULL``: a committed
transaction survives a killed process (and a power cut), so the ANN index,
which is only ever built from committed rows, can never be ahead of it.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray

from imagescope.errors import InputError, InvalidVectorError, StoreUnavailableError
from imagescope.store.base import CaptionUpdate, CatalogRecord, VectorField
from imagescope.store.embedded_table import VECTOR_FIELDS, RecordTable

T = TypeVar("T")

DB_NAME = "catalog.sqlite3"
SCHEMA_VERSION = 1
#: Ids per ``IN (...)`` clause, well under SQLite's variable limit.
_IN_CHUNK = 500

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    row INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    caption TEXT NOT NULL,
    uri TEXT NOT NULL,
    metadata TEXT NOT NULL,
    image_vector BLOB,
    caption_vector BLOB,
    image_slot INTEGER UNIQUE,
    caption_slot INTEGER UNIQUE
);
"""

_UPSERT = """
INSERT INTO records (id, caption, uri, metadata, image_vector, caption_vector,
                     image_slot, caption_slot)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT(id) DO UPDATE SET
    caption = excluded.caption, uri = excluded.uri, metadata = excluded.metadata,
    image_vector = excluded.image_vector, caption_vector = excluded.caption_vector,
    image_slot = excluded.image_slot, caption_slot = excluded.caption_slot
RETURNING row
"""


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of ``size`` items (the last may be shorter)."""
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


@dataclass(frozen=True)
class Vector:
    """A validated vector: as written (float32 bytes) and L2-normalised."""

    raw: bytes
    unit: NDArray[np.float32]


def prepare_vector(vector: Any, dim: int) -> Vector:
    """Check dimension and finiteness, refuse zero vectors (no cosine for them).

    As ``check_vector`` plus a norm, in fewer array operations (this runs once
    per record of a bulk ingest): the float64 sum of squares is finite exactly
    when every value is (float32 squares cannot overflow it).
    """
    arr = np.asarray(vector, dtype=np.float32)
    if arr.ndim != 1 or arr.shape[0] != dim:
        raise InvalidVectorError(f"expected a {dim}-d vector, got shape {tuple(arr.shape)}")
    wide = arr.astype(np.float64)
    squares = float(wide @ wide)
    if not math.isfinite(squares):
        raise InvalidVectorError("vector contains NaN or inf values")
    if squares == 0.0:
        raise InvalidVectorError("vector has zero length; cosine similarity needs a non-zero one")
    wide /= math.sqrt(squares)  # as np.linalg.norm does for one vector
    return Vector(arr.tobytes(), wide.astype(np.float32))


def unit_rows(matrix: NDArray[np.float32]) -> NDArray[np.float32]:
    """Rows scaled to unit length (rows already checked finite); zero rows are refused."""
    norms = np.linalg.norm(matrix.astype(np.float64), axis=1, keepdims=True)
    if np.any(norms == 0.0):
        raise InvalidVectorError(
            "query vector has zero length; cosine similarity needs a non-zero one"
        )
    units: NDArray[np.float32] = (matrix / norms).astype(np.float32)
    return units


def query_units(vectors: Any, dim: int) -> NDArray[np.float32]:
    """Query vectors checked (shape, finite, non-zero) and scaled to unit length in
    one pass: ``unit_rows(check_query_vectors(vectors, dim))`` with fewer array ops."""
    arr = np.asarray(vectors, dtype=np.float32)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != dim:
        raise InvalidVectorError(f"expected query vectors of shape (n, {dim}), got {arr.shape}")
    wide = arr.astype(np.float64)
    norms = np.sqrt(np.einsum("ij,ij->i", wide, wide))
    if not np.isfinite(norms).all():  # a NaN or inf anywhere makes the norm NaN or inf
        raise InvalidVectorError("query vector contains NaN or inf values")
    if not norms.all():
        raise InvalidVectorError(
            "query vector has zero length; cosine similarity needs a non-zero one"
        )
    units: NDArray[np.float32] = (wide / norms[:, None]).astype(np.float32)
    return units


@dataclass(frozen=True)
class PreparedRecord:
    """A catalog record checked and encoded for writing."""

    id: str
    caption: str
    uri: str
    metadata: dict[str, Any]
    metadata_json: str
    vectors: dict[str, Vector | None]

    @classmethod
    def of(cls, record: CatalogRecord, dim: int) -> PreparedRecord:
        """Validate one record; raises ``InputError`` saying what to fix."""
        if not isinstance(record.id, str) or not record.id:
            raise InputError("record id must be a non-empty string")
        if not isinstance(record.caption, str) or not isinstance(record.uri, str):
            raise InputError("caption and uri must be strings")
        if not isinstance(record.metadata, dict) or not all(
            isinstance(k, str) for k in record.metadata
        ):
            raise InputError("metadata must be a dict with string keys")
        try:
            metadata_json = json.dumps(record.metadata)
        except (TypeError, ValueError) as exc:
            raise InputError(f"metadata must be JSON-serialisable: {exc}") from exc
        vectors = {
            "image": None
            if record.image_vector is None
            else _field_vector("image", record.image_vector, dim=dim),
            "caption": None
            if record.caption_vector is None
            else _field_vector("caption", record.caption_vector, dim=dim),
        }
        return cls(
            record.id, record.caption, record.uri, dict(record.metadata), metadata_json, vectors
        )


def prepare_records(
    chunk: Iterable[CatalogRecord], dim: int
) -> tuple[list[PreparedRecord], dict[str, str]]:
    """Valid records (the last one per id wins), and id -> reason for the others."""
    prepared: dict[str, PreparedRecord] = {}
    failed: dict[str, str] = {}
    for record in chunk:
        try:
            prepared[record.id] = PreparedRecord.of(record, dim)
            failed.pop(record.id, None)
        except InputError as exc:
            prepared.pop(record.id, None)
            failed[str(record.id)] = str(exc)
    return list(prepared.values()), failed


def prepare_captions(
    chunk: Iterable[CaptionUpdate], dim: int
) -> tuple[dict[str, tuple[str, Vector]], dict[str, str]]:
    """Valid updates by id (caption, vector), and id -> reason for the others."""
    prepared: dict[str, tuple[str, Vector]] = {}
    failed: dict[str, str] = {}
    for update in chunk:
        try:
            if not isinstance(update.caption, str):
                raise InputError("caption must be a string")
            vector = _field_vector("caption", update.caption_vector, dim=dim)
            prepared[update.id] = (update.caption, vector)
            failed.pop(update.id, None)
        except InputError as exc:
            prepared.pop(update.id, None)
            failed[update.id] = str(exc)
    return prepared, failed


def _field_vector(field: str, vector: Any, *, dim: int) -> Vector:
    try:
        return prepare_vector(vector, dim)
    except InvalidVectorError as exc:
        raise InvalidVectorError(f"{field}_vector: {exc}") from exc


@dataclass(frozen=True)
class CatalogMeta:
    catalog: str
    dim: int
    next_slot: int


class CatalogDb:
    """The SQLite connection of one store object (serialised by the store's lock)."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path

    @classmethod
    def open(cls, folder: Path, *, busy_timeout_s: float) -> CatalogDb:
        path = folder / DB_NAME
        try:
            conn = sqlite3.connect(
                path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
            )
            # Rows hold vectors of a few KB: large pages pack them without waste
            # (only takes effect when the file is created).
            conn.execute("PRAGMA page_size=32768")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            exists = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'records'"
            ).fetchone()
            if not exists:
                conn.executescript(f"BEGIN IMMEDIATE;{_SCHEMA}COMMIT;")
        except sqlite3.Error as exc:
            raise StoreUnavailableError(f"cannot open the catalog database {path}: {exc}") from exc
        return cls(conn, path)

    def close(self) -> None:
        self._conn.close()

    @contextmanager
    def errors_translated(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise StoreUnavailableError(f"catalog database {self.path} failed: {exc}") from exc

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """A write transaction (taken at once, so writers queue up front)."""
        with self._txn("BEGIN IMMEDIATE"):
            yield

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """A read transaction: every read inside sees the same committed state."""
        with self._txn("BEGIN"):
            yield

    @contextmanager
    def _txn(self, begin: str) -> Iterator[None]:
        self._conn.execute(begin)
        try:
            yield
        except BaseException:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def data_version(self) -> int:
        """Changes whenever another connection commits."""
        return int(self._conn.execute("PRAGMA data_version").fetchone()[0])

    # ------------------------------------------------------------------ catalog facts

    def catalog_meta(self) -> CatalogMeta | None:
        meta = dict(self._conn.execute("SELECT key, value FROM meta").fetchall())
        if "dim" not in meta:
            return None
        return CatalogMeta(meta["catalog"], int(meta["dim"]), int(meta["next_slot"]))

    def create_catalog(self, *, dim: int, catalog: str) -> None:
        """Record the dimension (inside a transaction); no-op when one is set."""
        facts = {"schema": SCHEMA_VERSION, "catalog": catalog, "dim": dim, "next_slot": 0}
        self._conn.executemany(
            "INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)",
            [(k, str(v)) for k, v in facts.items()],
        )

    def _set_next_slot(self, next_slot: int) -> None:
        self._conn.execute("UPDATE meta SET value = ? WHERE key = 'next_slot'", (str(next_slot),))

    # ------------------------------------------------------------------ reads

    def load_table(self) -> RecordTable:
        table = RecordTable()
        rows = self._conn.execute("SELECT row, id, metadata, image_slot, caption_slot FROM records")
        for row, record_id, metadata, image_slot, caption_slot in rows:
            slots: dict[VectorField, int | None] = {"image": image_slot, "caption": caption_slot}
            table.put(row, record_id, metadata=json.loads(metadata), slots=slots)
        return table

    def iter_vectors(
        self, field: VectorField, *, since: int, batch: int = 10_000
    ) -> Iterator[tuple[NDArray[np.int64], NDArray[np.float32]]]:
        """(slots, unit vectors) of ``field`` with slot >= ``since``, in slot order."""
        if field not in VECTOR_FIELDS:  # the column name is built from it
            raise ValueError(f"unknown vector field {field!r}")
        cursor = self._conn.execute(
            f"SELECT {field}_slot, {field}_vector FROM records "
            f"WHERE {field}_slot >= ? ORDER BY {field}_slot",
            (since,),
        )
        while rows := cursor.fetchmany(batch):
            yield _slot_units(rows)

    def unit_vectors(
        self, field: VectorField, slots: NDArray[np.int64]
    ) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
        """(slots, unit vectors) of ``field`` at these ascending ``slots``, for
        those that exist (a slot's vector never changes, so no snapshot is needed)."""
        if field not in VECTOR_FIELDS:  # the column name is built from it
            raise ValueError(f"unknown vector field {field!r}")
        rows: list[tuple[int, bytes]] = []
        column = f"{field}_slot"
        select = f"SELECT {column}, {field}_vector FROM records WHERE {column} IN"
        for chunk in batched(slots.tolist(), _IN_CHUNK):
            rows.extend(self._conn.execute(f"{select} ({','.join('?' * len(chunk))})", chunk))
        if not rows:
            return np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32)
        rows.sort()
        return _slot_units(rows)

    def fetch_records(self, ids: Sequence[str], *, with_vectors: bool) -> dict[str, CatalogRecord]:
        columns = "id, caption, uri, metadata"
        if with_vectors:
            columns += ", image_vector, caption_vector"
        found: dict[str, CatalogRecord] = {}
        with self.snapshot():
            for chunk in batched(ids, _IN_CHUNK):
                marks = ",".join("?" * len(chunk))
                query = f"SELECT {columns} FROM records WHERE id IN ({marks})"
                for row in self._conn.execute(query, chunk):
                    record = CatalogRecord(
                        id=row[0], caption=row[1], uri=row[2], metadata=json.loads(row[3])
                    )
                    if with_vectors:
                        record.image_vector = _decode(row[4])
                        record.caption_vector = _decode(row[5])
                    found[record.id] = record
        return found

    def _existing(self, ids: Sequence[str]) -> dict[str, tuple[Any, ...]]:
        """id -> (row, image_vector, caption_vector, image_slot, caption_slot)."""
        existing: dict[str, tuple[Any, ...]] = {}
        for chunk in batched(ids, _IN_CHUNK):
            marks = ",".join("?" * len(chunk))
            query = (
                "SELECT id, row, image_vector, caption_vector, image_slot, caption_slot "
                f"FROM records WHERE id IN ({marks})"
            )
            for row in self._conn.execute(query, chunk):
                existing[row[0]] = tuple(row[1:])
        return existing

    # ------------------------------------------------------------------ writes (in a transaction)

    def write_records(
        self, records: Sequence[PreparedRecord]
    ) -> tuple[list[tuple[int, PreparedRecord, dict[VectorField, int | None]]], range]:
        """Upsert records: (row, record, slots) per record, and the range of new slots."""
        meta = self.catalog_meta()
        assert meta is not None, "write_records needs a catalog (ensure first)"
        next_slot = meta.next_slot
        existing = self._existing([r.id for r in records])
        written = []
        for record in records:
            old = existing.get(record.id)
            slots: dict[VectorField, int | None] = {}
            for position, field in enumerate(VECTOR_FIELDS):
                vector = record.vectors[field]
                if vector is None:
                    slots[field] = None
                elif old is not None and old[1 + position] == vector.raw:
                    slots[field] = old[3 + position]  # unchanged vector keeps its slot
                else:
                    slots[field], next_slot = next_slot, next_slot + 1
            raw = [None if (v := record.vectors[f]) is None else v.raw for f in VECTOR_FIELDS]
            (row,) = self._conn.execute(
                _UPSERT,
                (
                    record.id,
                    record.caption,
                    record.uri,
                    record.metadata_json,
                    *raw,
                    slots["image"],
                    slots["caption"],
                ),
            ).fetchone()
            written.append((int(row), record, slots))
        self._set_next_slot(next_slot)
        return written, range(meta.next_slot, next_slot)

    def write_captions(
        self, updates: dict[str, tuple[str, Vector]]
    ) -> tuple[dict[str, int], range]:
        """Set caption + caption vector of existing ids: id -> slot, and the new slots."""
        meta = self.catalog_meta()
        assert meta is not None, "write_captions needs a catalog (ensure first)"
        next_slot = meta.next_slot
        slots: dict[str, int] = {}
        for record_id, old in self._existing(list(updates)).items():
            caption, vector = updates[record_id]
            if old[2] == vector.raw and old[4] is not None:
                slots[record_id] = int(old[4])
            else:
                slots[record_id], next_slot = next_slot, next_slot + 1
            self._conn.execute(
                "UPDATE records SET caption = ?, caption_vector = ?, caption_slot = ? "
                "WHERE row = ?",
                (caption, vector.raw, slots[record_id], old[0]),
            )
        self._set_next_slot(next_slot)
        return slots, range(meta.next_slot, next_slot)

    def delete(self, ids: Sequence[str]) -> int:
        deleted = 0
        for chunk in batched(ids, _IN_CHUNK):
            marks = ",".join("?" * len(chunk))
            cursor = self._conn.execute(f"DELETE FROM records WHERE id IN ({marks})", chunk)
            deleted += cursor.rowcount
        return deleted


def _slot_units(rows: Sequence[tuple[int, bytes]]) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
    """Slots and L2-normalised vectors of (slot, float32 blob) rows."""
    slots = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    vectors = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32)
    wide = vectors.reshape(len(rows), -1).astype(np.float64)
    wide /= np.linalg.norm(wide, axis=1, keepdims=True)
    return slots, wide.astype(np.float32)


def _decode(blob: bytes | None) -> NDArray[np.float32] | None:
    return None if blob is None else np.frombuffer(blob, dtype=np.float32).copy()
