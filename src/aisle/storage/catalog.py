"""Writing products: every accepted record, the latest record per source, the canonical one."""

from __future__ import annotations

from datetime import datetime

import polars as pl

from aisle.domain import PRODUCT_SCHEMA
from aisle.storage.store import Store

SOURCE_COLUMNS = [*PRODUCT_SCHEMA, "record_id", "import_id"]


def keep_source_records(store: Store, records: pl.DataFrame, received_at: datetime) -> None:
    """Add accepted records to the record history and make each its source's latest word on
    the item (replacing that source's earlier record)."""
    frame = records.select(SOURCE_COLUMNS)
    with store.transaction():
        store.append("product_versions", frame)
        with store.registered("_incoming", frame):
            store.execute(
                "DELETE FROM product_sources USING _incoming i "
                "WHERE product_sources.item_id = i.item_id AND product_sources.source = i.source"
            )
        store.append(
            "product_sources", frame.with_columns(pl.lit(received_at).alias("received_at"))
        )


def source_records(store: Store, items: pl.Series) -> pl.DataFrame:
    """Every source's latest record of these items."""
    with store.registered("_items", items.rename("item_id").to_frame()):
        return store.query(
            "SELECT * FROM product_sources WHERE item_id IN (SELECT item_id FROM _items) "
            "ORDER BY item_id, source"
        )


def canonical_names(store: Store, items: pl.Series) -> pl.DataFrame:
    """The current canonical title and aliases of these items (item_id, title, aliases)."""
    with store.registered("_items", items.rename("item_id").to_frame()):
        return store.query(
            "SELECT item_id, title, aliases FROM products "
            "WHERE item_id IN (SELECT item_id FROM _items)"
        )


def replace_canonical(
    store: Store, products: pl.DataFrame, conflicts: pl.DataFrame, history: pl.DataFrame
) -> None:
    """Replace the canonical records and open conflicts of these items; append new versions."""
    with store.transaction():
        with store.registered("_items", products.select("item_id")):
            store.execute("DELETE FROM products WHERE item_id IN (SELECT item_id FROM _items)")
            store.execute(
                "DELETE FROM product_conflicts WHERE item_id IN (SELECT item_id FROM _items)"
            )
        store.append("products", products.select(SOURCE_COLUMNS))
        store.append("product_conflicts", conflicts)
        store.append("product_history", history)
