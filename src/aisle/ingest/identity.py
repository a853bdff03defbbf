"""Stable record ids: the source's own id, or a hash of the record's content."""

from __future__ import annotations

import threading

import duckdb
import polars as pl

_hasher: duckdb.DuckDBPyConnection | None = None
_hasher_lock = threading.Lock()


def _cursor() -> duckdb.DuckDBPyConnection:
    """A cursor on one in-memory database kept for hashing: opening a database costs ~15 ms,
    a cursor on an open one next to nothing, and each thread gets its own."""
    global _hasher  # noqa: PLW0603 (one per process, made on first use)
    with _hasher_lock:
        if _hasher is None:
            _hasher = duckdb.connect()
        return _hasher.cursor()


def content_ids(frame: pl.DataFrame, columns: list[str], namespace: str) -> pl.Series:
    """md5 (hex) of ``namespace`` and the listed columns of each row, stable across versions.

    Computed in DuckDB, whose md5 is vectorised and does not change between releases (unlike
    Polars' ``hash``), so re-importing a file years later finds the same ids.
    """
    if frame.height == 0:
        return pl.Series("id", [], dtype=pl.String)
    con = _cursor()
    try:
        con.register("rows", frame.select(columns).to_arrow())
        quoted = [c.replace('"', '""') for c in columns]  # a quote in a source's field name
        parts = ", ".join(f'coalesce(CAST("{c}" AS VARCHAR), chr(0))' for c in quoted)
        relation = con.sql(
            f"SELECT md5(concat_ws(chr(31), ?, {parts})) AS id FROM rows", params=[namespace]
        )
        ids: pl.Series = relation.pl()["id"]
        return ids
    finally:
        con.close()
