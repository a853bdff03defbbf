"""The right to erasure: every record of a customer removed, proved gone, and kept out."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from aisle.privacy import audit
from aisle.privacy.subjects import listed_among, subject_hash
from aisle.storage import Store

#: Store tables with a customer's pseudonym, and the column that holds it.
PERSONAL_TABLES = {
    "events": "user_id",
    "quarantine": "user_id",
    "duplicates": "user_id",
    "experiment_exposures": "user_id",
}


def erased_among(
    store: Store, pseudonyms: pl.Series, first_of: dict[str, str] | None = None
) -> pl.Series:
    """The pseudonyms (of those given) whose customers were erased."""
    return listed_among(store, pseudonyms, "erased_users", first_of=first_of)


@dataclass
class ErasureReceipt:
    """What an erasure removed; the same facts go to the audit log."""

    pseudonym: str
    erased_at: datetime
    removed: dict[str, int] = field(default_factory=dict)
    snapshots_rewritten: int = 0
    models: str = "models not consulted"

    def to_json(self) -> dict[str, Any]:
        """Machine-readable form (the pseudonym, never the raw id)."""
        return {
            "pseudonym": self.pseudonym,
            "erased_at": self.erased_at.isoformat(),
            "removed": self.removed,
            "snapshots_rewritten": self.snapshots_rewritten,
            "models": self.models,
        }


def _snapshots_with(store: Store, pseudonym: str) -> list[Path]:
    folder = store.home / "snapshots"
    found = []
    for path in sorted(folder.glob("*/*.parquet")) if folder.exists() else []:
        columns = pl.read_parquet_schema(path)
        if (
            "user_id" in columns
            and pl.scan_parquet(path)
            .filter(pl.col("user_id") == pseudonym)
            .select(pl.len())
            .collect()
            .item()
        ):
            found.append(path)
    return found


def erase(
    store: Store,
    pseudonym: str,
    subject: str | None = None,
    *,
    forget_in_models: Callable[[str], list[str]] | None = None,
) -> ErasureReceipt:
    """Remove the customer's events, held and duplicate records and snapshot rows, keep them
    out of later imports, and write the receipt to the audit log, all in one transaction
    (snapshots are rewritten after it commits). ``subject`` is the customer's
    first-generation pseudonym, which the erasure list keeps (hashed) across key rotations;
    with a single key it is the pseudonym itself. ``forget_in_models`` removes the customer
    from every trained model and schedules their retrain (the registry's ``forget_user``)."""
    kept_as = subject_hash(subject or pseudonym)
    receipt = ErasureReceipt(pseudonym=pseudonym, erased_at=datetime.now(UTC))
    with store.transaction():
        for table, column in PERSONAL_TABLES.items():
            count = int(
                store.scalar(f"SELECT count(*) FROM {table} WHERE {column} = ?", [pseudonym])
            )
            store.execute(f"DELETE FROM {table} WHERE {column} = ?", [pseudonym])
            receipt.removed[table] = count
        if not store.scalar("SELECT count(*) FROM erased_users WHERE subject_hash = ?", [kept_as]):
            store.execute("INSERT INTO erased_users VALUES (?, ?)", [kept_as, receipt.erased_at])
        snapshots = _snapshots_with(store, pseudonym)
        receipt.snapshots_rewritten = len(snapshots)
        if forget_in_models is not None:
            models = forget_in_models(pseudonym)
            receipt.models = (
                f"removed from {', '.join(models)}; retrain scheduled" if models
                else "no trained model knew the customer"
            )  # fmt: skip
        audit.record(store, "erasure", pseudonym, receipt.to_json())
    for path in snapshots:
        kept = pl.read_parquet(path).filter(pl.col("user_id").ne_missing(pseudonym))
        temporary = path.with_suffix(".tmp")
        kept.write_parquet(temporary, compression="zstd")
        temporary.replace(path)
    return receipt


@dataclass
class Traces:
    """Where a customer's pseudonym still appears (empty: no trace)."""

    pseudonym: str
    tables: dict[str, int] = field(default_factory=dict)  # table.column -> rows
    files: list[str] = field(default_factory=list)
    receipts: int = 0  # erasure receipts in the audit log: the record that it was done

    @property
    def clean(self) -> bool:
        """True when nothing was found."""
        return not self.tables and not self.files

    def to_json(self) -> dict[str, Any]:
        """Machine-readable form."""
        return {"pseudonym": self.pseudonym, "clean": self.clean, "tables": self.tables,
                "files": self.files, "erasure_receipts": self.receipts}  # fmt: skip


def _token(needle: str) -> str:
    """A regular expression for the needle as a whole token: a short raw id such as "17850"
    also occurs by chance inside hex ids, which is no trace of the customer."""
    return rf"(^|[^0-9A-Za-z]){re.escape(needle)}([^0-9A-Za-z]|$)"


def find_traces(store: Store, pseudonym: str, raw_id: str | None = None) -> Traces:
    """Scan every text column of every table and every file under home (snapshots, reports,
    artifacts) for the pseudonym, and for the raw id where given, each as a whole token."""
    traces = Traces(pseudonym=pseudonym)
    patterns = [_token(n) for n in (pseudonym, raw_id) if n]
    columns = store.query(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE data_type = 'VARCHAR' OR data_type LIKE 'VARCHAR%' OR data_type = 'JSON'"
    )
    for table, column in columns.iter_rows():
        if table == "audit_log":
            continue  # the erasure receipt names the pseudonym by design (see receipts)
        text = f'CAST("{column}" AS VARCHAR)'
        for pattern in patterns:
            hits = int(
                store.scalar(
                    f'SELECT count(*) FROM "{table}" WHERE regexp_matches({text}, ?)', [pattern]
                )
            )
            if hits:
                key = f"{table}.{column}"
                traces.tables[key] = traces.tables.get(key, 0) + hits
    traces.receipts = int(
        store.scalar(
            "SELECT count(*) FROM audit_log WHERE action = 'erasure' AND subject = ?", [pseudonym]
        )
    )
    for path in sorted(store.home.rglob("*")):
        if not path.is_file() or path.name.startswith("aisle.duckdb"):
            continue  # the store itself was searched column by column above
        if path.suffix == ".parquet":  # compressed: search its rows, as text
            found = any(
                store.scalar(
                    "SELECT count(*) FROM read_parquet(?) AS row "
                    "WHERE regexp_matches(CAST(row AS VARCHAR), ?)",
                    [str(path), pattern],
                )
                for pattern in patterns
            )
        else:
            data = path.read_bytes()
            found = any(re.search(pattern.encode(), data) for pattern in patterns)
        if found:
            traces.files.append(str(path))
    return traces
