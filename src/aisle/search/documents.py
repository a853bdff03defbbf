"""Search documents: the canonical catalog flattened into the fields search indexes and ranks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import polars as pl

from aisle.storage import Store

#: Columns of a search document frame, in order, with their types.
DOCUMENT_SCHEMA: Final[dict[str, pl.DataType]] = {
    "item_id": pl.String(),
    "title": pl.String(),
    "description": pl.String(),
    "brand": pl.String(),
    "category": pl.String(),  # the deepest category level, the facet value
    "category_path": pl.List(pl.String()),
    "attributes": pl.String(),  # "name value" pairs of extracted attributes, space-joined
    "aliases": pl.String(),  # other names the product went by, space-joined
    "price": pl.Float64(),
    "popularity": pl.Float64(),  # distinct customers who clicked, carted or bought it
    "updated_at": pl.Datetime("us", "UTC"),
    "released_at": pl.Datetime("us", "UTC"),  # when the product came (or comes) out
}

_DOCUMENTS_SQL: Final = """
WITH attrs AS (
    SELECT item_id, string_agg(attribute || ' ' || value, ' ' ORDER BY attribute, value) AS text
    FROM product_attributes GROUP BY item_id),
seen AS (
    SELECT item_id, count(DISTINCT user_id)::DOUBLE AS popularity
    FROM events WHERE item_id IS NOT NULL AND type IN ('click', 'cart', 'purchase')
    GROUP BY item_id)
SELECT p.item_id, p.title, p.description, p.brand,
       p.category_path[-1] AS category, p.category_path,
       a.text AS attributes, array_to_string(p.aliases, ' ') AS aliases,
       p.price, coalesce(s.popularity, 0) AS popularity,
       p.updated_at AT TIME ZONE 'UTC' AS updated_at,
       coalesce(TRY_CAST(json_extract_string(p.attributes, '$.releaseDate') AS TIMESTAMP),
                TRY_CAST(json_extract_string(p.attributes, '$.release_date') AS TIMESTAMP))
           AS released_at
FROM catalog_products p
LEFT JOIN attrs a USING (item_id)
LEFT JOIN seen s USING (item_id)
WHERE ? IS NULL OR p.item_id IN (SELECT unnest(?))
ORDER BY p.item_id
"""


def conform(frame: pl.DataFrame) -> pl.DataFrame:
    """Any product frame as search documents: missing columns null (popularity 0), types cast,
    columns in ``DOCUMENT_SCHEMA`` order, one row per item_id (the last)."""
    columns = []
    for name, dtype in DOCUMENT_SCHEMA.items():
        if name in frame.columns:
            column = pl.col(name)
            if name.endswith("_at") and isinstance(frame.schema[name], pl.Datetime):
                column = column.dt.replace_time_zone(None).dt.replace_time_zone("UTC")
            columns.append(column.cast(dtype).alias(name))
        elif name == "popularity":
            columns.append(pl.lit(0.0, dtype=dtype).alias(name))
        else:
            columns.append(pl.lit(None, dtype=dtype).alias(name))
    return (
        frame.select(columns)
        .filter(pl.col("item_id").is_not_null())
        .unique(subset="item_id", keep="last", maintain_order=True)
    )


def search_documents(store: Store, item_ids: Sequence[str] | None = None) -> pl.DataFrame:
    """Every product of the catalog (or only these) with fills applied as a search document,
    sorted by item_id."""
    wanted = None if item_ids is None else list(item_ids)
    return conform(store.query(_DOCUMENTS_SQL, [wanted, wanted]))
