"""A served catalog for the browser tests: drawn images on disk, models that know them.

The images are real PNG files (``imagescope.synthetic``: shapes of known
colour, pattern, count...), served by the API's image endpoints. The models are
small stand-ins that read the drawn attributes, so rankings and verdicts are
meaningful without weights:

- ``DrawnCatalogEmbedder``: a ``FakeEmbedder`` (bag of words) that embeds a
  drawn image as the text of its full description, recognising it by its
  pixels, so an uploaded copy of a catalog file embeds like the original.
- ``AttributeVerifier``: answers a question "yes" when every attribute word in
  it (colour, shape, pattern, ...) holds for the image; can be slowed down so
  the page shows stage 1 before the reranked order, or told to fail.
- ``AttributeEvaluator``: accepts a candidate that has every attribute the
  instruction names, and says why.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from imagescope.engine import Engine
from imagescope.errors import ModelBackendError
from imagescope.models.base import EvaluationItem, Evaluator, Vectors, Verifier, VerifyItem
from imagescope.models.fakes import TEXT_KEY, FakeEmbedder
from imagescope.models.rule_reasoner import RuleReasoner
from imagescope.pipeline.context import Components, MemoryAnswerCache, StoreImageSource
from imagescope.schemas import Answer, Evaluation, Query, SearchResult
from imagescope.settings import (
    EmbeddedStoreSettings,
    ImageLimits,
    PipelineSettings,
    Settings,
    StoreSettings,
)
from imagescope.store.base import CatalogRecord
from imagescope.store.embedded import EmbeddedStore
from imagescope.synthetic.catalog import (
    BACKGROUNDS,
    CATEGORIES,
    COLOURS,
    NUMBER_WORDS,
    PATTERNS,
    PLURALS,
    POSITIONS,
    SyntheticItem,
    describe,
    draw,
    make_catalog,
)

_WORD = re.compile(r"[a-z]+")


def _vocabulary() -> dict[str, tuple[str, Any]]:
    """Word -> (attribute, value) for every word that names an attribute value."""
    words: dict[str, tuple[str, Any]] = {}
    for category in CATEGORIES:
        words[category] = words[PLURALS[category]] = ("category", category)
    words.update({c: ("colour", c) for c in COLOURS})
    words.update({p: ("pattern", p) for p in PATTERNS})
    words.update({"stripes": ("pattern", "striped"), "dots": ("pattern", "dotted")})
    words.update({p: ("position", p) for p in POSITIONS})
    words["center"] = ("position", "centre")
    words.update({b: ("background", b) for b in BACKGROUNDS if b not in COLOURS})
    words.update({w: ("count", n) for n, w in NUMBER_WORDS.items()})
    return words


VOCABULARY = _vocabulary()


def constraints(text: str) -> dict[str, Any]:
    """The attribute values a text names (the last mention of an attribute wins)."""
    found: dict[str, Any] = {}
    for word in _WORD.findall(text.lower()):
        if word in VOCABULARY:
            name, value = VOCABULARY[word]
            found[name] = value
    return found


def pixel_digest(image: Image.Image) -> str:
    rgb = image.convert("RGB")
    return hashlib.sha256(rgb.tobytes() + repr(rgb.size).encode()).hexdigest()


class DrawnCatalogEmbedder(FakeEmbedder):
    """Embeds a known drawn image as its description; other images by their pixels."""

    def __init__(self, texts_by_pixels: Mapping[str, str], dim: int = 64) -> None:
        super().__init__(dim)
        self.model_id = f"drawn-catalog-embedder-{dim}"
        self._texts = dict(texts_by_pixels)

    def embed_images(self, images: Sequence[Image.Image]) -> Vectors:
        tagged = []
        for image in images:
            text = self._texts.get(pixel_digest(image))
            if text is not None:
                image = image.copy()
                image.info[TEXT_KEY] = text
            tagged.append(image)
        return super().embed_images(tagged)


class AttributeVerifier(Verifier):
    """Yes when every attribute a question names holds for the image."""

    model_id = "attribute-verifier"

    def __init__(
        self,
        attributes: Mapping[str, Mapping[str, Any]],
        *,
        delay_s: float = 0.0,
        fail: bool = False,
    ) -> None:
        self._attributes = attributes
        self.delay_s = delay_s
        self.fail = fail

    def verify(self, items: Sequence[VerifyItem]) -> list[Answer]:
        time.sleep(self.delay_s)
        if self.fail:
            raise ModelBackendError("the verifier server answered 500 Internal Server Error")
        out = []
        for item in items:
            wanted = constraints(item.question)
            have = self._attributes.get(item.image_id, {})
            yes = bool(wanted) and all(have.get(k) == v for k, v in wanted.items())
            out.append(Answer(yes=yes, p_yes=0.93 if yes else 0.08, raw="yes" if yes else "no"))
        return out


class AttributeEvaluator(Evaluator):
    """Accepts a candidate that has every attribute the instruction names."""

    model_id = "attribute-evaluator"

    def __init__(self, attributes: Mapping[str, Mapping[str, Any]]) -> None:
        self._attributes = attributes

    def evaluate(self, items: Sequence[EvaluationItem]) -> list[Evaluation]:
        out = []
        for item in items:
            have = self._attributes.get(item.candidate_id, {})
            wanted = constraints(item.instruction)
            missing = [f"{k} {v}" for k, v in wanted.items() if have.get(k) != v]
            accepted = bool(wanted) and not missing
            shows = describe(have) if have else "an unknown image"
            reason = f"the image shows {shows}" + (
                "; everything asked for is there" if accepted else f"; not {', '.join(missing)}"
            )
            verdict = "Yes" if accepted else "No"
            out.append(Evaluation(accepted=accepted, reason=reason, raw=f"ANSWER: {verdict}"))
        return out


@dataclass
class ServedCatalog:
    """Everything a test server needs, plus what tests check against."""

    folder: Path
    items: dict[str, SyntheticItem]
    engine: Engine
    settings: Settings

    def image_path(self, image_id: str) -> Path:
        return self.folder / "images" / f"{image_id}.png"

    def attributes(self) -> dict[str, dict[str, Any]]:
        return {i: item.attributes for i, item in self.items.items()}

    def components(self, *, verify_delay_s: float = 0.0, verify_fails: bool = False) -> Components:
        """The engine's components with a verifier that takes its time, or fails."""
        verifier = AttributeVerifier(self.attributes(), delay_s=verify_delay_s, fail=verify_fails)
        return dataclasses.replace(
            self.engine.components, verifier=verifier, cache=MemoryAnswerCache()
        )

    def expected(self, query: Query) -> SearchResult:
        """All three stages in this process, with an empty answer cache."""
        return Engine(self.components(), self.engine.pipeline).search(query)


