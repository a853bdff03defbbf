"""Retention: old raw events become customer-free aggregates; old held payloads expire."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from aisle.config import RetentionSettings, Settings
from aisle.pipeline import ingest
from aisle.privacy import audit
from aisle.privacy.retention import apply_retention
from aisle.storage import Store

#: uci_file's events run from 2010-12-01 to 2010-12-06 (and one in 2099)
NOW = datetime(2010, 12, 10, tzinfo=UTC)


def test_old_events_roll_up_and_a_second_run_changes_nothing(
    settings: Settings, uci_file: Path
) -> None:
    ingest("events", uci_file, "uci-online-retail", settings)
    policy = RetentionSettings(events_days=7, quarantine_days=None)
    with Store(settings.home) as store:
        before = store.query("SELECT item_id, type, count(*) AS n, sum(value) AS q FROM events "
                             "WHERE timestamp < '2010-12-03' GROUP BY ALL ORDER BY ALL")  # fmt: skip
        total = store.scalar("SELECT count(*) FROM events")
        day_rows = store.scalar(
            "SELECT count(*) FROM (SELECT DISTINCT CAST(timestamp AS DATE), item_id, type "
            "FROM events WHERE timestamp < '2010-12-03')"
        )
        first = apply_retention(store, policy, now=NOW)
        second = apply_retention(store, policy, now=NOW)
        left = store.scalar("SELECT count(*) FROM events")
        rolled = store.query("SELECT item_id, type, sum(events) AS n, sum(quantity) AS q "
                             "FROM event_aggregates GROUP BY ALL ORDER BY ALL")  # fmt: skip
        logged = audit.entries(store, action="retention")
    assert first.events_rolled_up == total - left == before["n"].sum() > 0
    assert first.aggregate_rows == day_rows
    assert second.to_json() == {
        "events_rolled_up": 0, "aggregate_rows": 0, "quarantine_expired": 0,
        "duplicates_expired": 0,
    }  # fmt: skip
    assert rolled.equals(before)  # the same counts and quantities, per item and type
    assert "user_id" not in rolled.columns
    assert len(logged) == 1


def test_old_quarantine_loses_payload_and_customer(settings: Settings, uci_file: Path) -> None:
    ingest("events", uci_file, "uci-online-retail", settings)
    later = datetime.now(UTC).replace(year=datetime.now(UTC).year + 1)
    with Store(settings.home) as store:
        held = store.scalar("SELECT count(*) FROM quarantine")
        outcome = apply_retention(store, RetentionSettings(quarantine_days=90), now=later)
        left = store.query("SELECT payload, user_id, reasons FROM quarantine")
    assert outcome.quarantine_expired == held > 0
    assert left["payload"].null_count() == left["user_id"].null_count() == left.height == held
    assert left["reasons"].list.len().min() >= 1  # the ledger keeps why it was held
    assert outcome.duplicates_expired == 1
