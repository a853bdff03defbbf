"""Missing values: filled only where sound, otherwise flagged, never invented silently.

A missing price is filled with the median unit price the item sold at, when it sold at least
``MIN_SALES`` times; a missing category with the classifier's label when it is confident
enough. Everything else missing is flagged. Fills live in ``product_gaps`` beside the canonical
record and show in the ``catalog_products`` view, so the record from the sources is unchanged.
"""

from __future__ import annotations

import polars as pl

from aisle.storage import Store

#: Purchases an item needs before its median price stands in for a missing one.
MIN_SALES = 3
GAP_SCHEMA = {
    "item_id": pl.String, "field": pl.String, "filled": pl.Boolean, "value": pl.String,
    "how": pl.String,
}  # fmt: skip


def price_gaps(store: Store) -> pl.DataFrame:
    """Products without a price: filled from their sales history, or flagged."""
    return store.query(
        """
        WITH sold AS (
            SELECT item_id, median(price) AS median, count(*) AS sales FROM events
            WHERE type = 'purchase' AND isfinite(price) AND price > 0 GROUP BY item_id)
        SELECT p.item_id, 'price' AS field, coalesce(s.sales >= ?, false) AS filled,
               CASE WHEN s.sales >= ? THEN round(s.median, 2)::VARCHAR END AS value,
               CASE WHEN s.sales >= ? THEN 'median of ' || s.sales || ' purchases'
                    WHEN s.sales > 0 THEN 'flagged: only ' || s.sales || ' purchase(s)'
                    ELSE 'flagged: no price in any source and no sales' END AS how
        FROM products p LEFT JOIN sold s USING (item_id)
        WHERE p.price IS NULL OR NOT isfinite(p.price)
        """,
        [MIN_SALES, MIN_SALES, MIN_SALES],
    ).cast(GAP_SCHEMA)  # type: ignore[arg-type]


def description_gaps(store: Store) -> pl.DataFrame:
    """Products without a description: flagged (text is never made up)."""
    return store.query(
        "SELECT item_id, 'description' AS field, false AS filled, NULL::VARCHAR AS value, "
        "'flagged: no description in any source' AS how FROM products "
        "WHERE description IS NULL OR trim(description) = ''"
    ).cast(GAP_SCHEMA)  # type: ignore[arg-type]


def category_gaps(inferred: pl.DataFrame, unlearnable: pl.Series) -> pl.DataFrame:
    """Category gaps from the classifier's output (item_id, category, confidence, filled) plus
    products whose source has no labelled products to learn from (flagged)."""
    guessed = inferred.select(
        "item_id",
        pl.lit("category").alias("field"),
        "filled",
        pl.when("filled").then("category").alias("value"),
        pl.when("filled")
        .then(pl.format("classifier, confidence {}", pl.col("confidence").round(2)))
        .otherwise(
            pl.format("flagged: classifier confidence only {}", pl.col("confidence").round(2))
        )
        .alias("how"),
    )
    orphans = (
        unlearnable.rename("item_id")
        .to_frame()
        .select(
            "item_id",
            pl.lit("category").alias("field"),
            pl.lit(False).alias("filled"),
            pl.lit(None, dtype=pl.String).alias("value"),
            pl.lit("flagged: no labelled products from this source to learn from").alias("how"),
        )
    )
    return pl.concat([guessed.cast(GAP_SCHEMA), orphans.cast(GAP_SCHEMA)])  # type: ignore[arg-type]


def replace_gaps(store: Store, gaps: pl.DataFrame) -> None:
    """The catalog's gaps, replaced wholesale by one build."""
    with store.transaction():
        store.execute("DELETE FROM product_gaps")
        store.append("product_gaps", gaps)
