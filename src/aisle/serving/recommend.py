"""Recommendations as served: the model's scores over the customer's whole history, trained
and recent, with products newer than the model placed by their text.

- A known customer with nothing new is scored from the model's state.
- Anyone with recent behaviour (or a context item) is scored from their history through the
  model's ``score_history``: SASRec reads the latest sequence, ALS folds them in, item-kNN
  sums the recent items' neighbours.
- With no history at all, trending items answer.
- Products the model never saw (added after training) have no learnt state. The one closest
  in text to the customer's latest items takes one slot when it is close enough: cold start
  from the product's embedding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

import numpy as np

from aisle.errors import NotFoundError
from aisle.models.base import Recommendation
from aisle.serving.live import Live, Served
from aisle.serving.realtime import Activity

#: A new product joins a customer's list only this close (cosine) to their latest items.
COLD_MIN_COSINE: Final = 0.5
#: Where the new product goes (0-based), and how many of the latest items describe taste.
COLD_SLOT: Final = 2
TASTE_ITEMS: Final = 10


@dataclass(frozen=True)
class Answer:
    """A list of items and how it was made."""

    items: list[Recommendation]
    model: str
    version: int | None
    source: str  # model | history | trending | text
    cold: list[str] = field(default_factory=list)  # items placed by their text


def history(served: Served, pseudonym: str, recent: Sequence[str]) -> list[str]:
    """The customer's items in time order: the model's training history, then the recent."""
    model = served.model
    trained: list[str] = []
    if model.knows(pseudonym):
        trained = [model.items[i] for i in model.history_of(model.user_row(pseudonym))]
    return [*trained, *recent]


def recommend(
    live: Live,
    activity: Activity,
    model_name: str,
    pseudonym: str,
    n: int,
    *,
    context: str | None = None,
) -> Answer:
    """The top ``n`` items for the customer from ``model_name`` and what they did since."""
    served = live.models.get(model_name)
    recent = activity.recent(pseudonym)
    if context is not None:
        recent = [*recent, context]
    if served is None:
        return _trending(activity, n, recent, model_name)
    model = served.model
    if recent or not model.knows(pseudonym):
        items = history(served, pseudonym, recent)
        known = [i for i in items if model.knows_item(i)]
        if not known:
            answer = _trending(activity, n, items, model_name, served.version)
            return _with_cold(live, served, answer, items, n)
        found = model.recommend(pseudonym, n, history=known)
        answer = Answer(found, model_name, served.version, "history")
        return _with_cold(live, served, answer, items, n)
    found = model.recommend(pseudonym, n)
    return _with_cold(live, served, Answer(found, model_name, served.version, "model"),
                      history(served, pseudonym, ()), n)  # fmt: skip


def _trending(
    activity: Activity, n: int, exclude: Sequence[str], model: str, version: int | None = None
) -> Answer:
    found = [Recommendation(i, s) for i, s in activity.trending(n, set(exclude))]
    return Answer(found, model, version, "trending")


def _with_cold(live: Live, served: Served, answer: Answer, items: Sequence[str], n: int) -> Answer:
    """Give one slot to the new product closest in text to the customer's latest items."""
    engine = live.engine
    if engine is None or engine.vectors is None or not items or n <= 0:
        return answer
    new = _new_columns(live, served)
    if not len(new):
        return answer
    taste = [engine.position[i] for i in items[-TASTE_ITEMS:] if i in engine.position]
    if not taste:
        return answer
    centre = engine.vectors[taste].mean(axis=0)
    norm = float(np.linalg.norm(centre))
    if norm == 0.0:
        return answer
    cosine = engine.vectors[new] @ (centre / norm)
    best = int(np.argmax(cosine))
    item = engine.catalog.item_ids[int(new[best])]
    if cosine[best] < COLD_MIN_COSINE or item in items:
        return answer
    listed = [r for r in answer.items if r.item_id != item][: max(n - 1, 0)]
    slot = min(COLD_SLOT, len(listed))
    listed.insert(slot, Recommendation(item, float(cosine[best])))
    return Answer(listed, answer.model, answer.version, answer.source, [item])


def _new_columns(live: Live, served: Served) -> np.ndarray:
    """Engine columns of products in the catalog that the model never saw."""
    engine = live.engine
    assert engine is not None
    key = (served.name, served.version, len(engine.catalog.item_ids), int(engine.removed.sum()))
    cached = live.cold_cache.get(served.name)
    if cached is not None and cached[0] == key:
        return cached[1]
    model = served.model
    unseen = np.fromiter((not model.knows_item(i) for i in engine.catalog.item_ids), dtype=bool,
                         count=len(engine.catalog.item_ids))  # fmt: skip
    columns = np.flatnonzero(unseen & ~engine.removed)
    live.cold_cache[served.name] = (key, columns)
    return columns


def similar(live: Live, model_name: str, item_id: str, n: int) -> Answer:
    """Items like this one: the model's neighbours, or, for a product it never saw, the
    nearest in text."""
    served = live.models.get(model_name)
    if served is not None and served.model.knows_item(item_id):
        found = served.model.similar_items(item_id, n)
        return Answer(found, model_name, served.version, "model")
    engine = live.engine
    if engine is None or engine.vectors is None or item_id not in engine.position:
        raise NotFoundError(f"unknown item {item_id!r}")
    column = engine.position[item_id]
    if engine.removed[column]:
        raise NotFoundError(f"item {item_id!r} was removed")
    cosine = engine.vectors @ engine.vectors[column]
    cosine[engine.removed] = -np.inf
    cosine[column] = -np.inf
    n = min(n, int(np.isfinite(cosine).sum()))
    top = np.argpartition(-cosine, n - 1)[:n] if n > 0 else np.zeros(0, dtype=np.int64)
    top = top[np.argsort(-cosine[top], kind="stable")]
    found = [Recommendation(engine.catalog.item_ids[int(i)], float(cosine[i])) for i in top]
    version = served.version if served is not None else None
    return Answer(found, model_name, version, "text", [r.item_id for r in found])
