"""A procedurally drawn image catalog whose every picture is known exactly.

Each item is a small scene: ``count`` (1-3) shapes of one ``category``, one
``colour`` and one ``pattern``, grouped at one ``position`` of a plain
``background``. Because the attributes are data, any query's ground truth can
be computed exactly (see :mod:`imagescope.synthetic.queries`).

Drawing is deterministic: the small per-item jitter (size, offset, shade) is
seeded by the item id, and shapes are drawn at 4x scale and downsampled, so
the same item always gives the same pixels at a given size.

The catalog caption imitates an imperfect captioner: it always names the
category and the colour, and each other attribute with probability
``caption_detail``; the image carries the rest. :func:`describe` writes the
fuller, varied phrasings used for training and queries.
"""

from __future__ import annotations

import csv
import hashlib
import math
import random
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from imagescope.errors import InputError

Attributes = dict[str, Any]
RGB = tuple[int, int, int]

CATEGORIES: tuple[str, ...] = ("circle", "square", "triangle", "star", "diamond", "cross")
PLURALS: dict[str, str] = {c: c + ("es" if c == "cross" else "s") for c in CATEGORIES}
COLOURS: dict[str, RGB] = {
    "red": (215, 35, 35),
    "orange": (245, 135, 20),
    "yellow": (240, 210, 30),
    "green": (35, 155, 60),
    "blue": (35, 80, 215),
    "purple": (125, 45, 165),
    "pink": (240, 120, 180),
    "black": (25, 25, 25),
}
COUNTS: tuple[int, ...] = (1, 2, 3)
PATTERNS: tuple[str, ...] = ("plain", "striped", "dotted")
POSITIONS: tuple[str, ...] = ("left", "right", "top", "bottom", "centre")
BACKGROUNDS: dict[str, RGB] = {
    "white": (248, 248, 248),
    "grey": (160, 160, 160),
    "beige": (232, 215, 180),
    "navy": (28, 36, 92),
}
#: Attribute name -> its possible values, in a fixed order.
VALUES: dict[str, tuple[Any, ...]] = {
    "category": CATEGORIES,
    "colour": tuple(COLOURS),
    "count": COUNTS,
    "pattern": PATTERNS,
    "position": POSITIONS,
    "background": tuple(BACKGROUNDS),
}
ATTRIBUTES: tuple[str, ...] = tuple(VALUES)
#: (colour, background) pairs too close to see; never drawn.
FORBIDDEN: frozenset[tuple[str, str]] = frozenset({("black", "navy")})

NUMBER_WORDS = {1: "one", 2: "two", 3: "three"}
POSITION_PHRASES = {
    "left": "on the left",
    "right": "on the right",
    "top": "at the top",
    "bottom": "at the bottom",
    "centre": "in the centre",
}
PATTERN_WORDS = {"plain": "plain", "striped": "striped", "dotted": "dotted"}
PATTERN_NOUNS = {"striped": "stripes", "dotted": "dots"}

_SCALE = 4  # supersampling factor
_SPACING = 20.0  # distance between neighbouring shapes, in 64-px units
_LAYOUT = {  # group centre (x, y) and direction the shapes line up along
    "left": ((16.0, 32.0), (0.0, 1.0)),
    "right": ((48.0, 32.0), (0.0, 1.0)),
    "top": ((32.0, 16.0), (1.0, 0.0)),
    "bottom": ((32.0, 48.0), (1.0, 0.0)),
    "centre": ((32.0, 32.0), (1.0, 0.0)),
}


@dataclass(frozen=True)
class SyntheticItem:
    """One catalog image: its id, its exact attributes, and its caption."""

    id: str
    attributes: Attributes = field(hash=False)
    caption: str = ""


def check_attributes(attributes: Mapping[str, Any], *, partial: bool = False) -> None:
    """Raise ``InputError`` naming the bad attribute and its allowed values."""
    unknown = set(attributes) - set(ATTRIBUTES)
    if unknown:
        raise InputError(f"unknown attribute(s) {sorted(unknown)}; use {list(ATTRIBUTES)}")
    missing = [] if partial else [a for a in ATTRIBUTES if a not in attributes]
    if missing:
        raise InputError(f"missing attribute(s) {missing}; an item needs all of {ATTRIBUTES}")
    for name, value in attributes.items():
        if value not in VALUES[name]:
            raise InputError(f"{name}={value!r} is not one of {list(VALUES[name])}")


def is_drawable(attributes: Mapping[str, Any]) -> bool:
    return (attributes.get("colour"), attributes.get("background")) not in FORBIDDEN


# --------------------------------------------------------------------------- text


