"""VisDial dialogs scored with the ChatIR protocol (chat-based image retrieval).

Files, under the dataset root, its ``ChatIR_Protocol/`` folder (the ChatIR
repository's layout) or ``ChatIR/`` (the queries may sit in ``dialogues/``)::

    Search_Space_val_50k.json      [relative image path, ...]   (50,000: the gallery)
    VisDial_v1.0_queries_val.json  [{img: relative path, dialog: [caption, "q? a", ...]}]

Image paths are relative to the image root (default: the dataset root); the
normalised relative path (no leading "./" or "/") is the gallery id.

Every dialog is scored at every round: round ``r`` is the caption plus the
first ``r`` question-answer turns, so a dialog with 10 turns has 11 searches
(``BenchmarkQuery.rounds``). A turn "is it sunny? yes" splits at its first
"?" into question "is it sunny?" and answer "yes".
"""

from __future__ import annotations

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
    find_file,
    pick_image_base,
    read_entries,
    read_json_list,
    warn_unknown_ids,
)
from imagescope.eval.metrics import VISDIAL_KS, MetricError, cumulative_hits
from imagescope.schemas import DialogQuery, DialogTurn

GALLERY_FILE = "Search_Space_val_50k.json"
QUERIES_FILE = "VisDial_v1.0_queries_val.json"
#: Where the files may sit under the root: beside it, or in the ChatIR
#: repository's folders (``ChatIR_Protocol/Search_Space_val_50k.json``).
_LAYOUTS = ("", "ChatIR_Protocol/", "ChatIR/")


def load_visdial(
    root: Path | str, *, image_root: Path | str | None = None, check_images: bool = True
) -> Benchmark:
    """Load the ChatIR VisDial val protocol (2,064 dialogs over a 50k gallery)."""
    root = Path(root)
    gallery_path = find_file(
        root, [f"{d}{GALLERY_FILE}" for d in _LAYOUTS], what="VisDial (ChatIR) gallery"
    )
    queries_path = find_file(
        root,
        [f"{d}{sub}{QUERIES_FILE}" for d in _LAYOUTS for sub in ("", "dialogues/")],
        what="VisDial (ChatIR) queries",
    )
    relative = [
        normalise_path(p, where=f"{gallery_path}: entry {i}")
        for i, p in enumerate(read_json_list(gallery_path))
    ]
    base = pick_image_base(
        [Path(image_root)] if image_root else [root, gallery_path.parent],
        relative[0] if relative else None,
        dataset="VisDial",
        check=check_images,
    )
    gallery = [GalleryImage(rel, base / rel) for rel in dict.fromkeys(relative)]
    if check_images:
        check_images_exist(gallery, dataset="VisDial")
    queries = [_query(entry) for entry in read_entries(queries_path)]
    warn_unknown_ids(queries, {g.id for g in gallery}, dataset="VisDial")
    return Benchmark(
        name="visdial",
        split="val",
        gallery=gallery,
        queries=queries,
        scorer=score_visdial,
        files=(gallery_path, queries_path),
    )


def normalise_path(value: Any, *, where: str) -> str:
    """A gallery id from a relative image path ("./a/b.jpg" and "/a/b.jpg" -> "a/b.jpg")."""
    if not isinstance(value, str) or not value.strip():
        raise DatasetError(f"{where}: expected a relative image path, got {value!r}")
    text = value.strip().replace("\\", "/")
    while text.startswith(("./", "/")):
        text = text.removeprefix("./").removeprefix("/")
    return text


def parse_turn(text: str) -> DialogTurn:
    """Split "question? answer" at the first "?"; without one, all of it is the question."""
    question, mark, answer = text.strip().partition("?")
    return DialogTurn(question=(question + mark).strip(), answer=answer.strip())


def _query(entry: Entry) -> BenchmarkQuery:
    target = normalise_path(entry.require("img"), where=f"{entry.path}: entry {entry.index}")
    dialog = entry.require("dialog")
    if not isinstance(dialog, list) or not dialog or not all(isinstance(t, str) for t in dialog):
        raise entry.fail("dialog must be [caption, 'question? answer', ...]")
    caption = dialog[0].strip()
    if not caption:
        raise entry.fail("has an empty caption")
    turns = [parse_turn(t) for t in dialog[1:]]
    rounds = tuple(DialogQuery(caption=caption, turns=turns[:r]) for r in range(len(turns) + 1))
    return BenchmarkQuery(
        id=str(entry.index),
        query=rounds[-1],
        targets=(target,),
        rounds=rounds,
        extras={"dialog": tuple(dialog)},
    )


def score_visdial(benchmark: Benchmark, rankings: Rankings) -> dict[str, float]:
    """Cumulative Hits@10 at every round r: keys ``Hits@10/round<r>``."""
    per_dialog = []
    for query in benchmark.queries:
        rounds = rankings[query.id]
        if len(rounds) != len(query.rounds):
            raise MetricError(
                f"dialog {query.id!r} has {len(rounds)} rankings for {len(query.rounds)} rounds"
            )
        per_dialog.append(rounds)
    targets = [q.targets[0] for q in benchmark.queries]
    metrics: dict[str, float] = {}
    for k in VISDIAL_KS:
        hits = cumulative_hits(per_dialog, targets, k=k)
        metrics |= {f"Hits@{k}/round{r}": v for r, v in enumerate(hits)}
    return metrics
