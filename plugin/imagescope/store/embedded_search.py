"""Searching the embedded store's HNSW index: graph search, exact search, hit lists.

``search_approximate`` runs the HNSW graph (filters inside the search, a
compressed index re-scored exactly), ``search_exact`` scores every allowed
vector; both return ``Hit`` lists ranked by score, ties by ascending id.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from imagescope.store.base import Hit
from imagescope.store.embedded_index import HnswIndex, Selection

SlotIds = Callable[[NDArray[np.int64]], list[str]]


def search_exact(
    index: HnswIndex,
    queries: NDArray[np.float32],
    *,
    k: int,
    allowed: Selection,
    ids_of: SlotIds,
) -> list[list[Hit]]:
    """Exact top ``k`` among ``allowed`` slots; ties by ascending id, even at the cut.

    A compressed index ranks by its compressed vectors (in memory) and
    re-scores the best ``k * rescore_factor`` exactly: reading every allowed
    vector from SQLite would cost far more.
    """
    if index.compressed:
        fetch = index.closest(queries, allowed, k * index.rescore_factor)
        found, slots = index.rescored(queries, fetch, k)
        return [
            _ranked(ids_of(row_slots[row_slots >= 0]), row_scores[row_slots >= 0])
            for row_scores, row_slots in zip(found, slots, strict=True)
        ]
    scores = index.scores(queries, allowed.slots)
    results = []
    for row in scores:
        if len(row) > k:
            kth = np.partition(row, len(row) - k)[len(row) - k]
            keep = np.flatnonzero(row >= kth)  # every tie at the k-th score
        else:
            keep = np.arange(len(row))
        keep = keep[row[keep] > -np.inf]  # a vector deleted meanwhile (compressed storage)
        results.append(_ranked(ids_of(allowed.slots[keep]), row[keep])[:k])
    return results


def search_approximate(
    index: HnswIndex,
    queries: NDArray[np.float32],
    *,
    k: int,
    allowed: Selection,
    ef_search: int,
    ids_of: SlotIds,
    threads: int = 1,
) -> list[list[Hit]]:
    """HNSW top ``k`` among ``allowed`` slots; queries that find fewer are redone exactly.

    All queries go to faiss in one batch (``threads``: see ``faiss_threads``).
    A compressed index proposes ``k * rescore_factor`` candidates, ranked by
    their exact scores (``embedded_storage``).
    """
    # A filter hides part of the graph from the results: keep more candidates
    # (x3 at 10% selectivity, at most x8; the fallback below covers the rest).
    widen = min(8.0, math.sqrt(index.ntotal / len(allowed)))
    fetch = k * index.rescore_factor if index.compressed else k
    ef = math.ceil(max(ef_search, fetch) * widen)
    scores, slots = index.search(queries, fetch, allowed=allowed, ef_search=ef, threads=threads)
    if index.compressed:
        scores, slots = index.rescored(queries, slots, k)
    if slots[:, -1].min() >= 0:  # faiss fills rows from the front: every row is full
        return [
            _ranked(ids_of(row_slots), row_scores)
            for row_scores, row_slots in zip(scores, slots, strict=True)
        ]
    found = slots != -1
    short = np.flatnonzero(np.count_nonzero(found, axis=1) < k)
    redone: dict[int, list[Hit]] = {}
    if len(short):
        exact = search_exact(index, queries[short], k=k, allowed=allowed, ids_of=ids_of)
        redone = dict(zip(short.tolist(), exact, strict=True))
    return [
        redone[row] if row in redone else _ranked(ids_of(row_slots[keep]), row_scores[keep])
        for row, (row_scores, row_slots, keep) in enumerate(zip(scores, slots, found, strict=True))
    ]


def _ranked(ids: list[str], scores: NDArray[np.float32]) -> list[Hit]:
    """Hits by descending score, ties by ascending id.

    faiss returns its results best first, so only equal neighbours (ties) or an
    unsorted input (exact search) need the sort.
    """
    values = scores.tolist()
    hits = [Hit(i, s) for i, s in zip(ids, values, strict=True)]
    if any(a <= b for a, b in itertools.pairwise(values)):
        hits.sort(key=_hit_order)
    return hits


def _hit_order(hit: Hit) -> tuple[float, str]:
    return (-hit.score, hit.id)
