"""Column profiles, PSI and KS drift measures, and profile comparison."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from aisle.config import QualitySettings
from aisle.quality.drift import compare_profiles, detect_drift, ks_from_quantiles, psi
from aisle.quality.profile import OTHER, load_profile, profile_frame, save_profile
from aisle.storage.store import Store


def _events(seed: int, n: int = 2_000, shift: float = 0.0, buy_share: float = 0.2) -> pl.DataFrame:
    """A synthetic event batch: value ~ N(shift, 1), type mostly views."""
    rng = np.random.default_rng(seed)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    return pl.DataFrame(
        {
            "event_id": [f"e{seed}-{i}" for i in range(n)],
            "user_id": [f"cust-{u}" for u in rng.integers(0, 50, n)],
            "type": rng.choice(["view", "purchase"], n, p=[1 - buy_share, buy_share]),
            "value": rng.normal(shift, 1.0, n),
            "timestamp": [start + timedelta(minutes=int(m)) for m in rng.integers(0, 10_000, n)],
            "_line": np.arange(n),
        }
    )


def test_profile_null_rates_top_values_and_quantiles() -> None:
    frame = pl.DataFrame(
        {
            "type": ["view", "view", "purchase", None],
            "price": [1.0, 2.0, None, 4.0],
            "category_path": [["a"], None, [], ["b"]],
            "_reasons": [None, None, None, None],
        }
    )
    profile = profile_frame(frame, "events")

    assert set(profile) == {"type", "price", "category_path"}
    assert profile["type"]["null_rate"] == 0.25
    assert profile["type"]["distinct"] == 2
    assert profile["type"]["top"] == {"view": 2, "purchase": 1, OTHER: 0}
    price = profile["price"]
    assert (price["count"], price["min"], price["max"]) == (4, 1.0, 4.0)
    assert price["mean"] == pytest.approx(7 / 3)
    assert len(price["quantiles"]) == 101
    assert price["quantiles"] == pytest.approx(
        np.quantile([1.0, 2.0, 4.0], np.linspace(0, 1, 101)).tolist()
    )
    assert profile["category_path"]["null_rate"] == 0.25
    assert "top" not in profile["category_path"]
    json.dumps(profile, allow_nan=False)


def test_profile_counts_other_beyond_top_twenty() -> None:
    frame = pl.DataFrame({"item_id": [str(i) for i in range(30)] + ["0"] * 5})
    top = profile_frame(frame, "events")["item_id"]["top"]
    assert len(top) == 21
    assert top["0"] == 6
    assert sum(top.values()) == 35


def test_identifiers_get_counts_only() -> None:
    profile = profile_frame(_events(1, n=100), "events")
    for column in ("event_id", "user_id"):
        assert set(profile[column]) <= {
            "kind",
            "dtype",
            "role",
            "count",
            "nulls",
            "null_rate",
            "distinct",
        }
    assert "cust-" not in json.dumps(profile)  # no pseudonym reaches a profile


def test_datetimes_sketched_as_epoch_seconds() -> None:
    profile = profile_frame(_events(2, n=500), "events")["timestamp"]
    start = datetime(2024, 1, 1, tzinfo=UTC).timestamp()
    assert start <= profile["quantiles"][0] <= profile["quantiles"][-1] <= start + 10_000 * 60
    assert profile["min"].startswith("2024-01-0")


def test_empty_frame_profiles() -> None:
    profile = profile_frame(_events(3).head(0), "events")
    assert profile["value"]["quantiles"] == []
    assert profile["value"]["null_rate"] == 0.0


def test_psi_zero_for_identical_and_large_for_shifted() -> None:
    counts = {"view": 800, "purchase": 200}
    assert psi(counts, counts) == pytest.approx(0.0)
    assert psi(counts, {"view": 400, "purchase": 600}) > 0.2
    assert psi(counts, {"view": 800, "purchase": 200, "return": 300}) > 0.2


def test_ks_near_zero_for_same_distribution_and_large_for_shift() -> None:
    rng = np.random.default_rng(7)
    qs = np.linspace(0, 1, 101)
    a = np.quantile(rng.normal(0, 1, 20_000), qs).tolist()
    b = np.quantile(rng.normal(0, 1, 20_000), qs).tolist()
    c = np.quantile(rng.normal(1, 1, 20_000), qs).tolist()
    assert ks_from_quantiles(a, a) == 0.0
    assert ks_from_quantiles(a, b) < 0.03
    assert ks_from_quantiles(a, c) == pytest.approx(0.383, abs=0.03)  # 2*Phi(0.5) - 1


def test_ks_handles_point_masses() -> None:
    assert ks_from_quantiles([1.0] * 101, [1.0] * 101) == 0.0
    assert ks_from_quantiles([1.0] * 101, [2.0] * 101) == 1.0


def test_compare_profiles_flags_the_shifted_column() -> None:
    baseline = profile_frame(_events(10), "events")
    same = profile_frame(_events(11), "events")
    shifted = profile_frame(_events(12, shift=1.0), "events")
    more_buys = profile_frame(_events(13, buy_share=0.7), "events")

    assert not any(d.flagged for d in compare_profiles(baseline, same, 0.2, 0.1))
    flagged = {
        (d.column, d.metric) for d in compare_profiles(baseline, shifted, 0.2, 0.1) if d.flagged
    }
    assert flagged == {("value", "ks")}
    flagged = {
        (d.column, d.metric) for d in compare_profiles(baseline, more_buys, 0.2, 0.1) if d.flagged
    }
    assert flagged == {("type", "psi")}


def _ledger(store: Store, import_id: int, adapter: str) -> None:
    store.execute(
        "INSERT INTO imports (import_id, kind, source, adapter, status, started_at, accepted) "
        "VALUES (?, 'events', 'x.csv', ?, 'complete', now(), 100)",
        [import_id, adapter],
    )


def test_save_load_and_detect_drift(tmp_path: Path) -> None:
    with Store(tmp_path) as store:
        assert detect_drift(store, 1, "events", QualitySettings()) == []
        for import_id, adapter, shift in ((1, "uci", 0.0), (2, "other", 3.0), (3, "uci", 1.0)):
            _ledger(store, import_id, adapter)
            save_profile(
                store, import_id, "events", profile_frame(_events(import_id, shift=shift), "events")
            )
        assert load_profile(store, 3) == profile_frame(_events(3, shift=1.0), "events")

        drifts = detect_drift(store, 3, "events", QualitySettings())
        again = detect_drift(store, 3, "events", QualitySettings())  # idempotent
        rows = store.query("SELECT * FROM drift")

    assert drifts == again
    assert {d.column for d in drifts if d.flagged} == {"value"}
    assert rows.height == len(drifts)
    assert set(rows["baseline_import_id"]) == {1}  # same adapter preferred over the later import


def test_another_feed_is_never_a_baseline(tmp_path: Path) -> None:
    """Clicks from one site and purchases from another differ by design, not by drift."""
    with Store(tmp_path) as store:
        for import_id, adapter, shift in ((1, "bestbuy-clicks", 3.0), (2, "uci", 0.0)):
            _ledger(store, import_id, adapter)
            save_profile(
                store, import_id, "events", profile_frame(_events(import_id, shift=shift), "events")
            )
        assert detect_drift(store, 2, "events", QualitySettings()) == []
