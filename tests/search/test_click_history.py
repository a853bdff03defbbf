"""Click history: query keys, time decay, one vote per customer, smoothing, save and load."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from aisle.search.clicks import CLICK_FEATURES, ClickHistory, query_key, query_words

NOW = datetime(2024, 5, 1, tzinfo=UTC)


def clicks(rows: list[tuple[str, str, str, int]]) -> pl.DataFrame:
    """(query, item, user, days before NOW) rows as a click frame."""
    return pl.DataFrame(
        {
            "query": [r[0] for r in rows],
            "item_id": [r[1] for r in rows],
            "user_id": [r[2] for r in rows],
            "timestamp": [NOW - timedelta(days=r[3]) for r in rows],
        }
    )


def test_query_keys_ignore_case_spacing_and_punctuation() -> None:
    assert query_key("Gears of War 3") == query_key("gears-of-war 3") == "gearsofwar3"
    assert query_key("ＸＢＯＸ 360") == "xbox360"  # NFKC folds full-width letters
    assert query_words("Halo: Reach, halo") == ["halo", "reach"]
    assert query_key("!!!") == ""


def test_share_follows_clicks_and_each_customer_counts_once() -> None:
    frame = clicks(
        [("halo", "a", "u1", 0), ("halo", "a", "u1", 0), ("halo", "a", "u1", 1)]  # one voter
        + [("halo", "b", f"v{i}", 0) for i in range(3)]
    )
    index = ClickHistory(half_life_days=1e9, prior=0.0).fit(frame).index(["a", "b", "c"])
    got = index.features("HALO", np.asarray([0, 1, 2]))
    share = got[:, CLICK_FEATURES.index("query_share")]
    assert share == pytest.approx([0.25, 0.75, 0.0])
    assert list(index.clicked("halo")) == [1, 0]  # most clicked first
    rank = got[:, CLICK_FEATURES.index("query_rank")]
    assert list(rank) == [2, 1, 0]


def test_older_clicks_weigh_less() -> None:
    frame = clicks([("forza", "old", "u1", 28), ("forza", "new", "u2", 0)])
    index = ClickHistory(half_life_days=14, prior=0.0).fit(frame, now=NOW).index(["old", "new"])
    logs = index.features("forza", np.asarray([0, 1]))[:, CLICK_FEATURES.index("query_log_clicks")]
    assert np.expm1(logs) == pytest.approx([0.25, 1.0])


def test_unseen_query_falls_back_on_its_words() -> None:
    frame = clicks(
        [("batman arkham", "bat", f"u{i}", 0) for i in range(5)]
        + [("dead island", "dead", f"w{i}", 0) for i in range(5)]
    )
    index = ClickHistory().fit(frame).index(["bat", "dead"])
    got = index.features("arkham city", np.asarray([0, 1]))
    assert got[0, CLICK_FEATURES.index("query_weight")] == 0  # never typed whole
    words = got[:, CLICK_FEATURES.index("words_log_share")]
    assert words[0] > words[1]


def test_save_and_load_give_the_same_features(tmp_path: Path) -> None:
    frame = clicks([("cod", "a", "u1", 3), ("cod", "b", "u2", 1), ("mw3", "b", "u3", 0)])
    history = ClickHistory().fit(frame)
    history.save(tmp_path / "clicks")
    again = ClickHistory.load(tmp_path / "clicks")
    columns = np.asarray([0, 1])
    for query in ("cod", "mw3 cod", "unknown"):
        expected = history.index(["a", "b"]).features(query, columns)
        assert np.array_equal(again.index(["a", "b"]).features(query, columns), expected)


def test_no_clicks_gives_neutral_features() -> None:
    index = ClickHistory().fit(clicks([])).index(["a"])
    got = index.features("anything", np.asarray([0]))
    assert got.shape == (1, len(CLICK_FEATURES))
    assert np.isfinite(got).all()
