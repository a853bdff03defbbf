"""The quarantine: list, show, release and drop held records; the store's counts reconcile."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from aisle.config import Settings
from aisle.errors import NotFoundError
from aisle.pipeline import ImportResult, ingest
from aisle.privacy.pseudonymise import Pseudonymiser
from aisle.quality import quarantine as q
from aisle.releases import release
from aisle.storage import Store
from tests.conftest import TEST_SECRET, write_csv

HEADER = ["user_id", "item_id", "type", "value", "price", "timestamp"]
#: line -> (raw customer id, item, type, quantity, price); line 1 is the header
EVENTS = {
    2: ("cust-1", "A", "purchase", 1, 5),  # accepted
    3: ("cust-17850", "A", "purchase", 1, 0),  # zero price
    4: ("cust-2", "Z", "view", None, None),  # unknown item Z
    5: ("cust-3", "Y", "view", None, None),  # unknown item Y
    6: ("cust-4", "A", "teleport", None, None),  # bad event type
    7: ("cust-5", "Z", "purchase", 1, 0),  # zero price and unknown item Z
}


@dataclass
class Shop:
    """A store with a catalog of A and B and one events import with one of each problem."""

    settings: Settings
    folder: Path
    catalog: ImportResult
    events: ImportResult
    ids: dict[int, str]  # line of the events file -> quarantined record id

    def store(self) -> Store:
        """The shop's store (use as a context manager)."""
        return Store(self.settings.home)

    def count(self, sql: str, params: list[Any] | None = None) -> int:
        """One number from the store."""
        with self.store() as store:
            return int(store.scalar(sql, params) or 0)

    def status(self, line: int) -> str:
        """Quarantine status of a line of the events file."""
        with self.store() as store:
            return str(
                store.scalar("SELECT status FROM quarantine WHERE record_id = ?", [self.ids[line]])
            )

    def import_products(self, rows: list[tuple[str, str]]) -> ImportResult:
        """Products (item_id, title) through the canonical adapter."""
        path = write_csv(
            self.folder / f"products-{len(rows)}-{rows[0][0]}.csv", ["item_id", "title"], rows
        )
        result = ingest("products", path, "canonical", self.settings)
        assert result.input == result.accepted + result.quarantined + result.duplicates
        return result

    def product_arrives_outside_an_import(self, item_id: str) -> None:
        """A product written straight to the catalog, so only a release can free its events."""
        with self.store() as store:
            store.execute(
                "INSERT INTO products (item_id, title, record_id, import_id) VALUES (?, ?, ?, 0)",
                [item_id, f"product {item_id}", f"manual-{item_id}"],
            )


@pytest.fixture
def shop(settings: Settings, tmp_path: Path) -> Shop:
    catalog_file = write_csv(
        tmp_path / "catalog.csv", ["item_id", "title"], [("A", "Lamp"), ("B", "Mug")]
    )
    catalog = ingest("products", catalog_file, "canonical", settings)
    rows = [(*row, f"2024-03-01T10:0{line}:00Z") for line, row in EVENTS.items()]
    events = ingest(
        "events", write_csv(tmp_path / "events.csv", HEADER, rows), "canonical", settings
    )
    assert (events.input, events.accepted, events.quarantined) == (6, 1, 5)
    with Store(settings.home) as store:
        held = store.query(
            "SELECT line, record_id FROM quarantine WHERE import_id = ?", [events.import_id]
        )
    return Shop(settings, tmp_path, catalog, events, dict(held.iter_rows()))


def assert_store_reconciles(shop: Shop) -> None:
    """events rows == accepted over all event imports + released; every held record is counted."""
    accepted = shop.count("SELECT sum(accepted) FROM imports WHERE kind = 'events'")
    released = shop.count(
        "SELECT count(*) FROM quarantine WHERE kind = 'events' AND status = 'released'"
    )
    assert shop.count("SELECT count(*) FROM events") == accepted + released
    quarantined = shop.count("SELECT sum(quarantined) FROM imports")
    assert shop.count("SELECT count(*) FROM quarantine") == quarantined


# -- list -------------------------------------------------------------------------------------