def build_catalog(folder: Path, *, n: int = 120, size: int = 128, seed: int = 7) -> ServedCatalog:
    """Draws ``n`` images into ``folder`` and indexes them in an embedded store there."""
    items = make_catalog(n, seed=seed)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    texts: dict[str, str] = {}
    for item in items:
        image = draw(item, size)
        image.save(folder / "images" / f"{item.id}.png", format="PNG")
        texts[pixel_digest(image)] = describe(item.attributes)
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        store=StoreSettings(embedded=EmbeddedStoreSettings(path=folder / "index")),
        # The page's image-URL tests serve the images from a loopback host.
        images=ImageLimits(allowed_roots=[folder], allow_private_urls=True),
        pipeline=PipelineSettings(top_k=20, alpha=3, limit=100),
    )
    embedder = DrawnCatalogEmbedder(texts)
    store = EmbeddedStore(settings.store.embedded)
    store.ensure(embedder.dim)
    images = [Image.open(folder / "images" / f"{item.id}.png") for item in items]
    image_vectors = embedder.embed_images(images)
    caption_vectors = embedder.embed_texts([item.caption for item in items])
    report = store.upsert(
        CatalogRecord(
            id=item.id,
            image_vector=image_vectors[i],
            caption_vector=caption_vectors[i],
            caption=item.caption,
            uri=str(folder / "images" / f"{item.id}.png"),
            metadata=dict(item.attributes),
        )
        for i, item in enumerate(items)
    )
    assert not report.failed, report.failed
    attributes = {item.id: item.attributes for item in items}
    components = Components(
        embedder=embedder,
        store=store,
        reasoner=RuleReasoner(),
        images=StoreImageSource(store, settings.images),
        verifier=AttributeVerifier(attributes),
        evaluator=AttributeEvaluator(attributes),
        cache=MemoryAnswerCache(),
    )
    engine = Engine(components, settings.pipeline)
    return ServedCatalog(folder, {i.id: i for i in items}, engine, settings)


def build_empty_catalog(folder: Path, like: ServedCatalog) -> ServedCatalog:
    """A catalog with no images yet: ``like``'s models over a new, empty store."""
    settings = like.settings.model_copy(
        update={"store": StoreSettings(embedded=EmbeddedStoreSettings(path=folder / "index"))}
    )
    store = EmbeddedStore(settings.store.embedded)
    store.ensure(like.engine.components.embedder.dim)
    components = dataclasses.replace(
        like.engine.components,
        store=store,
        images=StoreImageSource(store, settings.images),
        cache=MemoryAnswerCache(),
    )
    return ServedCatalog(folder, {}, Engine(components, settings.pipeline), settings)