def noun_phrase(
    attributes: Mapping[str, Any], *, plural: bool, rng: random.Random | None = None
) -> str:
    """'two red striped squares' from whichever of count/colour/pattern/category are given.

    ``plural`` sets the grammatical number when the count itself is not said.
    """
    words: list[str] = []
    count = attributes.get("count")
    if count is not None and count > 1:
        words.append(NUMBER_WORDS[count])
    elif count == 1 and rng is not None and rng.random() < 0.3:
        words.append("one")
    elif not plural:
        words.append("a")
    pattern = attributes.get("pattern")
    if pattern == "plain":
        words.append("plain")
    if "colour" in attributes:
        words.append(attributes["colour"])
    if pattern in PATTERN_NOUNS:
        words.append(PATTERN_WORDS[pattern])
    noun = attributes.get("category", "shape")
    words.append(PLURALS.get(noun, noun + "s") if plural else noun)
    if words[0] == "a" and words[1][0] in "aeiou":
        words[0] = "an"
    return " ".join(words)


def describe(
    attributes: Mapping[str, Any],
    *,
    rng: random.Random | None = None,
    mention: Collection[str] | None = None,
) -> str:
    """A description of the attributes in ``mention`` (default: all given).

    Without ``rng`` the phrasing is the canonical one ("two red striped squares
    on the left on a white background"); with ``rng`` the word order and
    phrasing vary (stripes as an adjective or "with stripes", the position
    before or after the noun), the variety the tiny CLIP is trained on.
    """
    names = [a for a in ATTRIBUTES if a in attributes and (mention is None or a in mention)]
    shown = {a: attributes[a] for a in names}
    pattern = shown.get("pattern")
    # "with stripes" / "with no pattern" after the noun instead of an adjective.
    trailing = rng is not None and pattern is not None and rng.random() < 0.35
    core = {a: v for a, v in shown.items() if a not in ("position", "background")}
    if trailing:
        core.pop("pattern")
    plural = int(attributes.get("count", 1)) > 1
    phrase = noun_phrase(core, plural=plural, rng=rng)
    if trailing:
        phrase += (
            f" with {PATTERN_NOUNS[pattern]}" if pattern in PATTERN_NOUNS else " with no pattern"
        )
    position = POSITION_PHRASES.get(shown.get("position", ""), "")
    background = f"on a {shown['background']} background" if "background" in shown else ""
    if rng is not None and position and rng.random() < 0.2:
        return " ".join(p for p in (position, phrase, background) if p)
    return " ".join(p for p in (phrase, position, background) if p)


def catalog_caption(attributes: Mapping[str, Any], rng: random.Random, *, detail: float) -> str:
    """What an imperfect captioner would say: category and colour, then some of the rest."""
    mention = {"category", "colour"}
    mention.update(
        a for a in ("count", "pattern", "position", "background") if rng.random() < detail
    )
    return describe(attributes, mention=mention)


# --------------------------------------------------------------------------- drawing


def _item_rng(item_id: str) -> random.Random:
    digest = hashlib.sha256(item_id.encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "little"))


def _jitter(colour: RGB, rng: random.Random, *, amount: int) -> RGB:
    r, g, b = (max(0, min(255, c + rng.randint(-amount, amount))) for c in colour)
    return (r, g, b)


def _pattern_colour(colour: RGB) -> RGB:
    """A darker shade on light colours, a lighter one on dark colours."""
    luminance = 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2]
    if luminance < 80:
        return (150, 150, 150)
    r, g, b = (int(c * 0.45) for c in colour)
    return (r, g, b)


def _shape_points(
    category: str, centre: tuple[float, float], *, r: float
) -> list[tuple[float, float]]:
    cx, cy = centre
    if category == "square":
        h = r * 0.85
        return [(cx - h, cy - h), (cx + h, cy - h), (cx + h, cy + h), (cx - h, cy + h)]
    if category == "triangle":
        return [(cx, cy - r), (cx + r * 0.95, cy + r * 0.8), (cx - r * 0.95, cy + r * 0.8)]
    if category == "diamond":
        return [(cx, cy - r), (cx + r * 0.8, cy), (cx, cy + r), (cx - r * 0.8, cy)]
    if category == "star":
        points = []
        for k in range(10):
            radius = r if k % 2 == 0 else r * 0.45
            angle = -math.pi / 2 + k * math.pi / 5
            points.append((cx + radius * math.cos(angle), cy + radius * math.sin(angle)))
        return points
    if category == "cross":
        a, w = r, r * 0.36
        return [
            (cx - w, cy - a), (cx + w, cy - a), (cx + w, cy - w), (cx + a, cy - w),
            (cx + a, cy + w), (cx + w, cy + w), (cx + w, cy + a), (cx - w, cy + a),
            (cx - w, cy + w), (cx - a, cy + w), (cx - a, cy - w), (cx - w, cy - w),
        ]  # fmt: skip
    raise InputError(f"cannot draw category {category!r}; use one of {list(CATEGORIES)}")


def _shape_mask(
    category: str, centres: Sequence[tuple[float, float]], *, r: float, px: int
) -> Image.Image:
    mask = Image.new("L", (px, px), 0)
    pen = ImageDraw.Draw(mask)
    for cx, cy in centres:
        if category == "circle":
            pen.ellipse((cx - r, cy - r, cx + r, cy + r), fill=255)
        else:
            pen.polygon(_shape_points(category, (cx, cy), r=r), fill=255)
    return mask


