"""Builds the configured vector store: a registry (kind -> builder), backends imported lazily."""

from __future__ import annotations

from collections.abc import Callable

from imagescope.errors import ConfigError
from imagescope.settings import StoreSettings
from imagescope.store.base import VectorStore

StoreBuilder = Callable[[StoreSettings], VectorStore]


def _embedded(settings: StoreSettings) -> VectorStore:
    from imagescope.store.embedded import EmbeddedStore

    return EmbeddedStore(settings.embedded)


def _opensearch(settings: StoreSettings) -> VectorStore:
    from imagescope.store.opensearch import OpenSearchStore

    return OpenSearchStore(settings.opensearch)


def _memory(_settings: StoreSettings) -> VectorStore:
    from imagescope.store.memory import MemoryStore

    return MemoryStore()


STORES: dict[str, StoreBuilder] = {
    "embedded": _embedded,
    "opensearch": _opensearch,
    "memory": _memory,
}


def known_kinds() -> list[str]:
    """The store kinds ``store.kind`` accepts, sorted."""
    return sorted(STORES)


def build_store(settings: StoreSettings) -> VectorStore:
    """The store ``settings.kind`` names; ``ConfigError`` listing the kinds otherwise."""
    builder = STORES.get(settings.kind)
    if builder is None:
        raise ConfigError(
            f"store.kind={settings.kind!r} is not supported; use one of: "
            f"{', '.join(known_kinds())} (env IMAGESCOPE_STORE__KIND)"
        )
    return builder(settings)
