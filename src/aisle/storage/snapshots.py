"""Parquet snapshots of the store: every table, as it is now, for other tools to read."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from aisle.storage.store import Store

#: Tables a snapshot carries: everything but the schema bookkeeping.
SNAPSHOT_TABLES = (
    "imports", "events", "products", "product_versions", "product_sources", "product_history",
    "product_conflicts", "quarantine", "duplicates",
    "profiles", "drift", "judgments",
)  # fmt: skip


def snapshot(store: Store, directory: Path | None = None) -> Path:
    """Write each table to ``<dir>/<table>.parquet`` (zstd) and return the folder.

    The default folder is ``<home>/snapshots/<UTC time>``. Customer ids are pseudonyms in the
    store, so they are pseudonyms here too.
    """
    folder = directory or store.home / "snapshots" / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    folder.mkdir(parents=True, exist_ok=True)
    for table in SNAPSHOT_TABLES:
        target = (folder / f"{table}.parquet").as_posix().replace("'", "''")
        store.execute(f"COPY {table} TO '{target}' (FORMAT parquet, COMPRESSION zstd)")
    return folder
