"""The import ledger: one row per import, opened, reconciled and closed."""

from __future__ import annotations

import json
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import duckdb
import polars as pl

from aisle.errors import AisleError, ReconciliationError
from aisle.storage.store import Store


@dataclass
class ImportResult:
    """What one import did; ``input == accepted + quarantined + duplicates`` always."""

    import_id: int
    kind: str
    source: str
    adapter: str
    input: int = 0
    accepted: int = 0
    quarantined: int = 0
    duplicates: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    duplicate_rules: dict[str, int] = field(default_factory=dict)
    released: int = 0
    pii_scrubbed: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    drift: list[dict[str, Any]] = field(default_factory=list)
    derived: list[ImportResult] = field(default_factory=list)
    #: Each input record's fate by its ``line`` (``fate``, ``reasons``, ``detail``), and the
    #: accepted records as stored: what the service answers from, without reading them back.
    records: pl.DataFrame | None = field(default=None, repr=False, compare=False)
    kept: pl.DataFrame | None = field(default=None, repr=False, compare=False)

    @property
    def rows_per_second(self) -> float:
        """Throughput of this import."""
        return self.input / self.seconds if self.seconds else 0.0

    def to_json(self) -> dict[str, Any]:
        """One JSON object for scripts and monitors."""
        return {
            "import_id": self.import_id,
            "kind": self.kind,
            "source": self.source,
            "adapter": self.adapter,
            "input": self.input,
            "accepted": self.accepted,
            "quarantined": self.quarantined,
            "quarantined_by_reason": dict(sorted(self.reasons.items())),
            "duplicates": self.duplicates,
            "duplicates_by_rule": dict(sorted(self.duplicate_rules.items())),
            "released_from_quarantine": self.released,
            "pii_scrubbed": dict(sorted(self.pii_scrubbed.items())),
            "seconds": round(self.seconds, 3),
            "rows_per_second": round(self.rows_per_second, 1),
            "notes": self.notes,
            "drift": self.drift,
            "derived": [d.to_json() for d in self.derived],
        }


def mark_interrupted(store: Store) -> None:
    """Imports still marked running were interrupted: one writer holds the store at a time."""
    store.execute(
        "UPDATE imports SET status = 'interrupted', finished_at = ? WHERE status = 'running'",
        [datetime.now(UTC)],
    )


def open_import(store: Store, kind: str, source: str, adapter: str, sha256: str | None) -> int:
    """A new import, marked running; its id."""
    import_id = int(store.scalar("SELECT nextval('import_ids')"))
    store.execute(
        "INSERT INTO imports (import_id, kind, source, adapter, sha256, status, started_at) "
        "VALUES (?, ?, ?, ?, ?, 'running', ?)",
        [import_id, kind, source, adapter, sha256, datetime.now(UTC)],
    )
    return import_id


def close_import(store: Store, result: ImportResult) -> None:
    """Record the import's counts; counts that do not reconcile are a bug and fail loudly."""
    if result.input != result.accepted + result.quarantined + result.duplicates:
        raise ReconciliationError(
            f"import {result.import_id}: input {result.input} != accepted {result.accepted}"
            f" + quarantined {result.quarantined} + duplicates {result.duplicates}"
        )
    store.execute(
        "UPDATE imports SET status = 'complete', finished_at = ?, input = ?, accepted = ?, "
        "quarantined = ?, duplicates = ?, reasons = ?, seconds = ? WHERE import_id = ?",
        [
            datetime.now(UTC),
            result.input,
            result.accepted,
            result.quarantined,
            result.duplicates,
            json.dumps(result.reasons),
            result.seconds,
            result.import_id,
        ],
    )


def fail_import(store: Store, import_id: int, error: BaseException) -> None:
    """Mark a running import failed; typed errors keep their message (never a data value)."""
    message = str(error) if isinstance(error, AisleError) else type(error).__name__
    with suppress(duckdb.Error):  # leave an aborted transaction before writing the ledger
        store.execute("ROLLBACK")
    store.execute(
        "UPDATE imports SET status = 'failed', finished_at = ?, error = ? "
        "WHERE import_id = ? AND status = 'running'",
        [datetime.now(UTC), message, import_id],
    )
