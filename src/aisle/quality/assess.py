"""Deciding each record's fate: accepted, quarantined (with reasons) or duplicate (of what)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import polars as pl

from aisle.config import QualitySettings
from aisle.domain import EVENT_SCHEMA, PRODUCT_SCHEMA, EventType, Fate, Reason
from aisle.quality import rules
from aisle.quality.coerce import Flag
from aisle.quality.dedupe import exact_duplicates, near_duplicates
from aisle.quality.returns import match_returns
from aisle.quality.schemas import (
    SchemaCheck,
    event_checks,
    product_checks,
    required_for_events,
    required_for_products,
    schema_reasons,
)

#: What an adapter-raised reason means, for the detail text.
PRE_REASON_DETAIL = {
    Reason.NON_PRODUCT.value: "field 'item_id': a charge, fee or adjustment, not a product",
    Reason.BAD_QUANTITY.value: "field 'value': negative quantity outside a cancellation",
}

OUTCOME_COLUMNS = ("_fate", "_reasons", "_detail", "_duplicate_of", "_dup_rule", "_hold_until")


@dataclass(frozen=True)
class EventContext:
    """What the event rules may consult beyond the batch."""

    quality: QualitySettings
    now: datetime
    known_items: pl.Series | None  # None when the catalog is empty: the rule is skipped
    seen_ids: pl.Series  # event ids already stored or quarantined
    stored_purchases: pl.DataFrame  # event_id, user_id, item_id, timestamp
    stored_recent: pl.DataFrame | None = None  # event_id, user_id, item_id, type, timestamp
    erased_users: pl.Series | None = None  # pseudonyms of customers who were erased


@dataclass(frozen=True)
class ProductContext:
    """What the product rules may consult beyond the batch."""

    quality: QualitySettings
    seen_ids: pl.Series  # product record ids already stored or quarantined


def _with_reasons(
    frame: pl.DataFrame,
    flags: list[Flag],
    schema: dict[str, pl.DataType],
    checks: list[SchemaCheck],
    required: tuple[str, ...],
) -> pl.DataFrame:
    """Fold the flags, the pandera failures and the adapter's own reasons into two columns:
    ``_reasons`` (codes, in rule order) and ``_detail`` (what was wrong, field by field)."""
    frame = frame.with_row_index("_row")
    parts = [rules.reasons_long(frame, flags), schema_reasons(frame, schema, checks, required)]
    if "_pre_reason" in frame.columns:
        parts.append(
            frame.select("_row", pl.col("_pre_reason").alias("reason"))
            .filter(pl.col("reason").is_not_null())
            .with_columns(
                pl.col("reason")
                .replace_strict(PRE_REASON_DETAIL, default=pl.col("reason"))
                .alias("detail")
            )
        )
    folded = (
        pl.concat(parts)
        .group_by("_row")
        .agg(
            pl.col("reason").unique(maintain_order=True).alias("_reasons"),
            pl.col("detail").unique(maintain_order=True).str.join("; ").alias("_detail"),
        )
    )
    # join a narrow frame and attach its columns: joining the wide batch would copy it whole
    aligned = frame.select("_row").join(folded, on="_row", how="left", maintain_order="left")
    return frame.with_columns(
        aligned["_reasons"].fill_null(pl.lit([], dtype=pl.List(pl.String))),
        aligned["_detail"],
    )


def _fates(frame: pl.DataFrame) -> pl.DataFrame:
    quarantined = pl.col("_reasons").list.len() > 0
    return frame.with_columns(
        pl.when(pl.col("_dup_rule") == "exact")
        .then(pl.lit(Fate.DUPLICATE.value))
        .when(quarantined)
        .then(pl.lit(Fate.QUARANTINED.value))
        .when(pl.col("_duplicate_of").is_not_null())
        .then(pl.lit(Fate.DUPLICATE.value))
        .otherwise(pl.lit(Fate.ACCEPTED.value))
        .alias("_fate"),
        pl.when(quarantined & pl.col("_dup_rule").ne_missing("exact"))
        .then(pl.col("_detail"))
        .alias("_detail"),
    ).with_columns(
        pl.when(pl.col("_fate") == Fate.DUPLICATE.value)
        .then(pl.col("_duplicate_of"))
        .alias("_duplicate_of"),
        pl.when(pl.col("_fate") == Fate.DUPLICATE.value)
        .then(pl.col("_dup_rule"))
        .alias("_dup_rule"),
        pl.when(pl.col("_fate") == Fate.QUARANTINED.value)
        .then(pl.col("_reasons"))
        .otherwise(pl.lit([], dtype=pl.List(pl.String)))
        .alias("_reasons"),
    )


def assess_events(batch: pl.DataFrame, flags: list[Flag], ctx: EventContext) -> pl.DataFrame:
    """The batch with its fate columns: ``_fate``, ``_reasons``, ``_detail``, ``_duplicate_of``,
    ``_dup_rule`` (exact or near), ``_hold_until`` (unknown items), and ``ref_event_id`` set
    on returns matched with their purchase."""
    quality = ctx.quality
    flags = list(flags)
    if "_bad_encoding" in batch.columns:
        flags.append(
            Flag(Reason.BAD_ENCODING, pl.col("_bad_encoding"), "row holds bytes that are not text")
        )
    flags += rules.required_fields(quality) + rules.values_by_type(quality)
    flags += [rules.outlier_quantities(batch, quality), rules.bot_users(batch, quality)]
    if quality.check_unknown_items and ctx.known_items is not None:
        non_products = (
            pl.col("_pre_reason") == Reason.NON_PRODUCT.value
            if "_pre_reason" in batch.columns
            else None
        )
        flags.append(rules.unknown_items(ctx.known_items, non_products=non_products))
    erased = (
        pl.col("user_id").is_in(ctx.erased_users.implode())
        if ctx.erased_users is not None and ctx.erased_users.len()
        else pl.lit(False)
    )
    flags.append(Flag(Reason.ERASED_USER, erased, "customer erased: record refused"))
    frame = _with_reasons(
        batch.with_columns(erased.alias("_erased")),
        flags,
        EVENT_SCHEMA,
        event_checks(quality, ctx.now),
        required_for_events(),
    )
    exact = exact_duplicates(frame["event_id"], ctx.seen_ids)
    frame = frame.with_columns(
        exact,
        pl.when(exact.is_not_null()).then(pl.lit("exact")).otherwise(None).alias("_dup_rule"),
    )
    clean = (pl.col("_reasons").list.len() == 0) & pl.col("_duplicate_of").is_null()

    candidates = frame.filter(clean)
    purchase_of = match_returns(candidates, ctx.stored_purchases)
    matched = candidates.select("_row").with_columns(purchase_of.alias("_purchase"))
    purchase = frame.select("_row").join(matched, on="_row", how="left", maintain_order="left")[
        "_purchase"
    ]
    frame = frame.with_columns(pl.coalesce(pl.col("ref_event_id"), purchase).alias("ref_event_id"))
    unmatched = (
        clean & (pl.col("type") == EventType.RETURN.value) & pl.col("ref_event_id").is_null()
    )
    frame = frame.with_columns(
        pl.when(unmatched)
        .then(pl.col("_reasons").list.concat(pl.lit([Reason.UNMATCHED_RETURN.value])))
        .otherwise(pl.col("_reasons"))
        .alias("_reasons"),
        pl.when(unmatched)
        .then(pl.lit("return matches no earlier purchase of this item by this customer"))
        .otherwise(pl.col("_detail"))
        .alias("_detail"),
    )

    near = near_duplicates(
        frame.with_columns(clean.alias("_candidate")),
        quality.near_duplicate_seconds,
        earlier=ctx.stored_recent,
    )
    frame = frame.with_columns(
        pl.coalesce("_duplicate_of", near).alias("_duplicate_of"),
        pl.when(pl.col("_dup_rule").is_null() & near.is_not_null())
        .then(pl.lit("near"))
        .otherwise(pl.col("_dup_rule"))
        .alias("_dup_rule"),
    )
    hold = ctx.now + timedelta(hours=quality.unknown_item_grace_hours)
    frame = _fates(frame).with_columns(
        pl.when(pl.col("_reasons").list.contains(Reason.UNKNOWN_ITEM.value))
        .then(pl.lit(hold))
        .alias("_hold_until")
    )
    return frame.drop("_row")


def assess_products(batch: pl.DataFrame, flags: list[Flag], ctx: ProductContext) -> pl.DataFrame:
    """Fate columns for products. Several clean records of one item in a batch are reconciled:
    the latest (by updated_at, then line) is kept and the others become its duplicates
    (rule ``superseded``), their titles kept as aliases of the kept one."""
    flags = list(flags)
    if "_bad_encoding" in batch.columns:
        flags.append(
            Flag(Reason.BAD_ENCODING, pl.col("_bad_encoding"), "row holds bytes that are not text")
        )
    frame = _with_reasons(
        batch, flags, PRODUCT_SCHEMA, product_checks(ctx.quality), required_for_products()
    )
    exact = exact_duplicates(frame["record_id"], ctx.seen_ids)
    frame = frame.with_columns(
        exact,
        pl.when(exact.is_not_null()).then(pl.lit("exact")).otherwise(None).alias("_dup_rule"),
    )
    clean = (pl.col("_reasons").list.len() == 0) & pl.col("_duplicate_of").is_null()
    order = frame.filter(clean).sort(["item_id", "updated_at", "_row"], nulls_last=False)
    winners = order.group_by("item_id", maintain_order=True).agg(
        pl.col("record_id").last().alias("_winner"),
        pl.col("title").last().alias("_winner_title"),
        pl.col("title").alias("_titles"),
        pl.col("aliases").list.explode(keep_nulls=False, empty_as_null=False).alias("_all_aliases"),
    )
    frame = frame.join(winners, on="item_id", how="left").sort("_row")
    superseded = clean & (pl.col("_winner") != pl.col("record_id"))
    merged_aliases = (
        pl.concat_list(pl.col("_all_aliases").fill_null([]), pl.col("_titles").fill_null([]))
        .list.unique(maintain_order=True)
        .list.set_difference(pl.concat_list(pl.col("_winner_title")))
        .list.drop_nulls()
    )
    frame = frame.with_columns(
        pl.when(superseded)
        .then(pl.col("_winner"))
        .otherwise(pl.col("_duplicate_of"))
        .alias("_duplicate_of"),
        pl.when(superseded)
        .then(pl.lit("superseded"))
        .otherwise(pl.col("_dup_rule"))
        .alias("_dup_rule"),
        pl.when(clean & ~superseded)
        .then(merged_aliases)
        .otherwise(pl.col("aliases"))
        .alias("aliases"),
    ).drop("_winner", "_winner_title", "_titles", "_all_aliases")
    return (
        _fates(frame)
        .with_columns(pl.lit(None, dtype=pl.Datetime("us", "UTC")).alias("_hold_until"))
        .drop("_row")
    )
