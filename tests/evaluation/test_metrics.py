"""Every metric on cases small enough to work out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from aisle.evaluation import metrics as m

INF = math.inf


def test_pad_ranks_sorts_and_pads_with_inf() -> None:
    out = m.pad_ranks([[3, 1], [2], []])
    assert out.tolist() == [[1, 3], [2, INF], [INF, INF]]


def test_ndcg_one_relevant_item() -> None:
    ranks = np.asarray([1, 3, 10, 11, INF])
    assert m.ndcg_at_k(ranks, 10).tolist() == pytest.approx([1.0, 0.5, 1 / math.log2(11), 0, 0])


def test_ndcg_binary_gains_ideal_of_min_truth_k() -> None:
    ranks = m.pad_ranks([[1, 3], [1, 3], [2]])
    # two relevant: DCG 1 + 1/2, ideal 1 + 1/log2(3)
    # three relevant, one never ranked: ideal 1 + 1/log2(3) + 1/2
    # ten relevant, k = 2: ideal is two hits only
    out = m.ndcg_at_k(ranks, 10, np.asarray([2, 3, 10]))
    assert out[0] == pytest.approx(1.5 / (1 + 1 / math.log2(3)))
    assert out[1] == pytest.approx(1.5 / (1.5 + 1 / math.log2(3)))
    assert m.ndcg_at_k(ranks, 2, np.asarray([2, 3, 10]))[2] == pytest.approx(
        (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    )


def test_recall_and_hit_rate() -> None:
    ranks = m.pad_ranks([[2, 15], [11], [INF]])
    assert m.recall_at_k(ranks, 10, np.asarray([3, 1, 1])).tolist() == pytest.approx([1 / 3, 0, 0])
    assert m.recall_at_k(ranks, 20, np.asarray([3, 1, 1])).tolist() == pytest.approx([2 / 3, 1, 0])
    assert m.hit_rate_at_k(ranks, 10).tolist() == [1, 0, 0]
    assert m.hits_at_k(ranks, 20).tolist() == [2, 1, 0]


def test_reciprocal_rank_over_the_full_ranking() -> None:
    ranks = m.pad_ranks([[3, 5], [250], [INF]])
    assert m.reciprocal_rank(ranks).tolist() == pytest.approx([1 / 3, 1 / 250, 0])


def test_average_precision() -> None:
    # relevant at 1 and 3 of two: (1/1 + 2/3) / 2; one relevant at 4: 1/4; at 12 (k=10): 0
    ranks = m.pad_ranks([[1, 3], [4], [12]])
    out = m.average_precision_at_k(ranks, 10, np.asarray([2, 1, 1]))
    assert out.tolist() == pytest.approx([(1 + 2 / 3) / 2, 0.25, 0])
    # three relevant, one found at 2, k = 2: (1/2) / min(3, 2)
    assert m.average_precision_at_k(np.asarray([[2.0]]), 2, np.asarray([3]))[0] == pytest.approx(
        0.25
    )


def test_auc_from_ranks() -> None:
    # one relevant among five candidates at rank 1, 3, 5, never ranked
    one = m.auc(np.asarray([1, 3, 5, INF]), np.asarray([5, 5, 5, 5]))
    assert one.tolist() == pytest.approx([1.0, 0.5, 0.0, 0.0])
    # two relevant at 1 and 3 of five: 3 negatives, one above the second relevant
    two = m.auc(m.pad_ranks([[1, 3]]), np.asarray([5]), np.asarray([2]))
    assert two[0] == pytest.approx(1 - 1 / 6)
    # two relevant, one never ranked (narrower matrix): it loses to every negative
    narrow = m.auc(np.asarray([[1.0]]), np.asarray([5]), np.asarray([2]))
    assert narrow[0] == pytest.approx(0.5)
    # nothing to compare against
    assert math.isnan(m.auc(np.asarray([1.0]), np.asarray([1]))[0])


def test_coverage_novelty_and_popularity_bias() -> None:
    top = np.asarray([[0, 1], [1, -1]])
    assert m.coverage(top, 10) == pytest.approx(0.2)
    popularity = np.asarray([4.0, 2.0, 1.0, 0.0])
    # shares 1 and 1/2 and 1/2: self-information 0, 1, 1
    assert m.novelty(top, popularity, 4) == pytest.approx(2 / 3)
    # an item nobody had counts as one user's
    assert m.novelty(np.asarray([[3]]), popularity, 4) == pytest.approx(2.0)
    percentiles = m.popularity_percentiles(np.asarray([1.0, 2.0, 2.0, 3.0]))
    assert percentiles.tolist() == pytest.approx([12.5, 50.0, 50.0, 87.5])
    assert m.popularity_bias(np.asarray([[3, 0]]), np.asarray([1.0, 2.0, 2.0, 3.0])) == 50.0
    assert math.isnan(m.popularity_bias(np.asarray([[-1]]), popularity))


def test_rmse_and_mae() -> None:
    predicted, actual = np.asarray([1.0, 2.0, 3.0]), np.asarray([1.0, 1.0, 5.0])
    assert m.rmse(predicted, actual) == pytest.approx(math.sqrt(5 / 3))
    assert m.mae(predicted, actual) == pytest.approx(1.0)
    assert math.isnan(m.rmse(np.asarray([]), np.asarray([])))


def test_ranking_metrics_averages_with_lowercase_keys() -> None:
    ranks = np.asarray([1.0, 3.0, INF])
    out = m.ranking_metrics(ranks, np.ones(3), np.asarray([5, 5, 5]), (10, 20))
    assert set(out) == {
        "ndcg@10", "recall@10", "hr@10", "map@10",
        "ndcg@20", "recall@20", "hr@20", "map@20", "mrr", "auc",
    }  # fmt: skip
    assert out["hr@10"] == pytest.approx(2 / 3)
    assert out["mrr"] == pytest.approx((1 + 1 / 3) / 3)
    assert out["auc"] == pytest.approx((1 + 0.5 + 0) / 3)
    assert out["ndcg@10"] == pytest.approx((1 + 0.5) / 3)
    lists = m.list_metrics(np.asarray([[0, 1]]), np.asarray([2.0, 1.0, 0.0]), 2, 3)
    assert set(lists) == {"coverage", "novelty", "popularity_bias"}
