"""Catalog records <-> OpenSearch documents, through the field-name mapping.

A managed index (created by ImageScope) gets whole documents. An adopted index
gets partial writes: an existing document only has ImageScope's own fields set
(``caption``, ``caption_vector``: :meth:`Documents.own_fields`), a new one is
created whole (``upsert``), and a field the mapping does not declare fails that
record (:meth:`Documents.check_declared`) instead of becoming a dynamic field.
Vectors stay float32 numpy arrays in the actions; the client's serializer
writes them (:mod:`imagescope.store.opensearch_json`). Reading back,
``fields.text`` (a user's text field, e.g. ``title``) stands in for an empty
caption; it is never written.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from imagescope.errors import InputError
from imagescope.settings import FieldMapping
from imagescope.store.base import CatalogRecord, check_vector
from imagescope.store.mappings import CatalogLayout, check_metadata, check_record_id


def is_blank(value: Any) -> bool:
    """``None`` or an empty string (a field a partial write leaves out); never an array."""
    return value is None or (isinstance(value, str) and not value)


class Documents:
    """Builds bulk actions from records and records from hits for one field mapping."""

    def __init__(self, fields: FieldMapping) -> None:
        self.fields = fields

    def source(self, record: CatalogRecord, dim: int) -> dict[str, Any]:
        """The ``_source`` of one record; ``InputError`` when it cannot be stored."""
        check_record_id(record.id)
        if record.image_vector is None:
            raise InputError(f"record {record.id!r} has no image vector; every record needs one")
        names = self.fields
        doc: dict[str, Any] = {
            names.image_vector: check_vector(record.image_vector, dim),
            names.caption: record.caption,
            names.uri: record.uri,
        }
        if record.caption_vector is not None:
            doc[names.caption_vector] = check_vector(record.caption_vector, dim)
        metadata = check_metadata(record.metadata)
        if names.metadata:
            doc[names.metadata] = metadata
        else:
            clash = set(metadata) & {*doc, names.caption_vector}
            if clash:
                raise InputError(f"metadata fields {sorted(clash)} clash with catalog fields")
            doc.update(metadata)
        return doc

    def own_fields(self, record: CatalogRecord, dim: int) -> dict[str, Any]:
        """ImageScope's own fields of a record (what an existing adopted doc may get)."""
        own: dict[str, Any] = {}
        if record.caption:
            own[self.fields.caption] = record.caption
        if record.caption_vector is not None:
            own[self.fields.caption_vector] = check_vector(record.caption_vector, dim)
        return own

    def check_declared(self, doc: Mapping[str, Any], layout: CatalogLayout) -> None:
        """``InputError`` for a field the mapping lacks (it would become a dynamic field)."""
        paths = set(doc)
        if self.fields.metadata and isinstance(doc.get(self.fields.metadata), Mapping):
            meta = doc[self.fields.metadata]
            paths |= {f"{self.fields.metadata}.{name}" for name in meta}
        unknown = sorted(paths - layout.declared)
        if unknown:
            raise InputError(
                f"fields {unknown} are not in the index mapping and would be added as dynamic "
                "fields; add them to the mapping yourself or leave them out"
            )

    def action(
        self, record: CatalogRecord, layout: CatalogLayout, dim: int, index: str
    ) -> dict[str, Any]:
        """The bulk action for ``record``: whole (managed index) or partial (adopted index)."""
        source = self.source(record, dim)
        if layout.managed:
            return {"_op_type": "index", "_index": index, "_id": record.id, "_source": source}
        source = {k: v for k, v in source.items() if not is_blank(v)}
        self.check_declared(source, layout)
        return {
            "_op_type": "update",
            "_index": index,
            "_id": record.id,
            "doc": self.own_fields(record, dim),
            "upsert": source,
        }

    def record(self, doc: Mapping[str, Any], *, with_vectors: bool) -> CatalogRecord:
        names = self.fields
        source: dict[str, Any] = dict(doc.get("_source") or {})
        vectors: dict[str, NDArray[np.float32] | None] = {}
        for key in (names.image_vector, names.caption_vector):
            raw = source.pop(key, None)
            vectors[key] = np.asarray(raw, dtype=np.float32) if with_vectors and raw else None
        caption = source.pop(names.caption, None) or ""
        if not caption and names.text:
            caption = source.get(names.text) or ""  # the user's text, read only
        uri = source.pop(names.uri, None) or ""
        metadata = (source.get(names.metadata) or {}) if names.metadata else source
        return CatalogRecord(
            id=doc["_id"],
            image_vector=vectors[names.image_vector],
            caption_vector=vectors[names.caption_vector],
            caption=str(caption),
            uri=str(uri),
            metadata=dict(metadata),
        )
