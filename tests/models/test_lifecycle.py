"""Retrain and gate: a new version goes live only if it validates no worse than production; the
store is held only to read and to register, never while fitting."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from aisle.config import RecommendSettings, Settings
from aisle.errors import ConfigError
from aisle.features.interactions import Interactions, build_interactions
from aisle.models import registry
from aisle.models.base import BaseRecommender
from aisle.models.lifecycle import gate, retrain
from aisle.models.training import train
from aisle.pipeline import ingest
from aisle.privacy import audit
from aisle.privacy.erasure import erase, find_traces
from aisle.privacy.rotation import pseudonymiser_for
from aisle.storage import Store
from tests.conftest import json_result, run_aisle, write_csv
from tests.models.purchases import purchases

#: Good (fast) configurations, and worse ones of the same models.
GOOD: dict[str, dict[str, Any]] = {
    "popularity": {},
    "itemknn": {"neighbours": 50},
    "als": {"factors": 8, "iterations": 10},
}
WORSE: dict[str, dict[str, Any]] = {
    "itemknn": {"neighbours": 1},
    "als": {"factors": 1, "iterations": 1},
}


def baskets() -> list[tuple[str, str, datetime]]:
    """90 customers in three tastes (groups a, b, c of ten items), five purchases each, the
    items of a group drawn with skewed popularity."""
    rng = np.random.default_rng(7)
    weights = 1 / np.arange(1, 11)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    rows = []
    for u in range(90):
        group = "abc"[u % 3]
        chosen = rng.choice(10, size=5, replace=False, p=weights / weights.sum())
        rows += [(f"c{u}", f"{group}{item}", start + timedelta(days=k, hours=u))
                 for k, item in enumerate(chosen)]  # fmt: skip
    return rows


@pytest.fixture(scope="module")
def data() -> Interactions:
    return build_interactions(purchases(baskets()), RecommendSettings())


@pytest.fixture
def shop(settings: Settings, tmp_path: Path) -> Settings:
    """The same purchases ingested into a store, with the catalog."""
    rows = baskets()
    items = sorted({item for _, item, _ in rows})
    catalog = write_csv(tmp_path / "catalog.csv", ["item_id", "title"],
                        [(i, f"product {i}") for i in items])  # fmt: skip
    events = write_csv(tmp_path / "events.csv", ["user_id", "item_id", "type", "timestamp"],
                       [(u, i, "purchase", t.isoformat()) for u, i, t in rows])  # fmt: skip
    ingest("products", catalog, "canonical", settings)
    ingest("events", events, "canonical", settings)
    return settings


class Access:
    """A store access as the server gives one: a lock around a store opened for each use;
    counts the uses and says whether one is under way."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.lock = threading.Lock()
        self.entered = 0

    @contextmanager
    def __call__(self) -> Iterator[Store]:
        with self.lock, Store(self.home) as store:
            self.entered += 1
            yield store


def in_production(settings: Settings, name: str, params: dict[str, Any]) -> int:
    """Train and promote a version; returns it."""
    with Store(settings.home) as store:
        version = train(store, settings, name, params)[1]
        registry.promote(store, name, version)
    return version


def production(settings: Settings, name: str) -> dict[str, Any]:
    with Store(settings.home) as store:
        return registry.show(store, name)


def retrain_entries(settings: Settings) -> list[dict[str, Any]]:
    with Store(settings.home) as store:
        return audit.entries(store, action="model_retrain")


def while_fitting(monkeypatch: pytest.MonkeyPatch, action: Callable[[], None]) -> list[int]:
    """Run ``action`` inside every fit from now on (before the fitting); returns a list that
    grows by one per fit."""
    fits: list[int] = []
    original = BaseRecommender.fit

    def fit(self: BaseRecommender, *args: Any, **kwargs: Any) -> BaseRecommender:
        action()
        fits.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(BaseRecommender, "fit", fit)
    return fits


# -- the gate -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(WORSE))
def test_the_gate_rejects_a_worse_configuration(data: Interactions, name: str) -> None:
    verdict = gate(data, None, name, WORSE[name], GOOD[name])
    assert not verdict.passed and verdict.validation_users == 90
    assert verdict.incumbent is not None
    assert verdict.candidate["ndcg@10"] < verdict.incumbent["ndcg@10"] - 0.2
    assert 0 <= verdict.candidate["hr@10"] <= 1 and "<" in verdict.reason
    reverse = gate(data, None, name, GOOD[name], WORSE[name])
    assert reverse.passed and reverse.candidate == verdict.incumbent


