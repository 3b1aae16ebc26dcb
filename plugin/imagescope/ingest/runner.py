"""Bulk ingest: reader -> mapper -> writer, joined by a tiny runner.

reader   items (``sources.read_folder`` / ``read_table``, or any iterable) cut into batches
mapper   load the batch's images (a thread pool; a failure is recorded for that id
         only), caption the images that have no caption, embed images and captions
writer   ``store.upsert`` of ``CatalogRecord`` batches (``update_captions`` for backfill)

Re-running is idempotent: a record with the same id is replaced in place. An
item without a caption keeps the caption the store already holds for its id
(re-embedded with the current embedder) unless ``recaption=True``, so a re-run
neither loses backfilled captions nor pays for captioning twice. With a
manifest (``ingest.changes``), items whose content hash is unchanged since they
were last written are skipped before any image is decoded or embedded.

Paths are loaded through :func:`~imagescope.ingest.images.load_image`, so the
folders being ingested must be inside ``limits.allowed_roots``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence, Sized
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from typing import Generic, TypeVar

import numpy as np
from PIL.Image import Image
from tqdm import tqdm

from imagescope.errors import BackendError, BulkIngestError, ImageScopeError, ModelOutputError
from imagescope.ingest.changes import ChangeTracker, IngestManifest
from imagescope.ingest.images import load_image, thumbnail
from imagescope.ingest.sources import IngestItem
from imagescope.models.base import Captioner, Embedder, Vectors
from imagescope.settings import ImageLimits
from imagescope.store.base import BulkReport, CaptionUpdate, CatalogRecord, VectorStore

logger = logging.getLogger(__name__)

In = TypeVar("In")
Out = TypeVar("Out")


@dataclass
class IngestReport:
    """What an ingest or backfill did. Every input id is ok, failed or skipped."""

    ok: int = 0
    #: id -> why it was not written (unreadable image, model or store failure).
    failed: dict[str, str] = field(default_factory=dict)
    #: Left alone on purpose (already in the store, already captioned).
    skipped: int = 0
    #: Captions written by the captioner in this run.
    captioned: int = 0
    #: Of ``ok``: ids the store did not hold before, and ids it held (replaced).
    new: int = 0
    updated: int = 0
    #: Left alone because their content hash matches the one last written.
    unchanged: int = 0
    seconds: float = 0.0

    @property
    def num_failed(self) -> int:
        return len(self.failed)

    def raise_for_failures(self) -> None:
        """Raise :class:`BulkIngestError` when any id failed."""
        if self.failed:
            raise BulkIngestError(dict(self.failed), succeeded=self.ok)


@dataclass
class _Mapped(Generic[Out]):
    """A mapper's output for one batch."""

    outputs: list[Out] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    skipped: int = 0
    captioned: int = 0
    unchanged: int = 0
    #: Ids of ``outputs`` the store did not hold before this batch.
    new_ids: set[str] = field(default_factory=set)


def _run(
    batches: Iterable[list[In]],
    mapper: Callable[[list[In]], _Mapped[Out]],
    *,
    writer: Callable[[list[Out]], BulkReport],
    total: int | None,
    progress: bool,
    desc: str,
    on_written: Callable[[list[str]], None] | None = None,
) -> IngestReport:
    """The runner: map each batch, write what mapped, account for every id."""
    report = IngestReport()
    started = time.perf_counter()
    with tqdm(total=total, disable=not progress, unit="img", desc=desc) as bar:
        for batch in batches:
            mapped = mapper(batch)
            written = writer(mapped.outputs) if mapped.outputs else BulkReport()
            succeeded = list(written.succeeded)
            report.ok += len(succeeded)
            report.new += sum(i in mapped.new_ids for i in succeeded)
            report.updated += sum(i not in mapped.new_ids for i in succeeded)
            report.unchanged += mapped.unchanged
            if on_written is not None:
                on_written(succeeded)
            report.failed.update(mapped.failed)
            report.failed.update(written.failed)
            report.skipped += mapped.skipped
            report.captioned += mapped.captioned
            bar.update(len(batch))
            bar.set_postfix(failed=report.num_failed, refresh=False)
    report.seconds = time.perf_counter() - started
    logger.info(
        "%s: %d written, %d failed, %d skipped, %d captioned in %.1fs",
        desc,
        report.ok,
        report.num_failed,
        report.skipped,
        report.captioned,
        report.seconds,
    )
    return report


def _batched(items: Iterable[In], size: int) -> Iterator[list[In]]:
    if size < 1:
        raise ValueError("batch_size must be at least 1")
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


# --------------------------------------------------------------------------- mapper parts


