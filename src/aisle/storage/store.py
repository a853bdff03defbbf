"""The embedded DuckDB store: one file under home, migrated on open, one writer at a time."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from aisle.errors import StoreError
from aisle.storage.migrations import MIGRATIONS

DB_FILE = "aisle.duckdb"


class Store:
    """A DuckDB database at ``home/aisle.duckdb`` holding events, products and the ledger."""

    def __init__(self, home: Path | str, *, read_only: bool = False) -> None:
        self.home = Path(home)
        self.path = self.home / DB_FILE
        if read_only and not self.path.exists():
            raise StoreError(f"no store at {self.path}; run `aisle ingest` first")
        self.home.mkdir(parents=True, exist_ok=True)
        try:
            self.con = duckdb.connect(str(self.path), read_only=read_only)
        except duckdb.IOException as exc:
            raise StoreError(
                f"cannot open {self.path}: {exc}. Another aisle process may hold it."
            ) from exc
        self._depth = 0
        self.con.execute("SET TimeZone = 'UTC'")
        if not read_only:
            self._migrate()

    def _migrate(self) -> None:
        self.con.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER)")
        current = self.scalar("SELECT max(version) FROM schema_version") or 0
        for version, ddl in enumerate(MIGRATIONS[current:], start=current + 1):
            with self.transaction():
                self.con.execute(ddl)
                self.con.execute("INSERT INTO schema_version VALUES (?)", [version])

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """All or nothing: a crash or Ctrl-C inside leaves the store as it was.

        Nested uses join the outermost transaction.
        """
        if self._depth:
            self._depth += 1
            try:
                yield self.con
            finally:
                self._depth -= 1
            return
        self.con.execute("BEGIN TRANSACTION")
        self._depth = 1
        try:
            yield self.con
        except BaseException:
            # an interrupted statement may have ended the transaction already
            with suppress(duckdb.Error):
                self.con.execute("ROLLBACK")
            raise
        finally:
            self._depth = 0
        self.con.execute("COMMIT")

    def query(self, sql: str, params: list[Any] | None = None) -> pl.DataFrame:
        """Run a query and return the result as a Polars frame."""
        relation = self.con.sql(sql, params=params or None)
        if relation is None:
            raise StoreError(f"statement returns no rows: {sql[:60]}")
        frame: pl.DataFrame = relation.pl()
        return frame

    def scalar(self, sql: str, params: list[Any] | None = None) -> Any:
        """Run a query that returns one value."""
        rows = self.con.execute(sql, params or []).fetchall()
        return rows[0][0] if rows else None

    def execute(self, sql: str, params: list[Any] | None = None) -> None:
        """Run a statement, discarding any result."""
        self.con.execute(sql, params or []).fetchall()

    @contextmanager
    def registered(self, name: str, frame: pl.DataFrame) -> Iterator[None]:
        """Make a frame visible to SQL as ``name`` for the duration of the block."""
        self.con.register(name, frame.to_arrow())
        try:
            yield
        finally:
            # in an aborted transaction unregister fails too; the error that aborted it matters
            with suppress(duckdb.Error):
                self.con.unregister(name)

    def append(self, table: str, frame: pl.DataFrame) -> None:
        """Append a frame whose columns are a subset of the table's, by name."""
        if frame.height == 0:
            return
        names = ", ".join(f'"{c}"' for c in frame.columns)
        with self.registered("_append_frame", frame):
            self.execute(f"INSERT INTO {table} ({names}) SELECT {names} FROM _append_frame")

    def close(self) -> None:
        """Close the connection (checkpointing the write-ahead log)."""
        self.con.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
