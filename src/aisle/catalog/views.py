"""Reading the catalog back: one product's whole story, conflicts, duplicates, attributes."""

from __future__ import annotations

from typing import Any

import polars as pl

from aisle.errors import NotFoundError
from aisle.storage import Store


def product_card(store: Store, item_id: str) -> dict[str, Any]:
    """The canonical record (with sound fills), each source's record, the conflicts decided,
    the version history, extracted attributes, gaps and near duplicates of one product."""
    record = store.query("SELECT * FROM catalog_products WHERE item_id = ?", [item_id])
    if record.height == 0:
        raise NotFoundError(f"no product {item_id!r} in the catalog")
    one = [item_id]
    return {
        "product": record.to_dicts()[0],
        "sources": store.query(
            "SELECT source, title, price, updated_at, received_at, record_id "
            "FROM product_sources WHERE item_id = ? ORDER BY source",
            one,
        ).to_dicts(),
        "conflicts": store.query(
            "SELECT field, candidates, chosen, rule, why FROM product_conflicts "
            "WHERE item_id = ? ORDER BY field",
            one,
        ).to_dicts(),
        "history": store.query(
            "SELECT version, changed_fields, changed_at, title, price FROM product_history "
            "WHERE item_id = ? ORDER BY version",
            one,
        ).to_dicts(),
        "attributes": store.query(
            "SELECT attribute, value, unit, evidence, method FROM product_attributes "
            "WHERE item_id = ? ORDER BY attribute, value",
            one,
        ).to_dicts(),
        "gaps": store.query(
            "SELECT field, filled, value, how FROM product_gaps WHERE item_id = ? ORDER BY field",
            one,
        ).to_dicts(),
        "duplicates": store.query(
            "SELECT CASE WHEN item_a = ? THEN item_b ELSE item_a END AS item_id, jaccard, cosine, "
            "reason FROM product_duplicates WHERE item_a = ? OR item_b = ? ORDER BY jaccard DESC",
            [item_id, item_id, item_id],
        ).to_dicts(),
    }


def conflicts(
    store: Store, *, field: str | None = None, item_id: str | None = None, limit: int = 50
) -> pl.DataFrame:
    """Decided conflicts, most contested fields first."""
    return store.query(
        "SELECT item_id, field, chosen, rule, why, candidates FROM product_conflicts "
        "WHERE (? IS NULL OR field = ?) AND (? IS NULL OR item_id = ?) "
        "ORDER BY field, item_id LIMIT ?",
        [field, field, item_id, item_id, limit],
    )


def near_duplicates(store: Store, *, limit: int = 50) -> pl.DataFrame:
    """Pairs listed for merging, with both titles, the most similar first."""
    return store.query(
        "SELECT d.item_a, a.title AS title_a, d.item_b, b.title AS title_b, d.jaccard, "
        "d.cosine, d.reason FROM product_duplicates d "
        "LEFT JOIN products a ON a.item_id = d.item_a "
        "LEFT JOIN products b ON b.item_id = d.item_b "
        "ORDER BY d.jaccard DESC, d.cosine DESC NULLS LAST, d.item_a LIMIT ?",
        [limit],
    )


def attribute_summary(store: Store) -> pl.DataFrame:
    """Per attribute: products that have it, distinct values and the most common ones."""
    return store.query(
        """
        WITH counted AS (SELECT attribute, value, count(DISTINCT item_id) AS n
                         FROM product_attributes GROUP BY 1, 2)
        SELECT attribute, sum(n)::BIGINT AS products, count(*) AS values,
               list(value || ' (' || n || ')' ORDER BY n DESC, value)[1:5] AS top
        FROM counted GROUP BY attribute ORDER BY products DESC
        """
    )


def attributes_of(
    store: Store, *, attribute: str | None = None, item_id: str | None = None, limit: int = 50
) -> pl.DataFrame:
    """Extracted attributes, filtered by name or product."""
    return store.query(
        "SELECT item_id, attribute, value, unit, evidence, method FROM product_attributes "
        "WHERE (? IS NULL OR attribute = ?) AND (? IS NULL OR item_id = ?) "
        "ORDER BY item_id, attribute LIMIT ?",
        [attribute, attribute, item_id, item_id, limit],
    )
