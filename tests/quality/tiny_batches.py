"""Tiny CSV imports for the rule tests: canonical rows in, the store read back.

Rows go through ``ingest()`` as CSVs (the header is line 1). Every import made here must
reconcile: input == accepted + quarantined + duplicates.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from aisle.config import Settings
from aisle.pipeline import ImportResult, ingest
from aisle.storage import Store
from tests.conftest import write_csv

T0 = datetime(2024, 3, 1, 10, 0, tzinfo=UTC)
UTC_TS = pl.Datetime("us", "UTC")
EVENTS = ["user_id", "item_id", "type", "value", "price", "currency", "query", "timestamp"]
_names = itertools.count()


def iso(moment: datetime) -> str:
    """ISO 8601 text with a Z, as the canonical adapter reads it."""
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def event(**fields: Any) -> dict[str, Any]:
    """One canonical event row for write_csv: a view of A by u1 at T0 unless told otherwise."""
    row: dict[str, Any] = {"user_id": "u1", "item_id": "A", "type": "view", "timestamp": iso(T0)}
    row.update(fields)
    return row


def reconciles(result: ImportResult) -> ImportResult:
    """The import and every import it derived satisfy input == accepted + quarantined + dups."""
    for part in [*result.derived, result]:
        assert part.input == part.accepted + part.quarantined + part.duplicates, part.to_json()
    return result


def import_rows(
    settings: Settings,
    folder: Path,
    kind: str,
    rows: list[dict[str, Any]],
    *,
    header: list[str] | None = None,
    adapter: str = "canonical",
) -> ImportResult:
    """Write ``rows`` as a CSV (line 2 is the first row) and import it."""
    header = header or list(dict.fromkeys(k for row in rows for k in row))
    path = write_csv(
        folder / f"{kind}-{next(_names)}.csv", header, ([r.get(h) for h in header] for r in rows)
    )
    return reconciles(ingest(kind, path, adapter, settings))


def import_products(settings: Settings, folder: Path, rows: list[dict[str, Any]]) -> ImportResult:
    """Products through the canonical adapter."""
    return import_rows(settings, folder, "products", rows)


def quarantine_by_line(settings: Settings, import_id: int) -> dict[int, dict[str, Any]]:
    """The quarantine rows of one import keyed by source line (the CSV header is line 1)."""
    with Store(settings.home) as store:
        rows = store.query("SELECT * FROM quarantine WHERE import_id = ?", [import_id])
    return {row["line"]: row for row in rows.iter_rows(named=True)}


def duplicates_by_line(settings: Settings, import_id: int) -> dict[int, dict[str, Any]]:
    """The duplicate rows of one import keyed by source line."""
    with Store(settings.home) as store:
        rows = store.query("SELECT * FROM duplicates WHERE import_id = ?", [import_id])
    return {row["line"]: row for row in rows.iter_rows(named=True)}


def table(settings: Settings, sql: str, params: list[Any] | None = None) -> pl.DataFrame:
    """A query on the test store."""
    with Store(settings.home) as store:
        return store.query(sql, params)
