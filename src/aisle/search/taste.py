"""How a customer's taste lifts search results: their affinity to a product's category and
brand, and a recommender's scores for them, blended into the ranker's scores."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

#: How far a customer's taste moves results, in standard deviations of the candidates' scores
#: per unit of affinity (shares of their behaviour in the product's category plus brand), and
#: how far a recommender's scores do per unit of the candidate's standing among the
#: candidates (rank percentile of its score: 1 = the recommender's favourite, 0 = unscored).
#: Validated on Best Buy (``benchmarks/search.py --personal``: the later 20% of clicks, each
#: personalised from the shopper's earlier clicks only; 10% come from returning shoppers):
#: item-kNN's scores at 1.0 lift MAP@5 from 0.740 to 0.749, for returning shoppers from 0.602
#: to 0.688 (0.5: 0.655, 2.0: 0.683, 4.0: 0.604). Affinity alone did not help there
#: (returning shoppers: 0.1 -0.001, 0.5 -0.007, 1.0 -0.026; beside the recommender at 1.0,
#: 0.1 changes nothing measurable), so it keeps a small weight, for catalogs whose categories
#: and brands say more about taste than one console's game genres and publishers.
PERSONAL_WEIGHT = 0.1
RECOMMEND_WEIGHT = 1.0
#: The scores whose spread sets the unit of the weights: the best this many candidates.
CONTENDERS = 50


def standing(scores: Mapping[str, float], item_ids: Sequence[str]) -> np.ndarray:
    """Each candidate's standing in a recommender's scores: the rank percentile of its score
    among the candidates that have one (1 = the highest), 0 where it has none. Ranks, not the
    scores themselves: every model scores on its own scale."""
    values = np.asarray([scores.get(item, np.nan) for item in item_ids], dtype=np.float64)
    out = np.zeros(len(values))
    known = np.isfinite(values)
    if known.any():
        ranks = np.argsort(np.argsort(values[known], kind="stable"), kind="stable") + 1
        out[known] = ranks / known.sum()
    return out


def personalised(
    scores: np.ndarray, liked: np.ndarray, recommended: np.ndarray, weights: tuple[float, float]
) -> np.ndarray:
    """Scores lifted by the customer's taste: ``liked`` (affinity to the category plus the
    brand) and ``recommended`` (``standing``), each times its weight, in standard deviations
    of the best ``CONTENDERS`` scores (those that contend for the first pages; a screening
    ranker's other scores sit far below), so that the weights mean the same under any ranker
    and any pool size."""
    if not len(scores):
        return scores
    if len(scores) > CONTENDERS:
        best = np.partition(scores, len(scores) - CONTENDERS)[-CONTENDERS:]
    else:
        best = scores
    spread = float(np.std(best)) or 1.0
    return scores + spread * (weights[0] * liked + weights[1] * recommended)
