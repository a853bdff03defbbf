"""Plumbing of attribute extraction: matches become attribute rows, with their evidence."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

import polars as pl

ATTRIBUTE_SCHEMA: Final[dict[str, pl.DataType]] = {
    "item_id": pl.String(),
    "attribute": pl.String(),
    "value": pl.String(),
    "unit": pl.String(),
    "evidence": pl.String(),
    "method": pl.String(),
}


def rows(
    frame: pl.DataFrame,
    attribute: str,
    method: str,
    value: pl.Expr,
    evidence: pl.Expr,
    *,
    unit: pl.Expr | None = None,
) -> pl.DataFrame:
    """Attribute rows from per-product expressions; rows without a value are dropped."""
    return (
        frame.select(
            "_row",
            "item_id",
            attribute=pl.lit(attribute),
            value=value,
            unit=unit if unit is not None else pl.lit(None, dtype=pl.String),
            evidence=evidence,
            method=pl.lit(method),
        )
        .filter(pl.col("value").is_not_null() & (pl.col("value") != ""))
        .cast(pl.Schema(ATTRIBUTE_SCHEMA))
    )


def matches(frame: pl.DataFrame, text: pl.Expr, pattern: str) -> pl.DataFrame:
    """One row per match of ``pattern`` in ``text``: ``_row``, ``item_id``, ``m``."""
    return (
        frame.select("_row", "item_id", text.str.extract_all(pattern).alias("m"))
        .explode("m")
        .drop_nulls("m")
    )


def found(
    matches: pl.DataFrame,
    attribute: str,
    method: str,
    value: pl.Expr,
    *,
    unit: pl.Expr | None = None,
) -> pl.DataFrame:
    """Attribute rows from matches, the match being the evidence."""
    return rows(matches, attribute, method, value, pl.col("m"), unit=unit)


def concat(parts: Iterable[pl.DataFrame]) -> pl.DataFrame:
    frames = list(parts)
    if not frames:
        return pl.DataFrame(schema={"_row": pl.Int64, **ATTRIBUTE_SCHEMA})
    return pl.concat(frames)
