"""Ranking, beyond-accuracy and rating metrics: pure numpy, from ranks and truth sizes.

Ranks are 1-based positions of a user's relevant items among that user's candidates, held as a
float matrix ``(n_users, width)``: one row per user, the ranks of its relevant items ascending,
``inf`` where a relevant item was not ranked (an item or user the model does not know: a miss)
and as padding. ``n_truth`` is how many relevant items each user has (misses included), so
recall and the ideal DCG count what the model could not rank. Ranks of one user are distinct
(ties are broken before they get here, see ``aisle.evaluation.protocols``).

Per-user functions return one value per user; averages are taken by ``ranking_metrics``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np


def rank_matrix(ranks: np.ndarray | Sequence[float]) -> np.ndarray:
    """Ranks as a float ``(n_users, width)`` matrix: a 1-D array is one relevant item per user."""
    array = np.asarray(ranks, dtype=np.float64)
    return array.reshape(-1, 1) if array.ndim == 1 else array


def pad_ranks(per_user: Iterable[Sequence[float] | np.ndarray]) -> np.ndarray:
    """Per-user rank lists as one ascending, ``inf``-padded matrix."""
    rows = [np.sort(np.asarray(r, dtype=np.float64)) for r in per_user]
    width = max((len(r) for r in rows), default=0)
    out = np.full((len(rows), max(width, 1)), np.inf)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


def _truth(ranks: np.ndarray, n_truth: np.ndarray | Sequence[int] | None) -> np.ndarray:
    if n_truth is None:
        return np.ones(len(ranks), dtype=np.float64)
    return np.asarray(n_truth, dtype=np.float64)


def hits_at_k(ranks: np.ndarray, k: int) -> np.ndarray:
    """How many relevant items each user has in the top ``k``."""
    return np.asarray((rank_matrix(ranks) <= k).sum(axis=1))


def hit_rate_at_k(ranks: np.ndarray, k: int) -> np.ndarray:
    """HR@k: 1 where any relevant item is in the top ``k``."""
    return (hits_at_k(ranks, k) > 0).astype(np.float64)


def recall_at_k(ranks: np.ndarray, k: int, n_truth: np.ndarray | None = None) -> np.ndarray:
    """Recall@k: |top-k ∩ truth| / |truth| (0 for a user without truth)."""
    truth = _truth(rank_matrix(ranks), n_truth)
    hits = hits_at_k(ranks, k).astype(np.float64)
    return np.asarray(np.divide(hits, truth, out=np.zeros_like(hits), where=truth > 0))


def ndcg_at_k(ranks: np.ndarray, k: int, n_truth: np.ndarray | None = None) -> np.ndarray:
    """NDCG@k with binary gains: sum over hits of 1/log2(rank+1), divided by the ideal DCG of
    min(|truth|, k) hits."""
    matrix = rank_matrix(ranks)
    truth = _truth(matrix, n_truth)
    gains = np.where(matrix <= k, 1.0 / np.log2(np.minimum(matrix, k) + 1.0), 0.0)
    dcg = gains.sum(axis=1)
    discounts = np.concatenate([[0.0], np.cumsum(1.0 / np.log2(np.arange(2, k + 2)))])
    ideal = discounts[np.minimum(truth, k).astype(np.int64)]
    return np.asarray(np.divide(dcg, ideal, out=np.zeros_like(dcg), where=ideal > 0))


def reciprocal_rank(ranks: np.ndarray) -> np.ndarray:
    """1 / rank of the first relevant item over the full ranking (0 for a miss)."""
    first = rank_matrix(ranks).min(axis=1, initial=np.inf)
    return np.where(np.isfinite(first), 1.0 / first, 0.0)


def average_precision_at_k(
    ranks: np.ndarray, k: int, n_truth: np.ndarray | None = None
) -> np.ndarray:
    """AP@k: the mean of precision@rank over the relevant items in the top ``k``, divided by
    min(|truth|, k); with one relevant item, 1/rank when rank <= k."""
    matrix = np.sort(rank_matrix(ranks), axis=1)
    truth = _truth(matrix, n_truth)
    position = np.arange(1, matrix.shape[1] + 1, dtype=np.float64)
    precision = np.where(matrix <= k, position / np.where(np.isfinite(matrix), matrix, 1.0), 0.0)
    norm = np.minimum(truth, k)
    total = precision.sum(axis=1)
    return np.asarray(np.divide(total, norm, out=np.zeros_like(total), where=norm > 0))


def auc(
    ranks: np.ndarray, n_candidates: np.ndarray | Sequence[int], n_truth: np.ndarray | None = None
) -> np.ndarray:
    """Per-user AUC of the relevant items against the other candidates: the share of
    (relevant, non-relevant) pairs ordered correctly. The j-th relevant item (ascending) at rank
    r has r - j non-relevant items above it; an unranked one (``inf``) has all of them.
    ``n_candidates`` counts every candidate of the user, all relevant items included. ``nan``
    where a user has no non-relevant candidate."""
    matrix = np.sort(rank_matrix(ranks), axis=1)
    truth = _truth(matrix, n_truth)
    negatives = np.asarray(n_candidates, dtype=np.float64) - truth
    position = np.arange(1, matrix.shape[1] + 1, dtype=np.float64)
    above = np.minimum(matrix - position, negatives[:, None])
    counted = position <= truth[:, None]  # padding beyond |truth| is not a relevant item
    # relevant items beyond the matrix's width were never ranked: all negatives above them
    beyond = np.maximum(truth - matrix.shape[1], 0.0) * negatives
    wrong = np.where(counted, above, 0.0).sum(axis=1) + beyond
    pairs = truth * negatives
    out = np.full(len(matrix), np.nan)
    np.divide(pairs - wrong, pairs, out=out, where=pairs > 0)
    return out


def _valid(top: np.ndarray) -> np.ndarray:
    """The recommended item columns of ``top`` lists padded with -1."""
    flat = np.asarray(top, dtype=np.int64).ravel()
    return flat[flat >= 0]


def coverage(top: np.ndarray, n_items: int) -> float:
    """Catalog coverage: the share of all items that appear in anyone's top-k list."""
    if n_items <= 0:
        return 0.0
    return float(np.unique(_valid(top)).size / n_items)


