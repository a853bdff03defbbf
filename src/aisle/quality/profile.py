"""Column profiles of an import batch: null rates, ranges, quantile sketches and top values."""

from __future__ import annotations

import json
import math
from datetime import date, datetime
from typing import Any, Final

import numpy as np
import polars as pl

from aisle.storage.store import Store

#: Quantile sketch resolution: 0%, 1%, ..., 100%.
QUANTILES: Final = 101
#: Categorical columns keep this many most frequent values; the rest count as ``OTHER``.
TOP_N: Final = 20
OTHER: Final = "__other__"
#: Identifier columns get counts only: their values are per-record, and user ids are pseudonyms
#: that must never be copied into a profile.
IDENTIFIER_COLUMNS: Final = frozenset(
    {"event_id", "user_id", "session_id", "record_id", "ref_event_id"}
)


def _role(name: str, dtype: pl.DataType) -> str:
    """What a column is, for profiling: identifier, numeric, temporal, categorical, nested."""
    if name in IDENTIFIER_COLUMNS:
        return "identifier"
    if dtype.is_nested():
        return "nested"
    if dtype == pl.Boolean or isinstance(dtype, pl.String | pl.Categorical | pl.Enum):
        return "categorical"
    if dtype.is_numeric():
        return "numeric"
    if isinstance(dtype, pl.Datetime | pl.Date):
        return "temporal"
    return "other"


def _as_number(name: str, role: str) -> pl.Expr:
    """The column as finite float64 values (datetimes as epoch seconds), nulls dropped."""
    col = pl.col(name)
    if role == "temporal":
        col = col.dt.epoch("us") / 1e6
    values = col.cast(pl.Float64)
    return values.filter(values.is_finite())


def _base_stats(name: str, role: str) -> pl.Expr:
    """One struct of the scalar statistics of a column, computed in the shared select."""
    col = pl.col(name)
    fields: dict[str, pl.Expr] = {"nulls": col.null_count()}
    if role != "nested":
        fields["distinct"] = col.drop_nulls().n_unique()
    if role == "numeric":
        finite = _as_number(name, role)
        fields |= {"min": finite.min(), "max": finite.max(), "mean": finite.mean()}
    elif role == "temporal":
        fields |= {"min": col.min(), "max": col.max()}
    if role in ("numeric", "temporal"):
        fields["finite"] = _as_number(name, role).len()
    return pl.struct([expr.alias(key) for key, expr in fields.items()]).alias(name)


def _quantile_sketch(name: str, role: str) -> list[pl.Expr]:
    """Lower and upper order statistics around each of the 101 quantile positions.

    The aliases hold a NUL so that they cannot clash with a real column's name.
    """
    values = _as_number(name, role).sort()
    position = pl.int_range(0, QUANTILES) * (values.len() - 1) / (QUANTILES - 1)
    return [
        values.gather(position.floor().cast(pl.Int64)).implode().alias(f"{name}\x00lo"),
        values.gather(position.ceil().cast(pl.Int64)).implode().alias(f"{name}\x00hi"),
        position.implode().alias(f"{name}\x00pos"),
    ]


def _top_values(name: str) -> pl.Expr:
    """The TOP_N most frequent non-null values with their counts, as one list cell."""
    values = pl.col(name).cast(pl.String).drop_nulls().alias("value")
    return values.value_counts(sort=True, name="count").head(TOP_N).implode().alias(name)


def _jsonable(value: Any) -> Any:
    """A JSON-safe scalar: non-finite floats become None, datetimes ISO text."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def _interpolate(lo: list[float], hi: list[float], pos: list[float]) -> list[float]:
    """Linear interpolation between the order statistics, as numpy's default quantile does."""
    if not lo:
        return []
    low, high, where = np.asarray(lo), np.asarray(hi), np.asarray(pos)
    weight = where - np.floor(where)
    return [float(v) for v in (low + (high - low) * weight).tolist()]


def profile_frame(frame: pl.DataFrame, kind: str) -> dict[str, dict[str, Any]]:
    """Profile every public column of a batch (columns starting with ``_`` are lineage).

    Per column: ``dtype``, ``role``, ``count`` (rows), ``nulls``, ``null_rate`` and, except for
    list/struct columns, ``distinct``. Numeric and datetime columns add ``min``, ``max``,
    ``mean`` (numeric only) and ``quantiles`` (101 floats; datetimes as epoch seconds).
    Categorical columns add ``top``: the 20 most frequent values with counts plus ``__other__``.
    ``kind`` (events or products) is recorded in each column's stats.
    """
    roles = {c: _role(c, frame.schema[c]) for c in frame.columns if not c.startswith("_")}
    if not roles:
        return {}
    lazy = frame.lazy()
    base = lazy.select([_base_stats(c, r) for c, r in roles.items()]).collect().row(0, named=True)
    ranged = [c for c, r in roles.items() if base[c].pop("finite", 0)]
    labelled = [c for c, r in roles.items() if r == "categorical"]
    wide = [e for c in ranged for e in _quantile_sketch(c, roles[c])]
    wide += [_top_values(c) for c in labelled]
    cells = lazy.select(wide).collect().row(0) if wide else ()
    sketches, tops = cells[: 3 * len(ranged)], cells[3 * len(ranged) :]

    rows = frame.height
    profile: dict[str, dict[str, Any]] = {}
    for name, role in roles.items():
        stats = base[name]
        nulls = int(stats.pop("nulls"))
        entry: dict[str, Any] = {
            "kind": kind,
            "dtype": str(frame.schema[name]),
            "role": role,
            "count": rows,
            "nulls": nulls,
            "null_rate": nulls / rows if rows else 0.0,
        }
        entry |= {k: _jsonable(v) for k, v in stats.items()}
        profile[name] = entry
    for name, role in roles.items():
        if role in ("numeric", "temporal"):
            profile[name]["quantiles"] = []
    for i, name in enumerate(ranged):
        lo, hi, pos = sketches[3 * i : 3 * i + 3]
        profile[name]["quantiles"] = _interpolate(lo, hi, pos)
    for name, counted in zip(labelled, tops, strict=True):
        top = {str(row["value"]): int(row["count"]) for row in counted}
        top[OTHER] = rows - profile[name]["nulls"] - sum(top.values())
        profile[name]["top"] = top
    return profile


def save_profile(
    store: Store, import_id: int, kind: str, profile: dict[str, dict[str, Any]]
) -> None:
    """Store a profile (one row per column, stats as JSON), replacing any earlier one."""
    frame = pl.DataFrame(
        {
            "import_id": [import_id] * len(profile),
            "kind": [kind] * len(profile),
            "column_name": list(profile),
            "stats": [json.dumps(stats, allow_nan=False) for stats in profile.values()],
        },
        schema={
            "import_id": pl.Int32,
            "kind": pl.String,
            "column_name": pl.String,
            "stats": pl.String,
        },
    )
    with store.transaction():
        store.execute("DELETE FROM profiles WHERE import_id = ?", [import_id])
        store.append("profiles", frame)


def load_profile(store: Store, import_id: int) -> dict[str, dict[str, Any]]:
    """The stored profile of an import, ``{column: stats}``; empty when it has none."""
    rows = store.query(
        "SELECT column_name, stats::VARCHAR AS stats FROM profiles WHERE import_id = ? "
        "ORDER BY rowid",
        [import_id],
    )
    return {
        name: json.loads(stats)
        for name, stats in zip(rows["column_name"], rows["stats"], strict=True)
    }
