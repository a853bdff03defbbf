"""Purchase events made up for model tests, in the columns ``load_events`` returns."""

from __future__ import annotations

from datetime import datetime

import polars as pl


def purchases(rows: list[tuple[str, str, datetime]]) -> pl.DataFrame:
    """One purchase per (customer, item, time) row."""
    return pl.DataFrame(
        {
            "event_id": [f"e{i:06d}" for i in range(len(rows))],
            "user_id": [r[0] for r in rows],
            "item_id": [r[1] for r in rows],
            "type": "purchase",
            "value": 1.0,
            "timestamp": [r[2] for r in rows],
            "ref_event_id": None,
        },
        schema_overrides={"ref_event_id": pl.String},
    )
