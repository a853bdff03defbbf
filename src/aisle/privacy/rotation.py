"""Key rotation: a new key re-keys every pseudonym in the store, snapshots included.

The store records the fingerprints of the key chain its pseudonyms were made with. A chain
that extends it is a rotation still to apply; any other chain is the wrong key, and nothing
is pseudonymised with it (that would split one customer into two).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import polars as pl

from aisle.config import Settings
from aisle.errors import KeyRotationPendingError, SecretKeyError
from aisle.privacy import audit
from aisle.privacy.erasure import PERSONAL_TABLES
from aisle.privacy.pseudonymise import Pseudonymiser, add_key, load_keys
from aisle.storage import Store


def _stored(store: Store) -> list[str] | None:
    text = store.scalar("SELECT fingerprints FROM key_state ORDER BY generation DESC LIMIT 1")
    return None if text is None else list(json.loads(text))


def _record(store: Store, pseudonymiser: Pseudonymiser) -> None:
    store.execute(
        "INSERT INTO key_state VALUES (?, ?, ?)",
        [pseudonymiser.generation, json.dumps(pseudonymiser.fingerprints()), datetime.now(UTC)],
    )


def pseudonymiser_for(store: Store, settings: Settings) -> Pseudonymiser:
    """The configured key chain, checked against the one the store was made with."""
    pseudonymiser = Pseudonymiser(load_keys(settings))
    stored = _stored(store)
    current = pseudonymiser.fingerprints()
    if stored is None:
        _record(store, pseudonymiser)
    elif current[: len(stored)] != stored:
        raise SecretKeyError(
            "the configured key is not the one this store's customer ids were pseudonymised "
            f"with; restore it (the key file in {store.home} or AISLE_SECRET_KEY)"
        )
    elif len(current) > len(stored):
        raise KeyRotationPendingError(
            f"the key chain has {len(current) - len(stored)} new key(s) the store does not "
            "use yet; run `aisle privacy rotate-key`"
        )
    return pseudonymiser


@dataclass(frozen=True)
class RotationOutcome:
    """What a rotation re-keyed (never any key material)."""

    generation: int
    customers: int
    rows: dict[str, int]
    payloads: int
    snapshot_files: int

    def to_json(self) -> dict[str, Any]:
        """Machine-readable form."""
        return {"generation": self.generation, "customers": self.customers, "rows": self.rows,
                "payloads": self.payloads, "snapshot_files": self.snapshot_files}  # fmt: skip


def rotate(store: Store, settings: Settings) -> RotationOutcome:
    """Add a key to the key file (or take the one added to AISLE_SECRET_KEY) and re-key every
    stored pseudonym with it, in one transaction; snapshots are rewritten after it commits."""
    stored = _stored(store)
    pseudonymiser = Pseudonymiser(load_keys(settings))
    if stored is None or stored == pseudonymiser.fingerprints():
        if stored is None:
            _record(store, pseudonymiser)
        add_key(settings)
        pseudonymiser = Pseudonymiser(load_keys(settings))
    current = pseudonymiser.fingerprints()
    stored = _stored(store) or current[:1]
    if current[: len(stored)] != stored:
        raise SecretKeyError("the configured key chain does not extend the store's; not rotating")
    start = len(stored)
    olds = pl.concat(
        [
            store.query(f"SELECT DISTINCT {c} AS old FROM {t} WHERE {c} IS NOT NULL")
            for t, c in PERSONAL_TABLES.items()
        ]
    ).unique()["old"]
    mapping = pl.DataFrame(
        {"old": olds, "new": [pseudonymiser.rekey(p, start) for p in olds.to_list()]},
        schema={"old": pl.String, "new": pl.String},
    )
    rows: dict[str, int] = {}
    with store.transaction():
        with store.registered("_rekey", mapping):
            for table, column in PERSONAL_TABLES.items():
                rows[table] = int(
                    store.scalar(f"SELECT count(*) FROM {table} WHERE {column} IS NOT NULL")
                )
                store.execute(
                    f"UPDATE {table} SET {column} = m.new FROM _rekey m "
                    f"WHERE {table}.{column} = m.old"
                )
        held = store.query("SELECT rowid AS r, payload FROM quarantine WHERE payload IS NOT NULL")
        payloads = 0
        if held.height and mapping.height:
            rewritten = held.with_columns(
                pl.col("payload").str.replace_many(
                    mapping["old"].to_list(), mapping["new"].to_list()
                )
            )
            with store.registered("_payloads", rewritten):
                store.execute(
                    "UPDATE quarantine SET payload = p.payload FROM _payloads p "
                    "WHERE quarantine.rowid = p.r"
                )
            payloads = held.height
        _record(store, pseudonymiser)
        outcome = RotationOutcome(pseudonymiser.generation, mapping.height, rows, payloads,
                                  _rewrite_snapshots(store, mapping, dry_run=True))  # fmt: skip
        audit.record(store, "key_rotation", None, outcome.to_json())
    _rewrite_snapshots(store, mapping, dry_run=False)
    return outcome


def _rewrite_snapshots(store: Store, mapping: pl.DataFrame, *, dry_run: bool) -> int:
    folder = store.home / "snapshots"
    paths = sorted(folder.glob("*/*.parquet")) if folder.exists() else []
    touched = 0
    for path in paths:
        columns = pl.read_parquet_schema(path)
        if "user_id" not in columns and "payload" not in columns:
            continue
        touched += 1
        if dry_run:
            continue
        frame = pl.read_parquet(path)
        if "user_id" in columns:
            frame = frame.with_columns(pl.col("user_id").replace(mapping["old"], mapping["new"]))
        if "payload" in columns and frame.schema["payload"] == pl.String:
            frame = frame.with_columns(
                pl.col("payload").str.replace_many(
                    mapping["old"].to_list(), mapping["new"].to_list()
                )
            )
        temporary = path.with_suffix(".tmp")
        frame.write_parquet(temporary, compression="zstd")
        temporary.replace(path)
    return touched
