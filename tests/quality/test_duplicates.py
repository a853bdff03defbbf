"""Exact and near duplicates, within a batch and across imports, and product reconciliation."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import polars as pl

from aisle.config import QualitySettings, Settings
from aisle.pipeline import ingest
from aisle.quality.dedupe import exact_duplicates, near_duplicates
from aisle.storage import Store
from tests.conftest import write_csv
from tests.quality.tiny_batches import (
    EVENTS,
    T0,
    duplicates_by_line,
    event,
    import_products,
    import_rows,
    iso,
    reconciles,
    table,
)

# -- exact duplicates -------------------------------------------------------------------------


def test_exact_duplicates_unit() -> None:
    found = exact_duplicates(pl.Series(["a", "b", "a", "c"]), pl.Series(["c"]))
    assert found.to_list() == [None, None, "a", "c"]


def test_exact_duplicate_within_a_batch(settings: Settings, tmp_path: Path) -> None:
    result = import_rows(settings, tmp_path, "events", [event(), event()], header=EVENTS)
    assert (result.accepted, result.duplicates, result.duplicate_rules) == (1, 1, {"exact": 1})
    [first] = table(settings, "SELECT event_id FROM events")["event_id"].to_list()
    copy = duplicates_by_line(settings, result.import_id)[3]
    assert (copy["duplicate_of"], copy["rule"]) == (first, "exact")


def test_reimporting_a_file_adds_nothing(settings: Settings, uci_file: Path) -> None:
    first = reconciles(ingest("events", uci_file, "uci-online-retail", settings))
    counts = table(
        settings,
        "SELECT (SELECT count(*) FROM events) AS e, (SELECT count(*) FROM quarantine) AS q,"
        " (SELECT count(*) FROM products) AS p",
    ).row(0)
    again = reconciles(ingest("events", uci_file, "uci-online-retail", settings))
    assert again.input == first.input
    assert (again.accepted, again.quarantined, again.duplicates) == (0, 0, again.input)
    [products] = again.derived
    assert (products.accepted, products.duplicates) == (0, products.input)
    assert counts == table(
        settings,
        "SELECT (SELECT count(*) FROM events) AS e, (SELECT count(*) FROM quarantine) AS q,"
        " (SELECT count(*) FROM products) AS p",
    ).row(0)


def test_reimporting_near_duplicates_adds_nothing(settings: Settings, tmp_path: Path) -> None:
    """Regression: a near duplicate is stored in neither events nor quarantine, so a second
    import of the same file must still find it (it was accepted the second time)."""
    rows = [
        ["u1", "A", "view", None, None, None, None, iso(T0 + timedelta(seconds=s))] for s in (0, 3)
    ]
    path = write_csv(tmp_path / "views.csv", EVENTS, rows)
    first = reconciles(ingest("events", path, "canonical", settings))
    assert (first.accepted, first.duplicate_rules) == (1, {"near": 1})
    again = reconciles(ingest("events", path, "canonical", settings))
    assert (again.accepted, again.duplicates) == (0, 2)
    assert table(settings, "SELECT count(*) FROM events").item() == 1


def test_reimporting_superseded_products_adds_nothing(settings: Settings, tmp_path: Path) -> None:
    """Regression: a superseded record is not a stored version, so a second import of the same
    file must still find it, and never bring the old title back."""
    path = write_csv(
        tmp_path / "catalog.csv",
        ["item_id", "title", "updated_at"],
        [["B", "Mug", "2024-01-01T00:00:00Z"], ["B", "Tea mug", "2024-02-01T00:00:00Z"]],
    )
    first = reconciles(ingest("products", path, "canonical", settings))
    assert (first.accepted, first.duplicate_rules) == (1, {"superseded": 1})
    again = reconciles(ingest("products", path, "canonical", settings))
    assert (again.accepted, again.duplicates) == (0, 2)
    assert table(settings, "SELECT title FROM products").item() == "Tea mug"


# -- near duplicates --------------------------------------------------------------------------


def test_near_duplicates(settings: Settings, tmp_path: Path) -> None:
    result = import_rows(
        settings,
        tmp_path,
        "events",
        [
            event(item_id="A", timestamp=iso(T0)),  # 2
            event(item_id="A", timestamp=iso(T0 + timedelta(seconds=3))),  # 3: near 2
            event(item_id="B", timestamp=iso(T0)),  # 4
            event(item_id="B", timestamp=iso(T0 + timedelta(seconds=30))),  # 5: far enough
            event(item_id="A", user_id="u2", timestamp=iso(T0 + timedelta(seconds=1))),  # 6
            event(type="purchase", value=1, price=2, timestamp=iso(T0 + timedelta(seconds=60))),
            event(type="purchase", value=1, price=2, timestamp=iso(T0 + timedelta(seconds=61))),
        ],
        header=EVENTS,
    )
    assert (result.accepted, result.duplicates, result.duplicate_rules) == (6, 1, {"near": 1})
    near = duplicates_by_line(settings, result.import_id)
    assert set(near) == {3}
    first = table(
        settings,
        "SELECT event_id FROM events WHERE item_id = 'A' AND type = 'view' AND timestamp = ?",
        [T0],
    ).item()
    assert (near[3]["duplicate_of"], near[3]["rule"]) == (first, "near")


def test_near_duplicate_bursts_chain_to_their_first_event() -> None:
    frame = pl.DataFrame(
        {
            "event_id": ["e1", "e2", "e3", "e4", "p1", "p2"],
            "user_id": ["u"] * 6,
            "item_id": ["A"] * 6,
            "type": ["view"] * 4 + ["purchase"] * 2,
            "timestamp": [T0 + timedelta(seconds=s) for s in (16, 0, 8, 40, 0, 1)],
            "_candidate": [True] * 6,
        }
    )
    near = near_duplicates(frame, QualitySettings().near_duplicate_seconds)
    assert near.to_list() == ["e2", None, "e2", None, None, None]


def test_near_duplicates_span_imports(settings: Settings, tmp_path: Path) -> None:
    """A view repeated 3 s after one stored by an earlier import is its near duplicate."""
    header = ["user_id", "item_id", "type", "timestamp"]
    first = write_csv(tmp_path / "a.csv", header, [("u1", "A", "view", "2024-01-01T10:00:00Z")])
    second = write_csv(
        tmp_path / "b.csv",
        header,
        [("u1", "A", "view", "2024-01-01T10:00:03Z"), ("u1", "A", "view", "2024-01-01T10:05:00Z")],
    )
    quality = settings.quality.model_copy(update={"check_unknown_items": False})
    config = settings.model_copy(update={"quality": quality})
    stored = ingest("events", first, "canonical", config)
    later = ingest("events", second, "canonical", config)
    assert stored.accepted == 1
    assert (later.accepted, later.duplicates, later.duplicate_rules) == (1, 1, {"near": 1})
    with Store(settings.home) as store:
        first_id = store.scalar(
            "SELECT event_id FROM events WHERE import_id = ?", [stored.import_id]
        )
        of = store.scalar(
            "SELECT duplicate_of FROM duplicates WHERE import_id = ?", [later.import_id]
        )
    assert of == first_id


# -- product reconciliation -------------------------------------------------------------------


def test_products_of_one_item_in_one_batch_are_reconciled(
    settings: Settings, tmp_path: Path
) -> None:
    result = import_products(
        settings,
        tmp_path,
        [
            {"item_id": "A", "title": "Lamp", "updated_at": "2024-01-01T00:00:00Z"},  # 2
            {"item_id": "A", "title": "Desk Lamp", "updated_at": "2024-02-01T00:00:00Z"},  # 3
            {"item_id": "A", "title": "Old Lamp", "updated_at": "2023-01-01T00:00:00Z"},  # 4
            {"item_id": "B", "title": "Mug", "updated_at": None},  # 5
        ],
    )
    assert (result.accepted, result.duplicates) == (2, 2)
    assert result.duplicate_rules == {"superseded": 2}
    current = table(settings, "SELECT record_id, title, aliases FROM products WHERE item_id='A'")
    [(winner, title, aliases)] = current.rows()
    assert title == "Desk Lamp"
    assert sorted(aliases) == ["Lamp", "Old Lamp"]
    losers = duplicates_by_line(settings, result.import_id)
    assert set(losers) == {2, 4}
    assert {(row["duplicate_of"], row["rule"]) for row in losers.values()} == {
        (winner, "superseded")
    }


def test_without_dates_the_later_line_wins(settings: Settings, tmp_path: Path) -> None:
    import_products(
        settings, tmp_path, [{"item_id": "C", "title": "Cup"}, {"item_id": "C", "title": "Big Cup"}]
    )
    assert table(settings, "SELECT title, aliases FROM products").row(0) == ("Big Cup", ["Cup"])


def test_a_new_title_keeps_the_old_one_as_alias(settings: Settings, tmp_path: Path) -> None:
    import_products(settings, tmp_path, [{"item_id": "A", "title": "Lamp"}])
    import_products(settings, tmp_path, [{"item_id": "A", "title": "Desk Lamp"}])
    import_products(settings, tmp_path, [{"item_id": "A", "title": "LED Desk Lamp"}])
    title, aliases = table(settings, "SELECT title, aliases FROM products").row(0)
    assert title == "LED Desk Lamp"
    assert sorted(aliases) == ["Desk Lamp", "Lamp"]
    assert table(settings, "SELECT count(*) FROM product_versions").item() == 3
