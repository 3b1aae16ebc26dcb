"""The embedded store's ANN index: faiss HNSW over one vector field, keyed by slot.

The index is derived data. SQLite holds every vector; an index file is a cache
that saves rebuilding the HNSW graph on every open. A file starts with a small
header (the generation marker): which catalog and field it belongs to, the
dimension, and its *watermark*, the slot counter value it covers: every slot
below the watermark that existed when the index was last caught up is in it,
and no slot at or above it is. Files are written to a temporary name, flushed
to disk and moved into place with ``os.replace``, so a reader sees the old file
or the new one, never half of one.

Vectors are added L2-normalised and compared by inner product, so scores are
cosine similarities. Searches take the set of slots they may return (live
vectors that pass the filters) as a faiss ``IDSelectorBitmap``: the filter is
applied inside the graph search, not to its output. When every vector in the
index is allowed (no filter, nothing replaced or deleted) the search runs
without a selector.

Searches run on the HNSW graph itself, not through the ``IndexIDMap2`` that
keeps the slot numbers in the file: the index keeps its own array of slots by
graph position and translates results with numpy (the id map's translation
is an OpenMP loop per call). Filters become a bitmap over graph positions.

Threads: faiss parallelises a search over its query vectors with OpenMP. A
single query runs on one thread anyway, and waking (and waiting for) a second
thread costs more than the work it shares, most of all on a busy machine, so
searches set their thread count per call (``faiss_threads``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from numpy.typing import NDArray

from imagescope.store.embedded_storage import (
    FullVectors,
    exact_scores,
    new_graph,
    rescored,
    storage_of,
)

log = logging.getLogger(__name__)

#: faiss, untyped: its stubs leave out the search parameters and callback I/O used here.
_faiss: Any = faiss

MAGIC = b"IMAGESCOPE-HNSW1"
_LENGTH = struct.Struct("<I")
FORMAT_VERSION = 1
#: Up to this many queries, exact scores are computed in place (no copy of the
#: allowed vectors); larger batches gather the vectors once and use BLAS.
_IN_PLACE_MAX_QUERIES = 4


@dataclass(frozen=True)
class IndexHeader:
    """The generation marker written at the start of an index file."""

    catalog: str
    field: str
    dim: int
    watermark: int
    ntotal: int
    format: int = FORMAT_VERSION
    #: How the graph holds its vectors (``embedded_storage``); older files are flat.
    storage: str = "flat"


class Selection:
    """The slots a search may return: an array, and faiss bitmap selectors over it."""

    def __init__(self, slots: NDArray[np.int64]) -> None:
        self.slots = slots
        #: (index identity, its size) -> selector over that index's graph positions.
        self._selectors: dict[tuple[int, int], tuple[Any, NDArray[np.uint8]]] = {}

    def __len__(self) -> int:
        return len(self.slots)

    def selector_at(self, key: tuple[int, int], positions: Callable[[], NDArray[np.int64]]) -> Any:
        """The selector over graph ``positions()`` of these slots, cached under ``key``."""
        found = self._selectors.get(key)
        if found is None:
            self._selectors.clear()  # an index that grew makes older keys useless
            found = self._selectors[key] = _bitmap_selector(positions())
        return found[0]


def _bitmap_selector(members: NDArray[np.int64]) -> tuple[Any, NDArray[np.uint8]]:
    """A faiss bitmap selector of ``members`` and the buffer it reads (keep both alive)."""
    size = int(members.max()) + 1 if len(members) else 1
    bits = np.zeros(size, dtype=bool)
    bits[members] = True
    bitmap = np.packbits(bits, bitorder="little")
    return faiss.IDSelectorBitmap(len(bitmap), faiss.swig_ptr(bitmap)), bitmap


@contextmanager
def faiss_threads(count: int) -> Iterator[None]:
    """Run the faiss calls in this block with ``count`` OpenMP threads; 0 changes nothing.

    The OpenMP thread count is per OS thread, so this affects neither other
    threads nor the rest of this one (it is restored on exit).
    """
    if count < 1:
        yield
        return
    before = int(faiss.omp_get_max_threads())
    faiss.omp_set_num_threads(count)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


class HnswIndex:
    """A faiss HNSW graph (inner product) whose labels are slot numbers."""

    def __init__(self, index: Any, *, watermark: int) -> None:
        self._index = index
        #: The HNSW graph inside the id map; searches run on it directly.
        self._graph = _faiss.downcast_index(index.index)
        #: Slot of each graph position (the id map's labels, mirrored in numpy).
        self._slots_at = faiss.vector_to_array(index.id_map).astype(np.int64)
        self._ntotal = int(index.ntotal)
        self.watermark = watermark
        #: Vectors added since the index was last saved or loaded.
        self.unsaved = 0
        #: Slots in ascending order and their positions in the flat storage (on demand).
        self._slot_order: tuple[NDArray[np.int64], NDArray[np.int64]] | None = None
        #: Search parameters by efSearch, for unfiltered searches.
        self._params: dict[int, Any] = {}
        #: ``flat``, ``fp16`` or ``sq8`` (see ``embedded_storage``).
        self.storage = storage_of(self._graph)
        #: Compressed storage: where exact vectors come from, and how many
        #: candidates per hit a search re-scores with them (set by the owner).
        self.full_vectors: FullVectors | None = None
        self.rescore_factor = 4

    @classmethod
    def empty(cls, dim: int, *, m: int, ef_construction: int, storage: str = "flat") -> HnswIndex:
        graph = new_graph(dim, m=m, ef_construction=ef_construction, storage=storage)
        return cls(faiss.IndexIDMap2(graph), watermark=0)

    @property
    def compressed(self) -> bool:
        """Whether the graph's scores are approximate (``fp16``/``sq8`` storage)."""
        return self.storage != "flat"

    @property
    def ntotal(self) -> int:
        return self._ntotal

    @property
    def graph(self) -> Any:
        """The faiss HNSW graph searches run on (for diagnostics and benchmarks)."""
        return self._graph

    def slots_at(self, positions: NDArray[np.int64]) -> NDArray[np.int64]:
        """The slots of graph positions (-1 stays -1)."""
        slots: NDArray[np.int64] = np.where(positions >= 0, self._slots_at[positions], -1)
        return slots

    @property
    def dim(self) -> int:
        return int(self._index.d)

    def add(self, slots: NDArray[np.int64], vectors: NDArray[np.float32]) -> None:
        """Add unit vectors under their slot numbers (slots must be new)."""
        if len(slots) == 0:
            return
        labels = np.ascontiguousarray(slots, dtype=np.int64)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if not self._graph.is_trained:  # sq8: learn the value ranges from the first vectors
            self._graph.train(vectors)
        self._index.add_with_ids(vectors, labels)
        self._slots_at = np.concatenate([self._slots_at, labels])
        self._ntotal = int(self._index.ntotal)
        self.unsaved += len(slots)
        self._slot_order = None

    def search(
        self,
        queries: NDArray[np.float32],
        k: int,
        *,
        allowed: Selection,
        ef_search: int,
        threads: int = 1,
    ) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        """Top ``k`` among ``allowed`` slots per query: (scores, slots), -1 pads misses.

        ``allowed`` must only hold slots of this index; when it holds all of
        them the search needs no selector. ``threads``: see ``faiss_threads``.
        """
        ef = max(ef_search, k)
        if len(allowed) < self._ntotal:
            params = _faiss.SearchParametersHNSW(efSearch=ef)
            params.sel = allowed.selector_at(
                (id(self), self._ntotal), lambda: self._storage_positions(allowed.slots)
            )
        elif (params := self._params.get(ef)) is None:
            params = self._params[ef] = _faiss.SearchParametersHNSW(efSearch=ef)
        before = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(threads or before)  # as ``faiss_threads``, inlined
        try:
            scores, positions = self._graph.search(
                np.ascontiguousarray(queries, dtype=np.float32), k, params=params
            )
        finally:
            faiss.omp_set_num_threads(before)
        slots = self._slots_at[positions]
        if positions[:, -1].min() < 0:  # rows are filled from the front
            slots[positions < 0] = -1
        return scores, slots

    def scores(self, queries: NDArray[np.float32], slots: NDArray[np.int64]) -> NDArray[np.float32]:
        """Inner products of the queries with the vectors of ``slots`` (all in the index).

        Shape (len(queries), len(slots)). A few queries are scored in place by
        faiss on one thread: no copy of the vectors, no BLAS thread pool.
        Compressed storage scores the exact vectors (``full_vectors``); a slot
        whose vector no longer exists scores -inf.
        """
        if self.compressed:
            every = np.broadcast_to(slots, (len(queries), len(slots)))
            return self.exact_scores(queries, every)[0]
        if len(queries) > _IN_PLACE_MAX_QUERIES or len(slots) == 0:
            product: NDArray[np.float32] = queries @ self.vectors(slots).T
            return product
        positions = self._storage_positions(slots)
        labels = np.ascontiguousarray(np.broadcast_to(positions, (len(queries), len(slots))))
        out = np.empty(labels.shape, dtype=np.float32)
        x = np.ascontiguousarray(queries, dtype=np.float32)
        storage = _faiss.downcast_index(_faiss.downcast_index(self._index.index).storage)
        with faiss_threads(1):
            storage.compute_distance_subset(
                len(x), faiss.swig_ptr(x), len(slots), faiss.swig_ptr(out), faiss.swig_ptr(labels)
            )
        return out

    def rescored(
        self, queries: NDArray[np.float32], slots: NDArray[np.int64], k: int
    ) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        """``embedded_storage.rescored`` with this index's ``full_vectors``."""
        return rescored(queries, slots, k, self._exact_vectors())

    def closest(
        self, queries: NDArray[np.float32], allowed: Selection, count: int
    ) -> NDArray[np.int64]:
        """Per query, the ``count`` ``allowed`` slots scoring best with the vectors the
        index stores (compressed ones: approximate scores), best first; -1 pads.

        A brute-force scan of the stored codes, in place, filtered by the same
        bitmap selector as the graph search.
        """
        params = _faiss.SearchParameters()
        if len(allowed) < self._ntotal:
            params.sel = allowed.selector_at(
                (id(self), self._ntotal), lambda: self._storage_positions(allowed.slots)
            )
        storage = _faiss.downcast_index(self._graph.storage)
        with faiss_threads(1 if len(queries) == 1 else 0):
            _, positions = storage.search(
                np.ascontiguousarray(queries, dtype=np.float32), count, params=params
            )
        return self.slots_at(positions)

    def exact_scores(
        self, queries: NDArray[np.float32], slots: NDArray[np.int64]
    ) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        """``embedded_storage.exact_scores`` with this index's ``full_vectors``."""
        return exact_scores(queries, slots, self._exact_vectors())

    def _exact_vectors(self) -> FullVectors:
        if self.full_vectors is None:
            raise RuntimeError("a compressed index needs full_vectors to score exactly")
        return self.full_vectors

    def _storage_positions(self, slots: NDArray[np.int64]) -> NDArray[np.int64]:
        """Where the vectors of ``slots`` sit in the flat storage; KeyError for unknown slots."""
        if self._slot_order is None:
            ids = self._slots_at
            order = np.arange(len(ids)) if np.all(ids[1:] > ids[:-1]) else np.argsort(ids)
            self._slot_order = (ids[order], order)
        ordered, order = self._slot_order
        if len(ordered) == 0:
            raise KeyError(f"slots not in the index (it is empty): {slots}")
        where = np.minimum(np.searchsorted(ordered, slots), len(ordered) - 1)
        missing = ordered[where] != slots
        if missing.any():
            raise KeyError(f"slots not in the index: {slots[missing]}")
        positions: NDArray[np.int64] = order[where]
        return positions

    def vectors(self, slots: NDArray[np.int64]) -> NDArray[np.float32]:
        """The stored (unit) vectors of these slots, shape (len(slots), dim)."""
        if len(slots) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        keys = np.ascontiguousarray(slots, dtype=np.int64)
        return np.asarray(self._index.reconstruct_batch(keys), dtype=np.float32)

    def save(self, path: Path, header: IndexHeader) -> None:
        """Write the index atomically: temporary file, fsync, ``os.replace``."""
        tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
        try:
            with tmp.open("wb") as out:
                encoded = json.dumps(asdict(header)).encode()
                out.write(MAGIC + _LENGTH.pack(len(encoded)) + encoded)
                faiss.write_index(self._index, _faiss.PyCallbackIOWriter(out.write))
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        _fsync_dir(path.parent)
        self.unsaved = 0


