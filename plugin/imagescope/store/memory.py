"""An exact, in-memory VectorStore: brute-force cosine search with numpy.

Not persistent. It is the reference the approximate stores are measured
against, and a store for tests and small throwaway catalogs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace

import numpy as np
from numpy.typing import NDArray

from imagescope.errors import DimensionMismatchError, ImageScopeError, InputError, UnknownIdError
from imagescope.schemas import Filters
from imagescope.store.base import (
    BulkReport,
    CaptionUpdate,
    CatalogRecord,
    Hit,
    VectorField,
    VectorStore,
    check_query_vectors,
    check_vector,
    matches_filters,
    validate_filters,
)


def _vector(record: CatalogRecord, field: VectorField) -> NDArray[np.float32] | None:
    return record.image_vector if field == "image" else record.caption_vector


class MemoryStore(VectorStore):
    name = "memory"

    def __init__(self) -> None:
        self._records: dict[str, CatalogRecord] = {}

    def ensure(self, dim: int) -> None:
        if self.dim is not None and self.dim != dim:
            raise DimensionMismatchError(index=self.name, index_dim=self.dim, embedder_dim=dim)
        self.dim = dim

    def _checked(self, record: CatalogRecord) -> CatalogRecord:
        assert self.dim is not None
        if record.image_vector is None:
            raise InputError(f"record {record.id!r} has no image vector; every record needs one")
        caption_vector = record.caption_vector
        return replace(
            record,
            image_vector=check_vector(record.image_vector, self.dim),
            caption_vector=None
            if caption_vector is None
            else check_vector(caption_vector, self.dim),
            metadata=dict(record.metadata),
        )

    def upsert(self, records: Iterable[CatalogRecord]) -> BulkReport:
        report = BulkReport()
        for record in records:
            try:
                self._records[record.id] = self._checked(record)
                report.succeeded.append(record.id)
            except ImageScopeError as exc:
                report.failed[record.id] = str(exc)
        return report

    def update_captions(self, updates: Iterable[CaptionUpdate]) -> BulkReport:
        report = BulkReport()
        for update in updates:
            record = self._records.get(update.id)
            try:
                if record is None:
                    raise UnknownIdError("image", update.id)
                assert self.dim is not None
                vector = check_vector(update.caption_vector, self.dim)
                self._records[update.id] = replace(
                    record, caption=update.caption, caption_vector=vector
                )
                report.succeeded.append(update.id)
            except ImageScopeError as exc:
                report.failed[update.id] = str(exc)
        return report

    def delete(self, ids: Sequence[str]) -> int:
        return sum(self._records.pop(i, None) is not None for i in ids)

    def get(self, ids: Sequence[str], *, with_vectors: bool = False) -> list[CatalogRecord]:
        found = [self._records[i] for i in ids if i in self._records]
        if with_vectors:
            return found
        return [replace(r, image_vector=None, caption_vector=None) for r in found]

    def knn(
        self,
        field: VectorField,
        vectors: NDArray[np.float32],
        *,
        k: int,
        filters: Filters | None = None,
    ) -> list[list[Hit]]:
        validate_filters(filters, self.metadata_fields())
        if self.dim is None:
            return [[] for _ in np.atleast_2d(np.asarray(vectors))]
        queries = check_query_vectors(vectors, self.dim)
        pool, rows = [], []
        for record in self._records.values():
            vector = _vector(record, field)
            if vector is not None and matches_filters(record.metadata, filters):
                pool.append(record)
                rows.append(vector)
        if not pool:
            return [[] for _ in range(len(queries))]
        matrix = np.stack(rows)
        scores = queries @ matrix.T
        out = []
        for row in scores:
            order = sorted(range(len(pool)), key=lambda i: (-float(row[i]), pool[i].id))[:k]
            out.append([Hit(pool[i].id, float(row[i])) for i in order])
        return out

    def count(self) -> int:
        return len(self._records)

    def metadata_fields(self) -> set[str]:
        return {name for r in self._records.values() for name in r.metadata}
