"""CIRR (composed image retrieval on NLVR2 images): loader, scorer, submission.

Files (``<split>`` is ``val`` or ``test1``), under the dataset root or its
``cirr/`` folder (both layouts are in use)::

    captions/cap.rc2.<split>.json      [{pairid, reference, caption, img_set, target_hard?}]
    image_splits/split.rc2.<split>.json {image name: "./dev/<name>.png"}

Image paths are relative to the image root: the dataset root, its ``cirr/``
or ``img_raw/`` folder, ``cirr/img_raw/``, or the ``img_raw/`` folder beside
the root (whichever holds them), unless ``image_root`` is given. The official
layout (``<data>/cirr/captions``, ``<data>/cirr/image_splits``, images in
``<data>/dev``, ``<data>/test1`` or ``<data>/img_raw``) is found with
``--data <data>``.

One official caption is empty. A ComposedQuery needs an instruction, so an
empty caption becomes :data:`EMPTY_CAPTION_INSTRUCTION` ("no change"); the raw
caption stays in ``extras["caption"]``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from imagescope.eval.benchmark import (
    Benchmark,
    BenchmarkQuery,
    DatasetError,
    Entry,
    GalleryImage,
    Rankings,
    check_images_exist,
    find_file,
    pick_image_base,
    read_entries,
    read_json,
    single_rankings,
    warn_unknown_ids,
)
from imagescope.eval.metrics import CIRR_KS, CIRR_SUBSET_KS, cirr_recall, cirr_subset_recall
from imagescope.eval.submission import write_cirr_submission
from imagescope.schemas import ComposedQuery, ImageRef

logger = logging.getLogger(__name__)

EMPTY_CAPTION_INSTRUCTION = "keep the image as it is"
_LAYOUTS = ("", "cirr/")


def load_cirr(
    root: Path | str,
    *,
    split: str = "val",
    image_root: Path | str | None = None,
    check_images: bool = True,
) -> Benchmark:
    """Load CIRR ``split`` (``val`` has ground truth; ``test1`` is server-scored)."""
    root = Path(root)
    captions_path = find_file(
        root, [f"{d}captions/cap.rc2.{split}.json" for d in _LAYOUTS], what=f"CIRR {split} captions"
    )
    split_path = find_file(
        root,
        [f"{d}image_splits/split.rc2.{split}.json" for d in _LAYOUTS],
        what=f"CIRR {split} image split",
    )
    gallery = _gallery(split_path, root, image_root=image_root, check=check_images)
    queries = [_query(entry) for entry in read_entries(captions_path)]
    empty = sum(1 for q in queries if not q.extras["caption"])
    if empty:
        logger.info(
            "CIRR %s: %d empty caption(s) read as %r", split, empty, EMPTY_CAPTION_INSTRUCTION
        )
    warn_unknown_ids(queries, {g.id for g in gallery}, dataset=f"CIRR {split}")
    return Benchmark(
        name="cirr",
        split=split,
        gallery=gallery,
        queries=queries,
        scorer=score_cirr,
        submitter=submit_cirr,
        files=(captions_path, split_path),
    )


def _gallery(
    split_path: Path, root: Path, *, image_root: Path | str | None, check: bool
) -> list[GalleryImage]:
    mapping = read_json(split_path)
    if not isinstance(mapping, dict):
        raise DatasetError(f"{split_path}: expected a JSON object of image name -> path")
    relative = {str(name): str(rel).removeprefix("./") for name, rel in mapping.items()}
    candidates = (
        [Path(image_root)]
        if image_root is not None
        else [
            root,
            root / "img_raw",
            root / "cirr",
            root / "cirr" / "img_raw",
            split_path.parent.parent,
            root.parent / "img_raw",
        ]
    )
    probe = next(iter(relative.values()), None)
    base = pick_image_base(candidates, probe, dataset="CIRR", check=check)
    gallery = [GalleryImage(name, base / rel) for name, rel in relative.items()]
    if check:
        check_images_exist(gallery, dataset="CIRR")
    return gallery


def _query(entry: Entry) -> BenchmarkQuery:
    pair_id = str(entry.require("pairid"))
    reference = str(entry.require("reference"))
    caption = str(entry.require("caption") or "").strip()
    img_set = entry.require("img_set")
    members = img_set.get("members") if isinstance(img_set, dict) else None
    if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
        raise entry.fail("img_set.members must be a list of image names")
    target = entry.get("target_hard")
    return BenchmarkQuery(
        id=pair_id,
        query=ComposedQuery(
            reference=ImageRef(id=reference),
            instruction=caption or EMPTY_CAPTION_INSTRUCTION,
        ),
        targets=(str(target),) if target else (),
        extras={
            "reference": reference,
            "members": tuple(members),
            "img_set_id": img_set.get("id"),
            "caption": caption,
        },
    )


def score_cirr(benchmark: Benchmark, rankings: Rankings) -> dict[str, float]:
    """R@{1,5,10,50} (reference removed), R_subset@{1,2,3}, and their usual average."""
    ranked = single_rankings(benchmark, rankings)
    targets = [q.targets[0] for q in benchmark.queries]
    references = [str(q.extras["reference"]) for q in benchmark.queries]
    members = [tuple(q.extras["members"]) for q in benchmark.queries]
    recall = cirr_recall(ranked, targets, references=references, ks=CIRR_KS)
    subset = cirr_subset_recall(
        ranked, targets, references=references, members=members, ks=CIRR_SUBSET_KS
    )
    metrics = {f"R@{k}": v for k, v in recall.items()}
    metrics |= {f"R_subset@{k}": v for k, v in subset.items()}
    metrics["Avg"] = (recall[5] + subset[1]) / 2
    return metrics


def submit_cirr(benchmark: Benchmark, rankings: Rankings, *, out_dir: Path) -> list[Path]:
    """The two server files (recall, recall_subset) for this split."""
    ids = [q.id for q in benchmark.queries]
    ranked = dict(zip(ids, single_rankings(benchmark, rankings), strict=True))
    return write_cirr_submission(
        ranked,
        {q.id: str(q.extras["reference"]) for q in benchmark.queries},
        members={q.id: tuple(q.extras["members"]) for q in benchmark.queries},
        out_dir=out_dir,
        split=benchmark.split,
    )
