"""The quarantine: listing, showing, releasing and dropping held records."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import polars as pl

from aisle.domain import EVENT_SCHEMA, PRODUCT_SCHEMA, QuarantineStatus, Reason, RecordKind
from aisle.errors import NotFoundError
from aisle.storage import Store

_SCHEMAS = {RecordKind.EVENTS.value: EVENT_SCHEMA, RecordKind.PRODUCTS.value: PRODUCT_SCHEMA}


@dataclass(frozen=True)
class ReleaseOutcome:
    """What a release did."""

    released: int
    still_held: int

    def to_json(self) -> dict[str, int]:
        """Machine-readable form."""
        return {"released": self.released, "still_held": self.still_held}


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
    """One quarantined record with its source payload (customer ids already pseudonymised)."""
    rows = store.query("SELECT * FROM quarantine WHERE record_id = ?", [record_id])
    if rows.height == 0:
        raise NotFoundError(f"no quarantined record {record_id!r}; see `aisle quality quarantine list`")
    row = rows.row(0, named=True)
    for key in ("payload", "record"):
        if isinstance(row[key], str):
            row[key] = json.loads(row[key])
    return row


def _decode(rows: pl.DataFrame, kind: str) -> pl.DataFrame:
    schema = _SCHEMAS[kind]
    return rows.select(
        pl.col("record_id"),
        pl.col("import_id"),
        pl.col("record").str.json_decode(dtype=pl.Struct(schema)).alias("_r"),
    ).unnest("_r")


def accept_records(store: Store, records: pl.DataFrame, kind: str, now: datetime) -> int:
    """Move decoded records into their table and mark them released. Inside a transaction."""
    if records.height == 0:
        return 0
    if kind == RecordKind.EVENTS.value:
        store.append("events", records.select([*EVENT_SCHEMA, "import_id"]))
    else:
        from aisle.storage.catalog import upsert_products

        upsert_products(store, records.rename({"record_id": "record_id"}))
    store.con.register("_released", records.select("record_id").to_arrow())
    store.execute(
        "UPDATE quarantine SET status = 'released', resolved_at = ? "
        "WHERE record_id IN (SELECT record_id FROM _released) AND status = 'held'",
        [now],
    )
    store.con.unregister("_released")
    return records.height


def release_arrived_items(store: Store, now: datetime) -> int:
    """Events held only because their item was unknown, whose product has now arrived.

    Held events with other reasons too lose the unknown-item reason and stay held.
    """
    rows = store.query(
        "SELECT q.record_id, q.import_id, q.record, q.reasons FROM quarantine q "
        "WHERE q.kind = 'events' AND q.status = 'held' AND q.hold_until >= ? "
        "AND list_contains(q.reasons, ?) "
        "AND q.item_id IN (SELECT item_id FROM products)",
        [now, Reason.UNKNOWN_ITEM.value],
    )
    if rows.height == 0:
        return 0
    only = rows.filter(pl.col("reasons").list.len() == 1)
    store.con.register("_other", rows.filter(pl.col("reasons").list.len() > 1).select("record_id").to_arrow())
    store.execute(
        "UPDATE quarantine SET reasons = list_filter(reasons, r -> r != ?) "
        "WHERE record_id IN (SELECT record_id FROM _other) AND status = 'held'",
        [Reason.UNKNOWN_ITEM.value],
    )
    store.con.unregister("_other")
    return accept_records(store, _decode(only, RecordKind.EVENTS.value), RecordKind.EVENTS.value, now)


def _select(store: Store, record_ids: list[str] | None, reason: str | None) -> pl.DataFrame:
    where = ["status = 'held'"]
    params: list[Any] = []
    if record_ids:
        where.append("record_id IN (SELECT unnest(?::VARCHAR[]))")
        params.append(record_ids)
    if reason:
        where.append("list_contains(reasons, ?)")
        params.append(reason)
    return store.query(
        f"SELECT record_id, kind, import_id, record, reasons FROM quarantine WHERE {' AND '.join(where)}",
        params,
    )


def release(
    store: Store,
    *,
    record_ids: list[str] | None = None,
    reason: str | None = None,
    force: bool = False,
    now: datetime | None = None,
) -> ReleaseOutcome:
    """Release held records into the store.

    Without ``force`` only records whose reasons no longer hold are released: unknown items
    that have arrived. With ``force`` the operator vouches for them and they are accepted as
    parsed (fields that did not parse stay empty). Records without a parsed form (malformed
    rows) can only be dropped.
    """
    if not record_ids and not reason:
        raise NotFoundError("name record ids or a --reason to release")
    now = now or datetime.now(UTC)
    rows = _select(store, record_ids, reason)
    if record_ids and rows.height == 0:
        raise NotFoundError("none of those records is held in quarantine")
    released = 0
    with store.transaction():
        if force:
            for kind in (RecordKind.EVENTS.value, RecordKind.PRODUCTS.value):
                part = rows.filter((pl.col("kind") == kind) & pl.col("record").is_not_null())
                released += accept_records(store, _decode(part, kind), kind, now)
        else:
            released += release_arrived_items(store, now)
    held = _select(store, record_ids, reason).height
    return ReleaseOutcome(released=released, still_held=held)


def drop(
    store: Store, *, record_ids: list[str] | None = None, reason: str | None = None, note: str = ""
) -> int:
    """Mark held records as dropped for good (kept for the ledger, never released)."""
    if not record_ids and not reason:
        raise NotFoundError("name record ids or a --reason to drop")
    rows = _select(store, record_ids, reason)
    with store.transaction():
        store.con.register("_drop", rows.select("record_id").to_arrow())
        store.execute(
            "UPDATE quarantine SET status = 'dropped', resolved_at = ?, note = ? "
            "WHERE record_id IN (SELECT record_id FROM _drop) AND status = 'held'",
            [datetime.now(UTC), note or None],
        )
        store.con.unregister("_drop")
    return rows.height
