"""What every benchmark loader returns, and the file helpers the loaders share.

A :class:`Benchmark` is a gallery of images (``(image_id, image_path)`` pairs)
plus queries. Each :class:`BenchmarkQuery` carries one schemas ``Query`` per
search it needs: one for text-to-image and composed benchmarks, one per dialog
round for VisDial (round ``r`` = caption + first ``r`` turns). The results of
a run are *rankings*: for every query id, one ranking (gallery ids, best
first) per search, in the order of :meth:`BenchmarkQuery.searches`.

A benchmark knows how it is scored (``scorer``, which calls the official metric
functions in :mod:`imagescope.eval.metrics`) and, for the datasets whose test
split is scored by a server, how to write a submission (``submitter``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from imagescope.errors import InputError
from imagescope.eval.metrics import MetricError, first_rank
from imagescope.measures import recall
from imagescope.schemas import ComposedQuery, DialogQuery, TextQuery

logger = logging.getLogger(__name__)

#: One ranking per search of a query (a single one except for dialog rounds).
QueryRankings = Sequence[Sequence[str]]
#: query id -> that query's rankings.
Rankings = Mapping[str, QueryRankings]
BenchmarkQueryKind = TextQuery | ComposedQuery | DialogQuery


class DatasetError(InputError):
    """A benchmark's files are missing, unreadable or not in the official format."""


class GalleryImage(NamedTuple):
    """One gallery image: the id rankings refer to, and where the file lives."""

    id: str
    path: Path


@dataclass(frozen=True)
class BenchmarkQuery:
    """One benchmark query.

    ``query`` is what a user would send (for VisDial: the whole dialog);
    ``rounds`` holds the per-round dialog queries when the protocol scores
    every round. ``targets`` are the ground-truth gallery ids (empty on splits
    whose ground truth is private). ``extras`` keeps per-dataset fields the
    metrics or submissions need (CIRR ``reference`` and ``members``, FashionIQ
    ``category``, ...).
    """

    id: str
    query: BenchmarkQueryKind
    targets: tuple[str, ...] = ()
    rounds: tuple[DialogQuery, ...] = ()
    extras: Mapping[str, Any] = field(default_factory=dict)

    def searches(self) -> tuple[BenchmarkQueryKind, ...]:
        """The queries to run, in the order their rankings are stored."""
        return self.rounds if self.rounds else (self.query,)


Scorer = Callable[["Benchmark", Rankings], dict[str, float]]


class Submitter(Protocol):
    """Writes a benchmark's evaluation-server files into ``out_dir``; returns their paths."""

    def __call__(
        self, benchmark: Benchmark, rankings: Rankings, *, out_dir: Path
    ) -> list[Path]: ...


@dataclass(frozen=True)
class Benchmark:
    """A loaded benchmark: gallery, queries, and how results are scored."""

    name: str
    split: str
    gallery: list[GalleryImage]
    queries: list[BenchmarkQuery]
    scorer: Scorer
    submitter: Submitter | None = None
    #: Extra fields per gallery id, for the index (e.g. FashionIQ ``category``).
    gallery_metadata: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    #: Captions that come with the dataset (else the configured captioner writes them).
    gallery_captions: Mapping[str, str] = field(default_factory=dict)
    #: The embedder model to use when the settings name none (e.g. a bundled model
    #: made for this benchmark); None: the configured default.
    embedder_model: str | None = None
    #: The annotation files it was loaded from (their checksums are part of a run's
    #: fingerprint, :mod:`imagescope.eval.fingerprint`).
    files: tuple[Path, ...] = ()

    @property
    def has_ground_truth(self) -> bool:
        """False on server-scored splits (no query has targets)."""
        return any(q.targets for q in self.queries)

    def score(self, rankings: Rankings) -> dict[str, float]:
        """The official metrics, in percent; needs a ranking for every query."""
        if not self.has_ground_truth:
            raise DatasetError(
                f"{self.name} {self.split} has no public ground truth; "
                "write a submission for the evaluation server instead"
            )
        missing = [q.id for q in self.queries if q.id not in rankings]
        if missing:
            raise DatasetError(
                f"no ranking for {len(missing)} of {len(self.queries)} {self.name} queries "
                f"(first: {missing[0]!r}); finish the run before scoring it"
            )
        return self.scorer(self, rankings)

    def write_submission(self, rankings: Rankings, out_dir: Path) -> list[Path]:
        """Write the evaluation-server files into ``out_dir``; [] if none exist."""
        if self.submitter is None:
            return []
        out_dir.mkdir(parents=True, exist_ok=True)
        return self.submitter(self, rankings, out_dir=out_dir)


