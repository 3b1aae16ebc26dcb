"""``imagescope eval``: index a benchmark's gallery, run its queries per stage, score.

Stage sets are scored separately from one pass per query: stage 1; stage 2
on the stage-1 result; stage 3 on the stage-2 result (exactly what a [2, 3]
rerank does), so ``"1"``, ``"1+2"`` and ``"1+2+3"`` come from the same
candidates. Rankings are stored already ordered (scores ``-rank``), so the
metrics' tie rule (score, then id) never reorders a reranked list.

Every benchmark, the synthetic one included, goes through :func:`evaluate`.
The gallery goes into its own index, named by benchmark, split, embedder and
a digest of the gallery images' bytes (regenerated images get a new index),
ingested idempotently with ``skip_existing``: a second run reuses it, an
interrupted ingest continues. The query run itself resumes from
``rankings.jsonl`` (see :mod:`imagescope.eval.runner`), and only when the
folder's fingerprint (:mod:`imagescope.eval.fingerprint`) matches this run's.
Costs are logged per finished query (``costs.jsonl``), so a resumed run counts
every query once; ``costs.json`` sums them.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from imagescope.engine import Engine
from imagescope.eval.benchmark import Benchmark, BenchmarkQueryKind, DatasetError
from imagescope.eval.fingerprint import (
    ImageHashes,
    check_fingerprint,
    gallery_digest,
    gallery_hashes,
    run_fingerprint,
)
from imagescope.eval.runner import RunError, RunResult, Scored, run_benchmark
from imagescope.eval.submission import write_json_atomic
from imagescope.ingest.sources import IngestItem
from imagescope.measures import CostTally
from imagescope.schemas import SearchResult
from imagescope.settings import ImageLimits, Settings
from imagescope.stages import STAGE_SETS

log = logging.getLogger(__name__)

#: Stage -> the name of the stage set scored after it ("1", "1+2", "1+2+3").


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
    benchmark: Benchmark,
    settings: Settings,
    *,
    image_roots: Sequence[Path] = (),
    gallery_tag: str = "",
) -> tuple[Engine, ImageLimits]:
    """An engine over an index of this benchmark's gallery of its own (per split,
    embedder and ``gallery_tag``, a digest of the images' bytes).

    The benchmark's own embedder (``Benchmark.embedder_model``) is used when the
    settings do not name one.
    """
    from imagescope.wiring import load_embedder, open, scoped, with_embedder_model

    configured = settings.models.embedder.model_fields_set
    if benchmark.embedder_model and not configured & {"kind", "model"}:
        settings = with_embedder_model(settings, benchmark.embedder_model)
    embedder = load_embedder(settings)
    name = f"{benchmark.name}-{benchmark.split}-{embedder.model_id}"
    name += f"-{gallery_tag}" if gallery_tag else ""
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
    partial_submission: bool = False,
    skip_bad_images: bool = False,
    say: Callable[[str], object] = log.info,
) -> RunResult:
    """Index the gallery (once), run the queries per stage set and score them.

    Refuses to resume a folder holding a run with another fingerprint, and to
    write a server submission for part of a test split unless
    ``partial_submission``. With ``skip_bad_images``, gallery images that cannot
    be read are left out and listed in ``metrics.json`` (``skipped_images``).
    """
    _check_partial(benchmark, max_queries, partial_submission)
    out = out_dir or settings.data_dir / "runs" / f"{benchmark.name}-{benchmark.split}"
    content = gallery_hashes(benchmark.gallery, ImageHashes(settings.data_dir / "eval" /
                                                            "image_hashes.json"))  # fmt: skip
    skipped = _unreadable(benchmark, content, skip=skip_bad_images)
    digest = gallery_digest(content)
    engine, limits = open_for(benchmark, settings, image_roots=image_roots, gallery_tag=digest[:12])
    with engine:
        say(f"embedder: {engine.model_ids()['embedder']}")
        fingerprint = run_fingerprint(
            benchmark, settings, model_ids=engine.model_ids(), stages=stages, gallery=digest
        )
        check_fingerprint(Path(out), fingerprint, resume=resume)
        skipped |= index_gallery(benchmark, engine, limits=limits, skip_bad=skip_bad_images,
                                 exclude=set(skipped))  # fmt: skip
        extra = {"skipped_images": skipped, "fingerprint": fingerprint}
        return run_eval(benchmark, engine, stages=stages, out_dir=out, max_queries=max_queries,
                        resume=resume, extra=extra)  # fmt: skip


def _check_partial(benchmark: Benchmark, max_queries: int | None, partial: bool) -> None:
    total = len(benchmark.queries)
    if benchmark.has_ground_truth or benchmark.submitter is None or partial:
        return
    if max_queries is not None and max_queries < total:
        raise RunError(
            f"--max-queries {max_queries} on {benchmark.name} {benchmark.split} would write a "
            f"server submission with {max_queries} of its {total} queries, which the server "
            "scores as misses; drop --max-queries, or pass --partial-submission to write it"
        )


def _unreadable(
    benchmark: Benchmark, content: Mapping[str, str | None], *, skip: bool
) -> dict[str, str]:
    """Gallery images whose files cannot be read: an error, or the skip list."""
    paths = {image.id: image.path for image in benchmark.gallery}
    bad = {i: f"cannot read {paths[i]}" for i, digest in content.items() if digest is None}
    if bad and not skip:
        shown = "; ".join(f"{i} ({reason})" for i, reason in list(bad.items())[:3])
        raise DatasetError(
            f"{benchmark.name} {benchmark.split}: {len(bad)} gallery image(s) cannot be read: "
            f"{shown}; fix them, or pass --skip-bad-images to leave them out"
        )
    return bad


def index_gallery(
    benchmark: Benchmark,
    engine: Engine,
    *,
    limits: ImageLimits,
    skip_bad: bool = False,
    exclude: set[str] | None = None,
) -> dict[str, str]:
    """Ingest the gallery (skipping ids already there); returns the images left out.

    An image that fails to ingest is an error naming its id and file, unless
    ``skip_bad`` (then it is returned with the reason)."""
    paths = {image.id: image.path for image in benchmark.gallery}
    items = [
        IngestItem(
            id=image.id,
            uri=str(image.path),
            caption=benchmark.gallery_captions.get(image.id),
            metadata=dict(benchmark.gallery_metadata.get(image.id, {})),
        )
        for image in benchmark.gallery
        if image.id not in (exclude or set())
    ]
    report = engine.ingest(items, limits=limits, skip_existing=True)
    failed = {i: f"{paths.get(i, '?')}: {reason}" for i, reason in report.failed.items()}
    if failed and not skip_bad:
        shown = "; ".join(f"{i} ({reason})" for i, reason in list(failed.items())[:3])
        raise DatasetError(
            f"{benchmark.name} {benchmark.split}: {len(failed)} gallery image(s) failed to "
            f"index: {shown}; fix them, or pass --skip-bad-images to leave them out"
        )
    return failed


def run_eval(
    benchmark: Benchmark,
    engine: Engine,
    *,
    stages: Sequence[int],
    out_dir: Path,
    max_queries: int | None = None,
    resume: bool = True,
    extra: Mapping[str, Any] | None = None,
) -> RunResult:
    """Search every query through the requested stages and score each stage set.

    Also writes ``costs.json``: per stage set, the totals and the mean per
    query of each role's calls, tokens, cache hits and seconds, and of the
    per-stage wall times, as the traces record them. Each query's costs are
    appended to ``costs.jsonl`` when its rankings are written, so a resumed run
    counts each query once.
    """
    if max_queries is not None:
        benchmark = replace(benchmark, queries=benchmark.queries[:max_queries])
    costs = CostLog(Path(out_dir), resume=resume)

    def search(query: BenchmarkQueryKind) -> dict[str, Scored]:
        results = staged_results(engine, query, stages=stages)
        costs.add(results)
        return {name: _as_scored(result) for name, result in results.items()}

    result = run_benchmark(benchmark, search=search, out_dir=out_dir, resume=resume,
                           on_query=costs.finish, extra=extra)  # fmt: skip
    summary = costs.summary({q.id for q in benchmark.queries})
    write_json_atomic(Path(out_dir) / "costs.json", summary)
    return result


class CostLog:
    """Each finished query's costs, one JSON line in ``costs.jsonl`` (the last line
    for an id wins, so a query searched again after a crash counts once)."""

    def __init__(self, out: Path, *, resume: bool) -> None:
        self.path = out / "costs.jsonl"
        self.done: dict[str, CostTally] = {}
        self._current: list[Mapping[str, SearchResult]] = []
        out.mkdir(parents=True, exist_ok=True)
        if not resume:
            self.path.unlink(missing_ok=True)
            (out / "costs.json").unlink(missing_ok=True)
        elif self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    saved = json.loads(line)
                except ValueError:  # a partly written last line
                    continue
                tally = CostTally()
                tally.queries = {k: int(v) for k, v in saved["queries"].items()}
                tally.totals = {k: dict(v) for k, v in saved["totals"].items()}
                self.done[str(saved["id"])] = tally

    def add(self, results: Mapping[str, SearchResult]) -> None:
        self._current.append(results)

    def finish(self, query_id: str) -> None:
        """Called when ``query_id``'s rankings are written: log its costs."""
        tally = CostTally.of(self._current)
        # A dialog's rounds are one query: count it once per stage set.
        tally.queries = dict.fromkeys(tally.queries, 1)
        self._current = []
        self.done[query_id] = tally
        line = {"id": query_id, "queries": tally.queries, "totals": tally.totals}
        with self.path.open("a", encoding="utf-8") as sink:
            sink.write(json.dumps(line) + "\n")
            sink.flush()
            os.fsync(sink.fileno())

    def summary(self, query_ids: set[str]) -> dict[str, Any]:
        total = CostTally()
        for query_id, tally in self.done.items():
            if query_id in query_ids:
                total.merge(tally)
        return total.summary()
