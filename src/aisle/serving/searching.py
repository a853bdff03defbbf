"""Search as served: a page of results, personalised from what the customer did.

Personal evidence is gathered in memory, never from the store on the request path (a write
may hold the store): the customer's categories and brands come from their items (training
history and recent behaviour) and the recommender's scores of the candidates.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from aisle.errors import NotFoundError
from aisle.serving.recommend import history
from aisle.serving.service import Service

#: Latest items that describe a customer's taste in search.
TASTE_ITEMS = 50


def affinity_from_items(service: Service, items: Sequence[str]) -> dict[str, dict[str, float]]:
    """{"category": {value: share}, "brand": {value: share}} of the customer's items."""
    engine = service.live.engine
    affinity: dict[str, dict[str, float]] = {"category": {}, "brand": {}}
    if engine is None:
        return affinity
    columns = [engine.position[i] for i in items[-TASTE_ITEMS:] if i in engine.position]
    for kind, values in (("category", engine.catalog.category), ("brand", engine.catalog.brand)):
        counts = Counter(v for v in (values[c] for c in columns) if v is not None)
        total = sum(counts.values())
        affinity[kind] = {v: n / total for v, n in counts.items()} if total else {}
    return affinity


class ItemScores(Mapping[str, float]):
    """A recommender's scores for one customer by item id, read only for the items asked: a
    search looks up its candidates', not the whole catalog's. Items without a score (the
    customer's own, or unknown to the model) are absent."""

    def __init__(self, model: Any, scores: np.ndarray) -> None:
        self.model = model
        self.scores = scores

    def __getitem__(self, item_id: str) -> float:
        if not self.model.knows_item(item_id):
            raise KeyError(item_id)
        score = float(self.scores[self.model.item_column(item_id)])
        if not np.isfinite(score):
            raise KeyError(item_id)
        return score

    def __iter__(self) -> Iterator[str]:
        return (self.model.items[c] for c in np.flatnonzero(np.isfinite(self.scores)))

    def __len__(self) -> int:
        return int(np.isfinite(self.scores).sum())


def _personal_scores(
    service: Service, model: str, pseudonym: str, items: Sequence[str]
) -> Mapping[str, float] | None:
    """The production recommender's scores for the customer: from their items where the model
    knows some, else from their training row; None where it knows neither."""
    served = service.live.models.get(model)
    if served is None:
        return None
    recommender = served.model
    columns = np.asarray([recommender.item_column(i) for i in items if recommender.knows_item(i)],
                         dtype=np.int64)  # fmt: skip
    if len(columns):
        scores = np.asarray(recommender.score_history(columns), dtype=np.float64).copy()
    elif recommender.knows(pseudonym):
        row = recommender.user_row(pseudonym)
        scores = np.asarray(recommender.score_users(np.asarray([row]))[0], dtype=np.float64).copy()
        columns = recommender.seen(row)
    else:
        return None
    scores[columns] = -np.inf  # their own items: no standing
    return ItemScores(recommender, scores)


def search_page(
    service: Service,
    query: str,
    *,
    user: str | None,
    filters: dict[str, list[str]],
    facets: str,
    sort: str | None,
    price_min: float | None,
    price_max: float | None,
    page: int,
    per_page: int,
    explain: bool,
) -> dict[str, Any]:
    """The API's answer to one search."""
    engine = service.live.engine
    if engine is None:
        raise NotFoundError("no search index yet: run `aisle index build`")
    extra: dict[str, Any] = {}
    variant = None
    if user is not None:
        pseudonym = service.pseudonym(user)
        model, variant = service.model_for("search", pseudonym, None)
        served = service.live.models.get(model)
        recent = service.activity.recent(pseudonym)
        items = history(served, pseudonym, recent) if served is not None else recent
        if items:
            extra["affinity"] = affinity_from_items(service, items)
            extra["personal_scores"] = _personal_scores(service, model, pseudonym, items)
    result = engine.search(
        query, limit=per_page, offset=(page - 1) * per_page, filters=filters or None, sort=sort,
        facets=[f.strip() for f in facets.split(",") if f.strip()], price_min=price_min,
        price_max=price_max, explain=explain, **extra,
    )  # fmt: skip
    hits = []
    for hit in result.hits:
        row = service.live.listed(hit.item_id, hit.score)
        if explain:
            row["why"] = hit.why
        hits.append(row)
    if variant is not None:
        service.exposures.record(variant, pseudonym, "search", [h["item_id"] for h in hits])
    return {
        "query": result.query, "searched": result.searched, "total": result.total,
        "page": page, "per_page": per_page, "hits": hits, "facets": result.facets,
        "notes": result.notes, "relaxed": result.relaxed, "personalised": bool(extra),
        "variant": None if variant is None else variant.to_json(),
    }  # fmt: skip
