"""Run a benchmark through search callables, resumably, and score every stage.

The runner does not know the engine: it takes callables. Either one callable
per stage (``{"stage1": fn, "stage3": fn}``, each ``Query -> [(id, score)]``)
or one callable returning every stage at once (``Query -> {stage: [(id,
score)]}``), which suits an engine whose later stages rerank the first one's
output. Scores define the order (:func:`~imagescope.eval.metrics.rank_by_score`:
score descending, then id ascending); to pass an already ordered list, give
decreasing scores such as ``-rank``.

Files in ``out_dir``::

    run.json        which benchmark and split the folder belongs to
    rankings.jsonl  one line per finished query: {"id", "rankings": {stage: [[ids], ...]}}
    metrics.json    {"benchmark", "split", "queries", "stages": {stage: {metric: value}}}
    submissions/<stage>/...   server files (CIRR, CIRCO)

Each query's line is appended as soon as it is done (flushed and synced once
per batch), so an interrupted run resumes where it stopped: with
``resume=True`` the queries already in ``rankings.jsonl`` are not searched
again. A partly written last line (a killed process) is dropped and redone.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import IO, Any

from tqdm import tqdm

from imagescope.errors import ImageScopeError, InputError
from imagescope.eval.benchmark import Benchmark, BenchmarkQuery, BenchmarkQueryKind
from imagescope.eval.metrics import rank_by_score
from imagescope.eval.submission import write_json_atomic

logger = logging.getLogger(__name__)

Scored = Sequence[tuple[str, float]]
SearchFn = Callable[[BenchmarkQueryKind], Scored]
StagedSearchFn = Callable[[BenchmarkQueryKind], Mapping[str, Scored]]
#: query id -> stage -> one ranking per search of the query.
StoredRankings = dict[str, dict[str, list[list[str]]]]

RANKINGS_FILE = "rankings.jsonl"
MANIFEST_FILE = "run.json"
METRICS_FILE = "metrics.json"


class RunError(InputError):
    """The output folder belongs to another run, or the search broke its contract."""


class QueryFailedError(ImageScopeError):
    """A backend failed while searching one query (the message names it)."""


@dataclass(frozen=True)
class RunResult:
    """What a finished run produced."""

    #: stage -> metric -> value (empty per stage on server-scored splits).
    metrics: dict[str, dict[str, float]]
    submissions: dict[str, list[Path]] = field(default_factory=dict)
    out_dir: Path = Path()
    #: Queries searched by this call, and queries read back from an earlier one.
    searched: int = 0
    resumed: int = 0


def run_benchmark(
    benchmark: Benchmark,
    *,
    search: Mapping[str, SearchFn] | StagedSearchFn,
    out_dir: Path | str,
    resume: bool = True,
    batch_size: int = 32,
    keep_top: int | None = None,
    progress: bool = True,
    on_query: Callable[[str], None] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> RunResult:
    """Search every query of ``benchmark``, store rankings, then score each stage.

    ``keep_top`` truncates the stored rankings (None keeps what search returns).
    ``on_query(query_id)`` is called after each query's rankings line is written
    (the harness logs its costs there). ``extra`` is added to ``metrics.json``.
    Errors from ``search`` propagate after the finished queries are saved, as a
    ``RunError`` naming the query and the annotation file it comes from.
    """
    if batch_size < 1:
        raise RunError("batch_size must be at least 1")
    out = Path(out_dir)
    stored = _open_run(out, benchmark, resume=resume)
    resumed = len(stored)
    pending = [q for q in benchmark.queries if q.id not in stored]
    staged = _as_staged(search)
    bar = tqdm(
        total=len(benchmark.queries),
        initial=resumed,
        desc=f"{benchmark.name} {benchmark.split}",
        unit="query",
        disable=not progress,
    )
    where = f" of {', '.join(str(f) for f in benchmark.files)}" if benchmark.files else ""
    with bar, (out / RANKINGS_FILE).open("a", encoding="utf-8") as sink:
        for batch in _batches(pending, batch_size):
            _search_batch(batch, staged, stored=stored, sink=sink, keep_top=keep_top,
                          on_query=on_query, where=where)  # fmt: skip
            bar.update(len(batch))
    metrics, submissions = _finish(benchmark, stored, out=out, extra=extra or {})
    logger.info(
        "%s %s: %d searched, %d resumed", benchmark.name, benchmark.split, len(pending), resumed
    )
    return RunResult(
        metrics=metrics,
        submissions=submissions,
        out_dir=out,
        searched=len(pending),
        resumed=resumed,
    )


def _search_batch(
    batch: Sequence[BenchmarkQuery],
    staged: StagedSearchFn,
    *,
    stored: StoredRankings,
    sink: IO[str],
    keep_top: int | None,
    on_query: Callable[[str], None] | None = None,
    where: str = "",
) -> None:
    """Search a batch, appending each query's line as soon as it is done."""
    try:
        for query in batch:
            try:
                rankings = _search_query(query, staged, keep_top=keep_top)
            except RunError:
                raise
            except InputError as exc:  # bad data: an unknown reference, an unreadable image
                raise RunError(f"query {query.id!r}{where}: {exc}") from exc
            except ImageScopeError as exc:  # a backend failure
                raise QueryFailedError(f"query {query.id!r}{where}: {exc}") from exc
            stored[query.id] = rankings
            _check_stages(stored, query.id)
            sink.write(json.dumps({"id": query.id, "rankings": stored[query.id]}) + "\n")
            if on_query is not None:
                on_query(query.id)
    finally:
        sink.flush()
        os.fsync(sink.fileno())


