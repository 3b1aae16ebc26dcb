"""The offline synthetic benchmark: R@K per stage and per query kind, and what it cost.

1. Draw a catalog (:func:`~imagescope.synthetic.catalog.write_catalog`) and
   ingest its ``catalog.csv`` through the product path (``read_table`` ->
   ``ingest``) into a store: the embedded store by default, or a MemoryStore.
2. Draw queries of the three kinds with exact ground truth
   (:mod:`imagescope.synthetic.queries`).
3. Run every query through the engine with the CPU backends (RuleReasoner on
   the tiny ImageScope-Synth CLIP; verifier and evaluator: the learned
   ImageScope-Judge by default, ``judge="clip"`` for the CLIP zero-shot judges): stage 1,
   then stage 2 on the stage-1 result, then stage 3 on the stage-2 result, so
   each stage's ranking and cost is read off separately. (Running stage 3 on
   the stage-2 result is exactly what a [2, 3] rerank does.)

Beside the stages, two references: ``clip``, the plain CLIP baseline (the raw
query text, after the reference caption for composed queries, against image
vectors; no reasoning, no caption fusion), and chance (the R@K a random ranking
gets). Because the ground truth is exact, the report also says how the judges
treat ground-truth candidates vs the others in the same top-k (share of
propositions satisfied, evaluator acceptance): a judge that cannot tell them
apart can only shuffle the ranking.

Recall and the per-stage cost tally are the ones eval uses
(:mod:`imagescope.measures`); chance and the judges' signal are this benchmark's
own (eval's datasets have neither exact ground truth sets nor their sizes).

R@K = 100 * mean over queries of [some ground-truth id ranks <= K]; ties in the
stage-1 scores are broken by ascending id (the store's rule). Composed queries
never rank their reference (stage 1 removes it), which never is ground truth.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from statistics import mean
from typing import Any, Literal

from tqdm import tqdm

from imagescope.engine import Engine
from imagescope.ingest.sources import read_table
from imagescope.measures import CostTally, recall
from imagescope.models.base import Embedder
from imagescope.schemas import SearchResult, StageName
from imagescope.settings import EmbeddedStoreSettings, ImageLimits, Settings
from imagescope.stages import STAGE_SETS as STAGE_NAMES
from imagescope.store.base import VectorStore
from imagescope.store.embedded import EmbeddedStore
from imagescope.store.memory import MemoryStore
from imagescope.synthetic.catalog import make_catalog, write_catalog
from imagescope.synthetic.queries import KINDS, SyntheticQuery, make_queries

log = logging.getLogger(__name__)

#: Stage sets whose rankings are scored, in order.
STAGE_SETS: tuple[str, ...] = tuple(STAGE_NAMES.values())
#: The plain CLIP baseline: the raw query text against image vectors, no reasoning.
BASELINE = "clip"
_STAGE_TIMINGS = {
    "1": (StageName.INTENT, StageName.RETRIEVE),
    "2": (StageName.PROPOSITIONS, StageName.VERIFY),
    "3": (StageName.EVALUATE,),
}
_ROLES = ("reasoner", "verifier", "evaluator")


@dataclass(frozen=True)
class BenchConfig:
    n_items: int = 2000
    catalog_seed: int = 1
    n_per_kind: int = 50
    query_seed: int = 0
    store: Literal["embedded", "memory"] = "embedded"
    #: Overrides of the method's knobs (``PipelineSettings``; None: the settings' value).
    top_k: int | None = None
    alpha: int | None = None
    limit: int | None = None
    tau: float | None = None
    ks: tuple[int, ...] = (1, 5, 10)
    #: Verifier and evaluator kind: ``learned`` (ImageScope-Judge) or ``clip`` (zero-shot).
    judge: Literal["learned", "clip"] = "learned"

    def settings(self) -> Settings:
        """The CPU backends (rule reasoner, the judges) with this config's knobs."""
        knobs = {"top_k": self.top_k, "alpha": self.alpha, "limit": self.limit, "tau": self.tau}
        judge = {"kind": self.judge}
        return Settings.model_validate(
            {
                "models": {"reasoner": {"kind": "rule"}, "verifier": judge, "evaluator": judge},
                "pipeline": {k: v for k, v in knobs.items() if v is not None},
            }
        )


@dataclass
class QueryOutcome:
    """One query's first ground-truth rank after each stage set, and its per-stage costs."""

    id: str
    kind: str
    ground_truth: int
    ranks: dict[str, int | None] = field(default_factory=dict)
    #: stage ("1", "2", "3") -> seconds and model calls spent in that stage.
    costs: dict[str, dict[str, float]] = field(default_factory=dict)
    #: How the judges treat ground-truth vs other candidates (None: none of that kind).
    signal: dict[str, float | None] = field(default_factory=dict)


