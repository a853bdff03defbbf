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
from aisle.privacy.dp import bounded_popularity, gaussian, release_popular, spent
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