def test_the_tolerance_lets_a_slightly_worse_configuration_through(data: Interactions) -> None:
    wider = {"factors": 16, "iterations": 10}
    strict = gate(data, None, "als", wider, GOOD["als"])
    assert strict.incumbent is not None
    loss = strict.incumbent["ndcg@10"] - strict.candidate["ndcg@10"]
    assert 0 < loss < 0.05 and not strict.passed
    assert gate(data, None, "als", wider, GOOD["als"], tolerance=0.05).passed
    with pytest.raises(ConfigError, match="tolerance"):
        gate(data, None, "als", wider, GOOD["als"], tolerance=-0.1)


def test_the_production_configuration_and_a_first_version_pass(data: Interactions) -> None:
    # the registry keeps every parameter, defaults included: still the same configuration
    full = {"factors": 8, "regularization": 10.0, "alpha": 1.0, "iterations": 10, "seed": 0}
    same = gate(data, None, "als", GOOD["als"], full)
    assert same.passed and same.candidate == same.incumbent and same.candidate["ndcg@10"] > 0.5
    assert same.candidate_params == full == same.incumbent_params
    first = gate(data, None, "als", WORSE["als"], None)
    assert first.passed and first.incumbent is None and first.candidate["ndcg@10"] > 0
    assert json.loads(json.dumps(first.to_json()))["passed"] is True


def test_without_repeat_customers_only_the_production_configuration_passes() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    rows = [(f"c{u}", f"a{u % 4}", start + timedelta(hours=u)) for u in range(12)]
    once = build_interactions(purchases(rows), RecommendSettings())
    assert not gate(once, None, "itemknn", WORSE["itemknn"], GOOD["itemknn"]).passed
    same = gate(once, None, "itemknn", GOOD["itemknn"], GOOD["itemknn"])
    assert same.passed and same.validation_users == 0 and same.candidate == {}


# -- retrain ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(GOOD))
def test_a_retrain_passes_the_gate_and_goes_live(shop: Settings, name: str) -> None:
    first = in_production(shop, name, GOOD[name])
    outcome = retrain(Access(shop.home), shop, name)
    assert outcome.promoted and outcome.version == first + 1 and outcome.previous == first
    assert outcome.gate.passed and outcome.gate.candidate_params == production(shop, name)["params"]
    live = production(shop, name)
    assert live["version"] == outcome.version and live["status"] == "production"
    assert live["metrics"]["validation_ndcg@10"] == outcome.gate.candidate["ndcg@10"]
    assert live["metrics"]["replaced_version"] == first
    with Store(shop.home) as store:
        stored = registry.load(store, name)
    assert outcome.model is not None  # what a server swaps in is what was registered
    customer = outcome.model.users[0]  # a pseudonym
    assert outcome.model.recommend(customer, n=5) == stored.recommend(customer, n=5)
    entry = retrain_entries(shop)[0]
    assert entry["subject"] == name and entry["details"]["decision"] == "promoted"
    assert entry["details"]["version"] == outcome.version


def test_a_first_retrain_goes_live_without_a_comparison(shop: Settings) -> None:
    outcome = retrain(Access(shop.home), shop, "itemknn", GOOD["itemknn"])
    assert outcome.promoted and outcome.version == 1 and outcome.previous is None
    assert outcome.gate.incumbent is None and "nothing to compare" in outcome.gate.reason


@pytest.mark.parametrize("name", sorted(WORSE))
def test_a_worse_candidate_is_rejected_and_production_stays(shop: Settings, name: str) -> None:
    first = in_production(shop, name, GOOD[name])
    with Store(shop.home) as store:  # a retrain owed, as after an erasure
        store.execute("INSERT INTO model_retrains VALUES (?, 'erasure', ?, NULL)",
                      [name, datetime.now(UTC)])  # fmt: skip
    outcome = retrain(Access(shop.home), shop, name, WORSE[name])
    assert not outcome.promoted and outcome.version is None and not outcome.gate.passed
    assert "rejected by the gate" in outcome.reason and outcome.model is None
    with Store(shop.home) as store:
        assert registry.versions(store, name).height == 1  # nothing registered
        assert registry.retrains_due(store)["name"].to_list() == [name]  # still owed
    assert production(shop, name)["version"] == first
    entry = retrain_entries(shop)[0]["details"]
    assert entry["decision"] == "rejected" and entry["gate"]["passed"] is False
    with Store(shop.home) as store:
        assert audit.verify(store).ok


