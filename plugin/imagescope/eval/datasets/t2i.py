"""Text-to-image retrieval: Flickr30K 1K test and MSCOCO 5K test.

Files, under the dataset root::

    test_1k_flickr.csv | test_5k_mscoco_2014.csv
        columns include filename, split, raw (a list literal of the image's
        captions, written with double or single quotes)
    images/<filename>   (or the images directly in the root)

Only rows with ``split == "test"`` are kept. Every caption is one query whose
only correct answer is its own image; query ids are ``"<filename>#<n>"``.
The ``raw`` column is parsed as JSON, else as a Python literal
(``ast.literal_eval``); it is never evaluated as code.
"""

from __future__ import annotations

import ast
import csv
import json
from pathlib import Path
from typing import Any

from imagescope.eval.benchmark import (
    Benchmark,
    BenchmarkQuery,
    DatasetError,
    GalleryImage,
    Rankings,
    check_images_exist,
    find_file,
    pick_image_base,
    single_rankings,
)
from imagescope.eval.metrics import T2I_KS, recall_at_k
from imagescope.schemas import TextQuery

FLICKR30K_CSV = "test_1k_flickr.csv"
MSCOCO_CSV = "test_5k_mscoco_2014.csv"
_REQUIRED = ("filename", "split", "raw")


def load_flickr30k(
    root: Path | str, *, image_root: Path | str | None = None, check_images: bool = True
) -> Benchmark:
    """Flickr30K 1K test (text-to-image)."""
    csv_path = find_file(Path(root), [FLICKR30K_CSV], what="Flickr30K test CSV")
    return load_text_to_image(
        csv_path, name="flickr30k", image_root=image_root, check_images=check_images
    )


def load_mscoco(
    root: Path | str, *, image_root: Path | str | None = None, check_images: bool = True
) -> Benchmark:
    """MSCOCO 5K test (text-to-image)."""
    csv_path = find_file(Path(root), [MSCOCO_CSV], what="MSCOCO 5K test CSV")
    return load_text_to_image(
        csv_path, name="mscoco", image_root=image_root, check_images=check_images
    )


def load_text_to_image(
    csv_path: Path | str,
    *,
    name: str,
    image_root: Path | str | None = None,
    check_images: bool = True,
) -> Benchmark:
    """Load a caption CSV: one gallery image per test row, one query per caption."""
    csv_path = Path(csv_path)
    captions_by_file = read_caption_csv(csv_path)
    if not captions_by_file:
        raise DatasetError(f"{csv_path}: no rows with split == 'test'")
    root = csv_path.parent
    candidates = [Path(image_root)] if image_root is not None else [root / "images", root]
    probe = next(iter(captions_by_file))
    base = pick_image_base(candidates, probe, dataset=name, check=check_images)
    gallery = [GalleryImage(f, base / f) for f in captions_by_file]
    if check_images:
        check_images_exist(gallery, dataset=name)
    queries = [
        BenchmarkQuery(
            id=f"{filename}#{n}",
            query=TextQuery(text=caption),
            targets=(filename,),
            extras={"caption_index": n},
        )
        for filename, captions in captions_by_file.items()
        for n, caption in enumerate(captions)
    ]
    return Benchmark(
        name=name,
        split="test",
        gallery=gallery,
        queries=queries,
        scorer=score_text_to_image,
        files=(csv_path,),
    )


def read_caption_csv(path: Path) -> dict[str, list[str]]:
    """filename -> its captions, for the CSV's test rows, in file order."""
    try:
        with path.open(encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in _REQUIRED if c not in (reader.fieldnames or [])]
            if missing:
                raise DatasetError(f"{path}: missing column(s) {missing}; need {list(_REQUIRED)}")
            out: dict[str, list[str]] = {}
            for line, row in enumerate(reader, start=2):
                if (row["split"] or "").strip() != "test":
                    continue
                captions = parse_caption_list(row["raw"] or "", where=f"{path}:{line}")
                out.setdefault(row["filename"].strip(), []).extend(captions)
            return out
    except FileNotFoundError:
        raise DatasetError(f"{path} does not exist; check the dataset root") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from exc


def parse_caption_list(raw: str, *, where: str) -> list[str]:
    """Parse a list literal of captions (JSON or Python quoting); never evaluates code."""
    value: Any
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        try:
            value = ast.literal_eval(raw.strip())
        except (ValueError, SyntaxError, MemoryError, RecursionError) as exc:
            raise DatasetError(
                f"{where}: the raw column is not a list of captions ({exc})"
            ) from None
    if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
        raise DatasetError(f"{where}: the raw column must be a list of caption strings")
    captions = [c.strip() for c in value]
    if not captions or not all(captions):
        raise DatasetError(f"{where}: the raw column has an empty caption or none at all")
    return captions


def score_text_to_image(benchmark: Benchmark, rankings: Rankings) -> dict[str, float]:
    """R@1, R@5, R@10 over all captions."""
    ranked = single_rankings(benchmark, rankings)
    result = recall_at_k(ranked, [q.targets[0] for q in benchmark.queries], ks=T2I_KS)
    return {f"R@{k}": v for k, v in result.items()}
