"""Releasing held records: each is re-read from its source payload through the adapter that
first read it, so a released record is exactly what an import would have made of it."""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import UTC, datetime

import polars as pl

from aisle.catalog.integrate import integrate
from aisle.config import Settings
from aisle.domain import EVENT_SCHEMA, PRODUCT_SCHEMA, RecordKind
from aisle.errors import NotFoundError
from aisle.ingest.adapters import AdaptContext, get_adapter
from aisle.quality.coerce import to_records
from aisle.quality.quarantine import arrived_items, held, mark_released
from aisle.storage import Store


@dataclass(frozen=True)
class ReleaseOutcome:
    """What a release did."""

    released: int
    still_held: int

    def to_json(self) -> dict[str, int]:
        """Machine-readable form."""
        return {"released": self.released, "still_held": self.still_held}


def _payload_frame(part: pl.DataFrame) -> pl.DataFrame:
    """The source rows back from their JSON payloads, with their lines."""
    text = "\n".join(part["payload"].to_list()).encode()
    raw = pl.read_ndjson(io.BytesIO(text), infer_schema_length=None)
    # a column that is empty in every held row reads back as Null: text is what adapters expect
    raw = raw.with_columns(pl.col(c).cast(pl.String) for c, t in raw.schema.items() if t == pl.Null)
    return raw.with_columns(part["line"].alias("_line"))


def rebuild(settings: Settings, rows: pl.DataFrame) -> dict[RecordKind, pl.DataFrame]:
    """Typed records, by kind, for held rows (as ``quarantine.held`` returns them).

    Rows without a payload (malformed lines, which never parsed) cannot be rebuilt and are
    left out. Products derived from transactions keep their canonical record as payload.
    """
    built: dict[RecordKind, list[pl.DataFrame]] = {RecordKind.EVENTS: [], RecordKind.PRODUCTS: []}
    kinds = [RecordKind.EVENTS.value, RecordKind.PRODUCTS.value]  # judgements are not rebuilt
    usable = rows.filter(pl.col("payload").is_not_null() & pl.col("kind").is_in(kinds))
    for (kind_name, import_id, adapter_name), part in usable.group_by(
        "kind", "import_id", "adapter", maintain_order=True
    ):
        kind = RecordKind(kind_name)
        adapter = get_adapter(str(adapter_name), settings)
        raw = _payload_frame(part)
        ctx = AdaptContext(settings, f"release of import {import_id}")
        if kind is RecordKind.EVENTS:
            parsing = adapter.parsing
            typed, _ = to_records(
                adapter.events(raw, ctx),
                kind,
                timestamp_format=parsing.timestamp_format,
                timezone=parsing.timezone,
                epoch_unit=parsing.epoch_unit,
            )
            typed = typed.with_columns(part["record_id"].alias("event_id"))
        else:
            canonical = adapter.products(raw, ctx) if kind in adapter.kinds else raw
            typed, _ = to_records(canonical, kind)
            typed = typed.with_columns(
                part["record_id"].alias("record_id"),
                pl.col("aliases").fill_null(pl.lit([], dtype=pl.List(pl.String))),
            )
        stamp = pl.lit(import_id, dtype=pl.Int32).alias("import_id")
        built[kind].append(typed.with_columns(stamp))
    return {
        kind: pl.concat(parts, how="vertical_relaxed") for kind, parts in built.items() if parts
    }


def accept(
    store: Store, settings: Settings, records: dict[RecordKind, pl.DataFrame], now: datetime
) -> int:
    """Put rebuilt records in their tables and mark them released (in the caller's
    transaction)."""
    count = 0
    events = records.get(RecordKind.EVENTS)
    if events is not None and events.height:
        store.append("events", events.select([*EVENT_SCHEMA, "import_id"]))
        mark_released(store, events["event_id"], now)
        count += events.height
    products = records.get(RecordKind.PRODUCTS)
    if products is not None and products.height:
        kept = products.select([*PRODUCT_SCHEMA, "record_id", "import_id"])
        integrate(store, kept, settings.catalog, now=now)
        mark_released(store, products["record_id"], now)
        count += products.height
    return count


def release_arrived(store: Store, settings: Settings, now: datetime) -> int:
    """Release the events that waited for an item the catalog now has."""
    return accept(store, settings, rebuild(settings, arrived_items(store, now)), now)


def release(
    store: Store,
    settings: Settings,
    *,
    record_ids: list[str] | None = None,
    reason: str | None = None,
    force: bool = False,
    now: datetime | None = None,
) -> ReleaseOutcome:
    """Release held records into the store.

    Without ``force`` only records whose reasons no longer hold are released: events whose
    unknown item has arrived. With ``force`` the operator vouches for the chosen records and
    they are accepted as they parse (fields that do not parse stay empty). Malformed rows,
    which never parsed, can only be dropped.
    """
    if not record_ids and not reason:
        raise NotFoundError("name record ids or a --reason to release")
    now = now or datetime.now(UTC)
    chosen = held(store, record_ids, reason)
    if record_ids and chosen.height == 0:
        raise NotFoundError("none of those records is held in quarantine")
    with store.transaction():
        if force:
            released = accept(store, settings, rebuild(settings, chosen), now)
        else:
            arrived = arrived_items(store, now)
            arrived = arrived.filter(pl.col("record_id").is_in(chosen["record_id"].implode()))
            released = accept(store, settings, rebuild(settings, arrived), now)
    return ReleaseOutcome(released=released, still_held=held(store, record_ids, reason).height)
