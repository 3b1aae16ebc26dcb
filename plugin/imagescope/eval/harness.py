"""``imagescope eval``: index a benchmark's gallery, run its queries per stage, score.

Stage sets are scored separately from one pass per query: stage 1; stage 2
on the stage-1 result; stage 3 on the stage-2 result (exactly what a [2, 3]
rerank does), so ``"1"``, ``"1+2"`` and ``"1+2+3"`` come from the same
candidates. Rankings are stored already ordered (scores ``-rank``), so the
metrics' tie rule (score, then id) never reorders a reranked list.

Every benchmark, the synthetic one included, goes through :func:`evaluate`.
The gallery goes into its own index (per benchmark, split and embedder),
ingested idempotently with ``skip_existing``: a second run reuses it, an
interrupted ingest continues. The query run itself resumes from
``rankings.jsonl`` (see :mod:`imagescope.eval.runner`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from imagescope.engine import Engine
from imagescope.eval.benchmark import Benchmark, BenchmarkQueryKind, Rankings
from imagescope.eval.metrics import first_rank
from imagescope.eval.runner import RunResult, Scored, run_benchmark
from imagescope.eval.submission import write_json_atomic
from imagescope.ingest.sources import IngestItem
from imagescope.schemas import SearchResult
from imagescope.settings import ImageLimits, Settings

log = logging.getLogger(__name__)

#: Stage -> the name of the stage set scored after it ("1", "1+2", "1+2+3").
STAGE_SETS = {1: "1", 2: "1+2", 3: "1+2+3"}


def staged_results(
    engine: Engine, query: BenchmarkQueryKind, *, stages: Sequence[int]
) -> dict[str, SearchResult]:
    """Stage 1, then each later stage on the previous stage's result, by stage set."""
    wanted = sorted(set(stages))
    results = engine.staged(query, stages=wanted)
    return {STAGE_SETS[stage]: result for stage, result in zip(wanted, results, strict=True)}


def _as_scored(result: SearchResult) -> Scored:
    return [(c.id, -float(rank)) for rank, c in enumerate(result.candidates, start=1)]


def open_for(
    benchmark: Benchmark, settings: Settings, *, image_roots: Sequence[Path] = ()
) -> tuple[Engine, ImageLimits]:
    """An engine over an index of this benchmark's gallery of its own (per split and embedder).

    The benchmark's own embedder (``Benchmark.embedder_model``) is used when the
    settings do not name one.
    """
    from imagescope.wiring import load_embedder, open, scoped, with_embedder_model

    configured = settings.models.embedder.model_fields_set
    if benchmark.embedder_model and not configured & {"kind", "model"}:
        settings = with_embedder_model(settings, benchmark.embedder_model)
    embedder = load_embedder(settings)
    name = f"{benchmark.name}-{benchmark.split}-{embedder.model_id}"
    roots = [*settings.images.allowed_roots, *(r.resolve() for r in image_roots)]
    limits = settings.images.model_copy(update={"allowed_roots": roots})
    engine = open(scoped(settings, folder="eval", name=name), embedder=embedder, limits=limits)
    return engine, limits


def evaluate(
    benchmark: Benchmark,
    settings: Settings,
    *,
    stages: Sequence[int],
    image_roots: Sequence[Path] = (),
    out_dir: Path | None = None,
    max_queries: int | None = None,
    resume: bool = True,
    say: Callable[[str], object] = log.info,
) -> RunResult:
    """Index the gallery (once), run the queries per stage set and score them."""
    engine, limits = open_for(benchmark, settings, image_roots=image_roots)
    out = out_dir or settings.data_dir / "runs" / f"{benchmark.name}-{benchmark.split}"
    with engine:
        say(f"embedder: {engine.model_ids()['embedder']}")
        index_gallery(benchmark, engine, limits=limits)
        return run_eval(
            benchmark, engine, stages=stages, out_dir=out, max_queries=max_queries, resume=resume
        )


def index_gallery(
    benchmark: Benchmark,
    engine: Engine,
    *,
    limits: ImageLimits,
) -> int:
    """Ingest the gallery (skipping ids already there); returns how many were written."""
    items = [
        IngestItem(
            id=image.id,
            uri=str(image.path),
            caption=benchmark.gallery_captions.get(image.id),
            metadata=dict(benchmark.gallery_metadata.get(image.id, {})),
        )
        for image in benchmark.gallery
    ]
    report = engine.ingest(items, limits=limits, skip_existing=True)
    report.raise_for_failures()
    return report.ok


def run_eval(
    benchmark: Benchmark,
    engine: Engine,
    *,
    stages: Sequence[int],
    out_dir: Path,
    max_queries: int | None = None,
    resume: bool = True,
) -> RunResult:
    """Search every query through the requested stages and score each stage set.

    Also writes ``costs.json``: per stage set, the totals and the mean per
    query of each role's calls, tokens, cache hits and seconds, and of the
    per-stage wall times, as the traces record them; a resumed run adds to the
    totals of the run it continues.
    """
    if max_queries is not None:
        benchmark = replace(benchmark, queries=benchmark.queries[:max_queries])
    costs_path = Path(out_dir) / "costs.json"
    costs = CostTally.load(costs_path) if resume else CostTally()

    def search(query: BenchmarkQueryKind) -> dict[str, Scored]:
        results = staged_results(engine, query, stages=stages)
        costs.add(results)
        return {name: _as_scored(result) for name, result in results.items()}

    result = run_benchmark(benchmark, search=search, out_dir=out_dir, resume=resume)
    write_json_atomic(costs_path, costs.summary())
    return result


class CostTally:
    """Sums trace costs and timings per stage set (cumulative up to that stage)."""

    def __init__(self) -> None:
        self.queries: dict[str, int] = {}
        self.totals: dict[str, dict[str, float]] = {}

    def add(self, results: Mapping[str, SearchResult]) -> None:
        for name, result in results.items():
            self.queries[name] = self.queries.get(name, 0) + 1
            total = self.totals.setdefault(name, {})
            for role, cost in result.trace.costs.items():
                for field_name, value in cost.model_dump().items():
                    key = f"{role}.{field_name}"
                    total[key] = total.get(key, 0.0) + float(value)
            for stage, seconds in result.trace.timings.items():
                total[f"seconds.{stage}"] = total.get(f"seconds.{stage}", 0.0) + seconds

    @classmethod
    def load(cls, path: Path) -> CostTally:
        """The tally a previous run saved (an empty one when there is none)."""
        tally = cls()
        if path.is_file():
            saved = json.loads(path.read_text(encoding="utf-8"))
            tally.queries = dict(saved.get("queries", {}))
            tally.totals = {k: dict(v) for k, v in saved.get("totals", {}).items()}
        return tally

    def summary(self) -> dict[str, object]:
        means = {
            name: {key: value / self.queries[name] for key, value in sorted(total.items())}
            for name, total in self.totals.items()
        }
        return {"queries": self.queries, "totals": self.totals, "mean_per_query": means}


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
    metrics = {}
    for name, ranks in groups.items():
        prefix = "" if name == "all" else f"{name} "
        for k in ks:
            hits = sum(r is not None and r <= k for r in ranks)
            metrics[f"{prefix}R@{k}"] = 100.0 * hits / len(ranks)
    return metrics
