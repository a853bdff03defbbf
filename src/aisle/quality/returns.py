"""Returns matched with the purchase they undo."""

from __future__ import annotations

import polars as pl

from aisle.domain import EventType

_KEYS = ["user_id", "item_id"]


def match_returns(candidates: pl.DataFrame, stored_purchases: pl.DataFrame) -> pl.Series:
    """For each row of ``candidates`` that is a return, the latest earlier purchase's id.

    Purchases come from the candidates themselves (clean rows of this batch) and from the
    store (``stored_purchases``: event_id, user_id, item_id, timestamp). Null for rows that are
    not returns or whose purchase cannot be found.
    """
    frame = candidates.drop("_row", strict=False).with_row_index("_row")
    purchases = pl.concat(
        [
            frame.filter(pl.col("type") == EventType.PURCHASE.value).select(
                "event_id", *_KEYS, "timestamp"
            ),
            stored_purchases.select("event_id", *_KEYS, "timestamp"),
        ]
    ).rename({"event_id": "_purchase"})
    returns = frame.filter(pl.col("type") == EventType.RETURN.value).select(
        "_row", *_KEYS, "timestamp"
    )
    matched = returns.sort("timestamp").join_asof(
        purchases.drop_nulls(_KEYS).sort("timestamp"),
        on="timestamp",
        by=_KEYS,
        strategy="backward",
        check_sortedness=False,
    )
    return (
        frame.select("_row")
        .join(matched.select("_row", "_purchase"), on="_row", how="left")
        .sort("_row")["_purchase"]
    )
