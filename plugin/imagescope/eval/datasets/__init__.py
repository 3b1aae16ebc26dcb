"""Loaders for the six benchmarks, and a registry to pick one by name.

Every loader takes the dataset root (plus ``image_root`` when the images live
elsewhere, and ``check_images`` to skip the per-file existence check) and
returns a :class:`~imagescope.eval.benchmark.Benchmark`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from imagescope.eval.benchmark import Benchmark, DatasetError
from imagescope.eval.datasets.circo import load_circo
from imagescope.eval.datasets.cirr import load_cirr
from imagescope.eval.datasets.fashioniq import load_fashioniq
from imagescope.eval.datasets.synthetic import load_synthetic
from imagescope.eval.datasets.t2i import load_flickr30k, load_mscoco, load_text_to_image
from imagescope.eval.datasets.visdial import load_visdial

LOADERS: dict[str, Callable[..., Benchmark]] = {
    "cirr": load_cirr,
    "circo": load_circo,
    "fashioniq": load_fashioniq,
    "flickr30k": load_flickr30k,
    "mscoco": load_mscoco,
    "visdial": load_visdial,
    "synthetic": load_synthetic,
}


def load_benchmark(name: str, root: Path | str, **options: Any) -> Benchmark:
    """Load benchmark ``name`` (a key of :data:`LOADERS`) from ``root``.

    ``options`` go to the loader (``split``, ``image_root``, ``check_images``,
    FashionIQ ``categories``).
    """
    try:
        loader = LOADERS[name.lower()]
    except KeyError:
        raise DatasetError(
            f"unknown benchmark {name!r}; choose one of {', '.join(sorted(LOADERS))}"
        ) from None
    accepted = inspect.signature(loader).parameters
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise DatasetError(
            f"benchmark {name!r} takes no option {', '.join(unknown)}; it takes: "
            + ", ".join(p for p in accepted if p != "root")
        )
    return loader(root, **options)


__all__ = [
    "LOADERS",
    "load_benchmark",
    "load_circo",
    "load_cirr",
    "load_fashioniq",
    "load_flickr30k",
    "load_mscoco",
    "load_synthetic",
    "load_text_to_image",
    "load_visdial",
]
