"""The quarantine: listing, showing, releasing and dropping held records."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import polars as pl

from aisle.domain import EVENT_SCHEMA, QuarantineStatus, Reason, RecordKind
from aisle.errors import NotFoundError
from aisle.storage import Store
from aisle.storage.catalog import upsert_products


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
    """One quarantined record: reasons, source payload (customer ids already pseudonymised)
    and the parsed record as far as it parsed."""
    rows = store.query("SELECT * FROM quarantine WHERE record_id = ?", [record_id])
    if rows.height == 0:
        raise NotFoundError(
            f"no quarantined record {record_id!r}; see `aisle quality quarantine list`"
        )
    row = rows.row(0, named=True)
    if isinstance(row["payload"], str):
        row["payload"] = json.loads(row["payload"])
    table, key = _PARSED[row["kind"]]
    parsed = store.query(f"SELECT * EXCLUDE (import_id) FROM {table} WHERE {key} = ?", [record_id])
    row["record"] = parsed.row(0, named=True) if parsed.height else None
    return row


#: kind -> (table of parsed quarantined records, its id column)
_PARSED = {
    RecordKind.EVENTS.value: ("quarantined_events", "event_id"),
    RecordKind.PRODUCTS.value: ("quarantined_products", "record_id"),
}


def accept_records(store: Store, record_ids: pl.Series, kind: str, now: datetime) -> int:
    """Move held records of one kind into their table and mark them released.

    Runs inside the caller's transaction. Records without a parsed form (malformed rows)
    are skipped: they can only be dropped.
    """
    if record_ids.len() == 0:
        return 0
    table, key = _PARSED[kind]
    with store.registered("_release", pl.DataFrame({"record_id": record_ids})):
        chosen = (
            f"FROM {table} WHERE {key} IN (SELECT record_id FROM _release) AND {key} IN "
            "(SELECT record_id FROM quarantine WHERE status = 'held' AND kind = ?)"
        )
        count = int(store.scalar(f"SELECT count(*) {chosen}", [kind]))
        if kind == RecordKind.EVENTS.value:
            columns = ", ".join(f'"{c}"' for c in [*EVENT_SCHEMA, "import_id"])
            store.execute(f"INSERT INTO events ({columns}) SELECT {columns} {chosen}", [kind])
        else:
            upsert_products(store, store.query(f"SELECT * {chosen}", [kind]))
        store.execute(
            "UPDATE quarantine SET status = 'released', resolved_at = ? WHERE kind = ? AND "
            f"status = 'held' AND record_id IN (SELECT {key} {chosen})",
            [now, kind, kind],
        )
    return count


def release_arrived_items(store: Store, now: datetime, among: pl.Series | None = None) -> int:
    """Events held only because their item was unknown, whose product has now arrived.

    Held events with other reasons too lose the unknown-item reason and stay held. ``among``
    limits the release to those record ids.
    """
    rows = store.query(
        "SELECT record_id, len(reasons) AS n FROM quarantine "
        "WHERE kind = 'events' AND status = 'held' AND hold_until >= ? "
        "AND list_contains(reasons, ?) AND item_id IN (SELECT item_id FROM products)",
        [now, Reason.UNKNOWN_ITEM.value],
    )
    if among is not None:
        rows = rows.filter(pl.col("record_id").is_in(among.implode()))
    if rows.height == 0:
        return 0
    with store.registered("_other", rows.filter(pl.col("n") > 1).select("record_id")):
        store.execute(
            "UPDATE quarantine SET reasons = list_filter(reasons, lambda r: r != ?) "
            "WHERE record_id IN (SELECT record_id FROM _other) AND status = 'held'",
            [Reason.UNKNOWN_ITEM.value],
        )
    only = rows.filter(pl.col("n") == 1)["record_id"]
    return accept_records(store, only, RecordKind.EVENTS.value, now)


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
        f"SELECT record_id, kind FROM quarantine WHERE {' AND '.join(where)}", params
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

    Without ``force`` only records whose reasons no longer hold are released: events whose
    unknown item has arrived. With ``force`` the operator vouches for the chosen records and
    they are accepted as parsed (fields that did not parse stay empty). Malformed rows, which
    never parsed, can only be dropped.
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
                chosen = rows.filter(pl.col("kind") == kind)["record_id"]
                released += accept_records(store, chosen, kind, now)
        else:
            released += release_arrived_items(store, now, rows["record_id"])
    held = _select(store, record_ids, reason).height
    return ReleaseOutcome(released=released, still_held=held)


def drop(
    store: Store, *, record_ids: list[str] | None = None, reason: str | None = None, note: str = ""
) -> int:
    """Mark held records as dropped for good (kept for the ledger, never released)."""
    if not record_ids and not reason:
        raise NotFoundError("name record ids or a --reason to drop")
    rows = _select(store, record_ids, reason)
    with store.transaction(), store.registered("_drop", rows.select("record_id")):
        store.execute(
            "UPDATE quarantine SET status = 'dropped', resolved_at = ?, note = ? "
            "WHERE record_id IN (SELECT record_id FROM _drop) AND status = 'held'",
            [datetime.now(UTC), note or None],
        )
    return rows.height
