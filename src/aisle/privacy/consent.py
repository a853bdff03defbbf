"""Consent: a customer who withdraws a purpose is treated from then on as never having given it."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

import polars as pl

from aisle.privacy import audit
from aisle.privacy.subjects import listed_among, subject_hash
from aisle.storage import Store


class Purpose(StrEnum):
    """What a customer may consent to."""

    PERSONALISATION = "personalisation"  # personal models, profiles, recommendations
    ANALYTICS = "analytics"  # aggregates; without it, only differentially private ones


def withdraw(store: Store, pseudonym: str, purpose: Purpose, subject: str | None = None) -> int:
    """Record the withdrawal and clear the flag on the customer's stored events; returns how
    many events changed. Later imports clear it too (see ``apply_withdrawals``)."""
    column = f"consent_{purpose.value}"
    with store.transaction():
        changed = int(
            store.scalar(
                f"SELECT count(*) FROM events WHERE user_id = ? "
                f"AND {column} IS DISTINCT FROM false",
                [pseudonym],
            )
        )
        store.execute(f"UPDATE events SET {column} = false WHERE user_id = ?", [pseudonym])
        store.execute(
            "INSERT INTO consent_withdrawals VALUES (?, ?, ?)",
            [subject_hash(subject or pseudonym), purpose.value, datetime.now(UTC)],
        )
        audit.record(
            store, "consent_withdrawn", pseudonym, {"purpose": purpose.value, "events": changed}
        )
    return changed


def apply_withdrawals(
    store: Store, events: pl.DataFrame, first_of: dict[str, str] | None = None
) -> pl.DataFrame:
    """Clear the consent flags of customers who withdrew them, whatever the source says."""
    for purpose in Purpose:
        withdrawn = listed_among(
            store,
            events["user_id"],
            "consent_withdrawals",
            "t.purpose = ?",
            [purpose.value],
            first_of=first_of,
        )
        if withdrawn.len():
            column = f"consent_{purpose.value}"
            events = events.with_columns(
                pl.when(pl.col("user_id").is_in(withdrawn.implode()))
                .then(False)
                .otherwise(pl.col(column))
                .alias(column)
            )
    return events
