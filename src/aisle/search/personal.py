"""A customer's taste for search personalisation: their shares of categories and brands, and
how much personalising by them and by a recommender's scores helps on later clicks."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Final

import numpy as np
import polars as pl

from aisle.search.engine import SearchEngine
from aisle.search.taste import personalised, standing
from aisle.storage import Store

#: Behaviour that shows taste, and how much each kind counts.
_AFFINITY_SQL: Final = """
WITH mine AS (
    SELECT e.item_id,
           CASE e.type WHEN 'purchase' THEN 4 WHEN 'add_to_cart' THEN 2 ELSE 1 END AS w
    FROM events e
    WHERE e.user_id = ? AND e.item_id IS NOT NULL
      AND e.type IN ('view', 'click', 'add_to_cart', 'purchase')
)
SELECT kind, value, sum(w) / (SELECT sum(w) FROM mine) AS share FROM (
    SELECT 'category' AS kind, p.category_path[-1] AS value, m.w
    FROM mine m JOIN catalog_products p USING (item_id)
    UNION ALL
    SELECT 'brand', p.brand, m.w FROM mine m JOIN catalog_products p USING (item_id)
) WHERE value IS NOT NULL
GROUP BY kind, value
"""


def customer_affinity(store: Store, user_id: str) -> dict[str, dict[str, float]]:
    """{"category": {value: share}, "brand": {value: share}} of a customer's behaviour
    (purchases count 4, carts 2, views and clicks 1); empty for a customer with none."""
    affinity: dict[str, dict[str, float]] = {"category": {}, "brand": {}}
    for kind, value, share in store.query(_AFFINITY_SQL, [user_id]).iter_rows():
        affinity[kind][value] = float(share)
    return affinity


def evaluate_personal(
    engine: SearchEngine,
    cases: pl.DataFrame,
    earlier: pl.DataFrame,
    weights: Sequence[tuple[float, float]],
    recommend: Callable[[list[str]], Mapping[str, float]] | None = None,
    *,
    k: int = 5,
) -> list[dict[str, float]]:
    """MAP@k of later clicks under each pair of personal weights (affinity, recommender).

    ``cases`` are clicks to predict (query, item_id, user_id, timestamp), ``earlier`` the
    clicks before them (item_id, user_id, timestamp). Each case is ranked as its shopper would
    have seen it: affinity (category and brand shares, a click counting 1 as in
    ``customer_affinity``) and ``recommend``'s scores (a shopper's earlier items, oldest first,
    to scores by item_id) come from the shopper's clicks before the case only, ``earlier`` ones
    and earlier cases alike. The pair (0, 0) is the engine without personalisation. MAP is
    given over every case and over cases whose shopper clicked before ("returning")."""
    kept = ["user_id", "item_id", "timestamp"]
    timeline = pl.concat([earlier.select(kept), cases.select(kept)]).sort("timestamp")
    seen: dict[str, list[tuple[datetime, str]]] = {}
    for user, item, at in timeline.iter_rows():
        seen.setdefault(user, []).append((at, item))
    ranked: dict[tuple[str, object], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    hits = np.zeros((len(weights), cases.height))
    returning = np.zeros(cases.height, dtype=bool)
    for row, (query, item, user, at) in enumerate(
        cases.select("query", "item_id", "user_id", "timestamp").iter_rows()
    ):
        key = (query, at.date())
        if key not in ranked:
            ranked[key] = engine.rank(query, at=at)
        columns, scores, _ = ranked[key]
        before = [i for t, i in seen.get(user, []) if t < at]
        returning[row] = bool(before)
        target = engine.position.get(item)
        if target is None or not len(columns):
            continue
        liked = np.zeros(len(columns))
        recommended = np.zeros(len(columns))
        if before:
            known = [engine.position[i] for i in before if i in engine.position]
            affinity = {
                "category": _shares([engine.catalog.category[c] for c in known]),
                "brand": _shares([engine.catalog.brand[c] for c in known]),
            }
            catalog = engine.catalog
            liked = _lookup(affinity["category"], catalog.category, columns) + _lookup(
                affinity["brand"], catalog.brand, columns
            )
            if recommend is not None:
                ids = [catalog.item_ids[c] for c in columns.tolist()]
                recommended = standing(recommend(before), ids)
        for n, pair in enumerate(weights):
            lifted = personalised(scores, liked, recommended, pair) if before else scores
            order = columns[np.lexsort((columns, -lifted))][:k]
            found = np.flatnonzero(order == target)
            hits[n, row] = 1.0 / (found[0] + 1) if len(found) else 0.0
    return [
        {"affinity_weight": a, "recommend_weight": r, f"map@{k}": float(hits[n].mean()),
         f"map@{k}_returning": float(hits[n, returning].mean()) if returning.any() else 0.0,
         "returning_share": float(returning.mean())}
        for n, (a, r) in enumerate(weights)
    ]  # fmt: skip


def _shares(values: list[str | None]) -> dict[str, float]:
    named = [v for v in values if v is not None]
    return {v: c / len(named) for v, c in Counter(named).items()} if named else {}


def _lookup(shares: dict[str, float], values: list[str | None], columns: np.ndarray) -> np.ndarray:
    return np.asarray([shares.get(values[c] or "", 0.0) for c in columns.tolist()])
