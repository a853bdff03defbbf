"""Exact duplicates (same record id) and near duplicates (same user, item, type in a window)."""

from __future__ import annotations

import polars as pl


def exact_duplicates(ids: pl.Series, seen: pl.Series) -> pl.Series:
    """For each id, the id it duplicates (itself when already stored or earlier in the batch)."""
    repeated = ~ids.is_first_distinct()
    if seen.len():
        repeated = repeated | ids.is_in(seen.implode())
    return pl.select(pl.when(repeated).then(ids).otherwise(None).alias("_duplicate_of")).to_series()


def near_duplicates(
    frame: pl.DataFrame,
    windows: dict[str, float],
    *,
    earlier: pl.DataFrame | None = None,
    id_column: str = "event_id",
) -> pl.Series:
    """For rows ``_candidate``, the id of the first event of their burst, or null.

    A burst is a run of events of one user on one item with one type where each follows the
    previous within that type's window. Types without a window are never near duplicates.
    ``earlier`` holds stored events (id, user_id, item_id, type, timestamp) that a burst may
    have started with, so a click repeated just after the last import is caught too.
    """
    if not windows:
        return pl.Series("_near_of", [None] * frame.height, dtype=pl.String)
    window = pl.col("type").replace_strict(windows, default=None, return_dtype=pl.Float64)
    keys = ["user_id", "item_id", "type"]
    batch = (
        frame.select(id_column, *keys, "timestamp", "_candidate")
        .with_row_index("_pos")
        .filter(pl.col("_candidate"))
        .drop("_candidate")
    )
    if earlier is not None and earlier.height:
        stored = earlier.select(id_column, *keys, "timestamp").with_columns(
            pl.lit(None, dtype=batch.schema["_pos"]).alias("_pos")
        )
        batch = pl.concat([stored, batch], how="diagonal_relaxed")
    ordered = (
        batch.with_columns(window.alias("_window"))
        .filter(pl.col("_window").is_not_null())
        .sort([*keys, "timestamp", "_pos"], nulls_last=False)
    )
    # sorted, each (user, item, type) is one run of rows: comparing a row with the one before
    # finds where runs and bursts begin, with no grouping by three text columns
    same = pl.all_horizontal(pl.col(k).eq_missing(pl.col(k).shift(1)) for k in keys)
    gap = (pl.col("timestamp") - pl.col("timestamp").shift(1)).dt.total_microseconds()
    begins = ~same | gap.is_null() | (gap > pl.col("_window") * 1_000_000)
    near = (
        ordered.select(
            "_pos",
            id_column,
            pl.when(begins).then(pl.col(id_column)).forward_fill().alias("_first"),
        )
        .filter(pl.col("_pos").is_not_null() & (pl.col("_first") != pl.col(id_column)))
        .select("_pos", "_first")
    )
    found = pl.repeat(None, frame.height, dtype=pl.String, eager=True).alias("_near_of")
    if near.height:
        found = found.scatter(near["_pos"], near["_first"])
    return found
