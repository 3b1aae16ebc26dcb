"""Builds the configured vector store (backends imported lazily)."""

from __future__ import annotations

from imagescope.settings import StoreSettings
from imagescope.store.base import VectorStore


def build_store(settings: StoreSettings) -> VectorStore:
    if settings.kind == "opensearch":
        from imagescope.store.opensearch import OpenSearchStore

        return OpenSearchStore(settings.opensearch)
    from imagescope.store.embedded import EmbeddedStore

    return EmbeddedStore(settings.embedded)
