"""pandera schemas of canonical records; their failure cases become quarantine reasons."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pandera.polars as pa
import polars as pl

from aisle.config import QualitySettings
from aisle.domain import EVENT_REQUIRED, PRODUCT_REQUIRED, EventType, Reason


@dataclass(frozen=True)
class SchemaCheck:
    """A column check and the reason its failures are quarantined for."""

    column: str
    check: pa.Check
    reason: Reason


def event_checks(quality: QualitySettings, now: datetime) -> list[SchemaCheck]:
    """Declarative checks on single event columns."""
    oldest = quality.oldest_timestamp.replace(tzinfo=quality.oldest_timestamp.tzinfo or UTC)
    latest = now + timedelta(seconds=quality.max_future_seconds)
    return [
        SchemaCheck("type", pa.Check.isin([t.value for t in EventType]), Reason.BAD_EVENT_TYPE),
        SchemaCheck("price", pa.Check.le(quality.max_price), Reason.ABSURD_PRICE),
        SchemaCheck("timestamp", pa.Check.le(latest), Reason.FUTURE_TIMESTAMP),
        SchemaCheck("timestamp", pa.Check.ge(oldest), Reason.ANCIENT_TIMESTAMP),
        SchemaCheck("currency", pa.Check.str_matches(r"^[A-Z]{3}$"), Reason.BAD_TYPE),
    ]


def product_checks(quality: QualitySettings) -> list[SchemaCheck]:
    """Declarative checks on single product columns."""
    return [
        SchemaCheck("price", pa.Check.gt(0), Reason.NONPOSITIVE_PRICE),
        SchemaCheck("price", pa.Check.le(quality.max_price), Reason.ABSURD_PRICE),
        SchemaCheck("currency", pa.Check.str_matches(r"^[A-Z]{3}$"), Reason.BAD_TYPE),
    ]


def _build(
    schema: dict[str, pl.DataType], checks: list[SchemaCheck], required: tuple[str, ...]
) -> tuple[pa.DataFrameSchema, dict[tuple[str, int], SchemaCheck]]:
    columns: dict[str, pa.Column] = {}
    index: dict[tuple[str, int], SchemaCheck] = {}
    for name, dtype in schema.items():
        mine = [c for c in checks if c.column == name]
        for number, check in enumerate(mine):
            index[(name, number)] = check
        columns[name] = pa.Column(
            dtype, checks=[c.check for c in mine], nullable=name not in required
        )
    return pa.DataFrameSchema(columns, strict=False), index


def schema_reasons(
    frame: pl.DataFrame,
    schema: dict[str, pl.DataType],
    checks: list[SchemaCheck],
    required: tuple[str, ...],
) -> pl.DataFrame:
    """Validate with pandera; one row per failure: row index (``_row``), reason, detail."""
    model, index = _build(schema, checks, required)
    empty = pl.DataFrame(schema={"_row": pl.UInt32, "reason": pl.String, "detail": pl.String})
    try:
        model.validate(frame.select(list(schema)), lazy=True)
    except pa.errors.SchemaErrors as errors:
        failures: pl.DataFrame = errors.failure_cases
        cases = failures.filter(pl.col("index").is_not_null())
    else:
        return empty
    if cases.height == 0:
        return empty
    mapping = pl.DataFrame(
        {
            "column": [k[0] for k in index],
            "check_number": [k[1] for k in index],
            "reason": [v.reason.value for v in index.values()],
        },
        schema={"column": pl.String, "check_number": pl.Int32, "reason": pl.String},
    )
    cases = cases.join(mapping, on=["column", "check_number"], how="left").with_columns(
        pl.when(pl.col("check") == "not_nullable")
        .then(pl.lit(Reason.MISSING_FIELD.value))
        .otherwise(pl.col("reason").fill_null(Reason.BAD_TYPE.value))
        .alias("reason"),
        pl.format("field '{}': failed {}", pl.col("column"), pl.col("check")).alias("detail"),
    )
    return cases.select(
        pl.col("index").cast(pl.UInt32).alias("_row"), pl.col("reason"), pl.col("detail")
    )


def required_for_events() -> tuple[str, ...]:
    """Event fields pandera holds non-null (item_id is checked per type by the rules)."""
    return tuple(f for f in EVENT_REQUIRED if f not in {"item_id", "user_id"})


def required_for_products() -> tuple[str, ...]:
    """Product fields pandera holds non-null."""
    return PRODUCT_REQUIRED


def _register_backends() -> None:
    """pandera registers its Polars backends (and imports its strategies, where hypothesis is
    installed) on the first validation; pay that once at import, not inside an import batch."""
    schema = pa.DataFrameSchema({"x": pa.Column(pl.Int64, checks=pa.Check.ge(0))})
    schema.validate(pl.DataFrame({"x": [0]}))


_register_backends()
