"""Ingest: folder and table readers, the runner, caption backfill."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from imagescope.errors import (
    BulkIngestError,
    DimensionMismatchError,
    InputError,
    ModelBackendError,
)
from imagescope.ingest.runner import IngestReport, backfill_captions, ingest
from imagescope.ingest.sources import IngestItem, read_folder, read_table
from imagescope.models.fakes import TEXT_KEY, FakeCaptioner, FakeEmbedder
from imagescope.settings import EmbeddedStoreSettings, ImageLimits
from imagescope.store.base import CatalogRecord
from imagescope.store.memory import MemoryStore

pytestmark = pytest.mark.unit

DIM = 16


def write_png(path: Path, text: str, size: tuple[int, int] = (6, 4)) -> Path:
    """A small PNG whose text chunk the fake models read as its content."""
    path.parent.mkdir(parents=True, exist_ok=True)
    info = PngImagePlugin.PngInfo()
    info.add_text(TEXT_KEY, text)
    Image.new("RGB", size, (len(text) * 7 % 256, 90, 160)).save(path, pnginfo=info)
    return path


class CountingCaptioner(FakeCaptioner):
    def __init__(self, fail: bool = False) -> None:
        self.captioned: list[int] = []
        self.fail = fail

    def caption(self, images: Sequence[Image.Image]) -> list[str]:
        if self.fail:
            raise ModelBackendError("captioning server is down")
        self.captioned.append(len(images))
        return super().caption(images)


@pytest.fixture
def gallery(tmp_path: Path) -> Path:
    root = tmp_path / "gallery"
    write_png(root / "red-car.png", "a red car on a road")
    write_png(root / "animals" / "dog.jpg.png", "a dog in the snow")
    write_png(root / "animals" / "cat.png", "a cat on a sofa")
    return root


@pytest.fixture
def limits(tmp_path: Path) -> ImageLimits:
    return ImageLimits(allowed_roots=[tmp_path])


def run(
    items: list[IngestItem], store: MemoryStore, limits: ImageLimits, **kw: Any
) -> IngestReport:
    kw.setdefault("captioner", None)
    return ingest(
        items, store=store, embedder=FakeEmbedder(DIM), limits=limits, progress=False, **kw
    )


def stored(store: MemoryStore, item_id: str) -> CatalogRecord:
    (record,) = store.get([item_id], with_vectors=True)
    return record


# --------------------------------------------------------------------------- folder reader


def test_folder_reader_ids_are_relative_paths_without_extension(gallery: Path) -> None:
    (gallery / "notes.txt").write_text("not an image")
    write_png(gallery / ".hidden" / "secret.png", "hidden")
    items = read_folder(gallery)
    assert [i.id for i in items] == ["animals/cat", "animals/dog.jpg", "red-car"]
    assert items[2].uri == str((gallery / "red-car.png").resolve())
    assert all(Path(i.uri).is_absolute() and i.caption is None for i in items)


def test_folder_reader_rejects_ids_that_collide(gallery: Path) -> None:
    write_png(gallery / "red-car.jpeg", "same id, other extension")
    with pytest.raises(InputError, match="red-car.jpeg and red-car.png|red-car.png and red-car"):
        read_folder(gallery)


def test_folder_reader_explains_empty_or_missing_folders(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no images found"):
        read_folder(tmp_path / "empty")
    with pytest.raises(InputError, match="not a folder"):
        read_folder(tmp_path / "nope")


# --------------------------------------------------------------------------- table readers


def test_csv_reader_parses_numbers_and_keeps_codes(gallery: Path) -> None:
    table = gallery / "catalog.csv"
    table.write_text(
        "id,path,url,caption,price,stock,sku,color,note\n"
        "car,red-car.png,,a shiny red car,9.5,3,0042,red,\n"
        "cat,animals/cat.png,,,-2,1e3,7,black,1.2.3\n"
        "web,,https://example.com/a.png,,,,,,\n"
    )
    car, cat, web = read_table(table)
    assert car == IngestItem(
        id="car",
        uri=str((gallery / "red-car.png").resolve()),
        caption="a shiny red car",
        metadata={"price": 9.5, "stock": 3, "sku": "0042", "color": "red"},
    )
    assert cat.caption is None
    assert cat.metadata == {
        "price": -2,
        "stock": 1000.0,
        "sku": 7,
        "color": "black",
        "note": "1.2.3",
    }
    assert isinstance(cat.metadata["price"], int)
    assert web.uri == "https://example.com/a.png" and web.metadata == {}


def test_csv_reader_names_every_bad_line(gallery: Path) -> None:
    table = gallery / "catalog.csv"
    table.write_text(
        "id,path,url\n"
        "car,red-car.png,\n"
        "ghost,missing.png,\n"
        "car,animals/cat.png,\n"
        ",animals/cat.png,\n"
        "both,red-car.png,https://example.com/x.png\n"
    )
    with pytest.raises(InputError) as caught:
        read_table(table)
    message = str(caught.value)
    assert "4 problem(s)" in message
    assert "line 3: image file not found" in message and "missing.png" in message
    assert "line 4: duplicate id 'car' (first on line 2)" in message
    assert "line 5: missing id" in message
    assert "line 6: give exactly one of path or url" in message


def test_jsonl_reader_keeps_json_types_and_names_bad_lines(gallery: Path) -> None:
    table = gallery / "catalog.jsonl"
    good = {"id": 17, "path": "red-car.png", "price": 3, "tags": ["red", "car"], "sale": True}
    table.write_text(json.dumps(good) + "\n\n")
    (item,) = read_table(table)
    assert item.id == "17"
    assert item.metadata == {"price": 3, "tags": ["red", "car"], "sale": True}

    with table.open("a") as handle:
        handle.write("{not json}\n")
        handle.write(json.dumps({"id": "x", "path": "red-car.png", "dims": {"w": 1}}) + "\n")
    with pytest.raises(InputError) as caught:
        read_table(table)
    assert "line 3: invalid JSON" in str(caught.value)
    assert "line 4: column 'dims'" in str(caught.value)


def test_table_reader_refuses_unknown_extensions(tmp_path: Path) -> None:
    (tmp_path / "catalog.tsv").write_text("id\tpath\n")
    with pytest.raises(InputError, match=r"\.csv, \.jsonl"):
        read_table(tmp_path / "catalog.tsv")


# --------------------------------------------------------------------------- runner


def test_ingest_embeds_images_and_captions(gallery: Path, limits: ImageLimits) -> None:
    store = MemoryStore()
    captioner = CountingCaptioner()
    report = run(read_folder(gallery), store, limits, captioner=captioner, batch_size=2)
    assert (report.ok, report.failed, report.captioned) == (3, {}, 3)
    assert captioner.captioned == [2, 1]
    record = stored(store, "animals/cat")
    embedder = FakeEmbedder(DIM)
    assert record.caption == "a cat on a sofa"
    assert record.uri.endswith("cat.png")
    assert record.caption_vector is not None and record.image_vector is not None
    np.testing.assert_allclose(record.caption_vector, embedder.embed_texts([record.caption])[0])
    np.testing.assert_allclose(record.image_vector, embedder.embed_texts([record.caption])[0])


def test_one_corrupt_image_fails_alone(gallery: Path, limits: ImageLimits) -> None:
    (gallery / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    outside = write_png(gallery.parent.parent / "elsewhere.png", "outside the roots")
    items = [*read_folder(gallery), IngestItem(id="outside", uri=str(outside))]
    store = MemoryStore()
    report = run(items, store, limits, captioner=FakeCaptioner(), batch_size=2)
    assert report.ok == 3
    assert set(report.failed) == {"broken", "outside"}
    assert "ImageError" in report.failed["broken"]
    assert "ForbiddenSourceError" in report.failed["outside"]
    assert store.count() == 3
    with pytest.raises(BulkIngestError) as caught:
        report.raise_for_failures()
    assert caught.value.succeeded == 3


def test_rerun_updates_in_place_and_keeps_captions(gallery: Path, limits: ImageLimits) -> None:
    store = MemoryStore()
    items = read_folder(gallery)
    first = run(items, store, limits, captioner=FakeCaptioner())
    before = stored(store, "red-car")
    changed = [IngestItem(i.id, i.uri, i.caption, {"rev": 2}) for i in items]
    captioner = CountingCaptioner()
    second = run(changed, store, limits, captioner=captioner)
    after = stored(store, "red-car")
    assert (first.ok, second.ok, store.count()) == (3, 3, 3)
    assert captioner.captioned == []  # stored captions were reused
    assert after.metadata == {"rev": 2} and after.caption == before.caption
    np.testing.assert_array_equal(after.image_vector, before.image_vector)
    np.testing.assert_array_equal(after.caption_vector, before.caption_vector)

    run(changed, store, limits, captioner=captioner, recaption=True)
    assert captioner.captioned == [3]


def test_given_captions_win_and_skip_existing_resumes(gallery: Path, limits: ImageLimits) -> None:
    store = MemoryStore()
    items = read_folder(gallery)
    run(items[:1], store, limits)
    with_caption = [IngestItem(i.id, i.uri, "given caption") for i in items]
    captioner = CountingCaptioner()
    report = run(with_caption, store, limits, captioner=captioner, skip_existing=True)
    assert (report.ok, report.skipped, captioner.captioned) == (2, 1, [])
    assert stored(store, items[1].id).caption == "given caption"
    assert stored(store, items[0].id).caption == ""


def test_captioner_failure_is_reported_per_id(gallery: Path, limits: ImageLimits) -> None:
    items = read_folder(gallery)
    items[0] = IngestItem(items[0].id, items[0].uri, "has a caption")
    store = MemoryStore()
    report = run(items, store, limits, captioner=CountingCaptioner(fail=True))
    assert report.ok == 1 and store.count() == 1
    assert set(report.failed) == {items[1].id, items[2].id}
    assert all("captioning server is down" in why for why in report.failed.values())


def test_dimension_mismatch_stops_before_writing(gallery: Path, limits: ImageLimits) -> None:
    store = MemoryStore()
    store.ensure(DIM * 2)
    with pytest.raises(DimensionMismatchError):
        run(read_folder(gallery), store, limits)
    assert store.count() == 0


def test_embedded_store_rerun_is_idempotent(
    gallery: Path, limits: ImageLimits, tmp_path: Path
) -> None:
    from imagescope.store.embedded import EmbeddedStore

    settings = EmbeddedStoreSettings(path=tmp_path / "catalog")
    items = read_folder(gallery)
    for _ in range(2):
        with EmbeddedStore(settings) as store:
            report = ingest(
                items,
                store=store,
                embedder=FakeEmbedder(DIM),
                captioner=FakeCaptioner(),
                limits=limits,
                progress=False,
            )
            assert report.ok == 3
    with EmbeddedStore(settings) as store:
        assert store.count() == 3
        (record,) = store.get(["animals/dog.jpg"])
        assert record.caption == "a dog in the snow"


# --------------------------------------------------------------------------- backfill


def test_backfill_writes_captions_and_vectors(gallery: Path, limits: ImageLimits) -> None:
    store = MemoryStore()
    items = read_folder(gallery)
    run(items, store, limits)
    assert stored(store, "red-car").caption_vector is None
    ids = [i.id for i in items] + ["unknown"]
    embedder = FakeEmbedder(DIM)
    report = backfill_captions(
        store, ids, captioner=FakeCaptioner(), embedder=embedder, limits=limits, progress=False
    )
    assert (report.ok, report.captioned, list(report.failed)) == (3, 3, ["unknown"])
    record = stored(store, "red-car")
    assert record.caption == "a red car on a road" and record.caption_vector is not None
    np.testing.assert_allclose(record.caption_vector, embedder.embed_texts([record.caption])[0])

    again = backfill_captions(
        store, ids[:3], captioner=FakeCaptioner(), embedder=embedder, limits=limits, progress=False
    )
    assert (again.ok, again.skipped) == (0, 3)


def test_backfill_reports_records_it_cannot_load(limits: ImageLimits, tmp_path: Path) -> None:
    store = MemoryStore()
    store.ensure(DIM)
    vector = FakeEmbedder(DIM).embed_texts(["x"])[0]
    store.upsert(
        [
            CatalogRecord(id="no-uri", image_vector=vector),
            CatalogRecord(id="gone", image_vector=vector, uri=str(tmp_path / "gone.png")),
            CatalogRecord(
                id="ok", image_vector=vector, uri=str(write_png(tmp_path / "ok.png", "ok"))
            ),
        ]
    )
    report = backfill_captions(
        store,
        ["no-uri", "gone", "ok"],
        captioner=FakeCaptioner(),
        embedder=FakeEmbedder(DIM),
        limits=limits,
        progress=False,
    )
    assert report.ok == 1
    assert "no uri" in report.failed["no-uri"]
    assert "not found" in report.failed["gone"]
    assert stored(store, "ok").caption == "ok"


def test_image_bytes_are_downscaled_before_the_models(tmp_path: Path, limits: ImageLimits) -> None:
    seen: list[tuple[int, int]] = []

    class SizeCaptioner(FakeCaptioner):
        def caption(self, images: Sequence[Image.Image]) -> list[str]:
            seen.extend(im.size for im in images)
            return super().caption(images)

    big = write_png(tmp_path / "big.png", "big", size=(800, 200))
    run(
        [IngestItem("big", str(big))],
        MemoryStore(),
        limits,
        captioner=SizeCaptioner(),
        image_max_side=100,
    )
    assert seen == [(100, 25)]
