"""Stage-1 fused scoring over any VectorStore.

For descriptions t_1..t_m (unit text vectors) and an image with CLIP vector
v_img and caption text vector v_cap, the method's score is

    s(img) = 1/m * sum_j [ (1 - tau) * cos(t_j, v_img) + tau * cos(t_j, v_cap) ]

Where it runs: the approximate part runs in the store (OpenSearch HNSW or the
embedded index): for every description, k-NN over the image field and over the
caption field, with the user's filters inside the search, each returning
``num_candidates`` ids. The union of those ids is the candidate pool. The exact
part runs here in Python: the pool's vectors are fetched once and the formula
above is computed exactly, with numpy, for every pooled image and every
description. A pooled image that a description's ANN lists missed still gets
its exact score for that description, so averaging never mixes exact scores
with missing ones. Doing the fusion in OpenSearch instead (a script_score over
both fields) would be exact but brute force over the filtered index; a hybrid
query would normalise scores per sub-query, which is not the method's formula.

An image without a caption vector uses its image vector for the caption term
(i.e. its score is the plain CLIP score); this is recorded nowhere else, so it
is documented here. Ties are broken by ascending id.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from imagescope.schemas import Filters
from imagescope.store.base import CatalogRecord, VectorStore, check_query_vectors


@dataclass(frozen=True)
class ScoredHit:
    id: str
    score: float
    image_score: float
    caption_score: float
    record: CatalogRecord


def unit_rows(vectors: NDArray[np.float32], *, tol: float = 1e-3) -> NDArray[np.float32]:
    """Rows scaled to unit length, so dot products are cosines (stores may hold
    vectors of any length, e.g. an adopted OpenSearch index); rows already of
    unit length (within ``tol``) and zero rows are left exactly as they are."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    scale = np.where((np.abs(norms - 1.0) > tol) & (norms > 0), norms, 1.0)
    return (vectors / scale).astype(np.float32)


def fuse_scores(
    descriptions: NDArray[np.float32],
    image_vectors: NDArray[np.float32],
    caption_vectors: NDArray[np.float32],
    *,
    tau: float,
) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.float32]]:
    """Exact fused scores: returns (fused, image_part, caption_part), each (n,).

    ``descriptions`` is (m, d); the vector arrays are (n, d). Each part is the
    mean over descriptions of the cosine similarity.
    """
    image_vectors = unit_rows(image_vectors)
    caption_vectors = unit_rows(caption_vectors)
    img = (image_vectors @ descriptions.T).mean(axis=1)
    cap = (caption_vectors @ descriptions.T).mean(axis=1)
    fused = (1.0 - tau) * img + tau * cap
    return fused.astype(np.float32), img.astype(np.float32), cap.astype(np.float32)


def fused_search(
    store: VectorStore,
    descriptions: NDArray[np.float32],
    *,
    limit: int,
    tau: float,
    num_candidates: int,
    filters: Filters | None = None,
) -> list[ScoredHit]:
    """Top ``limit`` images by the fused score, best first."""
    if store.dim is None:
        return []
    queries = check_query_vectors(descriptions, store.dim)
    pool_size = max(num_candidates, limit)
    pool: set[str] = set()
    for field_name in ("image", "caption"):
        for hits in store.knn(field_name, queries, k=pool_size, filters=filters):
            pool.update(h.id for h in hits)
    if not pool:
        return []
    records = store.get(sorted(pool), with_vectors=True)
    pairs = [
        (r, r.image_vector, r.image_vector if r.caption_vector is None else r.caption_vector)
        for r in records
        if r.image_vector is not None
    ]
    if not pairs:
        return []
    records = [r for r, _, _ in pairs]
    image_vectors = np.stack([v for _, v, _ in pairs]).astype(np.float32)
    caption_vectors = np.stack([c for _, _, c in pairs if c is not None]).astype(np.float32)
    fused, img, cap = fuse_scores(queries, image_vectors, caption_vectors, tau=tau)
    # Sort by score descending, then id ascending (deterministic ties).
    order = sorted(range(len(records)), key=lambda i: (-float(fused[i]), records[i].id))
    return [
        ScoredHit(
            id=records[i].id,
            score=float(fused[i]),
            image_score=float(img[i]),
            caption_score=float(cap[i]),
            record=records[i],
        )
        for i in order[:limit]
    ]