def test_list_filters(shop: Shop) -> None:
    with shop.store() as store:
        everything = q.list_quarantine(store)
        unknown = q.list_quarantine(store, reason="unknown_item")
        zero = q.list_quarantine(store, reason="nonpositive_price")
        products = q.list_quarantine(store, kind="products")
        events = q.list_quarantine(store, kind="events", import_id=shop.events.import_id)
        catalog = q.list_quarantine(store, import_id=shop.catalog.import_id)
        released = q.list_quarantine(store, status="released")
        first_two = q.list_quarantine(store, limit=2)
    assert sorted(everything["line"]) == [3, 4, 5, 6, 7]
    assert "payload" not in everything.columns
    assert sorted(unknown["line"]) == [4, 5, 7]
    assert sorted(zero["line"]) == [3, 7]
    assert products.height == 0
    assert sorted(events["line"]) == [3, 4, 5, 6, 7]
    assert catalog.height == 0
    assert released.height == 0
    assert first_two["line"].to_list() == [3, 4]


def test_list_newest_import_first(shop: Shop) -> None:
    later = write_csv(
        shop.folder / "later.csv",
        HEADER,
        [("cust-9", "A", "teleport", None, None, "2024-03-02T10:00:00Z")],
    )
    second = ingest("events", later, "canonical", shop.settings)
    with shop.store() as store:
        rows = q.list_quarantine(store)
        only_second = q.list_quarantine(store, import_id=second.import_id)
        bad_type = q.list_quarantine(store, reason="bad_event_type")
    assert rows["import_id"].to_list()[0] == second.import_id
    assert only_second["line"].to_list() == [2]
    assert sorted(bad_type["import_id"]) == [shop.events.import_id, second.import_id]


# -- show -------------------------------------------------------------------------------------


def test_show_has_the_payload_with_pseudonyms_only(shop: Shop) -> None:
    with shop.store() as store:
        row = q.show_record(store, shop.ids[3])
    assert row["record_id"] == shop.ids[3]
    assert row["reasons"] == ["nonpositive_price"]
    payload = row["payload"]
    assert isinstance(payload, dict)
    assert (payload["item_id"], payload["type"], payload["price"]) == ("A", "purchase", "0")
    pseudonym = Pseudonymiser(TEST_SECRET.encode()).one("cust-17850")
    assert payload["user_id"] == pseudonym
    assert "cust-17850" not in json.dumps(row, default=str)


def test_show_unknown_record(shop: Shop) -> None:
    with shop.store() as store, pytest.raises(NotFoundError, match="no-such-id"):
        q.show_record(store, "no-such-id")


# -- release ----------------------------------------------------------------------------------


def test_release_by_reason_after_the_product_arrives(shop: Shop) -> None:
    shop.product_arrives_outside_an_import("Z")
    before = shop.count("SELECT count(*) FROM events")
    with shop.store() as store:
        outcome = release(store, shop.settings, reason="unknown_item")
        line7 = store.query("SELECT reasons FROM quarantine WHERE record_id = ?", [shop.ids[7]])
    # the view of Z is free; Y has not arrived; the purchase of Z still has a zero price
    assert outcome.to_json() == {"released": 1, "still_held": 1}
    assert shop.status(4) == "released"
    assert (shop.status(5), shop.status(7)) == ("held", "held")
    assert line7["reasons"].to_list() == [["nonpositive_price"]]
    assert shop.count("SELECT count(*) FROM events") == before + 1
    assert shop.count("SELECT count(*) FROM events WHERE event_id = ?", [shop.ids[4]]) == 1
    assert_store_reconciles(shop)


def test_release_of_named_records_frees_only_those(shop: Shop) -> None:
    shop.product_arrives_outside_an_import("Z")
    shop.product_arrives_outside_an_import("Y")
    with shop.store() as store:
        outcome = release(store, shop.settings, record_ids=[shop.ids[4]])
    assert outcome.released == 1
    assert (shop.status(4), shop.status(5)) == ("released", "held")
    assert_store_reconciles(shop)