def _fill(pattern: str, colour: RGB, *, px: int, unit: float) -> Image.Image:
    layer = Image.new("RGB", (px, px), colour)
    if pattern == "plain":
        return layer
    pen = ImageDraw.Draw(layer)
    ink = _pattern_colour(colour)
    period = 4 * unit
    if pattern == "striped":
        y = 0.0
        while y < px:
            pen.rectangle((0, y, px, y + period / 2 - 1), fill=ink)
            y += period
    else:
        step, dot = 5 * unit, 1.1 * unit
        for i in range(int(px / step) + 1):
            for j in range(int(px / step) + 1):
                x0, y0 = (i + 0.5) * step, (j + 0.5) * step
                pen.ellipse((x0 - dot, y0 - dot, x0 + dot, y0 + dot), fill=ink)
    return layer


def _centres(attributes: Mapping[str, Any], rng: random.Random) -> list[tuple[float, float]]:
    (gx, gy), (dx, dy) = _LAYOUT[attributes["position"]]
    gx += rng.uniform(-1.5, 1.5)
    gy += rng.uniform(-1.5, 1.5)
    n = attributes["count"]
    offsets = [(k - (n - 1) / 2) * _SPACING for k in range(n)]
    return [(gx + o * dx, gy + o * dy) for o in offsets]


def draw(item: SyntheticItem, size: int = 64) -> Image.Image:
    """Render ``item`` as an RGB image of ``size`` x ``size`` pixels, deterministically."""
    if size < 16:
        raise InputError(f"size={size} is too small to draw the scene; use 16 or more")
    check_attributes(item.attributes)
    attrs = item.attributes
    rng = _item_rng(item.id)
    px = size * _SCALE
    unit = px / 64.0
    canvas = Image.new("RGB", (px, px), _jitter(BACKGROUNDS[attrs["background"]], rng, amount=6))
    radius = rng.uniform(7.5, 9.0) * unit
    centres = [(x * unit, y * unit) for x, y in _centres(attrs, rng)]
    mask = _shape_mask(attrs["category"], centres, r=radius, px=px)
    colour = _jitter(COLOURS[attrs["colour"]], rng, amount=14)
    fill = _fill(attrs["pattern"], colour, px=px, unit=unit)
    canvas.paste(fill, (0, 0), mask)
    return canvas.resize((size, size), Image.Resampling.LANCZOS)


# --------------------------------------------------------------------------- catalogs


def random_attributes(rng: random.Random) -> Attributes:
    while True:
        attrs = {name: rng.choice(values) for name, values in VALUES.items()}
        if is_drawable(attrs):
            return attrs


def variant_of(base: Mapping[str, Any], rng: random.Random) -> Attributes:
    """``base`` with one attribute changed (a product in another colour, say)."""
    while True:
        name = rng.choice(ATTRIBUTES)
        attrs = dict(base)
        attrs[name] = rng.choice([v for v in VALUES[name] if v != base[name]])
        if is_drawable(attrs):
            return attrs


def make_catalog(
    n: int, *, seed: int, variant_rate: float = 0.5, caption_detail: float = 0.5
) -> list[SyntheticItem]:
    """``n`` items with ids ``syn-00000``...; deterministic for a given seed.

    With probability ``variant_rate`` an item is a one-attribute variant of an
    earlier item (as catalogs hold one product in several colours), which
    gives composed queries targets that exist.
    """
    if n < 1:
        raise InputError(f"n={n}: a catalog needs at least one item")
    for name, value in (("variant_rate", variant_rate), ("caption_detail", caption_detail)):
        if not 0.0 <= value <= 1.0:
            raise InputError(f"{name}={value} must be a probability, within [0, 1]")
    rng = random.Random(seed)
    width = max(5, len(str(n - 1)))
    items: list[SyntheticItem] = []
    for index in range(n):
        if items and rng.random() < variant_rate:
            attrs = variant_of(rng.choice(items).attributes, rng)
        else:
            attrs = random_attributes(rng)
        caption = catalog_caption(attrs, rng, detail=caption_detail)
        items.append(SyntheticItem(f"syn-{index:0{width}d}", attrs, caption))
    return items


def write_catalog(out_dir: Path, *, n: int, seed: int, size: int = 64) -> Path:
    """Draw a catalog into ``out_dir``: ``images/<id>.png`` and ``catalog.csv``.

    The CSV has the columns id, path (relative to the CSV's folder), caption,
    then one column per attribute, which ingest stores as filterable metadata.
    Returns the CSV's path.
    """
    items = make_catalog(n, seed=seed)
    image_dir = out_dir / "images"
    image_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for item in items:
        relative = f"images/{item.id}.png"
        draw(item, size).save(out_dir / relative, format="PNG")
        rows.append({"id": item.id, "path": relative, "caption": item.caption, **item.attributes})
    csv_path = out_dir / "catalog.csv"
    tmp = csv_path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["id", "path", "caption", *ATTRIBUTES])
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(csv_path)
    return csv_path
