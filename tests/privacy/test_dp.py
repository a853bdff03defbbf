"""Differentially private releases: the noise matches the epsilon claimed, the budget holds."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from aisle.config import PrivacySettings, Settings
from aisle.errors import PrivacyBudgetError
from aisle.pipeline import ingest
from aisle.privacy import audit
from aisle.privacy.dp import (
    FIRST_ROUND_SHARE,
    bounded_popularity,
    bounded_sums,
    gaussian,
    release_popular,
    rho_for,
    spent,
    zcdp_gaussian,
)
from aisle.storage import Store


def test_noise_has_the_scale_the_epsilon_needs() -> None:
    """Samples of the mechanism are Gaussian with the calibrated scale, and that scale is the
    smallest OpenDP accepts for the claim: less noise would cost more than epsilon."""
    mechanism, scale = gaussian(1.0, 1e-6, bound=2.0)
    draws = np.asarray([mechanism([0.0] * 500) for _ in range(20)]).ravel()
    assert stats.kstest(draws / scale, "norm").pvalue > 0.001
    assert abs(draws.std() / scale - 1) < 0.05
    assert math.isclose(mechanism.map(2.0)[0], 1.0, rel_tol=1e-6)  # exactly the claim
    assert mechanism.map(2.0 * 1.05)[0] > 1.0  # a larger contribution would cost more
    # twice the epsilon needs about half the noise
    assert math.isclose(gaussian(2.0, 1e-6, bound=2.0)[1], scale / 2, rel_tol=0.15)


def test_two_rounds_cost_exactly_the_epsilon_claimed() -> None:
    """The two rounds' zCDP costs add up to the rho whose conversion is (epsilon, delta)."""
    rho = rho_for(1.0, 1e-6)
    first, _ = zcdp_gaussian(rho * FIRST_ROUND_SHARE, 2.0)
    second, _ = zcdp_gaussian(rho * (1 - FIRST_ROUND_SHARE), 2.0)
    assert math.isclose(first.map(2.0) + second.map(2.0), rho, rel_tol=1e-9)
    mechanism, scale = gaussian(1.0, 1e-6, bound=2.0)
    assert math.isclose(mechanism.map(2.0)[0], 1.0, rel_tol=1e-6)
    assert math.isclose(rho, 2.0**2 / (2 * scale**2), rel_tol=1e-9)  # same rho, same claim


def test_the_second_round_counts_only_band_items(settings: Settings, uci_file: Path) -> None:
    """A customer's bound is spread over the band items they bought, so each weighs more."""
    ingest("events", uci_file, "uci-online-retail", settings)
    with Store(settings.home) as store:
        whole = bounded_sums(store, "all", 1.0)
        band = bounded_sums(store, "all", 1.0, within=["85123A"])
    one = whole.filter(whole["key"] == "85123A")["exact"].item()
    assert band.filter(band["key"] == "85123A")["exact"].item() >= one
    assert band.filter(band["key"] != "85123A")["exact"].sum() == 0


def test_each_customer_contributes_a_bounded_amount(settings: Settings, uci_file: Path) -> None:
    ingest("events", uci_file, "uci-online-retail", settings)
    with Store(settings.home) as store:
        sums = bounded_popularity(store, "all", bound=1.0)
    # three customers bought accepted items; each adds at most 1 in L2, so the total is small
    assert 0 < sums["exact"].sum() <= 3 * 2
    assert set(sums["item_id"]) >= {"85123A", "71053"}


def test_the_budget_is_spent_and_then_refused(settings: Settings, uci_file: Path) -> None:
    ingest("events", uci_file, "uci-online-retail", settings)
    policy = PrivacySettings(epsilon_budget=1.5)
    with Store(settings.home) as store:
        first = release_popular(store, policy, epsilon=1.0, top=3)
        assert first.items.height == 3 and spent(store, "all") == 1.0
        with pytest.raises(PrivacyBudgetError, match="exceed"):
            release_popular(store, policy, epsilon=1.0, top=3)
        release_popular(store, policy, epsilon=0.5, top=3)
        assert spent(store, "all") == 1.5
        assert len(audit.entries(store, action="release")) == 2
        assert audit.verify(store).ok