def ingest_catalog(
    work_dir: Path, config: BenchConfig, *, embedder: Embedder
) -> tuple[VectorStore, ImageLimits]:
    """Draw the catalog into ``work_dir`` and ingest it; returns the store and image limits."""
    csv_path = write_catalog(work_dir / "catalog", n=config.n_items, seed=config.catalog_seed)
    limits = ImageLimits(allowed_roots=[work_dir.resolve()])
    store: VectorStore
    if config.store == "memory":
        store = MemoryStore()
    else:
        store = EmbeddedStore(EmbeddedStoreSettings(path=work_dir / "store"))
    engine = build_engine(store, limits, config=config, embedder=embedder)
    report = engine.ingest(read_table(csv_path), limits=limits, progress=False)
    report.raise_for_failures()
    log.info("ingested %d images in %.1fs", report.ok, report.seconds)
    return store, limits


def build_engine(
    store: VectorStore, limits: ImageLimits, *, config: BenchConfig, embedder: Embedder
) -> Engine:
    """The engine over the CPU backends: rule reasoner, CLIP verifier and evaluator."""
    from imagescope.wiring import open as open_engine

    return open_engine(config.settings(), embedder=embedder, store=store, limits=limits)


def stage_costs(results: Sequence[SearchResult]) -> dict[str, dict[str, float]]:
    """Per stage ("1", "2", "3"): seconds and calls it added to the stage set before it.

    Read off the shared :class:`~imagescope.measures.CostTally`, which sums each
    stage set's trace cumulatively; the verifier's questions come from stage 2's verdicts.
    """
    totals = CostTally.of([dict(zip(STAGE_SETS, results, strict=True))]).totals
    costs: dict[str, dict[str, float]] = {}
    before: dict[str, float] = {}
    for stage, name in zip(_STAGE_TIMINGS, STAGE_SETS, strict=True):
        after = totals[name]
        seconds = sum(
            after.get(f"seconds.{s.value}", 0.0) - before.get(f"seconds.{s.value}", 0.0)
            for s in _STAGE_TIMINGS[stage]
        )
        costs[stage] = {"seconds": seconds}
        for role in _ROLES:
            key = f"{role}.calls"
            costs[stage][f"{role}_calls"] = int(after.get(key, 0.0) - before.get(key, 0.0))
        before = after
    costs["2"]["questions"] = sum(len(c.verdicts) for c in results[1].candidates)
    return costs


def _rank(result: SearchResult, query: SyntheticQuery) -> int | None:
    return result.rank_of(set(query.ground_truth))


def _mean_or_none(values: Sequence[float]) -> float | None:
    return mean(values) if values else None


def judge_signal(
    query: SyntheticQuery, *, verified: SearchResult, evaluated: SearchResult
) -> dict[str, float | None]:
    """Share of propositions satisfied and evaluator acceptance, ground truth vs others."""
    truth = set(query.ground_truth)
    checked = [c for c in verified.candidates if c.verdicts]
    judged = [c for c in evaluated.candidates if c.evaluation is not None]
    satisfied = {c.id: (c.satisfied or 0) / len(c.verdicts) for c in checked}
    accepted = {c.id: float(c.evaluation.accepted) for c in judged if c.evaluation}
    return {
        "verifier_gt": _mean_or_none([v for i, v in satisfied.items() if i in truth]),
        "verifier_other": _mean_or_none([v for i, v in satisfied.items() if i not in truth]),
        "evaluator_gt": _mean_or_none([v for i, v in accepted.items() if i in truth]),
        "evaluator_other": _mean_or_none([v for i, v in accepted.items() if i not in truth]),
    }


def run_query(engine: Engine, query: SyntheticQuery) -> QueryOutcome:
    """The CLIP baseline; stage 1, then 2 on its result, then 3 on stage 2's result."""
    first, second, third = engine.staged(query.query, stages=[1, 2, 3])
    outcome = QueryOutcome(id=query.id, kind=query.kind, ground_truth=len(query.ground_truth))
    outcome.ranks[BASELINE] = _rank(engine.clip_baseline(query.query), query)
    for name, result in zip(STAGE_SETS, (first, second, third), strict=True):
        outcome.ranks[name] = _rank(result, query)
    outcome.signal = judge_signal(query, verified=second, evaluated=third)
    outcome.costs = stage_costs((first, second, third))
    return outcome


def stage_recall(ranks: Sequence[int | None], ks: Sequence[int]) -> dict[str, float]:
    """R@K in percent for each K, rounded to 2 places (the shared :func:`recall`)."""
    return {name: round(value, 2) for name, value in recall(ranks, ks).items()}


