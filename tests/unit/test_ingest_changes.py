"""Re-ingest by content hash: new, updated, unchanged and failed items, counted and
only the changed ones embedded."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin

from imagescope.ingest.changes import IngestManifest, item_digest
from imagescope.ingest.runner import IngestReport, ingest
from imagescope.ingest.sources import IngestItem, read_folder
from imagescope.models.base import Vectors
from imagescope.models.fakes import TEXT_KEY, FakeEmbedder
from imagescope.settings import ImageLimits
from imagescope.store.memory import MemoryStore

pytestmark = pytest.mark.unit


class CountingEmbedder(FakeEmbedder):
    def __init__(self) -> None:
        super().__init__(dim=16)
        self.images_seen = 0

    def embed_images(self, images: Sequence[Image.Image]) -> Vectors:
        self.images_seen += len(images)
        return super().embed_images(images)


def write_png(path: Path, text: str, shade: int = 90) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    info = PngImagePlugin.PngInfo()
    info.add_text(TEXT_KEY, text)
    Image.new("RGB", (6, 4), (shade, 90, 160)).save(path, pnginfo=info)


@pytest.fixture
def gallery(tmp_path: Path) -> Path:
    for i, text in enumerate(["a red car", "a dog", "a cat", "a boat", "a tree"]):
        write_png(tmp_path / "gallery" / f"img{i}.png", text)
    return tmp_path / "gallery"


def run(folder: Path, store: MemoryStore, manifest: IngestManifest) -> tuple[IngestReport, int]:
    embedder = CountingEmbedder()
    report = ingest(
        read_folder(folder),
        store=store,
        embedder=embedder,
        limits=ImageLimits(allowed_roots=[folder.parent]),
        progress=False,
        batch_size=2,
        manifest=manifest,
        models="fake-16",
    )
    return report, embedder.images_seen


def counts(report: IngestReport) -> tuple[int, int, int, int]:
    return report.new, report.updated, report.unchanged, report.num_failed


def test_a_second_ingest_skips_unchanged_files(gallery: Path, tmp_path: Path) -> None:
    store = MemoryStore()
    with IngestManifest(tmp_path / "manifest.sqlite", scope="memory") as manifest:
        first, embedded = run(gallery, store, manifest)
        assert counts(first) == (5, 0, 0, 0) and embedded == 5
        again, embedded = run(gallery, store, manifest)
        assert counts(again) == (0, 0, 5, 0) and embedded == 0
        assert again.ok == 0

        write_png(gallery / "img1.png", "a dog", shade=200)  # new pixels, same name
        write_png(gallery / "img9.png", "a bird")  # a new file
        (gallery / "img4.png").write_bytes(b"not an image any more")
        store.delete(["img3"])  # gone from the store: written again
        changed, embedded = run(gallery, store, manifest)
        assert counts(changed) == (2, 1, 2, 1), changed
        assert embedded == 3
        assert "img4" in changed.failed
        assert {r.id for r in store.get(["img1", "img3", "img9"])} == {"img1", "img3", "img9"}

        write_png(gallery / "img4.png", "a tree")  # back as it was stored: unchanged
        restored, embedded = run(gallery, store, manifest)
        assert counts(restored) == (0, 0, 6, 0) and embedded == 0
        write_png(gallery / "img4.png", "a green tree")  # a new picture: written again
        fixed, embedded = run(gallery, store, manifest)
        assert counts(fixed) == (0, 1, 5, 0) and embedded == 1


def test_digests_are_per_scope_and_models(gallery: Path, tmp_path: Path) -> None:
    limits = ImageLimits(allowed_roots=[gallery.parent])
    item = IngestItem(id="a", uri=str(gallery / "img0.png"), caption="x", metadata={"k": 1})
    base = item_digest(item, limits=limits, models="m1")
    assert base is not None
    assert item_digest(item, limits=limits, models="m2") != base
    moved = IngestItem(id="a", uri=item.uri, caption="x", metadata={"k": 2})
    assert item_digest(moved, limits=limits, models="m1") != base
    url = IngestItem(id="u", uri="https://example.com/a.png")
    assert item_digest(url, limits=limits, models="m1") is None

    store = MemoryStore()
    with IngestManifest(tmp_path / "m.sqlite", scope="one") as manifest:
        run(gallery, store, manifest)
    with IngestManifest(tmp_path / "m.sqlite", scope="other") as manifest:
        report, embedded = run(gallery, store, manifest)
    assert counts(report) == (0, 5, 0, 0) and embedded == 5
