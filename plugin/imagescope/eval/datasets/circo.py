"""CIRCO (composed retrieval with multiple ground truths on COCO unlabeled2017).

Files, under the dataset root::

    annotations/<split>.json   (some copies: captions/<split>.json)
        [{id, reference_img_id, relative_caption, shared_concept,
          target_img_id?, gt_img_ids?}]           (val has the last two)
    COCO2017_unlabeled/unlabeled2017/<12-digit id>.jpg   (or unlabeled2017/)
    COCO2017_unlabeled/annotations/image_info_unlabeled2017.json  (optional)

The gallery is every image listed in ``image_info_unlabeled2017.json`` when that
file exists, else every ``<digits>.jpg`` in the image folder. Gallery ids are the
COCO image numbers as decimal strings without padding ("39769"), which is what
the annotations and the submission use.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from imagescope.eval.benchmark import (
    Benchmark,
    BenchmarkQuery,
    DatasetError,
    Entry,
    GalleryImage,
    Rankings,
    check_images_exist,
    find_dir,
    find_file,
    read_entries,
    read_json,
    single_rankings,
    warn_unknown_ids,
)
from imagescope.eval.metrics import CIRCO_KS, circo_map
from imagescope.eval.submission import write_circo_submission
from imagescope.schemas import ComposedQuery, ImageRef

logger = logging.getLogger(__name__)

_IMAGE_DIRS = ("COCO2017_unlabeled/unlabeled2017", "unlabeled2017", "")
_IMAGE_INFO = (
    "COCO2017_unlabeled/annotations/image_info_unlabeled2017.json",
    "annotations/image_info_unlabeled2017.json",
)


def load_circo(
    root: Path | str,
    *,
    split: str = "val",
    image_root: Path | str | None = None,
    check_images: bool = True,
) -> Benchmark:
    """Load CIRCO ``split`` (``val`` has ground truth; ``test`` is server-scored)."""
    root = Path(root)
    annotations = find_file(
        root,
        [f"annotations/{split}.json", f"captions/{split}.json"],
        what=f"CIRCO {split} annotations",
    )
    gallery = _gallery(root, Path(image_root) if image_root else None, check=check_images)
    queries = [_query(entry) for entry in read_entries(annotations)]
    gallery_ids = {g.id for g in gallery}
    warn_unknown_ids(queries, gallery_ids, dataset=f"CIRCO {split}")
    return Benchmark(
        name="circo",
        split=split,
        gallery=gallery,
        queries=queries,
        scorer=score_circo,
        submitter=submit_circo,
        files=(annotations,),
    )


def _gallery(root: Path, image_root: Path | None, *, check: bool) -> list[GalleryImage]:
    # An explicit image root may be the unlabeled2017 folder itself ("").
    dirs = _IMAGE_DIRS if image_root is not None else _IMAGE_DIRS[:2]
    folder = find_dir(image_root or root, dirs, what="CIRCO unlabeled2017 image")
    info = next((root / rel for rel in _IMAGE_INFO if (root / rel).is_file()), None)
    if info is not None:
        data = read_json(info)
        images = data.get("images") if isinstance(data, dict) else None
        if not isinstance(images, list):
            raise DatasetError(f"{info}: expected an object with an 'images' list")
        ids = [_int_id(Entry(img, info, i).require("id"), info) for i, img in enumerate(images)]
    else:
        ids = sorted(int(p.stem) for p in folder.glob("*.jpg") if p.stem.isdigit())
        if not ids:
            raise DatasetError(f"CIRCO: no <id>.jpg images in {folder}; check the image root")
    gallery = [GalleryImage(str(i), folder / f"{i:012d}.jpg") for i in ids]
    if check and info is not None:
        check_images_exist(gallery, dataset="CIRCO")
    return gallery


def _int_id(value: Any, path: Path) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise DatasetError(f"{path}: image id {value!r} is not a COCO image number") from None


def _query(entry: Entry) -> BenchmarkQuery:
    query_id = str(entry.require("id"))
    reference = str(entry.require("reference_img_id"))
    caption = str(entry.require("relative_caption") or "").strip()
    if not caption:
        raise entry.fail(f"(id {query_id}) has an empty relative_caption")
    target = entry.get("target_img_id")
    gt = entry.get("gt_img_ids") or ([target] if target is not None else [])
    return BenchmarkQuery(
        id=query_id,
        query=ComposedQuery(reference=ImageRef(id=reference), instruction=caption),
        targets=tuple(dict.fromkeys(str(i) for i in gt)),
        extras={
            "reference": reference,
            "shared_concept": str(entry.get("shared_concept") or ""),
        },
    )


def score_circo(benchmark: Benchmark, rankings: Rankings) -> dict[str, float]:
    """mAP@{5,10,25,50} over every query's ground-truth set."""
    ranked = single_rankings(benchmark, rankings)
    result = circo_map(ranked, [q.targets for q in benchmark.queries], ks=CIRCO_KS)
    return {f"mAP@{k}": v for k, v in result.items()}


def submit_circo(benchmark: Benchmark, rankings: Rankings, *, out_dir: Path) -> list[Path]:
    """The server file: every query id -> top-50 image ids as ints."""
    ids = [q.id for q in benchmark.queries]
    ranked = dict(zip(ids, single_rankings(benchmark, rankings), strict=True))
    return write_circo_submission(ranked, ids, out_dir=out_dir, split=benchmark.split)