@pytest.mark.integration
def test_utility_on_uci(shared_data: Path, tmp_path: Path) -> None:
    """Overlap of the private top-100 with the exact top-100 (by distinct buyers)."""
    from tests.conftest import TEST_SECRET

    config = Settings(home=tmp_path / "home", secret_key=TEST_SECRET)
    ingest("events", shared_data / "uci-online-retail", "uci-online-retail", config)
    with Store(config.home) as store:
        exact = store.query(
            "SELECT item_id, count(DISTINCT user_id) AS n FROM events WHERE type = 'purchase' "
            "AND item_id IN (SELECT item_id FROM products) GROUP BY 1 ORDER BY n DESC, 1 LIMIT 100"
        )
        policy = PrivacySettings(epsilon_budget=100.0)
        overlaps = [
            len(set(release_popular(store, policy, epsilon=10.0, top=100).items["item_id"])
                & set(exact["item_id"])) / 100
            for _ in range(3)
        ]  # fmt: skip
    assert np.median(overlaps) >= 0.85  # at epsilon 10; epsilon 1 is measured in benchmarks


def test_trending_and_categories_spend_the_same_budget(settings: Settings, tmp_path: Path) -> None:
    """Best Buy: trending over the last week of clicks-turned-purchases and category counts."""
    from tests.conftest import write_csv

    write_csv(
        tmp_path / "p.csv",
        ["item_id", "title", "category_path"],
        [("A", "Halo", "Games > Shooter"), ("B", "Forza", "Games > Racing"), ("C", "Pad", "Kit")],
    )
    rows = [(f"u{i}", "A" if i % 3 else "C", "purchase", "1", "10", f"2024-01-{1 + i % 20:02d}")
            for i in range(60)]  # fmt: skip
    write_csv(
        tmp_path / "e.csv", ["user_id", "item_id", "type", "value", "price", "timestamp"], rows
    )
    ingest("products", tmp_path / "p.csv", "canonical", settings)
    ingest("events", tmp_path / "e.csv", "canonical", settings)
    policy = PrivacySettings(epsilon_budget=3.0)
    from aisle.privacy.dp import release

    with Store(settings.home) as store:
        trending = release(store, policy, "trending", epsilon=1.0, top=2, days=7)
        categories = release(store, policy, "categories", epsilon=1.0, top=3)
        assert spent(store, "all") == 2.0
        with pytest.raises(PrivacyBudgetError):
            release(store, policy, "categories", epsilon=1.5)
    assert (
        trending.items.columns == ["item_id", "title", "score", "round"]
        and trending.items.height == 2
    )
    assert set(categories.items["category"]) == {"Games", "Kit"}


@pytest.mark.integration
def test_search_suggestions_on_real_queries(shared_data: Path, tmp_path: Path) -> None:
    """Best Buy queries: the popular ones come out, no query typed by few customers does."""
    from aisle.privacy.dp import query_counts, release
    from tests.conftest import TEST_SECRET

    config = Settings(home=tmp_path / "home", secret_key=TEST_SECRET)
    ingest("events", shared_data / "bestbuy-small-xbox", "bestbuy-clicks", config)
    with Store(config.home) as store:
        exact = query_counts(store, "all", 5)
        result = release(store, PrivacySettings(), "suggestions", epsilon=1.0, top=20)
    top_exact = sorted(exact, key=lambda q: -exact[q])[:20]
    released = result.items["query"].to_list()
    assert len(set(released) & set(top_exact)) >= 15
    assert min(exact[q] for q in released) > 20  # rare queries are suppressed by the threshold
