"""The benchmarks' official metrics, as pure functions over rankings.

A *ranking* is a list of gallery ids, best first, for one query (or one dialog
round). Every value returned is a percentage (100 * mean over queries); ranks
are 1-based. A target that does not appear in a ranking is a miss at every K,
so rankings may be truncated (to the top 50, say) without changing any metric
whose K is within the truncation.

A ranking must not repeat an id: a repeated id means the search returned the
same image twice, and every metric would depend on which copy counts, so it is
rejected with :class:`MetricError` (CIRCO's rules say so explicitly).

Ties: the official scripts sort similarity scores with torch/numpy and leave the
order of equal scores to the sort implementation. :func:`rank_by_score` fixes
it: score descending, then gallery id ascending, so a run is reproducible.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping, Sequence

from imagescope.errors import InputError
from imagescope.measures import percent_within

CIRR_KS = (1, 5, 10, 50)
CIRR_SUBSET_KS = (1, 2, 3)
CIRCO_KS = (5, 10, 25, 50)
FASHIONIQ_KS = (10, 50)
T2I_KS = (1, 5, 10)
VISDIAL_KS = (10,)


class MetricError(InputError):
    """Rankings that cannot be scored (duplicates, NaN scores, wrong lengths)."""


def rank_by_score(scored: Iterable[tuple[str, float]]) -> list[str]:
    """Turn (gallery id, score) pairs into a ranking.

    Order: score descending, then gallery id ascending for equal scores (the
    deterministic tie-break this package uses everywhere). A repeated id or a
    NaN score raises :class:`MetricError`.
    """
    pairs = list(scored)
    seen: set[str] = set()
    for image_id, score in pairs:
        if image_id in seen:
            raise MetricError(f"gallery id {image_id!r} is scored twice; keep one score per id")
        if math.isnan(score):
            raise MetricError(f"gallery id {image_id!r} has a NaN score")
        seen.add(image_id)
    return [image_id for image_id, _ in sorted(pairs, key=lambda p: (-p[1], p[0]))]


def check_unique(ranking: Sequence[str], *, query: int | str) -> None:
    """Raise :class:`MetricError` when a ranking repeats a gallery id."""
    if len(set(ranking)) == len(ranking):
        return
    seen: set[str] = set()
    for image_id in ranking:
        if image_id in seen:
            raise MetricError(f"ranking of query {query!r} repeats gallery id {image_id!r}")
        seen.add(image_id)


def first_rank(ranking: Sequence[str], targets: Collection[str]) -> int | None:
    """1-based rank of the first target in ``ranking``; None when none appears."""
    for position, image_id in enumerate(ranking, start=1):
        if image_id in targets:
            return position
    return None


def _check_lengths(rankings: Sequence[object], other: Sequence[object], *, what: str) -> None:
    if not rankings:
        raise MetricError("no rankings to score")
    if len(rankings) != len(other):
        raise MetricError(f"{len(rankings)} rankings but {len(other)} {what}; give one per query")


def recall_at_k(
    rankings: Sequence[Sequence[str]], targets: Sequence[str], *, ks: Iterable[int]
) -> dict[int, float]:
    """R@K = 100 * mean over queries of [rank(target) <= K] (one target per query)."""
    _check_lengths(rankings, targets, what="targets")
    ranks: list[int | None] = []
    for index, (ranking, target) in enumerate(zip(rankings, targets, strict=True)):
        check_unique(ranking, query=index)
        ranks.append(first_rank(ranking, {target}))
    return {k: percent_within(ranks, k) for k in ks}


def cirr_recall(
    rankings: Sequence[Sequence[str]],
    targets: Sequence[str],
    *,
    references: Sequence[str],
    ks: Iterable[int] = CIRR_KS,
) -> dict[int, float]:
    """CIRR R@K: the reference image is removed from each ranking, then R@K."""
    _check_lengths(rankings, references, what="references")
    for index, ranking in enumerate(rankings):
        check_unique(ranking, query=index)
    cleaned = [
        [i for i in ranking if i != ref] for ranking, ref in zip(rankings, references, strict=True)
    ]
    return recall_at_k(cleaned, targets, ks=ks)


def cirr_subset_recall(
    rankings: Sequence[Sequence[str]],
    targets: Sequence[str],
    *,
    references: Sequence[str],
    members: Sequence[Collection[str]],
    ks: Iterable[int] = CIRR_SUBSET_KS,
) -> dict[int, float]:
    """CIRR R_subset@K: rank only the query's img_set members other than the reference.

    Each ranking is filtered to those (normally five) members, keeping the
    model's relative order; R@K is computed on that short ranking. Members the
    ranking lacks rank after those it has (a target it lacks is a miss).
    """
    _check_lengths(rankings, members, what="member sets")
    _check_lengths(rankings, references, what="references")
    subset_rankings = []
    for ranking, ref, group in zip(rankings, references, members, strict=True):
        subset = set(group) - {ref}
        subset_rankings.append([i for i in ranking if i in subset])
    for index, ranking in enumerate(rankings):
        check_unique(ranking, query=index)
    return recall_at_k(subset_rankings, targets, ks=ks)


def average_precision_at_k(
    ranking: Sequence[str], ground_truth: Collection[str], *, k: int
) -> float:
    """CIRCO AP@K = sum_{i<=K} P_i * rel_i / min(|GT|, K), as a fraction (not percent)."""
    if not ground_truth:
        raise MetricError("a query without ground truth cannot be scored with mAP")
    hits = 0
    total = 0.0
    for position, image_id in enumerate(ranking[:k], start=1):
        if image_id in ground_truth:
            hits += 1
            total += hits / position
    return total / min(len(ground_truth), k)


def circo_map(
    rankings: Sequence[Sequence[str]],
    ground_truths: Sequence[Collection[str]],
    *,
    ks: Iterable[int] = CIRCO_KS,
) -> dict[int, float]:
    """CIRCO mAP@K: mean AP@K over queries, in percent.

    Ground truths are sets (|GT| counts distinct ids). A ranking that repeats an
    id raises :class:`MetricError`. The reference image is not removed.
    """
    _check_lengths(rankings, ground_truths, what="ground-truth sets")
    for index, ranking in enumerate(rankings):
        check_unique(ranking, query=index)
    gt_sets = [set(gt) for gt in ground_truths]
    return {
        k: 100.0
        * sum(average_precision_at_k(r, gt, k=k) for r, gt in zip(rankings, gt_sets, strict=True))
        / len(rankings)
        for k in ks
    }


def mean_over_categories(per_category: Mapping[str, Mapping[int, float]]) -> dict[int, float]:
    """FashionIQ's reported average: per K, the mean of the categories' R@K."""
    if not per_category:
        raise MetricError("no category results to average")
    ks = sorted(set.intersection(*(set(v) for v in per_category.values())))
    return {k: sum(v[k] for v in per_category.values()) / len(per_category) for k in ks}


def cumulative_hits(
    round_rankings: Sequence[Sequence[Sequence[str]]], targets: Sequence[str], *, k: int
) -> list[float]:
    """VisDial (ChatIR) Hits@K per round, cumulative.

    ``round_rankings[q][r]`` is dialog ``q``'s ranking after round ``r``. A
    dialog counts at round ``r`` when its target ranked within K at any round
    ``r' <= r``: once found, it stays found. Every dialog needs the same
    number of rounds.
    """
    _check_lengths(round_rankings, targets, what="targets")
    n_rounds = len(round_rankings[0])
    found = [0] * n_rounds
    for index, (rounds, target) in enumerate(zip(round_rankings, targets, strict=True)):
        if len(rounds) != n_rounds:
            raise MetricError(
                f"dialog {index} has {len(rounds)} rounds, the first has {n_rounds}; "
                "give every dialog the same rounds"
            )
        hit = False
        for r, ranking in enumerate(rounds):
            check_unique(ranking, query=f"{index} round {r}")
            rank = first_rank(ranking, {target})
            hit = hit or (rank is not None and rank <= k)
            found[r] += hit
    return [100.0 * n / len(round_rankings) for n in found]
