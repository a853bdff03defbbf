"""Text normalisation shared by every stage: Unicode NFKC, collapsed whitespace, blanks missing."""

from __future__ import annotations

import polars as pl


def clean_text(expr: pl.Expr) -> pl.Expr:
    """NFKC, every run of whitespace (tabs, newlines, NBSP) to one space, trimmed, "" -> null."""
    text = expr.str.normalize("NFKC").str.replace_all(r"\s+", " ").str.strip_chars()
    return pl.when(text == "").then(None).otherwise(text)


def clean_series(values: pl.Series) -> pl.Series:
    """clean_text over a column, computed once per distinct value when values repeat."""
    name = values.name
    distinct = values.unique()
    if distinct.len() * 2 > values.len():
        return values.to_frame().select(clean_text(pl.col(name)).alias(name)).to_series()
    cleaned = distinct.to_frame().select(clean_text(pl.col(name)).alias(name)).to_series()
    return values.replace_strict(distinct, cleaned, return_dtype=pl.String).alias(name)


def clean_text_columns(frame: pl.DataFrame, columns: tuple[str, ...]) -> pl.DataFrame:
    """Normalise the listed string columns that the frame has."""
    present = [
        c
        for c in columns
        if c in frame.columns
        and frame.schema[c] == pl.String
        and frame[c].null_count() < frame.height  # an empty column has nothing to clean
    ]
    return frame.with_columns(clean_series(frame[c]) for c in present)
