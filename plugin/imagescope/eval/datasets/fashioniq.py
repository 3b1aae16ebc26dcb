"""FashionIQ (composed retrieval on fashion products; categories dress, shirt, toptee).

Files, under the dataset root or its ``fashionIQ_dataset/`` folder::

    captions/cap.<category>.<split>.json        [{candidate, target, captions[2]}]
    image_splits/split.<category>.<split>.json  [image name, ...]  (the gallery)
    images/<name>.png   (or .jpg)

Each category is ranked against its own gallery. One Benchmark holds the three:
gallery ids are ``"<category>:<name>"`` (a product may appear in several
categories), every gallery id carries ``{"category": ...}`` metadata, and every
query filters on its category. The scorer also keeps only the query's category
in each ranking (order kept), which is the same as ranking that category alone.

The query text joins the two captions with "and" (trailing punctuation removed).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

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
    read_json_list,
    single_rankings,
    warn_unknown_ids,
)
from imagescope.eval.metrics import FASHIONIQ_KS, mean_over_categories, recall_at_k
from imagescope.schemas import ComposedQuery, ImageRef

CATEGORIES = ("dress", "shirt", "toptee")
_LAYOUTS = ("", "fashionIQ_dataset/")


def gallery_id(category: str, name: str) -> str:
    """The gallery id of product ``name`` in ``category``."""
    return f"{category}:{name}"


def load_fashioniq(
    root: Path | str,
    *,
    split: str = "val",
    categories: Sequence[str] = CATEGORIES,
    image_root: Path | str | None = None,
    check_images: bool = True,
) -> Benchmark:
    """Load the FashionIQ ``split`` for ``categories`` into one Benchmark."""
    root = Path(root)
    unknown = sorted(set(categories) - set(CATEGORIES))
    if unknown or not categories:
        raise DatasetError(f"FashionIQ categories must be among {CATEGORIES}, got {unknown or []}")
    image_dir = find_dir(
        Path(image_root) if image_root else root,
        ["images", ""] if image_root else [f"{d}images" for d in _LAYOUTS],
        what="FashionIQ images",
    )
    gallery: list[GalleryImage] = []
    queries: list[BenchmarkQuery] = []
    for category in categories:
        gallery += _gallery(root, image_dir, category=category, split=split)
        queries += _queries(root, category=category, split=split)
    if check_images:
        check_images_exist(gallery, dataset="FashionIQ")
    warn_unknown_ids(queries, {g.id for g in gallery}, dataset=f"FashionIQ {split}")
    return Benchmark(
        name="fashioniq",
        split=split,
        gallery=gallery,
        queries=queries,
        scorer=score_fashioniq,
        gallery_metadata={g.id: {"category": g.id.split(":", 1)[0]} for g in gallery},
    )


def _image_path(image_dir: Path, name: str) -> Path:
    """``<name>.png`` unless only ``<name>.jpg`` exists."""
    png = image_dir / f"{name}.png"
    jpg = image_dir / f"{name}.jpg"
    return jpg if not png.is_file() and jpg.is_file() else png


def _gallery(root: Path, image_dir: Path, *, category: str, split: str) -> list[GalleryImage]:
    path = find_file(
        root,
        [f"{d}image_splits/split.{category}.{split}.json" for d in _LAYOUTS],
        what=f"FashionIQ {category} {split} image split",
    )
    names = read_json_list(path)
    return [
        GalleryImage(gallery_id(category, str(n)), _image_path(image_dir, str(n)))
        for n in dict.fromkeys(names)
    ]


def _queries(root: Path, *, category: str, split: str) -> list[BenchmarkQuery]:
    path = find_file(
        root,
        [f"{d}captions/cap.{category}.{split}.json" for d in _LAYOUTS],
        what=f"FashionIQ {category} {split} captions",
    )
    return [_query(entry, category=category) for entry in read_entries(path)]


def join_captions(captions: Sequence[str]) -> str:
    """The query text: the non-empty captions, stripped of ".?, ", joined with " and "."""
    parts = [c.strip().strip(".?, ") for c in captions]
    return " and ".join(p for p in parts if p)


def _query(entry: Entry, *, category: str) -> BenchmarkQuery:
    reference = str(entry.require("candidate"))
    captions = entry.require("captions")
    if not isinstance(captions, list) or not all(isinstance(c, str) for c in captions):
        raise entry.fail("captions must be a list of strings")
    text = join_captions(captions)
    if not text:
        raise entry.fail("has only empty captions")
    target = entry.get("target")
    return BenchmarkQuery(
        id=f"{category}:{entry.index}",
        query=ComposedQuery(
            reference=ImageRef(id=gallery_id(category, reference)),
            instruction=text,
            filters={"category": category},
        ),
        targets=(gallery_id(category, str(target)),) if target else (),
        extras={"category": category, "reference": reference, "captions": tuple(captions)},
    )


def score_fashioniq(benchmark: Benchmark, rankings: Rankings) -> dict[str, float]:
    """R@10 and R@50 per category, their mean over categories, and the overall mean."""
    ranked = single_rankings(benchmark, rankings)
    per_category: dict[str, dict[int, float]] = {}
    for category in dict.fromkeys(str(q.extras["category"]) for q in benchmark.queries):
        prefix = gallery_id(category, "")
        pairs = [
            ([i for i in ranking if i.startswith(prefix)], q.targets[0])
            for q, ranking in zip(benchmark.queries, ranked, strict=True)
            if q.extras["category"] == category
        ]
        per_category[category] = recall_at_k(
            [p[0] for p in pairs], [p[1] for p in pairs], ks=FASHIONIQ_KS
        )
    metrics = {f"{c}/R@{k}": v for c, res in per_category.items() for k, v in res.items()}
    average = mean_over_categories(per_category)
    metrics |= {f"average/R@{k}": v for k, v in average.items()}
    metrics["average"] = sum(average.values()) / len(average)
    return metrics