def single_rankings(benchmark: Benchmark, rankings: Rankings) -> list[Sequence[str]]:
    """Each query's only ranking, in query order (for one-search benchmarks)."""
    out: list[Sequence[str]] = []
    for query in benchmark.queries:
        per_search = rankings[query.id]
        if len(per_search) != 1:
            raise MetricError(
                f"{benchmark.name} query {query.id!r} has {len(per_search)} rankings; expected 1"
            )
        out.append(per_search[0])
    return out


# --------------------------------------------------------------------------- file helpers


def find_file(root: Path, candidates: Sequence[str], *, what: str) -> Path:
    """The first of ``root/<candidate>`` that exists, else a DatasetError naming them."""
    for rel in candidates:
        path = root / rel
        if path.is_file():
            return path
    tried = ", ".join(str(root / rel) for rel in candidates)
    raise DatasetError(f"{what} not found: looked for {tried}; check the dataset root")


def find_dir(root: Path, candidates: Sequence[str], *, what: str) -> Path:
    """The first of ``root/<candidate>`` that is a folder ("" means root itself)."""
    for rel in candidates:
        path = root / rel if rel else root
        if path.is_dir():
            return path
    tried = ", ".join(str(root / rel) for rel in candidates)
    raise DatasetError(f"{what} folder not found: looked for {tried}; check the image root")


def read_json(path: Path) -> Any:
    """Parse a JSON file, turning I/O and syntax errors into DatasetError."""
    try:
        with path.open(encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise DatasetError(f"{path} does not exist; check the dataset root") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from exc


def read_json_list(path: Path) -> list[Any]:
    """A JSON file that must hold a list."""
    data = read_json(path)
    if not isinstance(data, list):
        raise DatasetError(f"{path}: expected a JSON list, got {type(data).__name__}")
    return data


@dataclass(frozen=True)
class Entry:
    """One item of an annotation list, which knows where it came from for errors."""

    data: Any
    path: Path
    index: int

    def fail(self, problem: str) -> DatasetError:
        return DatasetError(f"{self.path}: entry {self.index} {problem}")

    def require(self, key: str) -> Any:
        """``data[key]``, or a DatasetError naming the file, entry and field."""
        if not isinstance(self.data, dict) or key not in self.data:
            raise self.fail(f"has no field {key!r}")
        return self.data[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default) if isinstance(self.data, dict) else default


def read_entries(path: Path) -> list[Entry]:
    """The entries of a JSON list file."""
    return [Entry(item, path, i) for i, item in enumerate(read_json_list(path))]


def check_images_exist(gallery: Iterable[GalleryImage], *, dataset: str) -> None:
    """Raise a DatasetError listing missing image files (first five and a count)."""
    missing = [str(img.path) for img in gallery if not img.path.is_file()]
    if missing:
        shown = ", ".join(missing[:5])
        raise DatasetError(
            f"{dataset}: {len(missing)} gallery image(s) missing, e.g. {shown}; "
            "point the image root at the folder that holds them (or disable the check)"
        )


def pick_image_base(
    candidates: Sequence[Path], probe: str | None, *, dataset: str, check: bool
) -> Path:
    """The first candidate folder that holds ``probe`` (one relative image path).

    Lets a loader accept the layouts in use (images beside the annotations, in
    a sibling folder, ...). Without a match: a DatasetError when ``check``,
    else the first candidate.
    """
    if probe is not None:
        for base in candidates:
            if (base / probe).is_file():
                return base
        if check:
            tried = ", ".join(str(base / probe) for base in candidates)
            raise DatasetError(
                f"{dataset}: image not found: looked for {tried}; pass image_root= "
                "pointing at the folder that holds the images"
            )
    return candidates[0]


def warn_unknown_ids(
    queries: Iterable[BenchmarkQuery], gallery_ids: set[str], *, dataset: str
) -> None:
    """Log (not raise) targets that are not in the gallery: they can never be found."""
    unknown = sorted({t for q in queries for t in q.targets if t not in gallery_ids})
    if unknown:
        logger.warning(
            "%s: %d ground-truth id(s) are not in the gallery and count as misses (e.g. %s)",
            dataset,
            len(unknown),
            ", ".join(unknown[:3]),
        )


def recall_by_group(
    benchmark: Benchmark, rankings: Rankings, *, ks: Sequence[int] = (1, 5, 10), group: str = "kind"
) -> dict[str, float]:
    """R@K over queries with several ground-truth ids (any one counts), overall and per group."""
    groups: dict[str, list[int | None]] = {"all": []}
    for query in benchmark.queries:
        rank = first_rank(rankings[query.id][0], set(query.targets))
        groups["all"].append(rank)
        groups.setdefault(str(query.extras.get(group, "")), []).append(rank)
    groups.pop("", None)
    metrics: dict[str, float] = {}
    for name, ranks in groups.items():
        metrics |= recall(ranks, ks, prefix="" if name == "all" else f"{name} ")
    return metrics
