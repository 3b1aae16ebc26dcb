"""ImageScope for OpenSearch: language-guided image retrieval with LMM verification.

Search in three lines (the bundled synthetic catalog, no download)::

    import imagescope
    with imagescope.open(catalog="synthetic") as engine:
        print(engine.search("a red circle", stages=[1]).candidates[0].id)

Names are imported on first use, so ``import imagescope`` stays light (no torch).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: Public name -> module that defines it.
_EXPORTS = {
    "open": "imagescope.wiring",
    "Engine": "imagescope.engine",
    "Settings": "imagescope.settings",
    "Query": "imagescope.schemas",
    "TextQuery": "imagescope.schemas",
    "ComposedQuery": "imagescope.schemas",
    "DialogQuery": "imagescope.schemas",
    "DialogTurn": "imagescope.schemas",
    "ImageRef": "imagescope.schemas",
    "SearchResult": "imagescope.schemas",
    "Candidate": "imagescope.schemas",
    "ImageScopeError": "imagescope.errors",
}

__all__ = [
    "Candidate",
    "ComposedQuery",
    "DialogQuery",
    "DialogTurn",
    "Engine",
    "ImageRef",
    "ImageScopeError",
    "Query",
    "SearchResult",
    "Settings",
    "TextQuery",
    "__version__",
    "open",
]

if TYPE_CHECKING:
    from imagescope.engine import Engine
    from imagescope.errors import ImageScopeError
    from imagescope.schemas import (
        Candidate,
        ComposedQuery,
        DialogQuery,
        DialogTurn,
        ImageRef,
        Query,
        SearchResult,
        TextQuery,
    )
    from imagescope.settings import Settings
    from imagescope.wiring import open


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'imagescope' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
