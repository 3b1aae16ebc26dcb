"""The vector-store interface shared by OpenSearch and the embedded store.

A catalog record is one image: its id, its CLIP image vector, optionally the
CLIP text vector of its generated caption, the caption, where the image lives
(``uri``: a path or URL) and flat metadata used by filters.

Filters (``schemas.Filters``) are a dict of field -> condition, all of which
must hold:  ``"red"`` (equals), ``["red", "blue"]`` (any of),
``{"gte": 10, "lt": 20}`` (numeric range). Filters are applied *inside* the
nearest-neighbour search, never after it, so a selective filter still returns
``k`` hits when ``k`` matching records exist. A filter on a field that no
record has raises ``UnknownFilterFieldError``.
"""

from __future__ import annotations

import functools
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from imagescope.closing import Closing
from imagescope.errors import InvalidVectorError
from imagescope.schemas import Filters

VectorField = Literal["image", "caption"]
RANGE_OPS = frozenset({"gt", "gte", "lt", "lte"})


@dataclass
class CatalogRecord:
    id: str
    image_vector: NDArray[np.float32] | None = None
    caption_vector: NDArray[np.float32] | None = None
    caption: str = ""
    uri: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CaptionUpdate:
    """Backfill of a record's caption (and its text vector) by id."""

    id: str
    caption: str
    caption_vector: NDArray[np.float32]


@dataclass(frozen=True)
class Hit:
    id: str
    #: Cosine similarity (vectors are unit length).
    score: float


@dataclass
class BulkReport:
    """Outcome of a bulk write: every input id is in exactly one of the two."""

    succeeded: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    def merge(self, other: BulkReport) -> None:
        self.succeeded.extend(other.succeeded)
        self.failed.update(other.failed)


class VectorStore(Closing, ABC):
    """A persistent catalog of image vectors with filtered k-NN search.

    Contract:
    - ``ensure(dim)`` creates the catalog or validates it; an existing catalog
      of another dimension raises ``DimensionMismatchError``.
    - ``upsert`` is idempotent by id (same id -> replaced in place); vectors of
      the wrong dimension or with NaN/inf fail that record only (reported in
      ``BulkReport.failed``), never the batch.
    - ``knn`` returns, per query vector, up to ``k`` hits sorted by descending
      cosine similarity, ties broken by ascending id.
    - ``get`` returns the records that exist, in the order asked; missing ids are
      left out (callers decide whether that is an error).
    - Unreachable backends raise ``StoreUnavailableError`` after bounded retries.

    The argument checks every backend shares (``k`` at least 1, a known vector
    field) run here, before a backend's ``knn``: :meth:`__init_subclass__` wraps
    each subclass's ``knn`` with :func:`check_knn_args`, so no backend can skip
    them or word them differently.
    """

    dim: int | None = None
    name: str = "store"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        knn = cls.__dict__.get("knn")
        if knn is not None and not getattr(knn, "__isabstractmethod__", False):
            cls.knn = _checked_knn(knn)  # type: ignore[method-assign]

    @abstractmethod
    def ensure(self, dim: int) -> None: ...

    @abstractmethod
    def upsert(self, records: Iterable[CatalogRecord]) -> BulkReport: ...

    @abstractmethod
    def update_captions(self, updates: Iterable[CaptionUpdate]) -> BulkReport: ...

    @abstractmethod
    def delete(self, ids: Sequence[str]) -> int: ...

    @abstractmethod
    def get(self, ids: Sequence[str], *, with_vectors: bool = False) -> list[CatalogRecord]: ...

    @abstractmethod
    def knn(
        self,
        field: VectorField,
        vectors: NDArray[np.float32],
        *,
        k: int,
        filters: Filters | None = None,
    ) -> list[list[Hit]]: ...

    @abstractmethod
    def count(self) -> int: ...

    @abstractmethod
    def metadata_fields(self) -> set[str]:
        """The metadata field names filters may use."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (files, connections)."""


# --------------------------------------------------------------------------- shared checks

VECTOR_FIELDS: tuple[VectorField, ...] = ("image", "caption")
_KnnMethod = Callable[..., list[list[Hit]]]


def check_knn_args(field: str, k: int) -> None:
    """The store contract's argument checks for ``knn`` (``InputError``, HTTP 400)."""
    from imagescope.errors import InputError

    if field not in VECTOR_FIELDS:
        raise InputError(f"unknown vector field {field!r}; use 'image' or 'caption'")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise InputError(f"k must be an integer of at least 1, got {k!r}")


def _checked_knn(knn: _KnnMethod) -> _KnnMethod:
    if getattr(knn, "_contract_checked", False):
        return knn

    @functools.wraps(knn)
    def checked(
        self: VectorStore,
        field: VectorField,
        vectors: NDArray[np.float32],
        *,
        k: int,
        filters: Filters | None = None,
    ) -> list[list[Hit]]:
        check_knn_args(field, k)
        return knn(self, field, vectors, k=k, filters=filters)

    checked._contract_checked = True  # type: ignore[attr-defined]
    return checked


def check_vector(vector: NDArray[Any] | Sequence[float], dim: int) -> NDArray[np.float32]:
    """Validate one vector: right dimension, finite values. Returns float32."""
    arr = np.asarray(vector, dtype=np.float32)
    if arr.ndim != 1 or arr.shape[0] != dim:
        raise InvalidVectorError(f"expected a {dim}-d vector, got shape {tuple(arr.shape)}")
    if not np.all(np.isfinite(arr)):
        raise InvalidVectorError("vector contains NaN or inf values")
    return arr


def check_query_vectors(vectors: NDArray[Any], dim: int) -> NDArray[np.float32]:
    arr = np.asarray(vectors, dtype=np.float32)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != dim:
        raise InvalidVectorError(f"expected query vectors of shape (n, {dim}), got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise InvalidVectorError("query vector contains NaN or inf values")
    return arr


def matches_filters(metadata: Mapping[str, Any], filters: Filters | None) -> bool:
    """Python evaluation of the filter language (the embedded store's reference)."""
    for name, cond in (filters or {}).items():
        value = metadata.get(name)
        if isinstance(cond, dict):
            if value is None or isinstance(value, str | bool):
                return False
            number = float(value)
            if math.isnan(number):
                return False
            for op, bound in cond.items():
                if op == "gt" and not number > bound:
                    return False
                if op == "gte" and not number >= bound:
                    return False
                if op == "lt" and not number < bound:
                    return False
                if op == "lte" and not number <= bound:
                    return False
        elif isinstance(cond, list):
            if value not in cond:
                return False
        elif value != cond:
            return False
    return True


def validate_filters(filters: Filters | None, known_fields: set[str]) -> None:
    """Raise a clear error for unknown fields or malformed range operators."""
    from imagescope.errors import InputError, UnknownFilterFieldError

    for name, cond in (filters or {}).items():
        if name not in known_fields:
            known = ", ".join(sorted(known_fields)) or "(none)"
            raise UnknownFilterFieldError(
                f"unknown filter field {name!r}; the catalog has: {known}"
            )
        if isinstance(cond, dict):
            bad = set(cond) - RANGE_OPS
            if bad or not cond:
                raise InputError(
                    f"filter {name!r}: a range takes gt, gte, lt, lte; got {sorted(cond)}"
                )
