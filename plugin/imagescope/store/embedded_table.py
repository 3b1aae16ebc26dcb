"""The embedded store's in-memory view of its catalog: ids, vector slots, metadata.

SQLite is the source of truth; this table is rebuilt from it on open and kept
in step with every committed write, so that filters are evaluated in memory and
turned into the set of vector *slots* the ANN search may return.

Slots: every vector version written to the catalog gets a new slot number from
a counter stored in SQLite, never reused. The ANN index is keyed by slot, so an
updated or deleted record leaves a dead slot in the index that searches exclude
(they only ever accept slots listed here as live).

Filter semantics are those of ``store.base.matches_filters``; this module only
makes them fast: equality and any-of look values up in a dict (Python ``==``
semantics, so ``1``, ``1.0`` and ``True`` are equal exactly as in
``matches_filters``), ranges compare a float column (booleans, strings and
missing values never match a range).
"""

from __future__ import annotations

import json
import math
import operator
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from imagescope.schemas import Filters, FilterValue
from imagescope.store.base import VectorField, matches_filters
from imagescope.store.embedded_index import Selection

VECTOR_FIELDS: tuple[VectorField, ...] = ("image", "caption")
NO_SLOT = -1
_SELECTION_CACHE_SIZE = 64

_RANGE_OPS: dict[str, Callable[[Any, Any], Any]] = {
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
}


def _grow(array: NDArray[Any], size: int, *, fill: Any) -> NDArray[Any]:
    """``array`` padded with ``fill`` to at least ``size`` entries (doubling)."""
    if size <= len(array):
        return array
    grown = np.full(max(size, 2 * len(array), 1024), fill, dtype=array.dtype)
    grown[: len(array)] = array
    return grown


