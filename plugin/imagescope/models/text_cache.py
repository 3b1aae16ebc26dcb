"""A bounded LRU cache of text embeddings, keyed by (embedder model id, text).

The CPU judges embed the same captions over and over: "a photo", and the
contrast captions of recurring attribute values. ``TextVectorCache.embed``
returns one row per input text, embeds the texts it has not seen (each
distinct text once, all of them in one ``embed_texts`` call) and keeps the
most recently used ``max_items`` rows. Thread-safe; rows are read-only.

A model id names weights only as far as its embedder says: two randomly
initialised models of one architecture share an id. So the judges use
``cache_for(embedder)``, one cache per embedder object, shared by every judge
built on that object; a cache shared across embedder objects is for callers
whose model ids name the weights.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np

from imagescope.errors import ConfigError
from imagescope.models.base import Embedder, Vector, Vectors

#: Rows kept by the shared cache (4096 x 512 float32 is 8 MiB).
DEFAULT_MAX_ITEMS = 4096


class TextVectorCache:
    """LRU text embeddings of any number of embedders (see the module docstring)."""

    def __init__(self, max_items: int = DEFAULT_MAX_ITEMS) -> None:
        if max_items < 0:
            raise ConfigError(f"max_items must be 0 (cache off) or more, got {max_items}")
        self.max_items = max_items
        self.hits = 0
        self.misses = 0
        self._rows: OrderedDict[tuple[str, str], Vector] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._rows)

    def embed(self, embedder: Embedder, texts: Sequence[str]) -> Vectors:
        """``embedder.embed_texts(texts)``, served from the cache where possible."""
        model = embedder.model_id
        found = self._lookup(model, texts)
        missing = [t for t in dict.fromkeys(texts) if t not in found]
        if missing:
            fresh = np.asarray(embedder.embed_texts(missing), dtype=np.float32)
            fresh.setflags(write=False)
            rows = dict(zip(missing, fresh, strict=True))
            self._store(model, rows)
            found.update(rows)
        if not texts:
            return np.zeros((0, embedder.dim), dtype=np.float32)
        return np.stack([found[t] for t in texts])

    def clear(self) -> None:
        with self._lock:
            self._rows.clear()

    def _lookup(self, model: str, texts: Sequence[str]) -> dict[str, Vector]:
        found: dict[str, Vector] = {}
        with self._lock:
            for text in dict.fromkeys(texts):
                row = self._rows.get((model, text))
                if row is not None:
                    self._rows.move_to_end((model, text))
                    found[text] = row
            self.hits += len(found)
            self.misses += len(set(texts)) - len(found)
        return found

    def _store(self, model: str, rows: dict[str, Vector]) -> None:
        with self._lock:
            for text, row in rows.items():
                self._rows[(model, text)] = row
                self._rows.move_to_end((model, text))
            while len(self._rows) > self.max_items:
                self._rows.popitem(last=False)


_PER_EMBEDDER: weakref.WeakKeyDictionary[Embedder, TextVectorCache] = weakref.WeakKeyDictionary()
_PER_EMBEDDER_LOCK = threading.Lock()


def cache_for(embedder: Embedder) -> TextVectorCache:
    """The cache of this embedder object (made on first use, dropped with it)."""
    with _PER_EMBEDDER_LOCK:
        cache = _PER_EMBEDDER.get(embedder)
        if cache is None:
            cache = _PER_EMBEDDER[embedder] = TextVectorCache()
        return cache
