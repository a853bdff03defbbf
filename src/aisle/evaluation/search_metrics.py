"""Search metrics: one relevant item per case (clicks) and graded pools (judgements).

A rank is 1-based; 0 means the relevant item was not ranked at all (a miss everywhere).
"""

from __future__ import annotations

from typing import Final, Literal

import numpy as np
import numpy.typing as npt
import polars as pl

Gain = Literal["exponential", "linear"]
Ranks = npt.NDArray[np.int64]
#: Grades of a judgement, lowest first.
GRADES: Final = (1, 2, 3, 4)


def _mean(values: npt.NDArray[np.float64]) -> float:
    return float(values.mean()) if values.size else 0.0


def map_at_k(ranks: Ranks, k: int) -> float:
    """MAP@k with one relevant item per case: the mean of 1/rank where rank <= k, else 0."""
    hit = (ranks >= 1) & (ranks <= k)
    return _mean(np.where(hit, 1.0 / np.maximum(ranks, 1), 0.0))


def mrr_at_k(ranks: Ranks, k: int = 10) -> float:
    """MRR@k: the mean reciprocal rank, counting ranks beyond k as misses (the same figure as
    MAP@k when each case has one relevant item)."""
    return map_at_k(ranks, k)


def recall_at_k(ranks: Ranks, k: int = 10) -> float:
    """Recall@k with one relevant item: the share of cases ranking it in the top k."""
    return _mean(((ranks >= 1) & (ranks <= k)).astype(np.float64))


def ndcg_at_k(ranks: Ranks, k: int = 10) -> float:
    """NDCG@k with one relevant item (ideal DCG 1): mean of 1/log2(rank + 1) where rank <= k."""
    hit = (ranks >= 1) & (ranks <= k)
    return _mean(np.where(hit, 1.0 / np.log2(np.maximum(ranks, 1) + 1.0), 0.0))


def zero_result_rate(lengths: npt.NDArray[np.int64]) -> float:
    """The share of cases for which the method returned nothing."""
    return _mean((lengths == 0).astype(np.float64))


def gain(relevance: npt.ArrayLike, kind: Gain = "exponential") -> npt.NDArray[np.float64]:
    """Gain of grades 1..4: 2^(r-1) - 1 (0, 1, 3, 7) or linear r - 1 (0, 1, 2, 3)."""
    r = np.asarray(relevance, dtype=np.float64)
    return np.exp2(r - 1.0) - 1.0 if kind == "exponential" else r - 1.0


def dcg_at_k(gains: npt.ArrayLike, k: int = 10) -> float:
    """DCG@k of gains in rank order: sum of gain / log2(rank + 1) over the first k."""
    top = np.asarray(gains, dtype=np.float64)[:k]
    return float((top / np.log2(np.arange(2, top.size + 2))).sum())


def graded_ndcg_at_k(ranked: npt.ArrayLike, k: int = 10, kind: Gain = "exponential") -> float:
    """nDCG@k of one query: grades in the method's rank order over the whole pool; the ideal
    DCG sorts the same grades. NaN when the pool holds no gain (every grade 1)."""
    gains = gain(ranked, kind)
    ideal = dcg_at_k(np.sort(gains)[::-1], k)
    return dcg_at_k(gains, k) / ideal if ideal > 0 else float("nan")


def mean_graded_ndcg(
    ranked: pl.DataFrame, k: int = 10, kind: Gain = "exponential"
) -> tuple[float, int]:
    """Mean nDCG@k over cases, from ``case``, ``rank`` (1-based, within the case) and
    ``relevance``; cases whose pool holds no gain are left out of the mean. Returns the mean
    and how many cases were left out."""
    weighted = ranked.with_columns(
        pl.lit(gain(ranked["relevance"].to_numpy(), kind)).alias("_gain")
    )
    discount = 1.0 / (pl.col("rank").cast(pl.Float64) + 1.0).log(2)
    dcg = weighted.group_by("case").agg(
        (pl.col("_gain") * discount).filter(pl.col("rank") <= k).sum().alias("dcg")
    )
    ideal = (
        weighted.sort(["case", "_gain"], descending=[False, True])
        .with_columns(pl.int_range(1, pl.len() + 1).over("case").alias("rank"))
        .group_by("case")
        .agg((pl.col("_gain") * discount).filter(pl.col("rank") <= k).sum().alias("ideal"))
    )
    scores = dcg.join(ideal, on="case")
    kept = scores.filter(pl.col("ideal") > 0)
    mean = _mean((kept["dcg"] / kept["ideal"]).to_numpy().astype(np.float64))
    return mean, scores.height - kept.height


def quadratic_weighted_kappa(
    truth: npt.ArrayLike, predicted: npt.ArrayLike, grades: tuple[int, ...] = GRADES
) -> float:
    """Cohen's kappa with quadratic weights between two gradings of the same rows:
    1 - sum(W * O) / sum(W * E), W[i, j] = (i - j)^2 / (n - 1)^2, O the observed confusion
    counts and E the outer product of the two marginals over the number of rows. Predictions
    are rounded to the nearest grade and clipped into range. 1.0 when both agree on a single
    grade (no disagreement is possible)."""
    n = len(grades)
    low = grades[0]
    t = np.asarray(truth, dtype=np.float64)
    p = np.asarray(predicted, dtype=np.float64)
    if t.shape != p.shape:
        raise ValueError(f"{t.size} true grades but {p.size} predicted")
    if t.size == 0:
        return float("nan")
    ti = np.clip(np.rint(t), low, grades[-1]).astype(np.int64) - low
    pi = np.clip(np.rint(p), low, grades[-1]).astype(np.int64) - low
    observed = np.zeros((n, n), dtype=np.float64)
    np.add.at(observed, (ti, pi), 1.0)
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0)) / t.size
    index = np.arange(n)
    weights = (index[:, None] - index[None, :]) ** 2 / (n - 1) ** 2
    disagreement = float((weights * expected).sum())
    if disagreement == 0:
        return 1.0
    return 1.0 - float((weights * observed).sum()) / disagreement