def novelty(top: np.ndarray, popularity: np.ndarray, n_users: int) -> float:
    """Mean self-information of recommended items: -log2(popularity share), the share being
    the fraction of training users who interacted with the item (an item nobody had counts as
    one user's, so the value stays finite)."""
    items = _valid(top)
    if items.size == 0 or n_users <= 0:
        return float("nan")
    share = np.maximum(np.asarray(popularity, dtype=np.float64)[items], 1.0) / n_users
    return float(np.mean(-np.log2(np.minimum(share, 1.0))))


def popularity_percentiles(popularity: np.ndarray) -> np.ndarray:
    """Each item's popularity percentile (0-100) in the catalog, ties at their mid-rank:
    100 x (#less popular + #equally popular / 2) / #items."""
    values = np.asarray(popularity, dtype=np.float64)
    ordered = np.sort(values)
    below = np.searchsorted(ordered, values, side="left")
    equal = np.searchsorted(ordered, values, side="right") - below
    return np.asarray(100.0 * (below + equal / 2.0) / max(len(values), 1))


def popularity_bias(top: np.ndarray, popularity: np.ndarray) -> float:
    """Mean popularity percentile of recommended items (50 is neutral; near 100 means the lists
    hold the head of the catalog)."""
    items = _valid(top)
    if items.size == 0:
        return float("nan")
    return float(np.mean(popularity_percentiles(popularity)[items]))


def rmse(predicted: np.ndarray, actual: np.ndarray) -> float:
    """Root mean squared error."""
    error = np.asarray(predicted, dtype=np.float64) - np.asarray(actual, dtype=np.float64)
    return float(np.sqrt(np.mean(error**2))) if error.size else float("nan")


def mae(predicted: np.ndarray, actual: np.ndarray) -> float:
    """Mean absolute error."""
    error = np.asarray(predicted, dtype=np.float64) - np.asarray(actual, dtype=np.float64)
    return float(np.mean(np.abs(error))) if error.size else float("nan")


def _mean(values: np.ndarray) -> float:
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else float("nan")


def ranking_metrics(
    ranks: np.ndarray,
    n_truth: np.ndarray,
    n_candidates: np.ndarray,
    cutoffs: Sequence[int] = (10, 20),
) -> dict[str, float]:
    """Every ranking metric averaged over users: ndcg@k, recall@k, hr@k, map@k per cutoff,
    then mrr and auc (users without a non-relevant candidate left out of auc)."""
    out: dict[str, float] = {}
    if len(rank_matrix(ranks)) == 0:
        return {
            **{f"{m}@{k}": float("nan") for k in cutoffs for m in ("ndcg", "recall", "hr", "map")},
            "mrr": float("nan"),
            "auc": float("nan"),
        }
    for k in cutoffs:
        out[f"ndcg@{k}"] = _mean(ndcg_at_k(ranks, k, n_truth))
        out[f"recall@{k}"] = _mean(recall_at_k(ranks, k, n_truth))
        out[f"hr@{k}"] = _mean(hit_rate_at_k(ranks, k))
        out[f"map@{k}"] = _mean(average_precision_at_k(ranks, k, n_truth))
    out["mrr"] = _mean(reciprocal_rank(ranks))
    out["auc"] = _mean(auc(ranks, n_candidates, n_truth))
    return out


def list_metrics(
    top: np.ndarray, popularity: np.ndarray, n_users: int, n_items: int
) -> dict[str, float]:
    """Beyond-accuracy metrics of the top-k lists: coverage, novelty, popularity_bias."""
    return {
        "coverage": coverage(top, n_items),
        "novelty": novelty(top, popularity, n_users),
        "popularity_bias": popularity_bias(top, popularity),
    }
