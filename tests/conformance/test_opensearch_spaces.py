"""OpenSearch k-NN in every space the Maven node supports, against exact numpy top-k.

The node assembled from Maven Central has the Lucene engine only (faiss and
nmslib need native libraries), which takes cosinesimil, l2 and innerproduct.
Vectors are deliberately not unit length: the store must report each space's
exact similarity (``mappings.exact_similarity``), and rank like it.
"""

from __future__ import annotations

import numpy as np
import pytest

from imagescope.store.base import CatalogRecord
from imagescope.store.mappings import exact_similarity

pytestmark = pytest.mark.integration
DIM, N, K = 12, 300, 10
SPACES = ["cosinesimil", "l2", "innerproduct"]


def scaled_vectors(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(n, DIM)) * rng.uniform(0.2, 5.0, size=(n, 1))
    return vectors.astype(np.float32)


def exact_top(vectors: np.ndarray, ids: list[str], query: np.ndarray, space: str) -> list[str]:
    sims = exact_similarity(vectors, query, space)
    order = sorted(range(len(ids)), key=lambda i: (-float(sims[i]), ids[i]))
    return [ids[i] for i in order[:K]]


@pytest.mark.parametrize("space", SPACES)
def test_knn_in_each_space_matches_exact_numpy(opensearch_store_factory, space):
    store = opensearch_store_factory(DIM, engine="lucene", space_type=space, ef_search=200)
    vectors = scaled_vectors(N, seed=1)
    ids = [f"v{i:04d}" for i in range(N)]
    colours = ["red", "blue", "green"]
    report = store.upsert(
        CatalogRecord(id=i, image_vector=v, metadata={"colour": colours[n % 3]})
        for n, (i, v) in enumerate(zip(ids, vectors, strict=True))
    )
    assert not report.failed
    queries = scaled_vectors(5, seed=2)
    for query, hits in zip(queries, store.knn("image", queries, k=K), strict=True):
        assert [h.id for h in hits] == exact_top(vectors, ids, query, space)
        sims = exact_similarity(vectors, query, space)
        by_id = dict(zip(ids, sims, strict=True))
        np.testing.assert_allclose(
            [h.score for h in hits], [by_id[h.id] for h in hits], rtol=2e-3, atol=2e-3
        )
    red = [n for n in range(N) if n % 3 == 0]
    (hits,) = store.knn("image", queries[0], k=K, filters={"colour": "red"})
    assert [h.id for h in hits] == exact_top(vectors[red], [ids[n] for n in red], queries[0], space)
