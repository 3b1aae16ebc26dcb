"""What the pipeline functions run over: the models, the store, images, a cache.

``Components`` bundles the interfaces; nothing here knows about concrete
backends. ``ImageSource`` loads catalog images by id and query references;
``AnswerCache`` remembers verifier answers keyed by (image id, question, model).
"""

from __future__ import annotations

import hashlib
import threading
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from PIL.Image import Image

from imagescope.errors import UnknownIdError
from imagescope.models.base import Captioner, Embedder, Evaluator, Reasoner, Verifier
from imagescope.schemas import Answer, ImageRef
from imagescope.settings import ImageLimits
from imagescope.store.base import VectorStore


class ImageSource(ABC):
    """Loads images for verification and evaluation.

    ``by_id`` raises ``UnknownIdError`` for an id not in the catalog and
    ``ImageError`` (or a subclass) when the image cannot be read.
    """

    @abstractmethod
    def by_id(self, image_id: str) -> Image: ...

    @abstractmethod
    def load(self, ref: ImageRef) -> Image: ...


class StoreImageSource(ImageSource):
    """Catalog images through the store's ``uri``; references through the same guards."""

    def __init__(self, store: VectorStore, limits: ImageLimits) -> None:
        self._store = store
        self._limits = limits

    def _uri(self, image_id: str) -> str:
        records = self._store.get([image_id])
        if not records:
            raise UnknownIdError("image", image_id)
        return records[0].uri

    def by_id(self, image_id: str) -> Image:
        from imagescope.ingest.images import load_image

        uri = self._uri(image_id)
        # Catalog files were confined to the allowed roots when they were
        # ingested; reading one back trusts its own folder. URLs keep the
        # public-address rule, and the size limits always apply.
        limits = self._limits
        if "://" not in uri:
            limits = limits.model_copy(update={"allowed_roots": [Path(uri).parent]})
        return load_image(uri, limits=limits)

    def load(self, ref: ImageRef) -> Image:
        from imagescope.ingest.images import load_image

        if ref.id is not None:
            return self.by_id(ref.id)
        return load_image(ref, limits=self._limits)


class MemoryImageSource(ImageSource):
    """Images held in a dict (tests, the demo)."""

    def __init__(self, images: Mapping[str, Image]) -> None:
        self._images = dict(images)

    def by_id(self, image_id: str) -> Image:
        try:
            return self._images[image_id]
        except KeyError:
            raise UnknownIdError("image", image_id) from None

    def load(self, ref: ImageRef) -> Image:
        if ref.id is None:
            raise UnknownIdError("image", ref.path or ref.url or "<upload>")
        return self.by_id(ref.id)


def cache_key(image_id: str, question: str, model_id: str) -> str:
    raw = f"{model_id}\x1f{image_id}\x1f{question.strip().lower()}"
    return hashlib.sha256(raw.encode()).hexdigest()


class AnswerCache(ABC):
    """Verifier answers keyed by ``cache_key(image id, question, model id)``."""

    @abstractmethod
    def get_many(self, keys: Iterable[str]) -> dict[str, Answer]: ...

    @abstractmethod
    def put_many(self, answers: Mapping[str, Answer]) -> None: ...


class MemoryAnswerCache(AnswerCache):
    """A bounded, thread-safe LRU cache in process memory."""

    def __init__(self, max_items: int = 100_000) -> None:
        self._items: OrderedDict[str, Answer] = OrderedDict()
        self._max = max_items
        self._lock = threading.Lock()

    def get_many(self, keys: Iterable[str]) -> dict[str, Answer]:
        found: dict[str, Answer] = {}
        with self._lock:
            for key in keys:
                if key in self._items:
                    self._items.move_to_end(key)
                    found[key] = self._items[key]
        return found

    def put_many(self, answers: Mapping[str, Answer]) -> None:
        with self._lock:
            for key, answer in answers.items():
                self._items[key] = answer
                self._items.move_to_end(key)
            while len(self._items) > self._max:
                self._items.popitem(last=False)


@dataclass
class Components:
    """The models and stores one pipeline run uses."""

    embedder: Embedder
    store: VectorStore
    reasoner: Reasoner
    images: ImageSource
    verifier: Verifier | None = None
    evaluator: Evaluator | None = None
    captioner: Captioner | None = None
    cache: AnswerCache | None = None

    def model_ids(self) -> dict[str, str]:
        roles = {
            "embedder": self.embedder,
            "reasoner": self.reasoner,
            "verifier": self.verifier,
            "evaluator": self.evaluator,
            "captioner": self.captioner,
        }
        return {name: m.model_id for name, m in roles.items() if m is not None}
