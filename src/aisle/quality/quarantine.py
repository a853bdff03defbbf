"""The quarantine: listing, showing, releasing and dropping held records."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import polars as pl

from aisle.domain import QuarantineStatus, Reason
from aisle.errors import NotFoundError
from aisle.storage import Store


def list_quarantine(
    store: Store,
    *,
    reason: str | None = None,
    status: str = QuarantineStatus.HELD.value,
    kind: str | None = None,
    import_id: int | None = None,
    limit: int = 50,
) -> pl.DataFrame:
    """Quarantined records (newest first) without their payloads."""
    where = ["status = ?"]
    params: list[Any] = [status]
    if reason:
        where.append("list_contains(reasons, ?)")
        params.append(reason)
    if kind:
        where.append("kind = ?")
        params.append(kind)
    if import_id is not None:
        where.append("import_id = ?")
        params.append(import_id)
    params.append(limit)
    return store.query(
        "SELECT record_id, kind, import_id, line, reasons, detail, item_id, hold_until, status "
        f"FROM quarantine WHERE {' AND '.join(where)} ORDER BY import_id DESC, line LIMIT ?",
        params,
    )


def show_record(store: Store, record_id: str) -> dict[str, Any]:
    """One quarantined record: reasons, detail and its source payload (customer ids already
    pseudonymised)."""
    rows = store.query("SELECT * FROM quarantine WHERE record_id = ?", [record_id])
    if rows.height == 0:
        raise NotFoundError(
            f"no quarantined record {record_id!r}; see `aisle quality quarantine list`"
        )
    row = rows.row(0, named=True)
    if isinstance(row["payload"], str):
        row["payload"] = json.loads(row["payload"])
    return row


def held(store: Store, record_ids: list[str] | None, reason: str | None) -> pl.DataFrame:
    """Held records chosen by id (None: any) and/or reason, with what a release needs to
    rebuild them: kind, import, line, payload and the adapter that read them."""
    where = ["q.status = 'held'"]
    params: list[Any] = []
    if record_ids is not None:
        where.append("q.record_id IN (SELECT unnest(?::VARCHAR[]))")
        params.append(record_ids)
    if reason:
        where.append("list_contains(q.reasons, ?)")
        params.append(reason)
    return store.query(
        "SELECT q.record_id, q.kind, q.import_id, q.line, q.payload, i.adapter "
        "FROM quarantine q JOIN imports i USING (import_id) "
        f"WHERE {' AND '.join(where)} ORDER BY q.import_id, q.line",
        params,
    )


def arrived_items(store: Store, now: datetime) -> pl.DataFrame:
    """Held events whose unknown item has arrived in the catalog within their grace period.

    Those held for other reasons too lose the unknown-item reason and stay held; the others
    are returned (as ``held`` returns them), ready for release.
    """
    rows = store.query(
        "SELECT record_id, len(reasons) AS n FROM quarantine "
        "WHERE kind = 'events' AND status = 'held' AND hold_until >= ? "
        "AND list_contains(reasons, ?) AND item_id IN (SELECT item_id FROM products)",
        [now, Reason.UNKNOWN_ITEM.value],
    )
    if rows.height == 0:
        return held(store, [], None)
    with store.registered("_other", rows.filter(pl.col("n") > 1).select("record_id")):
        store.execute(
            "UPDATE quarantine SET reasons = list_filter(reasons, lambda r: r != ?) "
            "WHERE record_id IN (SELECT record_id FROM _other) AND status = 'held'",
            [Reason.UNKNOWN_ITEM.value],
        )
    return held(store, rows.filter(pl.col("n") == 1)["record_id"].to_list(), None)


def mark_released(store: Store, record_ids: pl.Series, now: datetime) -> None:
    """Record that these held records went into the store."""
    with store.registered("_released", pl.DataFrame({"record_id": record_ids})):
        store.execute(
            "UPDATE quarantine SET status = 'released', resolved_at = ? "
            "WHERE status = 'held' AND record_id IN (SELECT record_id FROM _released)",
            [now],
        )


def drop(
    store: Store, *, record_ids: list[str] | None = None, reason: str | None = None, note: str = ""
) -> int:
    """Mark held records as dropped for good (kept for the ledger, never released)."""
    if not record_ids and not reason:
        raise NotFoundError("name record ids or a --reason to drop")
    rows = held(store, record_ids, reason)
    with store.transaction(), store.registered("_drop", rows.select("record_id")):
        store.execute(
            "UPDATE quarantine SET status = 'dropped', resolved_at = ?, note = ? "
            "WHERE record_id IN (SELECT record_id FROM _drop) AND status = 'held'",
            [datetime.now(UTC), note or None],
        )
    return rows.height
