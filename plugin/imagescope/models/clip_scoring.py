"""What the CLIP judges share: embedding each input once, and scoring contrasts.

``embed_unique`` embeds each distinct input once (or takes its stored vector);
``Texts`` holds the text vectors of one call (through the text-vector cache)
and the similarities the judges read; ``Scoring`` decides which alternatives
of a contrast count (see ``clip_judge``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from imagescope.models.base import Embedder, Vector, Vectors
from imagescope.models.clip_contrast import Contrast
from imagescope.models.text_cache import TextVectorCache

_Item = TypeVar("_Item")
#: The caption a presence score is measured from (it cancels each image's bias).
NEUTRAL = "a photo"


def embed_unique(
    items: Sequence[_Item],
    key: Callable[[_Item], Hashable],
    embed: Callable[[list[_Item]], Vectors],
    *,
    stored: Callable[[_Item], Vector | None] = lambda _item: None,
) -> list[np.ndarray]:
    """One row per input, in order: its ``stored`` vector (made unit length), else
    its embedding (each distinct input embedded once, all in one call)."""
    rows: dict[Hashable, np.ndarray] = {}
    unique: dict[Hashable, _Item] = {}
    for item in items:
        vector = stored(item)
        if vector is not None and key(item) not in rows:
            row = np.asarray(vector, dtype=np.float32).reshape(-1)
            rows[key(item)] = row / max(float(np.linalg.norm(row)), 1e-12)
    for item in items:
        if key(item) not in rows:
            unique.setdefault(key(item), item)
    if unique:
        embedded = embed(list(unique.values()))
        rows.update(zip(unique, embedded, strict=True))
    return [rows[key(item)] for item in items]


def sigmoid(x: float) -> float:
    return 0.5 * (1.0 + math.tanh(0.5 * x))


class Texts:
    """Embeds distinct texts once (through ``cache``); similarities to images and texts."""

    def __init__(self, embedder: Embedder, texts: Sequence[str], cache: TextVectorCache) -> None:
        unique = list(dict.fromkeys(texts))
        vectors = cache.embed(embedder, unique)
        self.rows = {text: vectors[n] for n, text in enumerate(unique)}

    def sims(self, image: np.ndarray, texts: Sequence[str]) -> list[float]:
        return [float(image @ self.rows[t]) for t in texts]

    def presence(self, image: np.ndarray, contrast: Contrast) -> float:
        """Similarity to the positive caption less similarity to "a photo"."""
        positive, neutral = self.sims(image, [contrast.positive, NEUTRAL])
        return positive - neutral

    def close(self, a: str, b: str, *, limit: float) -> bool:
        return float(self.rows[a] @ self.rows[b]) >= limit


@dataclass(frozen=True)
class Scoring:
    """Which alternatives of a contrast count; see ``ClipVerifier``."""

    max_alternative_similarity: float

    def lead(
        self, texts: Texts, image: np.ndarray, *, contrast: Contrast
    ) -> tuple[float, float] | None:
        """(claim minus best alternative, spread of the similarities) on ``image``;
        None when no alternative can be told apart from the claim."""
        kept = [
            a
            for a in contrast.alternatives
            if not texts.close(a, contrast.positive, limit=self.max_alternative_similarity)
        ]
        if not kept:
            return None
        claim, *others = texts.sims(image, [contrast.positive, *kept])
        spread = max(claim, *others) - min(claim, *others)
        return claim - max(others), spread


def all_texts(contrasts: Sequence[Contrast]) -> list[str]:
    return [NEUTRAL] + [t for c in contrasts for t in (c.positive, *c.alternatives, c.negative)]