def _open_run(out: Path, benchmark: Benchmark, *, resume: bool) -> StoredRankings:
    """Check or write the manifest; the finished queries to keep (none unless resuming)."""
    out.mkdir(parents=True, exist_ok=True)
    _check_manifest(out, benchmark, resume=resume)
    if resume:
        return _read_rankings(out / RANKINGS_FILE, benchmark)
    (out / RANKINGS_FILE).unlink(missing_ok=True)
    return {}


def _as_staged(search: Mapping[str, SearchFn] | StagedSearchFn) -> StagedSearchFn:
    if not isinstance(search, Mapping):
        return search
    if not search:
        raise RunError("give at least one stage to search")
    stages = dict(search)

    def staged(query: BenchmarkQueryKind) -> Mapping[str, Scored]:
        return {name: fn(query) for name, fn in stages.items()}

    return staged


def _search_query(
    query: BenchmarkQuery, staged: StagedSearchFn, *, keep_top: int | None
) -> dict[str, list[list[str]]]:
    per_stage: dict[str, list[list[str]]] = {}
    for search_index, single in enumerate(query.searches()):
        results = staged(single)
        if not results:
            raise RunError(f"query {query.id!r}: the search returned no stage")
        if search_index and set(results) != set(per_stage):
            raise RunError(f"query {query.id!r}: the stages changed between its searches")
        for stage, scored in results.items():
            per_stage.setdefault(stage, []).append(rank_by_score(scored)[:keep_top])
    return per_stage


def _check_stages(stored: StoredRankings, query_id: str) -> None:
    first = next(iter(stored.values()))
    if set(stored[query_id]) != set(first):
        raise RunError(
            f"query {query_id!r} has stages {sorted(stored[query_id])} but earlier queries "
            f"have {sorted(first)}; use a new out_dir or resume=False"
        )


def _batches(queries: Sequence[BenchmarkQuery], size: int) -> Iterator[list[BenchmarkQuery]]:
    it = iter(queries)
    while batch := list(islice(it, size)):
        yield batch


def _check_manifest(out: Path, benchmark: Benchmark, *, resume: bool) -> None:
    path = out / MANIFEST_FILE
    wanted = {"benchmark": benchmark.name, "split": benchmark.split}
    if resume and path.is_file():
        try:
            found = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise RunError(f"cannot read {path}: {exc}") from exc
        if {k: found.get(k) for k in wanted} != wanted:
            raise RunError(
                f"{out} holds a run of {found.get('benchmark')} {found.get('split')}, not "
                f"{benchmark.name} {benchmark.split}; use another out_dir or resume=False"
            )
        return
    write_json_atomic(path, wanted | {"queries": len(benchmark.queries)})


def _read_rankings(path: Path, benchmark: Benchmark) -> StoredRankings:
    """The finished queries of an earlier run; drops a partly written last line."""
    if not path.is_file():
        return {}
    data = path.read_bytes()
    complete = data[: data.rfind(b"\n") + 1]
    if len(complete) != len(data):
        logger.warning("%s: dropping a partly written last line", path)
        with path.open("r+b") as fh:
            fh.truncate(len(complete))
    known = {q.id: len(q.searches()) for q in benchmark.queries}
    stored: StoredRankings = {}
    for number, line in enumerate(complete.decode("utf-8").splitlines(), start=1):
        record = _parse_record(line, where=f"{path}:{number}")
        query_id = record["id"]
        if not isinstance(query_id, str) or query_id not in known:
            raise RunError(
                f"{path}:{number}: query {query_id!r} is not in {benchmark.name} "
                f"{benchmark.split}; use another out_dir or resume=False"
            )
        if any(len(r) != known[query_id] for r in record["rankings"].values()):
            raise RunError(f"{path}:{number}: wrong number of rankings for {query_id!r}")
        stored.setdefault(query_id, record["rankings"])
    return stored


def _parse_record(line: str, *, where: str) -> dict[str, Any]:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise RunError(f"{where}: not a JSON line ({exc}); resume=False starts over") from exc
    if not isinstance(record, dict) or not isinstance(record.get("rankings"), dict):
        raise RunError(f"{where}: expected {{'id': ..., 'rankings': {{...}}}}")
    return record


def _finish(
    benchmark: Benchmark, stored: StoredRankings, *, out: Path, extra: Mapping[str, Any]
) -> tuple[dict[str, dict[str, float]], dict[str, list[Path]]]:
    stages = list(next(iter(stored.values()))) if stored else []
    metrics: dict[str, dict[str, float]] = {}
    submissions: dict[str, list[Path]] = {}
    for stage in stages:
        rankings = {qid: per_stage[stage] for qid, per_stage in stored.items()}
        metrics[stage] = benchmark.score(rankings) if benchmark.has_ground_truth else {}
        files = benchmark.write_submission(rankings, out / "submissions" / stage)
        if files:
            submissions[stage] = files
        logger.info("%s %s %s: %s", benchmark.name, benchmark.split, stage, metrics[stage])
    write_json_atomic(
        out / METRICS_FILE,
        {
            "benchmark": benchmark.name,
            "split": benchmark.split,
            "queries": len(benchmark.queries),
            "stages": metrics,
            **extra,
        },
    )
    return metrics, submissions
