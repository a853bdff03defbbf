"""Retention: raw events kept for a while, then only aggregates; held payloads expire."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aisle.config import RetentionSettings
from aisle.privacy import audit
from aisle.storage import Store


@dataclass(frozen=True)
class RetentionOutcome:
    """What one application of the policy did (all zeros when run again at once)."""

    events_rolled_up: int
    aggregate_rows: int
    quarantine_expired: int
    duplicates_expired: int

    def to_json(self) -> dict[str, Any]:
        """Machine-readable form."""
        return {
            "events_rolled_up": self.events_rolled_up,
            "aggregate_rows": self.aggregate_rows,
            "quarantine_expired": self.quarantine_expired,
            "duplicates_expired": self.duplicates_expired,
        }


def apply_retention(
    store: Store, policy: RetentionSettings, now: datetime | None = None
) -> RetentionOutcome:
    """Apply the policy in one transaction; idempotent.

    Events older than ``events_days`` are added to ``event_aggregates`` (day, item, type:
    count and quantity, no customer) and deleted. Held and duplicate records older than
    ``quarantine_days`` keep their ledger row but lose their payload and customer.
    """
    now = now or datetime.now(UTC)
    rolled = rows = expired = dup_expired = 0
    with store.transaction():
        if policy.events_days is not None:
            cutoff = now - timedelta(days=policy.events_days)
            rolled = int(store.scalar("SELECT count(*) FROM events WHERE timestamp < ?", [cutoff]))
            if rolled:
                rows = int(
                    store.scalar(
                        "SELECT count(*) FROM (SELECT DISTINCT CAST(timestamp AS DATE), item_id, "
                        "type FROM events WHERE timestamp < ?)",
                        [cutoff],
                    )
                )
                store.execute(
                    "INSERT INTO event_aggregates SELECT CAST(timestamp AS DATE), item_id, type, "
                    "count(*), sum(value) FROM events WHERE timestamp < ? GROUP BY ALL",
                    [cutoff],
                )
                store.execute("DELETE FROM events WHERE timestamp < ?", [cutoff])
        if policy.quarantine_days is not None:
            cutoff = now - timedelta(days=policy.quarantine_days)
            expired = int(
                store.scalar(
                    "SELECT count(*) FROM quarantine WHERE created_at < ? "
                    "AND (payload IS NOT NULL OR user_id IS NOT NULL)",
                    [cutoff],
                )
            )
            store.execute(
                "UPDATE quarantine SET payload = NULL, user_id = NULL WHERE created_at < ? "
                "AND (payload IS NOT NULL OR user_id IS NOT NULL)",
                [cutoff],
            )
            dup_expired = int(
                store.scalar(
                    "SELECT count(*) FROM duplicates d JOIN imports i USING (import_id) "
                    "WHERE i.started_at < ? AND d.user_id IS NOT NULL",
                    [cutoff],
                )
            )
            store.execute(
                "UPDATE duplicates SET user_id = NULL WHERE user_id IS NOT NULL AND import_id IN "
                "(SELECT import_id FROM imports WHERE started_at < ?)",
                [cutoff],
            )
        outcome = RetentionOutcome(rolled, rows, expired, dup_expired)
        if rolled or expired or dup_expired:
            audit.record(store, "retention", None, {**outcome.to_json(), **policy.model_dump()})
    return outcome