class _ImageLoader:
    """Loads images concurrently (URLs wait on the network); errors stay per id."""

    def __init__(
        self, pool: ThreadPoolExecutor, *, limits: ImageLimits, max_side: int | None
    ) -> None:
        self._pool = pool
        self._limits = limits
        self._max_side = max_side

    def _load_one(self, uri: str) -> Image | str:
        try:
            image = load_image(uri, limits=self._limits)
        except ImageScopeError as exc:
            return f"{type(exc).__name__}: {exc}"
        return thumbnail(image, self._max_side) if self._max_side else image

    def load(self, sources: Sequence[tuple[str, str]]) -> tuple[dict[str, Image], dict[str, str]]:
        """(id, uri) pairs -> (id -> image, id -> reason it failed)."""
        images: dict[str, Image] = {}
        failed: dict[str, str] = {}
        results = self._pool.map(self._load_one, [uri for _, uri in sources])
        for (item_id, _), result in zip(sources, results, strict=True):
            if isinstance(result, str):
                failed[item_id] = result
            else:
                images[item_id] = result
        return images, failed


def _caption(
    captioner: Captioner, images: dict[str, Image], *, ids: list[str], failed: dict[str, str]
) -> dict[str, str]:
    """Captions for ``ids``; on a model failure those ids are marked failed."""
    if not ids:
        return {}
    try:
        texts = captioner.caption([images[i] for i in ids])
        if len(texts) != len(ids):
            raise ModelOutputError(f"captioner returned {len(texts)} captions for {len(ids)}")
    except BackendError as exc:
        failed.update((i, f"captioning failed: {exc}") for i in ids)
        return {}
    return {i: text.strip() for i, text in zip(ids, texts, strict=True)}


def _checked_vectors(vectors: Vectors, count: int, *, dim: int, what: str) -> Vectors:
    if vectors.shape != (count, dim):
        raise ModelOutputError(
            f"embedder returned {what} vectors {vectors.shape}, expected {(count, dim)}"
        )
    return vectors


class _IngestMapper:
    """IngestItem batch -> CatalogRecord batch."""

    def __init__(
        self,
        loader: _ImageLoader,
        *,
        store: VectorStore,
        embedder: Embedder,
        captioner: Captioner | None,
        skip_existing: bool,
        recaption: bool,
        tracker: ChangeTracker | None = None,
    ) -> None:
        self._tracker = tracker
        self._loader = loader
        self._store = store
        self._embedder = embedder
        self._captioner = captioner
        self._skip_existing = skip_existing
        self._recaption = recaption

    def __call__(self, batch: list[IngestItem]) -> _Mapped[CatalogRecord]:
        mapped: _Mapped[CatalogRecord] = _Mapped()
        present = {r.id: r.caption for r in self._store.get([item.id for item in batch])}
        existing = self._existing_captions(batch, present)
        mapped.new_ids = {item.id for item in batch if item.id not in present}
        if self._tracker is not None:
            changed = self._tracker.changed(batch, set(present))
            mapped.unchanged = len(batch) - len(changed)
            batch = changed
        if self._skip_existing:
            mapped.skipped = sum(item.id in existing for item in batch)
            batch = [item for item in batch if item.id not in existing]
        images, mapped.failed = self._loader.load([(item.id, item.uri) for item in batch])
        loaded = [item for item in batch if item.id in images]
        captions = {item.id: item.caption for item in loaded if item.caption}
        if not self._recaption:
            captions.update(
                (item.id, existing[item.id])
                for item in loaded
                if item.id not in captions and existing.get(item.id)
            )
        if self._captioner is not None:
            todo = [item.id for item in loaded if item.id not in captions]
            written = _caption(self._captioner, images, ids=todo, failed=mapped.failed)
            mapped.captioned = len(written)
            captions.update(written)
        loaded = [item for item in loaded if item.id not in mapped.failed]
        mapped.outputs = self._records(loaded, images, captions=captions, failed=mapped.failed)
        return mapped

    def _existing_captions(
        self, batch: list[IngestItem], present: dict[str, str]
    ) -> dict[str, str]:
        """id -> stored caption ("" when none) for the batch's ids already in the store."""
        if self._recaption and not self._skip_existing:
            return {}
        wanted = {item.id for item in batch if self._skip_existing or not item.caption}
        return {i: caption for i, caption in present.items() if i in wanted}

    def _records(
        self,
        items: list[IngestItem],
        images: dict[str, Image],
        *,
        captions: dict[str, str],
        failed: dict[str, str],
    ) -> list[CatalogRecord]:
        if not items:
            return []
        dim = self._embedder.dim
        captioned = [item.id for item in items if captions.get(item.id)]
        try:
            image_vectors = self._embedder.embed_images([images[item.id] for item in items])
            _checked_vectors(image_vectors, len(items), dim=dim, what="image")
            text_vectors = self._embedder.embed_texts([captions[i] for i in captioned])
            _checked_vectors(text_vectors, len(captioned), dim=dim, what="caption")
        except BackendError as exc:
            failed.update((item.id, f"embedding failed: {exc}") for item in items)
            return []
        caption_vectors = dict(zip(captioned, text_vectors, strict=True))
        return [
            CatalogRecord(
                id=item.id,
                image_vector=np.asarray(vector, dtype=np.float32),
                caption_vector=caption_vectors.get(item.id),
                caption=captions.get(item.id, ""),
                uri=item.uri,
                metadata=dict(item.metadata),
            )
            for item, vector in zip(items, image_vectors, strict=True)
        ]