def chance_recall(n_items: int, gt_sizes: Sequence[int], *, ks: Sequence[int]) -> dict[str, float]:
    """Expected R@K of a random ranking: 1 - C(N-g, K) / C(N, K), averaged."""
    out = {}
    for k in ks:
        values = [1.0 - math.comb(n_items - g, k) / math.comb(n_items, k) for g in gt_sizes]
        out[f"R@{k}"] = round(100.0 * mean(values), 2)
    return out


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def summarise(outcomes: Sequence[QueryOutcome], config: BenchConfig) -> dict[str, Any]:
    """Recall per kind and stage set, mean cost per kind and stage, chance levels."""
    groups: dict[str, list[QueryOutcome]] = {}
    for query_kind in KINDS:
        if any(o.kind == query_kind for o in outcomes):
            groups[query_kind] = [o for o in outcomes if o.kind == query_kind]
    groups["all"] = list(outcomes)
    summary: dict[str, Any] = {"recall": {}, "cost": {}, "chance": {}, "signal": {}, "queries": {}}
    for kind, group in groups.items():
        summary["queries"][kind] = len(group)
        summary["recall"][kind] = {
            s: stage_recall([o.ranks[s] for o in group], config.ks) for s in (BASELINE, *STAGE_SETS)
        }
        summary["signal"][kind] = {
            name: _rounded(_mean_or_none([v for o in group if (v := o.signal[name]) is not None]))
            for name in group[0].signal
        }
        summary["chance"][kind] = chance_recall(
            config.n_items, [o.ground_truth for o in group], ks=config.ks
        )
        summary["cost"][kind] = {
            stage: {
                name: round(mean(o.costs[stage][name] for o in group), 4)
                for name in group[0].costs[stage]
            }
            for stage in ("1", "2", "3")
        }
    return summary


def run_synthetic_bench(
    work_dir: Path, config: BenchConfig, *, embedder: Embedder, progress: bool = False
) -> dict[str, Any]:
    """The whole benchmark; returns the JSON-ready report."""
    start = time.perf_counter()
    store, limits = ingest_catalog(work_dir, config, embedder=embedder)
    ingest_seconds = time.perf_counter() - start
    engine = build_engine(store, limits, config=config, embedder=embedder)
    queries = make_queries(
        make_catalog(config.n_items, seed=config.catalog_seed),
        n_per_kind=config.n_per_kind,
        seed=config.query_seed,
    )
    try:
        outcomes = [run_query(engine, q) for q in tqdm(queries, disable=not progress, desc="bench")]
    finally:
        engine.close()
    report = {
        "config": {**asdict(config), "ks": list(config.ks)},
        "models": engine.model_ids(),
        "ingest_seconds": round(ingest_seconds, 2),
        "total_seconds": round(time.perf_counter() - start, 2),
        **summarise(outcomes, config),
        "per_query": [asdict(o) for o in outcomes],
    }
    return report


def _recall_lines(report: dict[str, Any]) -> list[str]:
    ks = [f"R@{k}" for k in report["config"]["ks"]]
    lines = [f"{'kind':<9} {'stages':<7} " + " ".join(f"{k:>7}" for k in ks) + "   (chance)"]
    for kind, by_stage in report["recall"].items():
        chance = " ".join(f"{report['chance'][kind][k]:.1f}" for k in ks)
        for stages, values in by_stage.items():
            row = " ".join(f"{values[k]:>7.1f}" for k in ks)
            tail = f"   ({chance})" if stages == BASELINE else ""
            lines.append(f"{kind:<9} {stages:<7} {row}{tail}")
    return lines


def _cost_lines(report: dict[str, Any]) -> list[str]:
    lines = [
        f"{'kind':<9} {'stage':<5} {'seconds':>8} {'reasoner':>9} {'verifier':>9} "
        f"{'questions':>10} {'evaluator':>10}"
    ]
    for kind, by_stage in report["cost"].items():
        for stage, cost in by_stage.items():
            lines.append(
                f"{kind:<9} {stage:<5} {cost['seconds']:>8.3f} {cost['reasoner_calls']:>9.2f} "
                f"{cost['verifier_calls']:>9.2f} {cost.get('questions', 0.0):>10.1f} "
                f"{cost['evaluator_calls']:>10.2f}"
            )
    return lines


def _signal_lines(report: dict[str, Any]) -> list[str]:
    def shown(value: float | None) -> str:
        return f"{100 * value:>6.1f}" if value is not None else f"{'-':>6}"

    lines = [
        "judges, ground truth vs other candidates (percent): propositions satisfied; "
        "evaluator acceptance",
        f"{'kind':<9} {'verify gt':>10} {'other':>7} {'accept gt':>10} {'other':>7}",
    ]
    for kind, signal in report["signal"].items():
        lines.append(
            f"{kind:<9} {shown(signal['verifier_gt']):>10} {shown(signal['verifier_other']):>7} "
            f"{shown(signal['evaluator_gt']):>10} {shown(signal['evaluator_other']):>7}"
        )
    return lines


def format_table(report: dict[str, Any]) -> str:
    """Recall per kind and stage set, mean cost per query and stage, judge signal, as text."""
    return "\n".join(
        _recall_lines(report) + [""] + _cost_lines(report) + [""] + _signal_lines(report)
    )