def test_a_products_import_releases_arrived_items(shop: Shop) -> None:
    arrival = shop.import_products([("Z", "Zebra lamp"), ("Y", "Yo-yo")])
    assert arrival.released == 2
    assert (shop.status(4), shop.status(5), shop.status(7)) == ("released", "released", "held")
    assert_store_reconciles(shop)


def test_release_force_accepts_a_zero_price_purchase(shop: Shop) -> None:
    with shop.store() as store:
        outcome = release(store, shop.settings, record_ids=[shop.ids[3]], force=True)
        stored = store.query(
            "SELECT item_id, type, price, import_id FROM events WHERE event_id = ?",
            [shop.ids[3]],
        )
    assert outcome.to_json() == {"released": 1, "still_held": 0}
    assert stored.rows() == [("A", "purchase", 0.0, shop.events.import_id)]
    assert shop.status(3) == "released"
    assert_store_reconciles(shop)


def test_release_needs_ids_or_a_reason(shop: Shop) -> None:
    with shop.store() as store:
        with pytest.raises(NotFoundError):
            release(store, shop.settings)
        with pytest.raises(NotFoundError):
            release(store, shop.settings, record_ids=["no-such-id"], force=True)


# -- drop -------------------------------------------------------------------------------------


def test_drop_is_for_good(shop: Shop) -> None:
    with shop.store() as store:
        dropped = q.drop(store, reason="unknown_item", record_ids=[shop.ids[5]], note="no such toy")
        row = store.query(
            "SELECT status, note, resolved_at FROM quarantine WHERE record_id = ?", [shop.ids[5]]
        ).row(0, named=True)
    assert dropped == 1
    assert (row["status"], row["note"]) == ("dropped", "no such toy")
    assert row["resolved_at"] is not None

    before = shop.count("SELECT count(*) FROM events")
    arrival = shop.import_products([("Y", "Yo-yo")])
    assert arrival.released == 0
    assert shop.status(5) == "dropped"
    assert shop.count("SELECT count(*) FROM events") == before
    with shop.store() as store:
        assert q.list_quarantine(store, status="dropped")["line"].to_list() == [5]
        with pytest.raises(NotFoundError):
            release(store, shop.settings, record_ids=[shop.ids[5]], force=True)
    assert_store_reconciles(shop)


def test_counts_reconcile_after_every_operation(shop: Shop) -> None:
    assert_store_reconciles(shop)
    with shop.store() as store:
        release(store, shop.settings, record_ids=[shop.ids[3]], force=True)
    assert_store_reconciles(shop)
    with shop.store() as store:
        assert q.drop(store, reason="bad_event_type") == 1
    assert_store_reconciles(shop)
    shop.product_arrives_outside_an_import("Z")
    with shop.store() as store:
        release(store, shop.settings, reason="unknown_item")
    assert_store_reconciles(shop)
    with shop.store() as store:
        statuses = dict(
            store.query("SELECT status, count(*) FROM quarantine GROUP BY status").iter_rows()
        )
    assert statuses == {"released": 2, "dropped": 1, "held": 2}


def test_force_release_rebuilds_the_record_through_its_adapter(
    settings: Settings, uci_file: Path
) -> None:
    """A released UCI line is what the import would have made of it: parsed by the adapter
    again from its (pseudonymised) payload, London time converted to UTC."""
    ingest("events", uci_file, "uci-online-retail", settings)
    with Store(settings.home) as store:
        record_id = store.scalar("SELECT record_id FROM quarantine WHERE line = 8")
        outcome = release(store, settings, record_ids=[record_id], force=True)
        row = store.query("SELECT * FROM events WHERE event_id = ?", [record_id]).row(0, named=True)
        status = store.scalar("SELECT status FROM quarantine WHERE record_id = ?", [record_id])
    assert outcome.to_json() == {"released": 1, "still_held": 0}
    assert status == "released"
    assert (row["type"], row["value"], row["price"], row["session_id"]) == (
        "purchase",
        6.0,
        0.0,
        "536369",
    )
    assert row["timestamp"].isoformat() == "2010-12-03T10:00:00+00:00"
    assert row["user_id"] == Pseudonymiser(TEST_SECRET.encode()).one("17852")
