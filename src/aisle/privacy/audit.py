"""The audit log: append-only and hash-chained, so that an edited or removed entry shows.

Each entry's hash covers the previous entry's hash and its own content; the newest hash is
also kept in ``<home>/audit.head``, so cutting entries off the end shows too.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aisle.storage import Store

HEAD_FILE = "audit.head"
GENESIS = "0" * 64


@dataclass(frozen=True)
class ChainCheck:
    """The outcome of checking the log."""

    entries: int
    ok: bool
    broken_at: int | None = None  # seq of the first entry that does not verify
    problem: str | None = None

    def to_json(self) -> dict[str, Any]:
        """Machine-readable form."""
        return {"entries": self.entries, "ok": self.ok, "broken_at": self.broken_at,
                "problem": self.problem}  # fmt: skip


def _digest(*fields: object) -> str:
    """sha256 of the previous hash and an entry's fields, in order."""
    return hashlib.sha256(json.dumps(fields, ensure_ascii=False).encode()).hexdigest()


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def record(store: Store, action: str, subject: str | None, details: dict[str, Any]) -> str:
    """Append one entry (in the caller's transaction, if any) and return its hash.

    ``subject`` and ``details`` must never hold a raw customer id: pseudonyms, import ids
    and counts only.
    """
    last = store.query("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
    seq, prev = (int(last["seq"][0]) + 1, str(last["hash"][0])) if last.height else (1, GENESIS)
    now = datetime.now(UTC)
    text = json.dumps(details, sort_keys=True, default=str, ensure_ascii=False)
    digest = _digest(prev, seq, _stamp(now), action, subject, text)
    store.execute(
        "INSERT INTO audit_log VALUES (?, ?, ?, ?, ?, ?, ?)",
        [seq, now, action, subject, text, prev, digest],
    )
    _write_head(store.home, digest)
    return digest


def _write_head(home: Path, digest: str) -> None:
    temporary = home / f"{HEAD_FILE}.tmp"
    temporary.write_text(digest)
    os.replace(temporary, home / HEAD_FILE)


def verify(store: Store) -> ChainCheck:
    """Recompute the chain; the first entry that does not verify is reported."""
    rows = store.query("SELECT * FROM audit_log ORDER BY seq")
    prev = GENESIS
    for entry in rows.iter_rows(named=True):
        expected = _digest(prev, entry["seq"], _stamp(entry["logged_at"]), entry["action"],
                           entry["subject"], entry["details"])  # fmt: skip
        if entry["prev_hash"] != prev or entry["hash"] != expected:
            return ChainCheck(rows.height, False, entry["seq"], "entry altered or out of chain")
        prev = entry["hash"]
    head = store.home / HEAD_FILE
    if head.exists() and head.read_text().strip() != prev:
        return ChainCheck(rows.height, False, None, "newest entries removed (head mismatch)")
    if rows.height and not head.exists():
        return ChainCheck(rows.height, False, None, "head file missing")
    return ChainCheck(rows.height, True)


def entries(store: Store, *, action: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    """The newest entries first, details decoded."""
    rows = store.query(
        "SELECT seq, logged_at, action, subject, details, hash FROM audit_log "
        "WHERE ? IS NULL OR action = ? ORDER BY seq DESC LIMIT ?",
        [action, action, limit],
    )
    out = rows.to_dicts()
    for row in out:
        row["details"] = json.loads(row["details"])
    return out
