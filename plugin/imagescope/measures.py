"""Recall and cost measures shared by eval and the synthetic benchmark.

Both score rankings by the first rank of a ground-truth id and read what a
search cost from its result traces; this module holds the one version of each,
below both packages (it imports neither).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from imagescope.schemas import SearchResult


def percent_within(ranks: Sequence[int | None], k: int) -> float:
    """R@K in percent: the share of ranks within ``k`` (a rank of None is a miss)."""
    return 100.0 * sum(1 for r in ranks if r is not None and r <= k) / len(ranks)


def recall(ranks: Sequence[int | None], ks: Iterable[int], *, prefix: str = "") -> dict[str, float]:
    """``{"<prefix>R@K": percent}`` for each K (a rank of None is a miss)."""
    return {f"{prefix}R@{k}": percent_within(ranks, k) for k in ks}


class CostTally:
    """Sums trace costs and timings per stage set (cumulative up to that stage).

    Keys per stage set: ``<role>.<field>`` for each role's cost record (calls,
    tokens, cache_hits, seconds) and ``seconds.<stage>`` for each stage timing.
    """

    def __init__(self) -> None:
        self.queries: dict[str, int] = {}
        self.totals: dict[str, dict[str, float]] = {}

    @classmethod
    def of(cls, results: Sequence[Mapping[str, SearchResult]]) -> CostTally:
        tally = cls()
        for one in results:
            tally.add(one)
        return tally

    def merge(self, other: CostTally) -> None:
        for name, count in other.queries.items():
            self.queries[name] = self.queries.get(name, 0) + count
        for name, total in other.totals.items():
            mine = self.totals.setdefault(name, {})
            for key, value in total.items():
                mine[key] = mine.get(key, 0.0) + value

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

    def summary(self) -> dict[str, Any]:
        means = {
            name: {key: value / self.queries[name] for key, value in sorted(total.items())}
            for name, total in self.totals.items()
        }
        return {"queries": self.queries, "totals": self.totals, "mean_per_query": means}
