"""Catalog browsing for the search page: filterable fields and a reference-image picker.

``GET /v1/catalog/fields``
    The metadata fields filters may use (``VectorStore.metadata_fields``), each
    with its kind and the values seen in a sample of the catalog, so a client
    can offer check boxes for categories and ranges for numbers. Values are
    sampled (the store interface has no aggregation), so a rare value may be
    missing from the list; filtering on it still works.

``GET /v1/catalog/images?q=&limit=&offset=``
    Catalog images for choosing a reference. With ``q`` they are ranked by the
    method's fused stage-1 score for ``q`` taken literally (no reasoner call);
    without ``q`` by the same score for an empty text, which gives a stable,
    arbitrary order. The store interface has no id scan, so paging stops at
    ``MAX_BROWSE_DEPTH`` images; ``q`` reaches any image.

Both call engine methods (``Engine.rank_catalog``, ``metadata_fields``, ``count``);
neither writes anything.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Annotated, Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from imagescope.api.deps import EngineDep, require_api_key
from imagescope.api.schemas import ERROR_RESPONSES
from imagescope.engine import Engine

#: Deepest position the picker can page to (offset + limit).
MAX_BROWSE_DEPTH = 1000
#: Records read to describe the metadata fields.
FIELD_SAMPLE_SIZE = 500
#: A field with more distinct values than this is offered as free text or a range.
MAX_LISTED_VALUES = 50

Scalar = str | int | float | bool
FieldKind = Literal["keyword", "number", "boolean", "text"]


class CatalogField(BaseModel):
    name: str
    kind: FieldKind = Field(
        description="keyword: strings; number: ints/floats (ranges work); boolean; "
        "text: mixed or unseen in the sample."
    )
    values: list[Scalar] = Field(
        default_factory=list,
        description=f"Distinct values seen in the sample, sorted; empty when over "
        f"{MAX_LISTED_VALUES} or none seen.",
    )
    min: float | None = None
    max: float | None = None


class CatalogFields(BaseModel):
    count: int = Field(description="Images in the catalog.")
    sampled: int = Field(description="Images read to list the values.")
    fields: list[CatalogField]


class CatalogImage(BaseModel):
    id: str
    caption: str = ""
    metadata: dict[str, Any] = Field(default_factory=dict)
    thumbnail: str = Field(description="Relative URL of a thumbnail.")


class CatalogPage(BaseModel):
    items: list[CatalogImage]
    offset: int
    limit: int
    next_offset: int | None = Field(description="Offset of the next page; null at the end.")
    total: int = Field(description="Images in the catalog (not all reachable by paging).")


# --------------------------------------------------------------------------- logic


def _field_kind(values: list[Scalar]) -> FieldKind:
    if not values:
        return "text"
    if all(isinstance(v, bool) for v in values):
        return "boolean"
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return "number"
    if all(isinstance(v, str) for v in values):
        return "keyword"
    return "text"


def _value_order(value: Scalar) -> tuple[int, float, str]:
    """Booleans, then numbers by value, then strings: a total order over mixed values."""
    if isinstance(value, bool):
        return (0, float(value), "")
    if isinstance(value, int | float):
        return (1, float(value), "")
    return (2, 0.0, value)


def describe_field(name: str, seen: Iterable[Any]) -> CatalogField:
    """A field's kind, listed values and numeric range from the values seen."""
    scalars: list[Scalar] = []
    for value in seen:
        items = value if isinstance(value, list) else [value]
        for item in items:
            if isinstance(item, float) and not math.isfinite(item):
                continue
            if isinstance(item, str | int | float | bool):
                scalars.append(item)
    kind = _field_kind(scalars)
    distinct = sorted(set(scalars), key=_value_order)
    listed = distinct if len(distinct) <= MAX_LISTED_VALUES else []
    if kind != "number":
        return CatalogField(name=name, kind=kind, values=listed)
    numbers = [float(v) for v in scalars]
    return CatalogField(name=name, kind=kind, values=listed, min=min(numbers), max=max(numbers))


def catalog_fields(engine: Engine, *, sample_size: int = FIELD_SAMPLE_SIZE) -> CatalogFields:
    names = sorted(engine.metadata_fields())
    sample = [hit.record for hit in engine.rank_catalog("", depth=sample_size)] if names else []
    fields = [describe_field(n, (r.metadata[n] for r in sample if n in r.metadata)) for n in names]
    return CatalogFields(count=engine.count(), sampled=len(sample), fields=fields)


def thumbnail_url(image_id: str, size: int = 256) -> str:
    return f"v1/images/{quote(image_id, safe='')}/thumbnail?size={size}"


def catalog_images(engine: Engine, *, q: str = "", limit: int = 24, offset: int = 0) -> CatalogPage:
    """One page of catalog images ranked for ``q`` (see the module docstring)."""
    end = min(offset + limit, MAX_BROWSE_DEPTH)
    hits = (
        engine.rank_catalog(q.strip(), depth=min(end + 1, MAX_BROWSE_DEPTH)) if end > offset else []
    )
    page = hits[offset:end]
    more = len(hits) > end and end < MAX_BROWSE_DEPTH
    items = [
        CatalogImage(
            id=h.id,
            caption=h.record.caption,
            metadata=h.record.metadata,
            thumbnail=thumbnail_url(h.id),
        )
        for h in page
    ]
    return CatalogPage(
        items=items,
        offset=offset,
        limit=limit,
        next_offset=end if more else None,
        total=engine.count(),
    )


# --------------------------------------------------------------------------- routes


router = APIRouter(
    prefix="/v1/catalog",
    tags=["catalog"],
    dependencies=[Depends(require_api_key)],
    responses=ERROR_RESPONSES,
)


@router.get("/fields", response_model=CatalogFields)
def get_catalog_fields(engine: EngineDep) -> CatalogFields:
    """Filterable metadata fields with their kinds and sampled values."""
    return catalog_fields(engine)


@router.get("/images", response_model=CatalogPage)
def get_catalog_images(
    engine: EngineDep,
    q: Annotated[str, Query(max_length=500, description="Text to rank images by.")] = "",
    limit: Annotated[int, Query(ge=1, le=100)] = 24,
    offset: Annotated[int, Query(ge=0, lt=MAX_BROWSE_DEPTH)] = 0,
) -> CatalogPage:
    """Catalog images to pick a reference from, best match for ``q`` first."""
    return catalog_images(engine, q=q, limit=limit, offset=offset)
