"""What a re-ingest has to do: content hashes of the items, kept in a small manifest.

An item's digest is a SHA-256 over its image file's bytes, its caption, its
metadata, its uri and the ids of the models that embed (and caption) it. The
manifest (a SQLite file, ``IngestManifest``) holds the digest last written for
each id, per *scope* (the store and the models the digests were written for).
On a re-ingest an item whose digest matches and whose id is still in the store
is *unchanged* and skipped: no image is decoded, nothing is embedded.

Images given by URL are not fetched twice to be hashed: they count as changed.
The store stays the source of truth: an id missing from the store is written
again whatever the manifest says, and a digest is recorded only once its record
was written.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterable
from pathlib import Path

from imagescope.closing import Closing
from imagescope.errors import ImageScopeError
from imagescope.ingest.images import read_local_file
from imagescope.ingest.sources import IngestItem
from imagescope.settings import ImageLimits, StoreSettings

_SCHEMA = """CREATE TABLE IF NOT EXISTS digests (
    scope TEXT NOT NULL, id TEXT NOT NULL, digest TEXT NOT NULL, PRIMARY KEY (scope, id))"""


def item_digest(item: IngestItem, *, limits: ImageLimits, models: str) -> str | None:
    """The item's content digest; None when it cannot be hashed (a URL, an unreadable file)."""
    if "://" in item.uri:
        return None
    try:
        data = read_local_file(item.uri, limits=limits)
    except ImageScopeError:
        return None  # the load reports why, for this id
    described = json.dumps(
        [item.uri, item.caption, item.metadata, models], sort_keys=True, default=str
    )
    return hashlib.sha256(hashlib.sha256(data).digest() + described.encode()).hexdigest()


class IngestManifest(Closing):
    """Digests last written per (scope, id), in a SQLite file.

    With ``rewrite`` no digest is known (every item is written again, as after
    ``imagescope ingest --force``) but new ones are still recorded.
    """

    def __init__(self, path: Path, *, scope: str, rewrite: bool = False) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.scope = scope
        self.rewrite = rewrite
        self._db = sqlite3.connect(path, check_same_thread=False)
        with self._db:
            self._db.execute(_SCHEMA)

    def digests(self, ids: Iterable[str]) -> dict[str, str]:
        if self.rewrite:
            return {}
        wanted = list(ids)
        found: dict[str, str] = {}
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT id, digest FROM digests WHERE scope = ? AND id IN ({marks})",
                [self.scope, *chunk],
            )
            found.update((row[0], row[1]) for row in rows)
        return found

    def record(self, digests: dict[str, str]) -> None:
        with self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO digests (scope, id, digest) VALUES (?, ?, ?)",
                [(self.scope, i, d) for i, d in digests.items()],
            )

    def close(self) -> None:
        self._db.close()


class ChangeTracker:
    """Splits each batch into unchanged items and items to write; records written digests."""

    def __init__(self, manifest: IngestManifest, *, limits: ImageLimits, models: str) -> None:
        self._manifest = manifest
        self._limits = limits
        self._models = models
        self._pending: dict[str, str] = {}

    def changed(self, batch: list[IngestItem], present: set[str]) -> list[IngestItem]:
        """The items of ``batch`` to write (``present``: ids the store holds)."""
        digests = {
            item.id: item_digest(item, limits=self._limits, models=self._models) for item in batch
        }
        known = self._manifest.digests(i for i, d in digests.items() if d is not None)
        out = []
        for item in batch:
            digest = digests[item.id]
            if digest is not None and item.id in present and known.get(item.id) == digest:
                continue
            if digest is not None:
                self._pending[item.id] = digest
            out.append(item)
        return out

    def written(self, ids: Iterable[str]) -> None:
        """Records the digests of ``ids``, whose records the store accepted."""
        done = {i: self._pending.pop(i) for i in ids if i in self._pending}
        if done:
            self._manifest.record(done)


def store_scope(store: StoreSettings) -> str:
    """Which catalog digests belong to: the embedded folder, or the OpenSearch hosts + index."""
    if store.kind == "embedded":
        return f"embedded:{store.embedded.path.expanduser().resolve()}"
    return f"opensearch:{','.join(sorted(store.opensearch.hosts))}/{store.opensearch.index}"
