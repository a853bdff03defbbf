"""Search metrics against figures worked out by hand (and sklearn as an oracle)."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import cohen_kappa_score, ndcg_score

from aisle.evaluation import search_metrics as sm


def ranks(*values: int) -> sm.Ranks:
    return np.array(values, dtype=np.int64)


def test_map_at_5_counts_one_over_rank_within_the_cut_only() -> None:
    # 1/1 + 1/2 + miss + rank 6 (beyond 5) + 1/5, over 5 cases
    assert sm.map_at_k(ranks(1, 2, 0, 6, 5), 5) == pytest.approx((1 + 0.5 + 0.2) / 5)
    assert sm.map_at_k(ranks(1, 2, 0, 6, 5), 3) == pytest.approx(1.5 / 5)
    assert sm.map_at_k(ranks(), 5) == 0.0


def test_mrr_at_10_ignores_ranks_beyond_10() -> None:
    assert sm.mrr_at_k(ranks(1, 4, 10, 11, 0), 10) == pytest.approx((1 + 0.25 + 0.1) / 5)


def test_recall_at_10_is_the_share_ranked_in_the_top_10() -> None:
    assert sm.recall_at_k(ranks(1, 11, 0, 10), 10) == 0.5


def test_ndcg_with_one_relevant_item() -> None:
    # rank 1 -> 1, rank 3 -> 1/log2(4) = 0.5, a miss and rank 11 -> 0
    assert sm.ndcg_at_k(ranks(1, 3, 0, 11), 10) == pytest.approx((1 + 0.5) / 4)


def test_zero_result_rate() -> None:
    assert sm.zero_result_rate(np.array([0, 3, 0, 10], dtype=np.int64)) == 0.5


def test_gains() -> None:
    assert sm.gain([1, 2, 3, 4]).tolist() == [0, 1, 3, 7]
    assert sm.gain([1, 2, 3, 4], "linear").tolist() == [0, 1, 2, 3]


def test_graded_ndcg_by_hand() -> None:
    # grades in rank order 3, 4, 1, 2 -> gains 3, 7, 0, 1; the ideal order is 7, 3, 1, 0
    dcg = 3 / 1 + 7 / math.log2(3) + 0 / 2 + 1 / math.log2(5)
    ideal = 7 / 1 + 3 / math.log2(3) + 1 / 2 + 0
    assert sm.graded_ndcg_at_k([3, 4, 1, 2]) == pytest.approx(dcg / ideal)
    linear = (2 + 3 / math.log2(3) + 0 + 1 / math.log2(5)) / (3 + 2 / math.log2(3) + 1 / 2)
    assert sm.graded_ndcg_at_k([3, 4, 1, 2], kind="linear") == pytest.approx(linear)
    assert sm.graded_ndcg_at_k([4, 3, 2, 1]) == 1.0


def test_graded_ndcg_cuts_at_10_with_the_ideal_from_the_whole_pool() -> None:
    # the only relevant product is 11th: nothing within the cut
    assert sm.graded_ndcg_at_k([1] * 10 + [4]) == 0.0
    # the ideal puts it first; the ranking has it 10th
    assert sm.graded_ndcg_at_k([1] * 9 + [4, 1]) == pytest.approx(1 / math.log2(11))


def test_a_pool_without_gain_has_no_ndcg() -> None:
    assert math.isnan(sm.graded_ndcg_at_k([1, 1, 1]))


def frame(pools: list[list[int]]) -> pl.DataFrame:
    """case, rank, relevance from grades listed in rank order per case."""
    return pl.DataFrame(
        [
            {"case": case, "rank": position + 1, "relevance": grade}
            for case, grades in enumerate(pools)
            for position, grade in enumerate(grades)
        ]
    )


def test_mean_graded_ndcg_averages_queries_and_leaves_out_those_without_gain() -> None:
    pools = [[3, 4, 1, 2], [4, 3, 2, 1], [1, 1], [2, 1] + [1] * 9 + [4]]
    mean, left_out = sm.mean_graded_ndcg(frame(pools), 10)
    kept = [sm.graded_ndcg_at_k(p) for p in pools if max(p) > 1]
    assert left_out == 1
    assert mean == pytest.approx(sum(kept) / 3)


@pytest.mark.parametrize("kind", ["exponential", "linear"])
def test_mean_graded_ndcg_agrees_with_sklearn(kind: sm.Gain) -> None:
    rng = np.random.default_rng(7)
    pools = [rng.integers(1, 5, size=n).tolist() for n in (5, 12, 30, 8)]
    pools = [p for p in pools if max(p) > 1]
    mean, _ = sm.mean_graded_ndcg(frame(pools), 10, kind)
    # sklearn takes gains as y_true; distinct descending scores give the listed order
    oracle = np.mean(
        [
            ndcg_score([sm.gain(p, kind)], [np.arange(len(p), 0, -1, dtype=float)], k=10)
            for p in pools
        ]
    )
    assert mean == pytest.approx(oracle)


# quadratic weighted kappa, 10 rows over grades 1..4
TRUTH = [1, 1, 2, 2, 3, 3, 4, 4, 4, 4]
PREDICTED = [1, 2, 2, 2, 3, 4, 4, 4, 3, 1]


def test_quadratic_weighted_kappa_by_hand() -> None:
    """Observed (truth rows, predicted columns):

        [1 1 0 0]   row sums 2 2 2 4, column sums 2 3 2 3, N = 10
        [0 2 0 0]   W[i, j] = (i - j)^2 / 9
        [0 0 1 1]   sum W*O = (1 + 1 + 1) / 9 + 9 / 9 = 12/9
        [1 0 1 2]   sum W*E = sum r_i c_j (i - j)^2 / (9 * 10) = 264/90

    kappa = 1 - (12/9) / (264/90) = 1 - 120/264 = 6/11.
    """
    assert sm.quadratic_weighted_kappa(TRUTH, PREDICTED) == pytest.approx(6 / 11)
    oracle = cohen_kappa_score(TRUTH, PREDICTED, weights="quadratic")
    assert sm.quadratic_weighted_kappa(TRUTH, PREDICTED) == pytest.approx(oracle)


def test_kappa_agrees_with_sklearn_on_random_grades() -> None:
    rng = np.random.default_rng(3)
    truth = rng.integers(1, 5, size=500)
    predicted = np.clip(truth + rng.integers(-1, 2, size=500), 1, 4)
    ours = sm.quadratic_weighted_kappa(truth, predicted)
    assert ours == pytest.approx(cohen_kappa_score(truth, predicted, weights="quadratic"))


def test_kappa_edges() -> None:
    assert sm.quadratic_weighted_kappa(TRUTH, TRUTH) == 1.0
    # predictions are rounded to the nearest grade and clipped into 1..4
    assert sm.quadratic_weighted_kappa([1, 4], [0.6, 4.7]) == 1.0
    assert sm.quadratic_weighted_kappa([2, 2], [2, 2]) == 1.0
    assert math.isnan(sm.quadratic_weighted_kappa([], []))
    with pytest.raises(ValueError, match="2 true grades but 1"):
        sm.quadratic_weighted_kappa([1, 2], [1])
