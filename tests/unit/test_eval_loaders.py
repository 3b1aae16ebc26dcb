"""Benchmark loaders on tiny fixtures written in each official format."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from imagescope.errors import InputError
from imagescope.eval.benchmark import DatasetError
from imagescope.eval.datasets import (
    load_benchmark,
    load_circo,
    load_cirr,
    load_fashioniq,
    load_flickr30k,
    load_mscoco,
    load_visdial,
)
from imagescope.eval.datasets.cirr import EMPTY_CAPTION_INSTRUCTION
from imagescope.eval.datasets.visdial import parse_turn
from imagescope.schemas import ComposedQuery, DialogQuery, TextQuery

pytestmark = pytest.mark.unit


def write_json(path: Path, payload: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload), encoding="utf-8")


def touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")


# --------------------------------------------------------------------------- CIRR

CIRR_IMAGES = [f"dev-{i}" for i in range(8)]


def make_cirr(
    ann_root: Path, image_root: Path, *, split: str = "val", nested: bool = False
) -> None:
    """Two pairs; the second has the empty caption. ``nested`` puts files in cirr/."""
    base = ann_root / "cirr" if nested else ann_root
    folder = "dev" if split == "val" else split
    write_json(
        base / "image_splits" / f"split.rc2.{split}.json",
        {name: f"./{folder}/{name}.png" for name in CIRR_IMAGES},
    )
    for name in CIRR_IMAGES:
        touch(image_root / folder / f"{name}.png")
    entries: list[dict[str, Any]] = [
        {
            "pairid": 10,
            "reference": "dev-0",
            "caption": "make the dog black",
            "img_set": {"id": 1, "members": CIRR_IMAGES[:6], "reference_rank": 0},
        },
        {
            "pairid": 11,
            "reference": "dev-2",
            "caption": "",
            "img_set": {"id": 2, "members": CIRR_IMAGES[2:], "reference_rank": 0},
        },
    ]
    if split == "val":
        entries[0] |= {"target_hard": "dev-1", "target_soft": {"dev-1": 1.0}}
        entries[1] |= {"target_hard": "dev-3", "target_soft": {"dev-3": 1.0}}
    write_json(base / "captions" / f"cap.rc2.{split}.json", entries)


def test_cirr_loads_gallery_queries_and_extras(tmp_path: Path) -> None:
    make_cirr(tmp_path, tmp_path)
    bench = load_cirr(tmp_path)
    assert (bench.name, bench.split) == ("cirr", "val")
    assert [g.id for g in bench.gallery] == CIRR_IMAGES
    assert bench.gallery[3].path == tmp_path / "dev" / "dev-3.png"
    first = bench.queries[0]
    assert first.id == "10"
    assert isinstance(first.query, ComposedQuery)
    assert first.query.reference.id == "dev-0"
    assert first.query.instruction == "make the dog black"
    assert first.targets == ("dev-1",)
    assert first.extras["members"] == tuple(CIRR_IMAGES[:6])


def test_cirr_empty_caption_becomes_a_no_change_instruction(tmp_path: Path) -> None:
    make_cirr(tmp_path, tmp_path)
    second = load_cirr(tmp_path).queries[1]
    assert isinstance(second.query, ComposedQuery)
    assert second.query.instruction == EMPTY_CAPTION_INSTRUCTION
    assert second.extras["caption"] == ""


def test_cirr_accepts_the_nested_layout_with_images_in_img_raw(tmp_path: Path) -> None:
    ann_root = tmp_path / "data" / "cirr"
    make_cirr(ann_root, tmp_path / "data" / "img_raw")
    bench = load_cirr(ann_root)
    assert bench.gallery[0].path == tmp_path / "data" / "img_raw" / "dev" / "dev-0.png"
    nested_root = tmp_path / "searle"
    make_cirr(nested_root, nested_root, nested=True)
    assert len(load_cirr(nested_root).queries) == 2


def test_cirr_missing_file_is_named_in_the_error(tmp_path: Path) -> None:
    make_cirr(tmp_path, tmp_path)
    (tmp_path / "captions" / "cap.rc2.val.json").unlink()
    with pytest.raises(DatasetError, match=r"captions/cap\.rc2\.val\.json") as info:
        load_cirr(tmp_path)
    assert isinstance(info.value, InputError)


def test_cirr_missing_image_is_reported_unless_unchecked(tmp_path: Path) -> None:
    make_cirr(tmp_path, tmp_path)
    (tmp_path / "dev" / "dev-5.png").unlink()
    with pytest.raises(DatasetError, match=r"1 gallery image\(s\) missing.*dev-5\.png"):
        load_cirr(tmp_path)
    assert len(load_cirr(tmp_path, check_images=False).gallery) == 8


def test_cirr_scores_with_reference_removed(tmp_path: Path) -> None:
    make_cirr(tmp_path, tmp_path)
    bench = load_cirr(tmp_path)
    rankings = {
        # reference first, then the target: rank 1 once the reference is removed
        "10": [["dev-0", "dev-1", "dev-2", "dev-3"]],
        # target at rank 4 once the reference is removed; in the subset (members
        # dev-3..dev-7, model order dev-7, dev-4, dev-3) at rank 3
        "11": [["dev-7", "dev-0", "dev-2", "dev-4", "dev-3"]],
    }
    metrics = bench.score(rankings)
    assert metrics["R@1"] == 50.0
    assert metrics["R@5"] == 100.0
    assert metrics["R_subset@1"] == 50.0
    assert metrics["R_subset@2"] == 50.0
    assert metrics["R_subset@3"] == 100.0
    assert metrics["Avg"] == pytest.approx((100.0 + 50.0) / 2)


def test_cirr_score_needs_every_query(tmp_path: Path) -> None:
    make_cirr(tmp_path, tmp_path)
    with pytest.raises(DatasetError, match="no ranking for 1 of 2"):
        load_cirr(tmp_path).score({"10": [["dev-1"]]})


def test_cirr_test_split_writes_both_submission_files(tmp_path: Path) -> None:
    make_cirr(tmp_path, tmp_path, split="test1")
    bench = load_cirr(tmp_path, split="test1")
    assert not bench.has_ground_truth
    with pytest.raises(DatasetError, match="evaluation server"):
        bench.score({})
    rankings = {
        "10": [["dev-7", "dev-0", "dev-3", "dev-1"]],
        "11": [["dev-2", "dev-6"]],
    }
    recall_path, subset_path = bench.write_submission(rankings, tmp_path / "out")
    recall = json.loads(recall_path.read_text())
    subset = json.loads(subset_path.read_text())
    assert recall_path.name == "cirr_test1_recall.json"
    assert recall == {
        "version": "rc2",
        "metric": "recall",
        "10": ["dev-7", "dev-3", "dev-1"],
        "11": ["dev-6"],
    }
    # Model order first (members only, reference excluded), then missing members in set order.
    assert subset["metric"] == "recall_subset"
    assert subset["10"] == ["dev-3", "dev-1", "dev-2"]
    assert subset["11"] == ["dev-6", "dev-3", "dev-4"]


# --------------------------------------------------------------------------- CIRCO


def make_circo(root: Path, *, folder: str = "annotations", info: bool = False) -> None:
    ids = [1, 2, 3, 4, 5, 39769]
    image_dir = root / "COCO2017_unlabeled" / "unlabeled2017"
    for i in ids:
        touch(image_dir / f"{i:012d}.jpg")
    if info:
        write_json(
            root / "COCO2017_unlabeled" / "annotations" / "image_info_unlabeled2017.json",
            {"images": [{"id": i, "file_name": f"{i:012d}.jpg"} for i in ids]},
        )
    write_json(
        root / folder / "val.json",
        [
            {
                "id": 0,
                "reference_img_id": 1,
                "target_img_id": 2,
                "relative_caption": "shows two of them",
                "shared_concept": "a dog",
                "gt_img_ids": [2, 3],
            },
            {
                "id": 1,
                "reference_img_id": 4,
                "target_img_id": 39769,
                "relative_caption": "is at night",
                "shared_concept": "a city",
                "gt_img_ids": [39769],
            },
        ],
    )


@pytest.mark.parametrize(("folder", "info"), [("annotations", False), ("captions", True)])
def test_circo_loads_both_layouts(tmp_path: Path, folder: str, info: bool) -> None:
    make_circo(tmp_path, folder=folder, info=info)
    bench = load_circo(tmp_path)
    assert [g.id for g in bench.gallery] == ["1", "2", "3", "4", "5", "39769"]
    assert bench.gallery[-1].path.name == "000000039769.jpg"
    query = bench.queries[0]
    assert isinstance(query.query, ComposedQuery)
    assert query.query.reference.id == "1"
    assert query.targets == ("2", "3")
    assert query.extras["shared_concept"] == "a dog"


def test_circo_scores_map_and_writes_int_submission(tmp_path: Path) -> None:
    make_circo(tmp_path)
    bench = load_circo(tmp_path)
    rankings = {"0": [["1", "2", "5", "3"]], "1": [["39769", "2"]]}
    metrics = bench.score(rankings)
    # Query 0: hits at ranks 2 and 4 -> (1/2 + 2/4) / 2 = 0.5; query 1: 1.0.
    assert metrics["mAP@5"] == pytest.approx(75.0)
    assert metrics["mAP@50"] == pytest.approx(75.0)
    (path,) = bench.write_submission(rankings, tmp_path / "out")
    assert json.loads(path.read_text()) == {"0": [1, 2, 5, 3], "1": [39769, 2]}


def test_circo_missing_annotations_names_the_files(tmp_path: Path) -> None:
    touch(tmp_path / "unlabeled2017" / "000000000001.jpg")
    with pytest.raises(DatasetError, match=r"annotations/test\.json.*captions/test\.json"):
        load_circo(tmp_path, split="test")


# --------------------------------------------------------------------------- FashionIQ


def make_fashioniq(root: Path) -> None:
    specs = {"dress": ".png", "shirt": ".jpg", "toptee": ".png"}
    for category, ext in specs.items():
        names = [f"{category[0]}{i}" for i in range(4)]
        write_json(root / "image_splits" / f"split.{category}.val.json", names)
        for name in names:
            touch(root / "images" / f"{name}{ext}")
        write_json(
            root / "captions" / f"cap.{category}.val.json",
            [
                {"candidate": names[0], "target": names[1], "captions": ["is red.", "has sleeves"]},
                {"candidate": names[2], "target": names[3], "captions": ["", "is longer "]},
            ],
        )


def test_fashioniq_loads_categories_ids_and_joined_text(tmp_path: Path) -> None:
    make_fashioniq(tmp_path)
    bench = load_fashioniq(tmp_path)
    assert len(bench.gallery) == 12 and len(bench.queries) == 6
    assert bench.gallery_metadata["shirt:s0"] == {"category": "shirt"}
    shirt = next(g for g in bench.gallery if g.id == "shirt:s1")
    assert shirt.path == tmp_path / "images" / "s1.jpg"
    first = bench.queries[0]
    assert isinstance(first.query, ComposedQuery)
    assert first.query.instruction == "is red and has sleeves"
    assert first.query.reference.id == "dress:d0"
    assert first.query.filters == {"category": "dress"}
    assert first.targets == ("dress:d1",)
    second = bench.queries[1].query
    assert isinstance(second, ComposedQuery) and second.instruction == "is longer"


def test_fashioniq_scores_per_category_and_average(tmp_path: Path) -> None:
    make_fashioniq(tmp_path)
    bench = load_fashioniq(tmp_path)
    noise = [f"toptee:x{i}" for i in range(10)]  # other-category ids are ignored
    rankings = {
        "dress:0": [["dress:d1"]],
        "dress:1": [["dress:d3"]],
        "shirt:0": [noise + ["shirt:s1"]],  # rank 1 within shirts despite the noise
        "shirt:1": [[f"shirt:z{i}" for i in range(20)] + ["shirt:s3"]],  # rank 21
        "toptee:0": [["toptee:t0"]],  # target missing: a miss
        "toptee:1": [["toptee:t3"]],
    }
    metrics = bench.score(rankings)
    assert metrics["dress/R@10"] == 100.0
    assert metrics["shirt/R@10"] == 50.0
    assert metrics["shirt/R@50"] == 100.0
    assert metrics["toptee/R@50"] == 50.0
    assert metrics["average/R@10"] == pytest.approx((100 + 50 + 50) / 3)
    assert metrics["average/R@50"] == pytest.approx((100 + 100 + 50) / 3)
    assert metrics["average"] == pytest.approx((200 / 3 + 250 / 3) / 2)


def test_fashioniq_rejects_unknown_category(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="among"):
        load_fashioniq(tmp_path, categories=["shoes"])


# --------------------------------------------------------------------------- t2i


def make_t2i_csv(path: Path) -> None:
    rows = [
        # JSON-style double quotes
        {"raw": '["A dog runs.", "A brown dog on grass."]', "split": "test", "filename": "1.jpg"},
        # Python-style quotes, one caption with an apostrophe
        {"raw": str(["A man's hat.", "a red hat"]), "split": "test", "filename": "2.jpg"},
        # not a test row: dropped
        {"raw": '["ignored"]', "split": "train", "filename": "3.jpg"},
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["raw", "sentids", "split", "filename", "img_id"])
        writer.writeheader()
        for n, row in enumerate(rows):
            writer.writerow(row | {"sentids": "[]", "img_id": n})
    for name in ("1.jpg", "2.jpg"):
        touch(path.parent / "images" / name)


def test_t2i_parses_both_quote_styles_and_drops_non_test_rows(tmp_path: Path) -> None:
    make_t2i_csv(tmp_path / "test_1k_flickr.csv")
    bench = load_flickr30k(tmp_path)
    assert [g.id for g in bench.gallery] == ["1.jpg", "2.jpg"]
    assert bench.gallery[0].path == tmp_path / "images" / "1.jpg"
    texts = [q.query.text for q in bench.queries if isinstance(q.query, TextQuery)]
    assert texts == ["A dog runs.", "A brown dog on grass.", "A man's hat.", "a red hat"]
    assert [q.id for q in bench.queries][2:] == ["2.jpg#0", "2.jpg#1"]
    assert all(q.targets == (q.id.split("#")[0],) for q in bench.queries)


def test_t2i_scores_recall_over_all_captions(tmp_path: Path) -> None:
    make_t2i_csv(tmp_path / "test_5k_mscoco_2014.csv")
    bench = load_mscoco(tmp_path)
    rankings = {
        "1.jpg#0": [["1.jpg", "2.jpg"]],
        "1.jpg#1": [["2.jpg", "1.jpg"]],
        "2.jpg#0": [["2.jpg"]],
        "2.jpg#1": [["1.jpg"]],  # own image missing from the ranking
    }
    assert bench.score(rankings) == {"R@1": 50.0, "R@5": 75.0, "R@10": 75.0}


def test_t2i_never_evaluates_the_raw_column(tmp_path: Path) -> None:
    path = tmp_path / "test_1k_flickr.csv"
    path.write_text(
        "raw,split,filename\n\"__import__('os').getcwd()\",test,1.jpg\n", encoding="utf-8"
    )
    with pytest.raises(DatasetError, match=r"test_1k_flickr\.csv:2: the raw column"):
        load_flickr30k(tmp_path, check_images=False)


def test_t2i_missing_csv_or_column_is_named(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"test_1k_flickr\.csv"):
        load_flickr30k(tmp_path)
    (tmp_path / "test_1k_flickr.csv").write_text("raw,filename\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"missing column\(s\) \['split'\]"):
        load_flickr30k(tmp_path)


# --------------------------------------------------------------------------- VisDial


def make_visdial(root: Path) -> None:
    gallery = ["./unlabeled2017/a.jpg", "/unlabeled2017/b.jpg", "unlabeled2017/c.jpg"]
    write_json(root / "Search_Space_val_50k.json", gallery)
    for name in "abc":
        touch(root / "unlabeled2017" / f"{name}.jpg")
    write_json(
        root / "dialogues" / "VisDial_v1.0_queries_val.json",
        [
            {"img": "unlabeled2017/b.jpg", "dialog": ["a cat on a sofa", "is it sunny? yes"]},
            {"img": "unlabeled2017/c.jpg", "dialog": ["two men", "any dogs? no, none"]},
        ],
    )


def test_visdial_builds_one_dialog_query_per_round(tmp_path: Path) -> None:
    make_visdial(tmp_path)
    bench = load_visdial(tmp_path)
    assert [g.id for g in bench.gallery] == [f"unlabeled2017/{n}.jpg" for n in "abc"]
    query = bench.queries[0]
    assert query.targets == ("unlabeled2017/b.jpg",)
    assert len(query.searches()) == 2
    round0, round1 = query.rounds
    assert isinstance(round0, DialogQuery) and round0.turns == []
    assert round1.caption == "a cat on a sofa"
    assert (round1.turns[0].question, round1.turns[0].answer) == ("is it sunny?", "yes")


def test_visdial_scores_cumulative_hits(tmp_path: Path) -> None:
    make_visdial(tmp_path)
    bench = load_visdial(tmp_path)
    b, c = "unlabeled2017/b.jpg", "unlabeled2017/c.jpg"
    fillers = [f"f{i}" for i in range(10)]
    rankings = {
        "0": [[b], fillers + [b]],  # found at round 0, lost at round 1: still found
        "1": [fillers + [c], [c]],  # found at round 1
    }
    assert bench.score(rankings) == {"Hits@10/round0": 50.0, "Hits@10/round1": 100.0}


def test_parse_turn_splits_at_first_question_mark() -> None:
    turn = parse_turn("what color? red? maybe")
    assert (turn.question, turn.answer) == ("what color?", "red? maybe")
    no_mark = parse_turn("no question mark")
    assert (no_mark.question, no_mark.answer) == ("no question mark", "")


# --------------------------------------------------------------------------- registry


def test_load_benchmark_dispatches_by_name_and_rejects_unknown(tmp_path: Path) -> None:
    make_visdial(tmp_path)
    assert load_benchmark("VisDial", tmp_path).name == "visdial"
    with pytest.raises(DatasetError, match="unknown benchmark 'imagenet'"):
        load_benchmark("imagenet", tmp_path)


def test_malformed_entry_names_file_entry_and_field(tmp_path: Path) -> None:
    make_circo(tmp_path)
    write_json(tmp_path / "annotations" / "val.json", [{"id": 0, "reference_img_id": 1}])
    with pytest.raises(DatasetError, match=r"val\.json: entry 0 has no field 'relative_caption'"):
        load_circo(tmp_path)
