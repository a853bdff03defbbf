"""Casting an adapter's columns onto a canonical schema, recording what does not cast."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from aisle.domain import EVENT_SCHEMA, PRODUCT_SCHEMA, EpochUnit, Reason, RecordKind
from aisle.text import clean_text_columns


@dataclass(frozen=True)
class Flag:
    """One rule's verdict on a batch: rows where ``mask`` holds get ``reason`` and ``detail``."""

    reason: Reason
    mask: pl.Expr
    detail: pl.Expr | str


def _parse_timestamp(
    column: pl.Expr, dtype: pl.DataType, fmt: str | None, zone: str, epoch_unit: EpochUnit
) -> pl.Expr:
    if dtype.is_integer() or dtype.is_float():
        return pl.from_epoch(column.cast(pl.Int64), time_unit=epoch_unit).dt.replace_time_zone(
            "UTC"
        )
    if isinstance(dtype, pl.Datetime):
        stamped = column if dtype.time_zone else column.dt.replace_time_zone(zone)
        return stamped.dt.convert_time_zone("UTC").dt.cast_time_unit("us")
    text = column.cast(pl.String).str.strip_chars()
    if fmt is not None:
        naive = text.str.strptime(pl.Datetime("us"), fmt, strict=False)
        return _to_utc(naive, zone)
    # ISO 8601 with or without an offset ("Z" included), a date alone, or epoch seconds
    iso = text.str.replace(r"[zZ]$", "+00:00").str.replace(" ", "T", literal=True)
    aware = iso.str.strptime(pl.Datetime("us", "UTC"), "%Y-%m-%dT%H:%M:%S%.f%z", strict=False)
    naive = pl.coalesce(
        iso.str.strptime(pl.Datetime("us"), "%Y-%m-%dT%H:%M:%S%.f", strict=False),
        iso.str.strptime(pl.Datetime("us"), "%Y-%m-%dT%H:%M", strict=False),
        iso.str.strptime(pl.Datetime("us"), "%Y-%m-%d", strict=False),
    )
    # epoch numbers count from 1970-01-01 UTC: the source's zone does not apply to them
    epoch = pl.from_epoch(text.cast(pl.Int64, strict=False), time_unit=epoch_unit)
    return pl.coalesce(aware, _to_utc(naive, zone), _to_utc(epoch, "UTC"))


def _to_utc(naive: pl.Expr, zone: str) -> pl.Expr:
    return (
        naive.dt.replace_time_zone(zone, ambiguous="earliest", non_existent="null")
        .dt.convert_time_zone("UTC")
        .dt.cast_time_unit("us")
    )