def _as_number(value: Any) -> float:
    """The value a range filter compares, NaN when it cannot match a range."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return math.nan
    try:
        return float(value)
    except OverflowError:
        return math.nan


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


class _Column:
    """One metadata field over all rows: value -> rows, and a float column."""

    def __init__(self) -> None:
        self.by_value: dict[Any, set[int]] = {}
        #: Rows whose value cannot be a dict key (lists, dicts); checked one by one.
        self.unhashable: dict[int, Any] = {}
        self.numbers: NDArray[np.float64] = np.full(0, np.nan)
        self.present: NDArray[np.bool_] = np.zeros(0, dtype=bool)
        self.size = 0

    def add(self, row: int, value: Any) -> None:
        if _hashable(value):
            self.by_value.setdefault(value, set()).add(row)
        else:
            self.unhashable[row] = value
        self.numbers = _grow(self.numbers, row + 1, fill=np.nan)
        self.numbers[row] = _as_number(value)
        self.present = _grow(self.present, row + 1, fill=False)
        self.present[row] = True
        self.size += 1

    def remove(self, row: int, value: Any) -> None:
        if row in self.unhashable:
            del self.unhashable[row]
        else:
            rows = self.by_value.get(value)
            if rows is not None:
                rows.discard(row)
                if not rows:
                    del self.by_value[value]
        self.numbers[row] = np.nan
        self.present[row] = False
        self.size -= 1

    def mask(self, name: str, condition: FilterValue, *, capacity: int) -> NDArray[np.bool_]:
        """Rows (of ``capacity``) whose value satisfies ``condition``."""
        if isinstance(condition, dict):
            numbers = _grow(self.numbers, capacity, fill=np.nan)[:capacity]
            selected = np.ones(capacity, dtype=bool)
            for op, bound in condition.items():
                selected &= _RANGE_OPS[op](numbers, float(bound))
            return selected
        selected = np.zeros(capacity, dtype=bool)
        wanted = condition if isinstance(condition, list) else [condition]
        for value in wanted:
            rows = self.by_value.get(value) if _hashable(value) else None
            if rows:
                selected[np.fromiter(rows, dtype=np.int64, count=len(rows))] = True
        for row, value in self.unhashable.items():
            selected[row] = matches_filters({name: value}, {name: condition})
        if any(value is None for value in wanted):  # a missing field reads as None
            selected |= ~_grow(self.present, capacity, fill=False)[:capacity]
        return selected


class RecordTable:
    """Live records by row (the SQLite rowid): id, metadata, one slot per vector field."""

    def __init__(self) -> None:
        self._row_of: dict[str, int] = {}
        #: Record id by row (None for free rows).
        self._id_of: NDArray[np.object_] = np.full(0, None, dtype=object)
        self._metadata: dict[int, dict[str, Any]] = {}
        self._alive: NDArray[np.bool_] = np.zeros(0, dtype=bool)
        self._slots: dict[str, NDArray[np.int64]] = {
            f: np.zeros(0, dtype=np.int64) for f in VECTOR_FIELDS
        }
        self._slot_rows: dict[str, NDArray[np.int64]] = {
            f: np.zeros(0, dtype=np.int64) for f in VECTOR_FIELDS
        }
        self._columns: dict[str, _Column] = {}
        #: Selections by (field, filters); any change to the table empties it.
        self._selections: dict[tuple[str, str], Selection] = {}

    def __len__(self) -> int:
        return len(self._row_of)

    def __contains__(self, record_id: object) -> bool:
        return record_id in self._row_of

    def put(
        self,
        row: int,
        record_id: str,
        *,
        metadata: Mapping[str, Any],
        slots: Mapping[VectorField, int | None],
    ) -> None:
        """Insert or replace the record ``record_id`` (stored at ``row``)."""
        self._selections.clear()
        if record_id in self._row_of:
            self.remove([record_id])
        self._row_of[record_id] = row
        self._id_of = _grow(self._id_of, row + 1, fill=None)
        self._id_of[row] = record_id
        self._metadata[row] = dict(metadata)
        self._alive = _grow(self._alive, row + 1, fill=False)
        self._alive[row] = True
        for field_name in VECTOR_FIELDS:
            slot = slots.get(field_name)
            table = self._slots[field_name] = _grow(self._slots[field_name], row + 1, fill=NO_SLOT)
            table[row] = NO_SLOT if slot is None else slot
            if slot is not None:
                owners = _grow(self._slot_rows[field_name], slot + 1, fill=NO_SLOT)
                owners[slot] = row
                self._slot_rows[field_name] = owners
        for name, value in metadata.items():
            self._columns.setdefault(name, _Column()).add(row, value)

    def set_slot(self, record_id: str, field_name: VectorField, *, slot: int) -> None:
        """Point one vector field of an existing record at a new slot."""
        self._selections.clear()
        row = self._row_of[record_id]
        old = int(self._slots[field_name][row])
        if old != NO_SLOT:
            self._slot_rows[field_name][old] = NO_SLOT
        self._slots[field_name][row] = slot
        owners = self._slot_rows[field_name] = _grow(
            self._slot_rows[field_name], slot + 1, fill=NO_SLOT
        )
        owners[slot] = row

    def remove(self, record_ids: Iterable[str]) -> int:
        """Forget these records; returns how many existed."""
        self._selections.clear()
        removed = 0
        for record_id in record_ids:
            row = self._row_of.pop(record_id, None)
            if row is None:
                continue
            removed += 1
            self._id_of[row] = None
            self._alive[row] = False
            for field_name in VECTOR_FIELDS:
                slot = int(self._slots[field_name][row])
                if slot != NO_SLOT:
                    self._slot_rows[field_name][slot] = NO_SLOT
                self._slots[field_name][row] = NO_SLOT
            for name, value in self._metadata.pop(row).items():
                column = self._columns[name]
                column.remove(row, value)
                if column.size == 0:
                    del self._columns[name]
        return removed

    def fields(self) -> set[str]:
        """Metadata field names that at least one live record has."""
        return set(self._columns)

    def live_slots(self, field_name: VectorField) -> NDArray[np.int64]:
        """Slots of the live vectors of one field."""
        return self.allowed_slots(field_name, None)

    def selection(self, field_name: VectorField, filters: Filters | None) -> Selection:
        """``allowed_slots`` as a search selection, cached until the table changes."""
        key = (field_name, json.dumps(filters, sort_keys=True, default=repr) if filters else "")
        selection = self._selections.get(key)
        if selection is None:
            if len(self._selections) >= _SELECTION_CACHE_SIZE:
                self._selections.clear()
            selection = Selection(self.allowed_slots(field_name, filters))
            self._selections[key] = selection
        return selection

    def allowed_slots(self, field_name: VectorField, filters: Filters | None) -> NDArray[np.int64]:
        """Live slots of ``field_name`` whose record matches every filter (by row order).

        Filters must have been validated (``validate_filters``) by the caller.
        """
        capacity = len(self._alive)
        selected = self._alive.copy()
        for name, condition in (filters or {}).items():
            column = self._columns.get(name)
            if column is None:
                return np.zeros(0, dtype=np.int64)
            selected &= column.mask(name, condition, capacity=capacity)
        slots = _grow(self._slots[field_name], capacity, fill=NO_SLOT)[:capacity][selected]
        live: NDArray[np.int64] = slots[slots != NO_SLOT]
        return live

    def ids_of_slots(self, field_name: VectorField, slots: NDArray[np.int64]) -> list[str]:
        """The record ids owning live ``slots`` (every slot must be live)."""
        rows = self._slot_rows[field_name][np.asarray(slots, dtype=np.int64)]
        ids: list[str] = self._id_of[rows].tolist()
        if len(rows) and (rows.min() < 0 or None in ids):
            raise KeyError(f"slots without a live record: {slots}")
        return ids
