"""The synthetic benchmark as a Benchmark: a drawn catalog, queries of all
three kinds with exact ground truth (see :mod:`imagescope.synthetic`).

The catalog is drawn into ``root`` once (``catalog-<n>-<seed>/``) and reused.
Scored with R@1/5/10 over all queries and per kind; a query is a hit at K when
any of its ground-truth ids ranks within K.
"""

from __future__ import annotations

from pathlib import Path

from imagescope.eval.benchmark import (
    Benchmark,
    BenchmarkQuery,
    GalleryImage,
    Rankings,
    recall_by_group,
)
from imagescope.synthetic.catalog import make_catalog, write_catalog
from imagescope.synthetic.queries import make_queries


def _score(benchmark: Benchmark, rankings: Rankings) -> dict[str, float]:
    return recall_by_group(benchmark, rankings)


def load_synthetic(
    root: Path | str,
    *,
    split: str = "test",
    n: int = 2000,
    seed: int = 1,
    n_per_kind: int = 100,
    query_seed: int = 0,
) -> Benchmark:
    """``n`` drawn images and ``n_per_kind`` text, composed and dialog queries."""
    folder = Path(root) / f"catalog-{n}-{seed}"
    if not (folder / "catalog.csv").is_file():
        write_catalog(folder, n=n, seed=seed)
    catalog = make_catalog(n, seed=seed)
    gallery = [GalleryImage(item.id, folder / "images" / f"{item.id}.png") for item in catalog]
    queries = [
        BenchmarkQuery(
            id=q.id, query=q.query, targets=tuple(q.ground_truth), extras={"kind": q.kind}
        )
        for q in make_queries(catalog, n_per_kind=n_per_kind, seed=query_seed)
    ]
    return Benchmark(
        name="synthetic",
        split=split,
        gallery=gallery,
        queries=queries,
        scorer=_score,
        gallery_metadata={
            item.id: {k: str(v) for k, v in item.attributes.items()} for item in catalog
        },
        gallery_captions={item.id: item.caption for item in catalog},
        embedder_model="bundled:synthetic",
    )
