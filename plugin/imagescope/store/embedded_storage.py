"""How the embedded store's HNSW graph holds its vectors, and exact re-scoring.

``flat`` keeps float32 vectors in the graph (faiss ``IndexHNSWFlat``): the
scores a search returns are exact. ``fp16`` and ``sq8`` keep them compressed
(faiss ``IndexHNSWSQ`` with ``QT_fp16``, half the memory, or ``QT_8bit``, a
quarter): the graph search then ranks by approximate scores, so it proposes
``k * rescore_factor`` candidates and their float32 vectors, read from the
catalog (SQLite, the source of truth, which holds them anyway), give the exact
scores that rank the final ``k``. Nothing is kept in memory for that.

``sq8`` learns each dimension's range from the first vectors added to an empty
graph (plus a margin, ``SQ8_RANGE_MARGIN`` of the range on each side); values
outside it are clipped. A graph rebuilt from the catalog learns it from the
first ``iter_vectors`` batch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, get_args

import faiss
import numpy as np
from numpy.typing import NDArray

IndexStorage = Literal["flat", "fp16", "sq8"]
STORAGES: tuple[str, ...] = get_args(IndexStorage)
#: Widening of the ranges an ``sq8`` graph learns, per side, as a share of the range.
SQ8_RANGE_MARGIN = 0.1

#: faiss, untyped where its stubs lack the scalar quantizer's fields.
_faiss: Any = faiss
_QTYPES: dict[str, int] = {
    "fp16": _faiss.ScalarQuantizer.QT_fp16,
    "sq8": _faiss.ScalarQuantizer.QT_8bit,
}

#: Unit vectors of the slots given (ascending, unique) that still exist:
#: (those slots, their vectors).
FullVectors = Callable[[NDArray[np.int64]], tuple[NDArray[np.int64], NDArray[np.float32]]]


def new_graph(dim: int, *, m: int, ef_construction: int, storage: str) -> Any:
    """An empty inner-product HNSW graph holding its vectors as ``storage`` says."""
    if storage == "flat":
        graph = faiss.IndexHNSWFlat(dim, m, faiss.METRIC_INNER_PRODUCT)
    elif storage in _QTYPES:
        graph = _faiss.IndexHNSWSQ(dim, _QTYPES[storage], m, faiss.METRIC_INNER_PRODUCT)
        quantizer = _faiss.downcast_index(graph.storage).sq
        quantizer.rangestat = _faiss.ScalarQuantizer.RS_minmax
        quantizer.rangestat_arg = SQ8_RANGE_MARGIN
    else:
        raise ValueError(f"unknown index storage {storage!r}; use one of {', '.join(STORAGES)}")
    graph.hnsw.efConstruction = ef_construction
    return graph


def storage_of(graph: Any) -> str:
    """The storage kind of a faiss HNSW graph (as ``new_graph`` names it)."""
    if isinstance(graph, faiss.IndexHNSWFlat):
        return "flat"
    qtype = int(_faiss.downcast_index(graph.storage).sq.qtype)
    for name, value in _QTYPES.items():
        if value == qtype:
            return name
    return f"sq-qtype-{qtype}"


def exact_scores(
    queries: NDArray[np.float32], slots: NDArray[np.int64], full_vectors: FullVectors
) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """Exact inner products of each query row with the vectors of its row of ``slots``.

    -1 slots, and slots whose vector no longer exists, get -inf and become -1.
    """
    found, vectors = full_vectors(np.unique(slots[slots >= 0]))
    if len(found) == 0:
        return np.full(slots.shape, -np.inf, dtype=np.float32), np.full_like(slots, -1)
    table = np.asarray(queries, dtype=np.float32) @ vectors.T  # (queries, found)
    where = np.minimum(np.searchsorted(found, slots), len(found) - 1)
    known = (slots >= 0) & (found[where] == slots)
    scores = np.where(known, table[np.arange(len(slots))[:, None], where], -np.inf)
    return scores.astype(np.float32), np.where(known, slots, -1)


def rescored(
    queries: NDArray[np.float32],
    slots: NDArray[np.int64],
    k: int,
    full_vectors: FullVectors,
) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """The ``k`` best of each row's candidate ``slots`` by exact score, best first.

    Rows keep faiss's layout: hits from the front, -1 (score -inf) padding after.
    """
    scores, slots = exact_scores(queries, slots, full_vectors)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, axis=1), np.take_along_axis(slots, order, axis=1)