def test_the_gate_tolerance_comes_from_the_settings(shop: Settings) -> None:
    in_production(shop, "als", GOOD["als"])
    lenient = shop.model_copy(
        update={"serve": shop.serve.model_copy(update={"gate_tolerance": 1.0})}
    )
    outcome = retrain(Access(shop.home), lenient, "als", WORSE["als"])
    assert outcome.promoted and outcome.gate.tolerance == 1.0


def test_the_store_is_not_held_while_fitting(
    shop: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    in_production(shop, "als", GOOD["als"])
    access = Access(shop.home)
    held: list[bool] = []
    fits = while_fitting(monkeypatch, lambda: held.append(access.lock.locked()))
    outcome = retrain(access, shop, "als", {"factors": 4, "iterations": 10}, tolerance=1.0)
    assert outcome.promoted
    assert len(fits) == 3  # candidate and production on the training part, then on all data
    assert held == [False, False, False]
    assert access.entered == 2  # once to read, once to register and promote


def test_rollback_after_a_promoted_retrain_returns_to_the_previous_version(
    shop: Settings,
) -> None:
    first = in_production(shop, "itemknn", GOOD["itemknn"])
    outcome = retrain(Access(shop.home), shop, "itemknn")
    assert outcome.promoted and production(shop, "itemknn")["version"] == outcome.version
    result = run_aisle(shop.home, "models", "rollback", "itemknn")
    assert result.exit_code == 0, result.stdout
    assert production(shop, "itemknn")["version"] == first


def test_an_erasure_while_fitting_is_not_settled_by_the_new_version(
    shop: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The customer erased while the retrain fitted is removed from the new version before it
    is saved, and the retrain their erasure asks for stays owed (the new version's item-side
    state learnt from them); the retrain owed from before is settled."""
    in_production(shop, "itemknn", GOOD["itemknn"])
    with Store(shop.home) as store:
        store.execute("INSERT INTO model_retrains VALUES ('itemknn', 'erasure', ?, NULL)",
                      [datetime.now(UTC) - timedelta(minutes=1)])  # fmt: skip
        pseudonym = pseudonymiser_for(store, shop).one("c5")

    def erase_c5() -> None:
        if not erased:
            with Store(shop.home) as store:
                erase(store, pseudonym, forget_in_models=lambda p: registry.forget_user(store, p))
            erased.append(True)

    erased: list[bool] = []
    while_fitting(monkeypatch, erase_c5)
    outcome = retrain(Access(shop.home), shop, "itemknn")
    assert outcome.promoted and outcome.forgotten == 1 and outcome.settled == 1
    assert outcome.model is not None and pseudonym not in outcome.model.users
    with Store(shop.home) as store:
        assert find_traces(store, pseudonym).clean
        due = registry.retrains_due(store)
    assert due["name"].to_list() == ["itemknn"] and due["requests"].to_list() == [1]


def test_production_changed_while_fitting_registers_nothing(
    shop: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = in_production(shop, "popularity", {})
    second = in_production(shop, "popularity", {"recent_days": 30})

    def roll_back() -> None:
        if production(shop, "popularity")["version"] == second:
            with Store(shop.home) as store:
                registry.rollback(store, "popularity")

    while_fitting(monkeypatch, roll_back)
    outcome = retrain(Access(shop.home), shop, "popularity")
    assert not outcome.promoted and outcome.version is None
    assert f"v{second} -> v{first}" in outcome.reason
    assert production(shop, "popularity")["version"] == first
    assert retrain_entries(shop)[0]["details"]["decision"] == "abandoned"


# -- the command --------------------------------------------------------------------------


def test_the_retrain_command(shop: Settings) -> None:
    in_production(shop, "itemknn", GOOD["itemknn"])
    live = json_result(run_aisle(shop.home, "models", "retrain", "--model", "itemknn", "--json"))
    assert live["promoted"] and live["version"] == 2 and live["gate"]["passed"]
    worse = run_aisle(shop.home, "models", "retrain", "-m", "itemknn", "--param", "neighbours=1",
                      "--json")  # fmt: skip
    assert worse.exit_code == 1
    rejected = json.loads(worse.stdout)
    assert not rejected["promoted"] and rejected["version"] is None
    assert rejected["gate"]["incumbent"]["ndcg@10"] > rejected["gate"]["candidate"]["ndcg@10"]
    assert run_aisle(shop.home, "models", "retrain", "-m", "itemknn", "--tolerance", "-1").exit_code
