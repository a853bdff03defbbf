"""Cleaning rules that need more than one column or the whole batch: each returns Flags."""

from __future__ import annotations

import math
from datetime import timedelta

import polars as pl

from aisle.config import QualitySettings
from aisle.domain import BROWSE_TYPES, EventType, Reason
from aisle.quality.coerce import Flag

_TRADE = [EventType.PURCHASE.value, EventType.RETURN.value]


def required_fields(quality: QualitySettings) -> list[Flag]:
    """Missing customer (unless anonymous events are allowed), item or query."""
    kind = pl.col("type")
    flags = [
        Flag(
            Reason.MISSING_FIELD,
            pl.col("item_id").is_null() & (kind != EventType.SEARCH.value),
            "field 'item_id': missing",
        ),
        Flag(
            Reason.MISSING_FIELD,
            pl.col("query").is_null() & (kind == EventType.SEARCH.value),
            "field 'query': missing on a search",
        ),
    ]
    if quality.require_user:
        flags.append(
            Flag(Reason.MISSING_FIELD, pl.col("user_id").is_null(), "field 'user_id': missing")
        )
    return flags


def values_by_type(quality: QualitySettings) -> list[Flag]:
    """Prices and quantities of purchases and returns, rating ranges."""
    kind = pl.col("type")
    trade = kind.is_in(_TRADE)
    value = pl.col("value")
    return [
        Flag(
            Reason.NONPOSITIVE_PRICE,
            trade & (pl.col("price") <= 0),
            "field 'price': zero or negative on a purchase or return",
        ),
        Flag(
            Reason.BAD_QUANTITY,
            trade & value.is_not_null() & ((value <= 0) | (value > quality.max_quantity)),
            "field 'value': quantity not in (0, max_quantity]",
        ),
        Flag(
            Reason.BAD_RATING,
            (kind == EventType.RATING.value)
            & (value.is_null() | (value < quality.rating_min) | (value > quality.rating_max)),
            "field 'value': rating missing or out of range",
        ),
    ]


def outlier_quantities(frame: pl.DataFrame, quality: QualitySettings) -> Flag:
    """Extreme quantities per item, by a robust z-score (MAD) of log1p(quantity).

    Statistics come from the batch's purchases of the item with a positive quantity; items
    with fewer than ``outlier_min_lines`` such lines are not judged. A quantity is extreme when
    its log1p exceeds the item's median by more than both ``outlier_z`` scaled MADs and
    log(``outlier_min_ratio``): wholesalers buying a lot stay, a keying error of 80,995 goes.
    """
    log_value = pl.col("value").log1p()
    stats = (
        frame.filter((pl.col("type") == EventType.PURCHASE.value) & (pl.col("value") > 0))
        .group_by("item_id")
        .agg(
            log_value.median().alias("_med"),
            (log_value - log_value.median()).abs().median().alias("_mad"),
            pl.len().alias("_n"),
        )
        .filter(pl.col("_n") >= quality.outlier_min_lines)
    )
    limit = pl.max_horizontal(
        quality.outlier_z * 1.4826 * pl.col("_mad"), pl.lit(math.log(quality.outlier_min_ratio))
    )
    extreme = (
        frame.select("item_id", "type", "value")
        .join(stats, on="item_id", how="left")
        .select(
            (
                pl.col("type").is_in(_TRADE)
                & pl.col("_med").is_not_null()
                & (pl.col("value") > 0)
                & (log_value - pl.col("_med") > limit)
            ).fill_null(False)
        )
        .to_series()
    )
    return Flag(
        Reason.OUTLIER_QUANTITY,
        pl.lit(extreme),
        "field 'value': extreme quantity for this item (robust z on log quantity)",
    )


def bot_users(frame: pl.DataFrame, quality: QualitySettings) -> Flag:
    """Users whose browse events exceed a rate in any sliding minute or a volume in any
    sliding day.

    More than N events within a window means some event has its N-th predecessor (of the
    same user) less than the window ago: one shift per rule, no per-user loop.
    """
    browse = (
        frame.filter(
            pl.col("type").is_in([t.value for t in BROWSE_TYPES])
            & pl.col("user_id").is_not_null()
            & pl.col("timestamp").is_not_null()
        )
        .select("user_id", "timestamp")
        .sort("user_id", "timestamp")
    )
    ts, user = pl.col("timestamp"), pl.col("user_id")

    def within(n: int, window: timedelta) -> pl.Expr:
        # sorted by user, the row n before is the user's n-th predecessor if it is theirs
        return (user == user.shift(n)) & ((ts - ts.shift(n)) < window)

    burst = within(quality.bot_max_per_minute, timedelta(minutes=1))
    flood = within(quality.bot_max_per_day, timedelta(days=1))
    bots = browse.filter((burst | flood).fill_null(False))["user_id"].unique()
    mask = pl.col("user_id").is_in(bots.implode()) & pl.col("type").is_in(
        [t.value for t in BROWSE_TYPES]
    )
    return Flag(Reason.BOT_USER, mask, "field 'user_id': bot-like rate or volume of browsing")


def unknown_items(known: pl.Series, *, non_products: pl.Expr | None = None) -> Flag:
    """Items the catalog does not know (searches carry no item; charges and fees that an
    adapter marked as non-products are never in a catalog, so they are not held for one)."""
    mask = (
        pl.col("item_id").is_not_null()
        & (pl.col("type") != EventType.SEARCH.value)
        & ~pl.col("item_id").is_in(known.implode())
    )
    if non_products is not None:
        mask = mask & ~non_products.fill_null(False)
    return Flag(Reason.UNKNOWN_ITEM, mask, "field 'item_id': not in the catalog (held)")


def reasons_long(frame: pl.DataFrame, flags: list[Flag]) -> pl.DataFrame:
    """One row per (record, reason) that a flag raised: ``_row``, ``reason``, ``detail``.

    Masks are evaluated in one pass; only flagged rows are materialised, so a clean batch
    costs one boolean scan per rule.
    """
    schema = {"_row": pl.UInt32, "reason": pl.String, "detail": pl.String}
    if not flags:
        return pl.DataFrame(schema=schema)
    masks = frame.select(
        pl.col("_row"),
        *[f.mask.fill_null(False).alias(f"_f{i}") for i, f in enumerate(flags)],
        *[
            (f.detail if isinstance(f.detail, pl.Expr) else pl.lit(f.detail)).alias(f"_d{i}")
            for i, f in enumerate(flags)
            if isinstance(f.detail, pl.Expr)
        ],
    )
    parts = []
    for i, flag in enumerate(flags):
        hit = masks.filter(pl.col(f"_f{i}"))
        if hit.height == 0:
            continue
        detail = pl.col(f"_d{i}") if isinstance(flag.detail, pl.Expr) else pl.lit(flag.detail)
        parts.append(
            hit.select(
                pl.col("_row"), pl.lit(flag.reason.value).alias("reason"), detail.alias("detail")
            )
        )
    return pl.concat(parts) if parts else pl.DataFrame(schema=schema)
