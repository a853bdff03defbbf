"""Search as served: a page of results, personalised from what the customer did.

Personal evidence is gathered in memory, never from the store on the request path (a write
may hold the store): the customer's categories and brands come from their items (training
history and recent behaviour) and the recommender's scores of the candidates.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

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


def _personal_scores(service: Service, model: str, pseudonym: str, items: Sequence[str]) -> Any:
    served = service.live.models.get(model)
    if served is None:
        return None
    known = [i for i in items if served.model.knows_item(i)]
    try:
        found = served.model.recommend(pseudonym, 500, history=known or None)
    except NotFoundError:
        return None
    return {r.item_id: r.score for r in found}


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
