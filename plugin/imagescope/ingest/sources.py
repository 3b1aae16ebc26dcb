"""Readers that turn a folder or a catalog file into :class:`IngestItem` records.

- :func:`read_folder`: every image under a folder (recursive); the id is the
  path relative to the folder without its extension, the uri the absolute path.
- :func:`read_table`: a CSV (header row) or JSONL file with ``id``, ``path`` or
  ``url``, an optional ``caption``, and any other columns, which become
  metadata. CSV cells that look like numbers become numbers (``"0042"`` stays a
  string: leading zeros mark codes, not quantities); empty cells are left out.
  Relative paths are relative to the catalog file's folder.

Readers validate the whole input before returning, so a bad line stops an
ingest before anything is written. All problems are reported at once, each with
its line number, in one :class:`InputError`.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imagescope.errors import InputError

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".avif"}
)
#: Columns with a meaning of their own; every other column is metadata.
RESERVED_COLUMNS = frozenset({"id", "path", "url", "caption"})
_MAX_REPORTED_PROBLEMS = 20
_INT = re.compile(r"[+-]?(?:0|[1-9][0-9]*)")
_FLOAT = re.compile(r"[+-]?(?:[0-9]+\.[0-9]*|\.[0-9]+|[0-9]+)(?:[eE][+-]?[0-9]+)?")

MetadataValue = str | int | float | bool | list[str | int | float | bool]


@dataclass(frozen=True)
class IngestItem:
    """One image to ingest: its catalog id, where it lives, its caption if known."""

    id: str
    #: An absolute local path or an http(s) URL.
    uri: str
    #: A caption supplied with the image; ``None`` lets the captioner write one.
    caption: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


class _Problems:
    """Collects per-line problems; raises them together."""

    def __init__(self, source: Path) -> None:
        self.source = source
        self.lines: list[str] = []

    def add(self, line: int | None, message: str) -> None:
        where = f"{self.source}" if line is None else f"{self.source} line {line}"
        self.lines.append(f"{where}: {message}")

    def raise_if_any(self) -> None:
        if not self.lines:
            return
        shown = self.lines[:_MAX_REPORTED_PROBLEMS]
        more = len(self.lines) - len(shown)
        tail = f"\n... and {more} more" if more else ""
        raise InputError(
            f"{len(self.lines)} problem(s) in the ingest input; fix them and run again:\n"
            + "\n".join(shown)
            + tail
        )


# --------------------------------------------------------------------------- folder


def read_folder(root: str | Path) -> list[IngestItem]:
    """Every image file under ``root`` (recursive, hidden entries skipped), sorted by id.

    Raises :class:`InputError` when ``root`` is not a folder, holds no images, or
    two files map to the same id (``a.jpg`` and ``a.png``).
    """
    folder = Path(root).expanduser().resolve()
    if not folder.is_dir():
        raise InputError(f"{root!s} is not a folder; give the folder that holds the images")
    problems = _Problems(folder)
    seen: dict[str, Path] = {}
    for path in _image_files(folder):
        item_id = path.relative_to(folder).with_suffix("").as_posix()
        if item_id in seen:
            problems.add(None, f"{seen[item_id].name} and {path.name} both map to id {item_id!r}")
            continue
        seen[item_id] = path
    problems.raise_if_any()
    if not seen:
        extensions = ", ".join(sorted(IMAGE_EXTENSIONS))
        raise InputError(f"no images found under {folder} (looked for {extensions})")
    return [IngestItem(id=i, uri=str(p)) for i, p in sorted(seen.items())]


def _image_files(folder: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if not name.startswith(".") and path.suffix.lower() in IMAGE_EXTENSIONS:
                yield path


# --------------------------------------------------------------------------- tables


def read_table(path: str | Path) -> list[IngestItem]:
    """Items from a ``.csv`` or ``.jsonl`` / ``.ndjson`` catalog file, in file order.

    Raises :class:`InputError` naming every bad line: missing or duplicate ids,
    rows without ``path``/``url`` (or with both), files that do not exist,
    malformed JSON, nested metadata values.
    """
    table = Path(path).expanduser().resolve()
    if not table.is_file():
        raise InputError(f"catalog file not found: {path!s}")
    suffix = table.suffix.lower()
    if suffix == ".csv":
        rows = _csv_rows(table)
    elif suffix in {".jsonl", ".ndjson"}:
        rows = _jsonl_rows(table)
    else:
        raise InputError(f"{table.name}: catalog files must end in .csv, .jsonl or .ndjson")
    return _items_from_rows(table, rows)


def _items_from_rows(
    table: Path, rows: Iterable[tuple[int, Mapping[str, Any] | str]]
) -> list[IngestItem]:
    problems = _Problems(table)
    items: list[IngestItem] = []
    first_line: dict[str, int] = {}
    for line, row in rows:
        if isinstance(row, str):  # a row the format reader could not parse
            problems.add(line, row)
            continue
        try:
            item = _item_from_row(row, base=table.parent)
        except ValueError as exc:
            problems.add(line, str(exc))
            continue
        if item.id in first_line:
            problems.add(line, f"duplicate id {item.id!r} (first on line {first_line[item.id]})")
            continue
        first_line[item.id] = line
        items.append(item)
    problems.raise_if_any()
    if not items:
        raise InputError(f"{table}: no rows; give a header and one row per image")
    return items


def _item_from_row(row: Mapping[str, Any], *, base: Path) -> IngestItem:
    """Raises ValueError with a message fit for the user."""
    raw_id = row.get("id")
    if raw_id is None or isinstance(raw_id, bool) or str(raw_id).strip() == "":
        raise ValueError("missing id")
    if not isinstance(raw_id, str | int):
        raise ValueError(f"id must be a string, got {type(raw_id).__name__}")
    path, url = row.get("path"), row.get("url")
    if bool(path) == bool(url):
        raise ValueError("give exactly one of path or url")
    uri = _checked_url(str(url)) if url else _checked_path(str(path), base=base)
    caption = row.get("caption")
    if caption is not None and not isinstance(caption, str):
        raise ValueError("caption must be text")
    caption = (caption or "").strip() or None
    metadata = {k: _metadata_value(k, v) for k, v in row.items() if k not in RESERVED_COLUMNS}
    return IngestItem(
        id=str(raw_id).strip(),
        uri=uri,
        caption=caption,
        metadata={k: v for k, v in metadata.items() if v is not None},
    )


def _checked_path(text: str, *, base: Path) -> str:
    candidate = Path(text).expanduser()
    if not candidate.is_absolute():
        candidate = base / candidate
    resolved = candidate.resolve()
    if not resolved.is_file():
        raise ValueError(f"image file not found: {resolved} (relative paths start at {base})")
    return str(resolved)


def _checked_url(text: str) -> str:
    url = text.strip()
    if not url.lower().startswith(("http://", "https://")):
        raise ValueError(f"url must start with http:// or https://, got {url!r}")
    return url


def _metadata_value(name: str, value: Any) -> MetadataValue | None:
    if value is None or value == "":
        return None
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"column {name!r}: NaN and infinity are not valid metadata")
    if isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, list) and all(isinstance(v, str | int | float | bool) for v in value):
        return value
    raise ValueError(f"column {name!r}: metadata must be a text, number, boolean or list of them")


# --------------------------------------------------------------------------- formats


def _csv_rows(table: Path) -> Iterator[tuple[int, Mapping[str, Any] | str]]:
    with table.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        if "id" not in header:
            raise InputError(f"{table} line 1: the header needs an id column, got {header}")
        for row in reader:
            if None in row:
                yield reader.line_num, "more cells than header columns"
                continue
            yield reader.line_num, {k: _parse_cell(k, v) for k, v in row.items()}


def _parse_cell(column: str, cell: str | None) -> str | int | float | None:
    if cell is None:
        return None
    text = cell.strip()
    if column in RESERVED_COLUMNS:
        return text
    if _INT.fullmatch(text):
        return int(text)
    if _FLOAT.fullmatch(text) and not _looks_like_code(text):
        return float(text)
    return text


def _looks_like_code(text: str) -> bool:
    """``0042`` or ``007.5`` are codes (leading zeros), not numbers."""
    digits = text.lstrip("+-")
    return len(digits) > 1 and digits[0] == "0" and digits[1].isdigit()


def _jsonl_rows(table: Path) -> Iterator[tuple[int, Mapping[str, Any] | str]]:
    with table.open(encoding="utf-8-sig") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                yield line_number, f"invalid JSON ({exc.msg} at column {exc.colno})"
                continue
            if not isinstance(row, dict):
                yield line_number, "each line must be a JSON object"
                continue
            yield line_number, row