class _BackfillMapper:
    """Id batch -> CaptionUpdate batch for records already in the store."""

    def __init__(
        self,
        loader: _ImageLoader,
        *,
        store: VectorStore,
        embedder: Embedder,
        captioner: Captioner,
        overwrite: bool,
    ) -> None:
        self._loader = loader
        self._store = store
        self._embedder = embedder
        self._captioner = captioner
        self._overwrite = overwrite

    def __call__(self, ids: list[str]) -> _Mapped[CaptionUpdate]:
        mapped: _Mapped[CaptionUpdate] = _Mapped()
        records = {record.id: record for record in self._store.get(ids)}
        sources: list[tuple[str, str]] = []
        for item_id in dict.fromkeys(ids):
            record = records.get(item_id)
            if record is None:
                mapped.failed[item_id] = "no record with this id in the store"
            elif record.caption and not self._overwrite:
                mapped.skipped += 1
            elif not record.uri:
                mapped.failed[item_id] = "the record has no uri to load its image from"
            else:
                sources.append((item_id, record.uri))
        images, load_failures = self._loader.load(sources)
        mapped.failed.update(load_failures)
        todo = [item_id for item_id, _ in sources if item_id in images]
        captions = _caption(self._captioner, images, ids=todo, failed=mapped.failed)
        mapped.captioned = len(captions)
        mapped.outputs = self._updates(captions, mapped.failed)
        return mapped

    def _updates(self, captions: dict[str, str], failed: dict[str, str]) -> list[CaptionUpdate]:
        if not captions:
            return []
        ids = list(captions)
        try:
            vectors = self._embedder.embed_texts([captions[i] for i in ids])
            _checked_vectors(vectors, len(ids), dim=self._embedder.dim, what="caption")
        except BackendError as exc:
            failed.update((i, f"embedding failed: {exc}") for i in ids)
            return []
        return [
            CaptionUpdate(id=i, caption=captions[i], caption_vector=vector)
            for i, vector in zip(ids, vectors, strict=True)
        ]


# --------------------------------------------------------------------------- entry points


def ingest(
    items: Iterable[IngestItem],
    *,
    store: VectorStore,
    embedder: Embedder,
    captioner: Captioner | None = None,
    limits: ImageLimits,
    batch_size: int = 32,
    progress: bool = True,
    skip_existing: bool = False,
    recaption: bool = False,
    workers: int = 4,
    image_max_side: int | None = 1024,
    manifest: IngestManifest | None = None,
    models: str = "",
) -> IngestReport:
    """Load, caption, embed and upsert ``items``; never aborts on a bad image.

    ``store.ensure(embedder.dim)`` runs first (``DimensionMismatchError`` when the
    store holds vectors of another size). Items without a caption reuse the
    caption stored for their id (unless ``recaption``), else are captioned when a
    ``captioner`` is given. ``skip_existing`` leaves ids already in the store
    untouched (resuming an interrupted run). Images are downscaled to
    ``image_max_side`` before the models see them, bounding memory per batch.
    Per-id failures are in the returned report; store outages raise. With a
    ``manifest``, items unchanged since last written (same content hash for the
    same ``models``) are skipped and counted in ``report.unchanged``.
    """
    store.ensure(embedder.dim)
    tracker = ChangeTracker(manifest, limits=limits, models=models) if manifest else None
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ingest-load") as pool:
        loader = _ImageLoader(pool, limits=limits, max_side=image_max_side)
        mapper = _IngestMapper(
            loader,
            store=store,
            embedder=embedder,
            captioner=captioner,
            skip_existing=skip_existing,
            recaption=recaption,
            tracker=tracker,
        )
        return _run(
            _batched(items, batch_size),
            mapper,
            writer=store.upsert,
            total=len(items) if isinstance(items, Sized) else None,
            progress=progress,
            desc="ingest",
            on_written=tracker.written if tracker else None,
        )


def backfill_captions(
    store: VectorStore,
    ids: Iterable[str],
    *,
    captioner: Captioner,
    embedder: Embedder,
    limits: ImageLimits,
    batch_size: int = 32,
    overwrite: bool = False,
    progress: bool = True,
    workers: int = 4,
    image_max_side: int | None = 1024,
) -> IngestReport:
    """Caption records already in ``store`` and write captions + caption vectors.

    For adopting an existing index that holds image vectors but no captions:
    each record's image is loaded from its ``uri``, captioned, and the caption
    embedded with ``embedder`` (which must be the index's embedder:
    ``store.ensure`` checks the dimension). Records that already have a caption
    are skipped unless ``overwrite``; unknown ids and unloadable images are
    reported per id in the returned report.
    """
    store.ensure(embedder.dim)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="backfill-load") as pool:
        loader = _ImageLoader(pool, limits=limits, max_side=image_max_side)
        mapper = _BackfillMapper(
            loader, store=store, embedder=embedder, captioner=captioner, overwrite=overwrite
        )
        return _run(
            _batched(ids, batch_size),
            mapper,
            writer=store.update_captions,
            total=len(ids) if isinstance(ids, Sized) else None,
            progress=progress,
            desc="backfill captions",
        )