def read_header(path: Path) -> IndexHeader | None:
    """The header of an index file, or None when it is missing or unreadable."""
    try:
        with path.open("rb") as src:
            return _read_header(src)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        if not isinstance(exc, FileNotFoundError):
            log.warning("unreadable index file %s: %s", path, exc)
        return None


def load_index(
    path: Path, *, catalog: str, field: str, dim: int, storage: str = "flat"
) -> HnswIndex | None:
    """Load an index file that belongs to this catalog and field, else None.

    A missing, truncated, corrupt or foreign file gives None (the caller
    rebuilds from SQLite); the reason is logged. So does a file whose vector
    storage is not ``storage`` (the setting changed).
    """
    try:
        with path.open("rb") as src:
            header = _read_header(src)
            if (header.catalog, header.field, header.dim) != (catalog, field, dim):
                log.warning("index file %s belongs to another catalog or field; ignored", path)
                return None
            if header.storage != storage:
                log.info(
                    "index file %s holds %s vectors, the settings ask for %s; rebuilding it",
                    path,
                    header.storage,
                    storage,
                )
                return None
            index = faiss.read_index(_faiss.PyCallbackIOReader(src.read))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError, KeyError, RuntimeError) as exc:
        log.warning("unreadable index file %s (%s); it will be rebuilt", path, exc)
        return None
    if int(index.ntotal) != header.ntotal or int(index.d) != dim:
        log.warning("index file %s does not match its header; it will be rebuilt", path)
        return None
    log.debug("loaded %s (%d vectors, watermark %d)", path, header.ntotal, header.watermark)
    return HnswIndex(index, watermark=header.watermark)


def remove_temp_files(folder: Path) -> None:
    """Delete index files left half-written by a process that died while saving.

    Call only while holding the writer lock (no one else is saving then).
    """
    for leftover in folder.glob("*.hnsw.tmp-*"):
        with contextlib.suppress(OSError):
            leftover.unlink()
            log.info("removed leftover temporary index file %s", leftover)


def _read_header(src: Any) -> IndexHeader:
    if src.read(len(MAGIC)) != MAGIC:
        raise ValueError("not an ImageScope index file")
    (length,) = _LENGTH.unpack(src.read(_LENGTH.size))
    fields = json.loads(src.read(length))
    header = IndexHeader(**fields)
    if header.format != FORMAT_VERSION:
        raise ValueError(f"index format {header.format} is not {FORMAT_VERSION}")
    return header


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable (best effort: some filesystems refuse)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