def coerce(
    frame: pl.DataFrame,
    schema: dict[str, pl.DataType],
    *,
    timestamp_format: str | None = None,
    timezone: str = "UTC",
    epoch_unit: EpochUnit = "s",
) -> tuple[pl.DataFrame, list[Flag]]:
    """The frame cast to ``schema`` (missing columns null) and a flag per field that failed.

    A value fails when it was present in the source but is null after the cast, so a field
    that was simply empty counts as missing (a later rule), not as a type error.
    """
    staged: dict[str, pl.Expr | pl.Series] = {}
    reasons: dict[str, Reason] = {}
    for name, dtype in schema.items():
        if name not in frame.columns or frame.schema[name] == dtype:
            continue
        source_dtype = frame.schema[name]
        column = pl.col(name)
        if source_dtype.is_nested() and not _fits(source_dtype, dtype):
            # an array or object where a plain value belongs: that record fails, not the batch
            staged[name] = pl.lit(None, dtype=dtype)
            timestamp = isinstance(dtype, pl.Datetime)
            reasons[name] = Reason.BAD_TIMESTAMP if timestamp else Reason.BAD_TYPE
            continue
        if isinstance(dtype, pl.Datetime):
            cast = _parse_timestamp(column, source_dtype, timestamp_format, timezone, epoch_unit)
            staged[name] = _once_per_value(frame[name], cast) if source_dtype == pl.String else cast
            reasons[name] = Reason.BAD_TIMESTAMP
            continue
        if source_dtype == pl.String and dtype == pl.Boolean:
            lowered = column.str.strip_chars().str.to_lowercase()
            cast = (
                pl.when(lowered.is_in(["1", "true", "yes", "y", "t"]))
                .then(True)
                .when(lowered.is_in(["0", "false", "no", "n", "f"]))
                .then(False)
                .otherwise(None)
            )
        elif source_dtype == pl.String and dtype.is_numeric():
            # no thousands separators are guessed: "1,5" may be 1.5 or 15, so it fails loudly
            cast = column.str.strip_chars().cast(dtype, strict=False)
        else:
            cast = column.cast(dtype, strict=False)
        staged[name] = cast
        reasons[name] = Reason.BAD_TYPE
    # cast once into side columns, then judge each against its source
    cast_frame = frame.with_columns(
        (v.alias(f"_cast_{k}") if isinstance(v, pl.Expr) else v.rename(f"_cast_{k}"))
        for k, v in staged.items()
    )
    flags: list[Flag] = []
    masks: list[pl.Expr] = []
    for index, (name, reason) in enumerate(reasons.items()):
        column = pl.col(name)
        present = column.is_not_null()
        if frame.schema[name] == pl.String:
            present = present & (column.str.strip_chars() != "")
        masks.append((present & pl.col(f"_cast_{name}").is_null()).alias(f"_m{index}"))
        detail = f"field {name!r}: cannot read as {schema[name]}"
        flags.append(Flag(reason, pl.col(f"_m{index}"), detail))
    columns = [
        pl.col(f"_cast_{name}").alias(name)
        if name in staged
        else pl.col(name)
        if name in frame.columns
        else pl.lit(None, dtype=dtype).alias(name)
        for name, dtype in schema.items()
    ]
    return cast_frame.select(pl.col("_line"), *columns, *masks), flags


def _fits(source: pl.DataType, target: pl.DataType) -> bool:
    """Whether a nested source column casts onto ``target``: a list of plain values onto a
    list."""
    return (
        isinstance(source, pl.List) and isinstance(target, pl.List) and not source.inner.is_nested()
    )


def _once_per_value(values: pl.Series, parse: pl.Expr) -> pl.Series | pl.Expr:
    """``parse`` applied once per distinct value when values repeat (timestamps of one
    invoice, one minute): parsing with time zones costs far more than a lookup."""
    distinct = values.unique()
    if values.len() == 0 or distinct.len() * 4 > values.len():
        return parse
    parsed = distinct.to_frame().select(parse.alias("_parsed")).to_series()
    return values.replace_strict(distinct, parsed, return_dtype=parsed.dtype)


#: Text fields normalised (NFKC, whitespace) on every record of each kind.
_TEXT = {
    RecordKind.EVENTS: ("query", "session_id", "item_id", "currency", "type"),
    RecordKind.PRODUCTS: ("item_id", "title", "description", "brand", "currency"),
}
_SCHEMAS = {RecordKind.EVENTS: EVENT_SCHEMA, RecordKind.PRODUCTS: PRODUCT_SCHEMA}
#: Columns an adapter or reader adds that later rules read.
_CARRIED = ("_pre_reason", "_bad_encoding")


def to_records(
    canonical: pl.DataFrame,
    kind: RecordKind,
    *,
    timestamp_format: str | None = None,
    timezone: str = "UTC",
    epoch_unit: EpochUnit = "s",
) -> tuple[pl.DataFrame, list[Flag]]:
    """An adapter's output as typed, normalised records of ``kind``, and the cast failures."""
    typed, flags = coerce(
        canonical,
        _SCHEMAS[kind],
        timestamp_format=timestamp_format,
        timezone=timezone,
        epoch_unit=epoch_unit,
    )
    carried = [c for c in _CARRIED if c in canonical.columns]
    typed = clean_text_columns(typed.with_columns(canonical.select(carried)), _TEXT[kind])
    return typed, flags
