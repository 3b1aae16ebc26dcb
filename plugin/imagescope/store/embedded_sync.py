"""Keeping the embedded store's HNSW indexes in step with its SQLite catalog.

``CatalogIndexes`` holds one ``HnswIndex`` per vector field. On open, and
whenever another process has committed, it catches each index up: the index in
memory (or the saved file, or a new graph) plus the vectors SQLite committed
after its watermark. It also decides when to save the files (see
``embedded_index`` for their format) and when an index holds so many replaced
or deleted vectors that rebuilding it is worth it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from imagescope.store.base import VectorField
from imagescope.store.embedded_index import (
    HnswIndex,
    IndexHeader,
    load_index,
    read_header,
)
from imagescope.store.embedded_storage import FullVectors
from imagescope.store.embedded_table import VECTOR_FIELDS

log = logging.getLogger(__name__)

#: Loading a saved index beats adding this many vectors to the in-memory one.
_PREFER_FILE_GAP = 2000
#: Fewer dead vectors than this never justify rebuilding an index.
_MIN_DEAD_TO_COMPACT = 1000

VectorBatches = Callable[[int], Iterable[tuple[NDArray[np.int64], NDArray[np.float32]]]]


@dataclass(frozen=True)
class IndexSpec:
    """What an index must be: the catalog, field and dimension, and graph options."""

    path: Path
    catalog: str
    field: str
    dim: int
    m: int
    ef_construction: int
    storage: str = "flat"


def caught_up(
    index: HnswIndex | None,
    spec: IndexSpec,
    *,
    next_slot: int,
    live: int,
    vectors_since: VectorBatches,
) -> HnswIndex:
    """``index`` (else the saved file, else a new graph) plus the vectors it lacks.

    ``next_slot`` is the catalog's slot counter, ``live`` its number of live
    vectors in this field, and ``vectors_since(slot)`` yields the committed
    (slots, unit vectors) from ``slot`` on; all three must come from one
    database snapshot. An index that claims slots the catalog never committed
    is rebuilt, and so is one whose replaced or deleted vectors outnumber the
    live ones (compaction).
    """
    if index is not None and index.watermark > next_slot:
        index = None
    if index is None or _file_is_ahead(index, spec, next_slot=next_slot):
        loaded = load_index(
            spec.path, catalog=spec.catalog, field=spec.field, dim=spec.dim, storage=spec.storage
        )
        index = loaded if loaded is not None else index
    if index is not None and index.watermark > next_slot:
        log.warning("%s covers slots the catalog never committed; rebuilding it", spec.path)
        index = None
    if index is not None and index.ntotal - live > max(live, _MIN_DEAD_TO_COMPACT):
        log.info("%s holds mostly replaced or deleted vectors; rebuilding it", spec.path)
        index = None
    if index is None:
        level = logging.INFO if live else logging.DEBUG
        log.log(level, "building %s from the catalog (%d vectors)", spec.path, live)
        index = HnswIndex.empty(
            spec.dim, m=spec.m, ef_construction=spec.ef_construction, storage=spec.storage
        )
    for slots, vectors in vectors_since(index.watermark):
        index.add(slots, vectors)
    index.watermark = next_slot
    return index


def _file_is_ahead(index: HnswIndex, spec: IndexSpec, *, next_slot: int) -> bool:
    """Whether the saved file (another process's) covers many more slots than ``index``."""
    if next_slot - index.watermark < _PREFER_FILE_GAP:
        return False
    header = read_header(spec.path)
    return (
        header is not None
        and header.catalog == spec.catalog
        and header.storage == spec.storage
        and index.watermark + _PREFER_FILE_GAP <= header.watermark <= next_slot
    )


def save_if_due(index: HnswIndex, spec: IndexSpec, *, force: bool, every: int) -> None:
    """Save ``index`` when it has ``every`` (or a quarter of its size) unsaved vectors.

    ``force`` saves any unsaved vector. A file that already covers as much
    (saved by another process) is left alone. The caller holds the writer lock.
    """
    due = max(every, index.ntotal // 4)
    if not index.unsaved or not (force or index.unsaved >= due):
        return
    on_disk = read_header(spec.path)
    if (
        on_disk is not None
        and on_disk.catalog == spec.catalog
        and on_disk.storage == index.storage
        and on_disk.watermark >= index.watermark
        and on_disk.ntotal <= index.ntotal
    ):
        index.unsaved = 0
        return
    header = IndexHeader(
        catalog=spec.catalog,
        field=spec.field,
        dim=spec.dim,
        watermark=index.watermark,
        ntotal=index.ntotal,
        storage=index.storage,
    )
    index.save(spec.path, header)
    log.info("saved %s (%d vectors, watermark %d)", spec.path, index.ntotal, index.watermark)


FieldVectors = Callable[[VectorField, int], Iterable[tuple[NDArray[np.int64], NDArray[np.float32]]]]


class CatalogIndexes:
    """The HNSW index of each vector field of one catalog, and their files.

    Not thread-safe and not process-safe by itself: the store serialises calls
    and holds the writer lock around ``save``.
    """

    def __init__(
        self,
        folder: Path,
        *,
        m: int,
        ef_construction: int,
        flush_every: int,
        storage: str = "flat",
        rescore_factor: int = 4,
        full_vectors: Callable[[VectorField], FullVectors] | None = None,
    ) -> None:
        """``storage``, ``rescore_factor``: see ``embedded_storage``; compressed
        storage needs ``full_vectors(field)``, the exact vectors of that field."""
        self.folder = folder
        self._m = m
        self._ef_construction = ef_construction
        self._flush_every = flush_every
        self._storage = storage
        self._rescore_factor = rescore_factor
        self._full_vectors = full_vectors
        self._catalog: tuple[str, int] | None = None
        self._indexes: dict[VectorField, HnswIndex] = {}

    def __getitem__(self, field: VectorField) -> HnswIndex:
        return self._indexes[field]

    def forget(self) -> None:
        """Drop indexes that may be half-updated; the next ``catch_up`` reloads them."""
        self._indexes = {}

    def catch_up(
        self,
        catalog: str,
        *,
        dim: int,
        next_slot: int,
        live: Mapping[VectorField, int],
        vectors_since: FieldVectors,
    ) -> None:
        """Bring every field's index up to ``next_slot`` (arguments from one snapshot)."""
        same = self._catalog == (catalog, dim)
        indexes = {
            field: caught_up(
                self._indexes.get(field) if same else None,
                self._spec(field, catalog, dim=dim),
                next_slot=next_slot,
                live=live[field],
                vectors_since=partial(vectors_since, field),
            )
            for field in VECTOR_FIELDS
        }
        for field, index in indexes.items():
            index.rescore_factor = self._rescore_factor
            if self._full_vectors is not None:
                index.full_vectors = self._full_vectors(field)
        self._catalog, self._indexes = (catalog, dim), indexes

    def add(
        self,
        field: VectorField,
        fresh: list[tuple[int, NDArray[np.float32]]],
        *,
        next_slot: int,
    ) -> None:
        """Add newly committed (slot, unit vector) pairs; every index now covers ``next_slot``."""
        if fresh:
            self._indexes[field].add(
                np.fromiter((s for s, _ in fresh), dtype=np.int64, count=len(fresh)),
                np.stack([v for _, v in fresh]),
            )
        for index in self._indexes.values():
            index.watermark = next_slot

    def sparse_fields(self, live: Mapping[VectorField, int]) -> list[VectorField]:
        """Fields whose dead vectors (replaced, deleted) outnumber the live ones."""
        return [
            field
            for field, index in self._indexes.items()
            if index.ntotal - live[field] > max(live[field], _MIN_DEAD_TO_COMPACT)
        ]

    def has_unsaved(self) -> bool:
        return any(index.unsaved for index in self._indexes.values())

    def save(self, *, force: bool) -> None:
        """Save indexes with enough unsaved vectors; the caller holds the writer lock."""
        if self._catalog is None:
            return
        catalog, dim = self._catalog
        for field, index in self._indexes.items():
            spec = self._spec(field, catalog, dim=dim)
            save_if_due(index, spec, force=force, every=self._flush_every)

    def _spec(self, field: VectorField, catalog: str, *, dim: int) -> IndexSpec:
        return IndexSpec(
            path=self.folder / f"{field}.hnsw",
            catalog=catalog,
            field=field,
            dim=dim,
            m=self._m,
            ef_construction=self._ef_construction,
            storage=self._storage,
        )
