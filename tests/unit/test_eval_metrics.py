"""The official metrics on hand-computed cases."""

from __future__ import annotations

import math

import pytest

from imagescope.errors import InputError
from imagescope.eval.metrics import (
    MetricError,
    average_precision_at_k,
    circo_map,
    cirr_recall,
    cirr_subset_recall,
    cumulative_hits,
    mean_over_categories,
    rank_by_score,
    recall_at_k,
)

pytestmark = pytest.mark.unit


# --------------------------------------------------------------------------- ranking helper


def test_rank_by_score_sorts_by_score_then_id() -> None:
    scored = [("b", 0.5), ("c", 0.9), ("a", 0.5), ("d", -1.0)]
    assert rank_by_score(scored) == ["c", "a", "b", "d"]


def test_rank_by_score_tie_order_does_not_depend_on_input_order() -> None:
    forward = [("x2", 1.0), ("x1", 1.0), ("x3", 1.0)]
    assert rank_by_score(forward) == rank_by_score(list(reversed(forward))) == ["x1", "x2", "x3"]


def test_rank_by_score_rejects_repeated_id_and_nan() -> None:
    with pytest.raises(MetricError, match="'a' is scored twice"):
        rank_by_score([("a", 1.0), ("a", 0.5)])
    with pytest.raises(MetricError, match="NaN"):
        rank_by_score([("a", math.nan)])


def test_metric_error_is_an_input_error() -> None:
    assert issubclass(MetricError, InputError)


# --------------------------------------------------------------------------- recall


def test_recall_counts_ranks_and_missing_targets_as_misses() -> None:
    rankings = [["a", "b", "c"], ["x", "y", "t"], ["p", "q"]]
    result = recall_at_k(rankings, ["a", "t", "z"], ks=(1, 2, 3))
    assert result[1] == pytest.approx(100 / 3)
    assert result[2] == pytest.approx(100 / 3)  # t is at rank 3
    assert result[3] == pytest.approx(200 / 3)  # z never appears: a miss


def test_recall_rejects_mismatched_lengths_and_empty_input() -> None:
    with pytest.raises(MetricError, match="2 rankings but 1 targets"):
        recall_at_k([["a"], ["b"]], ["a"], ks=(1,))
    with pytest.raises(MetricError, match="no rankings"):
        recall_at_k([], [], ks=(1,))


# --------------------------------------------------------------------------- CIRR


def test_cirr_recall_removes_the_reference_before_ranking() -> None:
    # Query 1: the reference is ranked first; it must not take rank 1.
    # Query 2: the reference sits between the model's first pick and the target.
    rankings = [["ref1", "t1", "o"], ["x", "ref2", "y", "t2"]]
    result = cirr_recall(rankings, ["t1", "t2"], references=["ref1", "ref2"], ks=(1, 2, 3))
    assert result == {1: 50.0, 2: 50.0, 3: 100.0}
    # Without removal the target of query 1 would be at rank 2, not 1.
    assert recall_at_k(rankings, ["t1", "t2"], ks=(1,)) == {1: 0.0}


def test_cirr_recall_missing_target_is_a_miss() -> None:
    assert cirr_recall([["r", "a", "b"]], ["t"], references=["r"], ks=(1, 50)) == {1: 0.0, 50: 0.0}


def test_cirr_subset_keeps_the_models_order_of_the_five_other_members() -> None:
    members = ["ref", "m1", "m2", "tgt", "m3", "m4"]
    # Model order of the subset (reference excluded): m2, tgt, m1, m3, m4 -> tgt is 2nd.
    # In img_set order it would be 3rd (m1, m2, tgt): the model's order must win.
    ranking = ["g1", "m2", "g2", "ref", "tgt", "m1", "g3", "m3", "m4"]
    result = cirr_subset_recall(
        [ranking], ["tgt"], references=["ref"], members=[members], ks=(1, 2, 3)
    )
    assert result == {1: 0.0, 2: 100.0, 3: 100.0}


def test_cirr_subset_reference_ranked_first_does_not_count() -> None:
    members = ["ref", "tgt", "m1", "m2", "m3", "m4"]
    ranking = ["ref", "tgt", "m1", "m2", "m3", "m4"]
    assert cirr_subset_recall(
        [ranking], ["tgt"], references=["ref"], members=[members], ks=(1,)
    ) == {1: 100.0}


