"""Writing products: the current record per item plus every accepted version."""

from __future__ import annotations

import polars as pl

from aisle.domain import PRODUCT_SCHEMA
from aisle.storage.store import Store

_COLUMNS = [*PRODUCT_SCHEMA, "record_id", "import_id"]


def upsert_products(store: Store, products: pl.DataFrame) -> None:
    """Replace the current record of each item, keeping aliases the old record had."""
    if products.height == 0:
        return
    frame = products.select(_COLUMNS)
    with store.registered("_incoming", frame):
        old = store.query(
            "SELECT item_id, aliases AS _old_aliases, title AS _old_title FROM products "
            "WHERE item_id IN (SELECT item_id FROM _incoming)"
        )
        store.execute("DELETE FROM products WHERE item_id IN (SELECT item_id FROM _incoming)")
    if old.height:
        frame = (
            frame.join(old, on="item_id", how="left")
            .with_columns(
                pl.concat_list(
                    pl.col("aliases").fill_null([]),
                    pl.col("_old_aliases").fill_null([]),
                    pl.concat_list(pl.col("_old_title")).list.drop_nulls(),
                )
                .list.unique(maintain_order=True)
                .list.set_difference(pl.concat_list(pl.col("title")))
                .alias("aliases")
            )
            .select(_COLUMNS)
        )
    store.append("products", frame)
    store.append("product_versions", frame)
