"""Returns: each is matched to the latest earlier purchase of its customer and item."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import polars as pl

from aisle.config import Settings
from aisle.quality.returns import match_returns
from tests.quality.tiny_batches import (
    EVENTS,
    T0,
    UTC_TS,
    event,
    import_rows,
    iso,
    quarantine_by_line,
    table,
)

# -- returns ----------------------------------------------------------------------------------


def test_returns_match_their_purchase(settings: Settings, tmp_path: Path) -> None:
    day = timedelta(days=1)
    result = import_rows(
        settings,
        tmp_path,
        "events",
        [
            event(type="purchase", value=2, price=3, timestamp=iso(T0)),  # 2
            event(type="return", value=1, price=3, timestamp=iso(T0 + day)),  # 3: matched
            event(type="return", user_id="u2", value=1, price=3, timestamp=iso(T0 + day)),  # 4
            event(type="return", item_id="C", value=1, price=3, timestamp=iso(T0 - day)),  # 5
            event(type="purchase", item_id="C", value=1, price=3, timestamp=iso(T0)),  # 6
        ],
        header=EVENTS,
    )
    held = quarantine_by_line(settings, result.import_id)
    # no purchase by that customer; a purchase only after the return
    assert {line: row["reasons"] for line, row in held.items()} == {
        4: ["unmatched_return"],
        5: ["unmatched_return"],
    }
    trade = table(
        settings,
        "SELECT event_id, type, ref_event_id FROM events WHERE item_id = 'A' ORDER BY timestamp",
    )
    (purchase, _, no_ref), (_, kind, ref) = trade.rows()
    assert (kind, ref, no_ref) == ("return", purchase, None)

    later = import_rows(
        settings,
        tmp_path,
        "events",
        [event(type="return", value=1, price=3, timestamp=iso(T0 + 2 * day))],
        header=EVENTS,
    )
    assert (later.accepted, later.quarantined) == (1, 0)
    ref = table(
        settings, "SELECT ref_event_id FROM events WHERE import_id = ?", [later.import_id]
    ).item()
    assert ref == purchase


def test_match_returns_prefers_the_latest_earlier_purchase() -> None:
    def rows(*events: tuple[str, str, int]) -> pl.DataFrame:
        return pl.DataFrame(
            {
                "event_id": [e[0] for e in events],
                "user_id": ["u"] * len(events),
                "item_id": ["A"] * len(events),
                "type": [e[1] for e in events],
                "timestamp": [T0 + timedelta(hours=e[2]) for e in events],
            },
            schema_overrides={"timestamp": UTC_TS},
        )

    candidates = rows(("p2", "purchase", 5), ("r1", "return", 6), ("r0", "return", -1))
    stored = rows(("p1", "purchase", 0))
    assert match_returns(candidates, stored).to_list() == [None, "p2", None]