def test_cirr_subset_target_missing_from_ranking_is_a_miss() -> None:
    members = ["ref", "tgt", "m1", "m2", "m3", "m4"]
    ranking = ["m1", "m2"]
    result = cirr_subset_recall(
        [ranking], ["tgt"], references=["ref"], members=[members], ks=(1, 2, 3)
    )
    assert result == {1: 0.0, 2: 0.0, 3: 0.0}


def test_cirr_rejects_repeated_ids() -> None:
    with pytest.raises(MetricError, match="repeats gallery id 'a'"):
        cirr_recall([["a", "r", "a"]], ["a"], references=["r"], ks=(1,))


# --------------------------------------------------------------------------- CIRCO


def test_average_precision_with_fewer_ground_truths_than_k() -> None:
    # GT {a, b}: hits at ranks 1 and 3 -> (1/1 + 2/3) / min(2, 5)
    ap = average_precision_at_k(["a", "x", "b", "y", "z"], {"a", "b"}, k=5)
    assert ap == pytest.approx((1 + 2 / 3) / 2)


def test_average_precision_with_more_ground_truths_than_k() -> None:
    # Six ground truths, K = 5: hits at 1, 3, 4 -> (1 + 2/3 + 3/4) / min(6, 5)
    gt = {"a", "b", "c", "d", "e", "f"}
    ap = average_precision_at_k(["a", "x", "b", "c", "y", "d"], gt, k=5)
    assert ap == pytest.approx((1 + 2 / 3 + 3 / 4) / 5)


def test_circo_map_means_over_queries_per_k() -> None:
    rankings = [["a", "x", "b", "y", "z"], ["a", "x", "b", "c", "y"]]
    gts = [["a", "b"], ["a", "b", "c", "d", "e", "f"]]
    result = circo_map(rankings, gts, ks=(5, 10))
    q1 = (1 + 2 / 3) / 2
    q2_at5 = (1 + 2 / 3 + 3 / 4) / 5
    q2_at10 = (1 + 2 / 3 + 3 / 4) / 6  # denominator min(6, 10) = 6
    assert result[5] == pytest.approx(100 * (q1 + q2_at5) / 2)
    assert result[10] == pytest.approx(100 * (q1 + q2_at10) / 2)


def test_circo_reference_is_not_removed_only_irrelevant() -> None:
    # The reference at rank 1 pushes the single ground truth to rank 2: AP = 1/2.
    assert circo_map([["ref", "a"]], [["a"]], ks=(5,)) == {5: pytest.approx(50.0)}


def test_circo_rejects_duplicate_predictions() -> None:
    with pytest.raises(MetricError, match="repeats gallery id 'a'"):
        circo_map([["a", "b", "a"]], [["a"]], ks=(5,))


def test_circo_rejects_query_without_ground_truth() -> None:
    with pytest.raises(MetricError, match="without ground truth"):
        circo_map([["a"]], [[]], ks=(5,))


# --------------------------------------------------------------------------- FashionIQ


def test_fashioniq_average_is_the_mean_of_categories_per_k() -> None:
    per_category = {
        "dress": {10: 30.0, 50: 50.0},
        "shirt": {10: 20.0, 50: 40.0},
        "toptee": {10: 40.0, 50: 63.0},
    }
    assert mean_over_categories(per_category) == {10: 30.0, 50: pytest.approx(51.0)}


# --------------------------------------------------------------------------- VisDial


def test_visdial_hits_are_cumulative_over_rounds() -> None:
    # Dialog 1: found (rank <= 2) at round 2, lost again at round 3: still counts.
    # Dialog 2: found at round 0 only.  Dialog 3: target never in the ranking.
    dialog1 = [["x", "y", "t1"], ["x", "y", "z", "t1"], ["t1"], ["x", "y", "t1"]]
    dialog2 = [["y", "t2"], ["x", "y", "t2"], ["x", "y", "z"], ["x", "y", "t2"]]
    dialog3 = [["x"], ["y"], ["z"], []]
    hits = cumulative_hits([dialog1, dialog2, dialog3], ["t1", "t2", "t3"], k=2)
    assert hits == pytest.approx([100 / 3, 100 / 3, 200 / 3, 200 / 3])


def test_visdial_hits_need_equal_round_counts() -> None:
    with pytest.raises(MetricError, match="dialog 1 has 1 rounds"):
        cumulative_hits([[["a"], ["a"]], [["b"]]], ["a", "b"], k=10)
