"""The rules that quarantine events, each on a tiny batch, then the UCI sample end to end.

Coercion, duplicates and returns have their own modules (test_coerce, test_duplicates,
test_returns). Rules that read single columns are tested on frames built here; rules that need
the store (the catalog, earlier imports) go through ``ingest()`` on tiny CSVs. Every import
checked here must reconcile: input == accepted + quarantined + duplicates.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from aisle.config import QualitySettings, Settings, load_settings
from aisle.domain import EVENT_SCHEMA, Reason
from aisle.pipeline import ingest
from aisle.quality import rules
from aisle.quality.coerce import Flag
from aisle.quality.schemas import event_checks, required_for_events, schema_reasons
from aisle.storage import Store
from tests.conftest import TEST_SECRET, UCI_HEADER, write_csv
from tests.quality.tiny_batches import (
    EVENTS,
    T0,
    duplicates_by_line,
    event,
    import_products,
    import_rows,
    iso,
    quarantine_by_line,
    reconciles,
    table,
)

# -- batches of typed events ------------------------------------------------------------------


def batch(*rows: dict[str, Any]) -> pl.DataFrame:
    """A typed event batch (every EVENT_SCHEMA column) with the ``_row`` index rules read."""
    records = [{name: row.get(name) for name in EVENT_SCHEMA} for row in rows]
    return pl.DataFrame(records, schema=EVENT_SCHEMA).with_row_index("_row")


def reasons_of(frame: pl.DataFrame, flags: list[Flag]) -> dict[int, set[str]]:
    """Row index -> reasons the flags raise on it."""
    found: dict[int, set[str]] = {}
    for row, reason in rules.reasons_long(frame, flags).select("_row", "reason").iter_rows():
        found.setdefault(row, set()).add(reason)
    return found


def with_quality(settings: Settings, **changes: Any) -> Settings:
    """The test settings with some quality thresholds changed."""
    quality = settings.quality.model_copy(update=changes)
    return settings.model_copy(update={"quality": quality})


# -- required fields --------------------------------------------------------------------------


REQUIRED_BATCH = (
    {"user_id": "u1", "item_id": "A", "type": "view"},  # 0 complete
    {"user_id": None, "item_id": "A", "type": "view"},  # 1 no customer
    {"user_id": "u1", "item_id": None, "type": "search", "query": None},  # 2 search, no query
    {"user_id": "u1", "item_id": None, "type": "view"},  # 3 view, no item
    {"user_id": "u1", "item_id": None, "type": "search", "query": "lamp"},  # 4 search: no item ok
)


def test_required_fields() -> None:
    frame = batch(*REQUIRED_BATCH)
    flags = rules.required_fields(QualitySettings())
    assert reasons_of(frame, flags) == {
        1: {"missing_field"},
        2: {"missing_field"},
        3: {"missing_field"},
    }
    details = dict(rules.reasons_long(frame, flags).select("_row", "detail").iter_rows())
    assert "'user_id'" in details[1]
    assert "'query'" in details[2]
    assert "'item_id'" in details[3]


def test_required_user_can_be_waived() -> None:
    frame = batch(*REQUIRED_BATCH)
    flags = rules.required_fields(QualitySettings(require_user=False))
    assert set(reasons_of(frame, flags)) == {2, 3}


def test_missing_user_on_ingest(settings: Settings, tmp_path: Path) -> None:
    rows = [event(), event(user_id=None, timestamp=iso(T0 + timedelta(hours=1)))]
    strict = import_rows(settings, tmp_path, "events", rows, header=EVENTS)
    assert (strict.accepted, strict.reasons) == (1, {"missing_field": 1})
    held = quarantine_by_line(settings, strict.import_id)[3]
    assert held["detail"] is not None and "'user_id'" in held["detail"]

    lenient = with_quality(settings, require_user=False)
    lenient = lenient.model_copy(update={"home": tmp_path / "lenient"})
    anonymous = import_rows(lenient, tmp_path, "events", rows, header=EVENTS)
    assert (anonymous.accepted, anonymous.quarantined) == (2, 0)
    assert table(lenient, "SELECT count(*) AS n FROM events WHERE user_id IS NULL").item() == 1


# -- values by type ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ({"type": "purchase", "price": 0.0, "value": 1.0}, "nonpositive_price"),
        ({"type": "purchase", "price": -3.0, "value": 1.0}, "nonpositive_price"),
        ({"type": "return", "price": 0.0, "value": 1.0}, "nonpositive_price"),
        ({"type": "purchase", "price": None, "value": 1.0}, None),  # an unknown price is allowed
        ({"type": "view", "price": 0.0}, None),  # prices are judged on trade only
        ({"type": "purchase", "price": 2.0, "value": 0.0}, "bad_quantity"),
        ({"type": "purchase", "price": 2.0, "value": -1.0}, "bad_quantity"),
        ({"type": "purchase", "price": 2.0, "value": 1_000_001.0}, "bad_quantity"),
        ({"type": "purchase", "price": 2.0, "value": 1_000_000.0}, None),
        ({"type": "rating", "value": 0.2}, "bad_rating"),
        ({"type": "rating", "value": 10.5}, "bad_rating"),
        ({"type": "rating", "value": None}, "bad_rating"),
        ({"type": "rating", "value": 0.5}, None),
        ({"type": "rating", "value": 10.0}, None),
    ],
)
def test_values_by_type(row: dict[str, Any], reason: str | None) -> None:
    frame = batch({"user_id": "u1", "item_id": "A", **row})
    found = reasons_of(frame, rules.values_by_type(QualitySettings()))
    assert found == ({0: {reason}} if reason else {})


def test_values_by_type_use_the_configured_limits() -> None:
    quality = QualitySettings(max_quantity=10, rating_min=1, rating_max=5)
    frame = batch(
        {"type": "purchase", "price": 1.0, "value": 11.0},
        {"type": "rating", "value": 6.0},
        {"type": "rating", "value": 0.5},
    )
    assert reasons_of(frame, rules.values_by_type(quality)) == {
        0: {"bad_quantity"},
        1: {"bad_rating"},
        2: {"bad_rating"},
    }


# -- pandera schema checks --------------------------------------------------------------------


def test_schema_reasons() -> None:
    now = datetime(2024, 6, 1, tzinfo=UTC)
    ok = {"user_id": "u1", "item_id": "A", "type": "view", "timestamp": T0}
    frame = batch(
        ok,  # 0
        {**ok, "type": "teleport"},  # 1
        {**ok, "type": "purchase", "price": 60_000.0, "value": 1.0},  # 2
        {**ok, "timestamp": now + timedelta(hours=1)},  # 3
        {**ok, "timestamp": now + timedelta(seconds=60)},  # 4: within the allowed skew
        {**ok, "timestamp": datetime(1990, 1, 1, tzinfo=UTC)},  # 5
        {**ok, "type": "purchase", "price": 5.0, "currency": "euro"},  # 6
        {**ok, "type": "purchase", "price": 50_000.0, "currency": "EUR"},  # 7: at the limit
    )
    found = schema_reasons(
        frame, EVENT_SCHEMA, event_checks(QualitySettings(), now), required_for_events()
    )
    by_row = {row: reason for row, reason in found.select("_row", "reason").iter_rows()}
    assert by_row == {
        1: "bad_event_type",
        2: "absurd_price",
        3: "future_timestamp",
        5: "ancient_timestamp",
        6: "bad_type",
    }


def test_schema_reasons_on_ingest(settings: Settings, tmp_path: Path) -> None:
    result = import_rows(
        settings,
        tmp_path,
        "events",
        [
            event(),  # 2
            event(type="teleport"),  # 3
            event(type="purchase", value=1, price=60_000, timestamp=iso(T0 + timedelta(1))),  # 4
            event(timestamp="2099-01-01T10:00:00Z"),  # 5
            event(timestamp="1990-01-01T10:00:00Z"),  # 6
        ],
        header=EVENTS,
    )
    held = quarantine_by_line(settings, result.import_id)
    assert {line: row["reasons"] for line, row in held.items()} == {
        3: ["bad_event_type"],
        4: ["absurd_price"],
        5: ["future_timestamp"],
        6: ["ancient_timestamp"],
    }
    assert all(row["detail"] for row in held.values()), "every quarantined record says why"
    assert result.accepted == 1


# -- outlier quantities -----------------------------------------------------------------------


def purchases(item: str, quantities: list[float]) -> list[dict[str, Any]]:
    """Purchase lines of one item."""
    return [
        {"user_id": f"u{i}", "item_id": item, "type": "purchase", "value": q, "price": 1.0}
        for i, q in enumerate(quantities)
    ]


def test_outlier_quantity_flags_only_the_keying_error() -> None:
    frame = batch(
        *purchases("A", [6, 6, 6, 12, 6, 6, 4, 80_995]),
        *purchases("B", [1, 2, 5_000]),  # fewer than outlier_min_lines: never judged
        *purchases("C", [6, 6, 6, 12, 6, 60, 6]),  # a wholesaler: 10x the median stays
    )
    flag = rules.outlier_quantities(frame, QualitySettings())
    assert flag.reason is Reason.OUTLIER_QUANTITY
    flagged = frame.filter(flag.mask)
    assert flagged.select("item_id", "value").rows() == [("A", 80_995.0)]


def test_outlier_quantity_needs_enough_lines() -> None:
    frame = batch(*purchases("B", [1, 2, 5_000]))
    assert not frame.select(rules.outlier_quantities(frame, QualitySettings()).mask).item(2, 0)
    judged = rules.outlier_quantities(frame, QualitySettings(outlier_min_lines=3))
    assert frame.select(judged.mask).to_series().to_list() == [False, False, True]


def test_outlier_quantity_on_ingest(settings: Settings, tmp_path: Path) -> None:
    rows = [
        event(type="purchase", user_id=f"u{i}", value=q, price=2.1, timestamp=iso(T0))
        for i, q in enumerate([6, 6, 12, 6, 80_995, 6, 4])
    ]
    result = import_rows(settings, tmp_path, "events", rows, header=EVENTS)
    held = quarantine_by_line(settings, result.import_id)
    assert {line: row["reasons"] for line, row in held.items()} == {6: ["outlier_quantity"]}
    assert result.accepted == 6


# -- bot users --------------------------------------------------------------------------------


def views(user: str, count: int, start: datetime, step: timedelta) -> list[dict[str, Any]]:
    """``count`` views by ``user``, one every ``step``."""
    return [
        {"user_id": user, "item_id": "A", "type": "view", "timestamp": start + i * step}
        for i in range(count)
    ]


def test_bot_user_browsing_is_flagged_not_purchases() -> None:
    frame = batch(
        *views("bot", 100, T0, timedelta(milliseconds=500)),
        {"user_id": "bot", "item_id": "A", "type": "purchase", "value": 1.0, "timestamp": T0},
        *views("human", 10, T0, timedelta(seconds=20)),
    )
    flag = rules.bot_users(frame, QualitySettings())
    assert flag.reason is Reason.BOT_USER
    flagged = (
        frame.with_columns(flag.mask.alias("bot"))
        .group_by("user_id", "type")
        .agg(pl.col("bot").all().alias("all"), pl.col("bot").any().alias("any"))
    )
    verdict = {(u, t): (a, n) for u, t, a, n in flagged.iter_rows()}
    assert verdict[("bot", "view")] == (True, True)
    assert verdict[("bot", "purchase")] == (False, False)
    assert verdict[("human", "view")] == (False, False)


def test_bot_user_burst_across_a_minute_boundary_is_flagged() -> None:
    """Regression: 100 views within 50 seconds are a bot even when the clock passes hh:mm:00."""
    frame = batch(*views("bot", 100, T0 + timedelta(seconds=30), timedelta(milliseconds=500)))
    assert frame.select(rules.bot_users(frame, QualitySettings()).mask).to_series().all()


def test_bot_user_by_daily_volume() -> None:
    frame = batch(
        *views("crawler", 30, T0, timedelta(minutes=10)), *views("shopper", 10, T0, timedelta(1))
    )
    mask = frame.select(rules.bot_users(frame, QualitySettings(bot_max_per_day=20)).mask)
    assert mask.to_series().to_list() == [True] * 30 + [False] * 10


# -- unknown items ----------------------------------------------------------------------------


def test_unknown_item_is_held_for_the_grace_period(settings: Settings, tmp_path: Path) -> None:
    import_products(settings, tmp_path, [{"item_id": "A", "title": "Lamp"}])
    before = datetime.now(UTC)
    result = import_rows(
        settings,
        tmp_path,
        "events",
        [
            event(),  # 2: known
            event(item_id="Z"),  # 3: unknown
            event(type="search", item_id=None, query="lamp"),  # 4: searches have no item
        ],
        header=EVENTS,
    )
    after = datetime.now(UTC)
    assert (result.accepted, result.reasons) == (2, {"unknown_item": 1})
    held = quarantine_by_line(settings, result.import_id)[3]
    assert held["reasons"] == ["unknown_item"]
    assert held["item_id"] == "Z"
    grace = timedelta(hours=settings.quality.unknown_item_grace_hours)
    assert before + grace <= held["hold_until"] <= after + grace
    assert result.notes == []


def test_unknown_item_released_when_its_product_arrives(settings: Settings, tmp_path: Path) -> None:
    import_products(settings, tmp_path, [{"item_id": "A", "title": "Lamp"}])
    events = import_rows(settings, tmp_path, "events", [event(), event(item_id="Z")], header=EVENTS)
    assert table(settings, "SELECT count(*) FROM events").item() == 1

    arrival = import_products(settings, tmp_path, [{"item_id": "Z", "title": "Zebra lamp"}])
    assert arrival.released == 1
    assert table(settings, "SELECT count(*) FROM events").item() == 2
    assert quarantine_by_line(settings, events.import_id)[3]["status"] == "released"
    released = table(settings, "SELECT item_id, import_id FROM events WHERE item_id = 'Z'")
    assert released.rows() == [("Z", events.import_id)]


def test_unknown_item_check_skipped_on_an_empty_catalog(settings: Settings, tmp_path: Path) -> None:
    result = import_rows(settings, tmp_path, "events", [event(item_id="Z")], header=EVENTS)
    assert (result.accepted, result.quarantined) == (1, 0)
    assert any("catalog is empty" in note for note in result.notes)


# -- non-product codes ------------------------------------------------------------------------


def test_non_product_codes_are_quarantined(settings: Settings, tmp_path: Path) -> None:
    codes = ["85123A", "POST", "DOT", "M", "BANK CHARGES", "AMAZONFEE", "post "]
    rows = [
        ["5400", code, "THING", 1, "2010-12-01 08:26:00", 2.5, 17850, "United Kingdom"]
        for code in codes
    ]
    result = reconciles(
        ingest(
            "events",
            write_csv(tmp_path / "fees.csv", UCI_HEADER, rows),
            "uci-online-retail",
            settings,
        )
    )
    assert result.accepted == 1
    assert result.reasons == {"non_product": 6}
    held = quarantine_by_line(settings, result.import_id)
    assert set(held) == {3, 4, 5, 6, 7, 8}
    assert all(row["reasons"] == ["non_product"] for row in held.values())
    assert all(row["hold_until"] is None for row in held.values())
    [catalog] = result.derived
    assert table(settings, "SELECT item_id FROM products")["item_id"].to_list() == ["85123A"]
    assert catalog.accepted == 1


# -- counts reconcile -------------------------------------------------------------------------

_DAY = datetime(2024, 3, 1, tzinfo=UTC)
_event_rows = st.lists(
    st.tuples(
        st.sampled_from(["u1", "u2", "", "  "]),
        st.sampled_from(["A", "B", "", "POST"]),
        st.sampled_from(["view", "purchase", "return", "search", "rating", "teleport"]),
        st.sampled_from(["", "1", "3", "-2", "0", "six", "80995"]),
        st.sampled_from(["", "2.5", "0", "-1", "99999"]),
        st.sampled_from(["", "lamp", " "]),
        st.one_of(
            st.integers(0, 600).map(lambda s: iso(_DAY + timedelta(seconds=s))),
            st.sampled_from(["", "junk", "2099-01-01T00:00:00Z", "1980-01-01T00:00:00Z"]),
        ),
    ),
    min_size=1,
    max_size=25,
)


@hypothesis_settings(
    max_examples=20,
    deadline=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],  # shrinking re-runs imports: too slow by default
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(rows=_event_rows)
def test_every_import_reconciles(
    tmp_path_factory: pytest.TempPathFactory, rows: list[tuple[str, ...]]
) -> None:
    """Any batch reconciles, the store holds what was accepted, a second import adds nothing."""
    folder = tmp_path_factory.mktemp("prop")
    config = load_settings(home=folder / "home", secret_key=TEST_SECRET)
    header = ["user_id", "item_id", "type", "value", "price", "query", "timestamp"]
    path = write_csv(folder / "events.csv", header, rows)
    for _ in range(2):  # a second import of the same file is all duplicates
        result = reconciles(ingest("events", path, "canonical", config))
    assert result.input == len(rows)
    assert (result.accepted, result.quarantined, result.duplicates) == (0, 0, len(rows))
    with Store(config.home) as store:
        stored = store.scalar("SELECT count(*) FROM events")
        accepted = store.scalar("SELECT sum(accepted) FROM imports WHERE kind = 'events'")
    assert stored == accepted


# -- the UCI sample end to end ----------------------------------------------------------------


def test_uci_sample_end_to_end(settings: Settings, uci_file: Path) -> None:
    result = reconciles(ingest("events", uci_file, "uci-online-retail", settings))
    assert result.input == 13
    held = quarantine_by_line(settings, result.import_id)
    dups = duplicates_by_line(settings, result.import_id)
    reasons = {line: set(row["reasons"]) for line, row in held.items()}

    assert "missing_field" in reasons[6]  # no customer
    assert reasons[7] == {"non_product"}  # POST: a charge, not an unknown product
    assert held[7]["hold_until"] is None
    assert reasons[8] == {"nonpositive_price"}  # zero price
    assert reasons[10] == {"unmatched_return"}  # a cancellation of nothing bought
    assert "bad_type" in reasons[11]  # Quantity "six"
    assert "'value'" in (held[11]["detail"] or "")
    assert "bad_timestamp" in reasons[12]
    assert reasons[13] == {"future_timestamp"}
    assert "bad_quantity" in reasons[14]  # a negative quantity outside a cancellation
    assert set(held) == {6, 7, 8, 10, 11, 12, 13, 14}
    assert all(row["detail"] for row in held.values()), "every quarantined record says why"

    assert set(dups) == {4}  # line 3 repeated
    assert dups[4]["rule"] == "exact"
    lantern = dups[4]["duplicate_of"]

    assert (result.accepted, result.quarantined, result.duplicates) == (4, 8, 1)
    events = table(settings, "SELECT event_id, item_id, type, value, ref_event_id FROM events")
    assert events.height == 4
    kept = events.filter(pl.col("event_id") == lantern).row(0, named=True)
    assert (kept["item_id"], kept["type"], kept["value"]) == ("71053", "purchase", 6.0)
    [cancel] = events.filter(pl.col("type") == "return").rows(named=True)
    assert (cancel["item_id"], cancel["value"], cancel["ref_event_id"]) == ("71053", 2.0, lantern)

    [catalog] = result.derived
    products = table(settings, "SELECT item_id, title, aliases FROM products ORDER BY item_id")
    assert products["item_id"].to_list() == ["22633", "22960", "71053", "84029G", "85123A"]
    # "HAND WARMER  UNION JACK " is the same title once whitespace is collapsed
    warmer = products.filter(pl.col("item_id") == "22633").row(0, named=True)
    assert (warmer["title"], warmer["aliases"]) == ("HAND WARMER UNION JACK", [])
    assert catalog.accepted == 5
