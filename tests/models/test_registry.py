"""The registry and its commands: train, recommend, list, show, promote, rollback; erasure
reaches every trained model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from aisle.cli.main import app
from aisle.config import Settings
from aisle.errors import AisleError
from aisle.models import registry
from aisle.models.training import train
from aisle.pipeline import ingest
from aisle.privacy.erasure import find_traces
from aisle.privacy.rotation import pseudonymiser_for
from aisle.storage import Store
from tests.conftest import TEST_SECRET, write_csv

RUNNER = CliRunner()


@pytest.fixture
def shop(settings: Settings, tmp_path: Path) -> Settings:
    """A few customers buying from two groups of products."""
    catalog = write_csv(tmp_path / "catalog.csv", ["item_id", "title"],
                        [(f"{g}{k}", f"{g} product {k}") for g in "ab" for k in range(4)])  # fmt: skip
    rows = []
    for u in range(12):
        group = "a" if u < 6 else "b"
        for k in range(3):
            rows.append(
                (
                    f"c{u}",
                    f"{group}{(u + k) % 4}",
                    "purchase",
                    f"2026-01-{k + 1:02d}T1{u % 10}:00:00",
                )
            )
    events = write_csv(tmp_path / "events.csv", ["user_id", "item_id", "type", "timestamp"], rows)
    ingest("products", catalog, "canonical", settings)
    ingest("events", events, "canonical", settings)
    return settings


def aisle(settings: Settings, *args: str) -> dict[str, Any]:
    result = RUNNER.invoke(app, ["--home", str(settings.home), *args, "--json"],
                           env={"AISLE_SECRET_KEY": TEST_SECRET})  # fmt: skip
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    payload = json.loads(result.stdout)
    assert isinstance(payload, dict)
    return payload


def test_versions_promotion_and_rollback(shop: Settings) -> None:
    with Store(shop.home) as store:
        _, first = train(store, shop, "popularity")
        _, second = train(store, shop, "popularity", {"recent_days": 1})
        assert (first, second) == (1, 2)
        with pytest.raises(AisleError, match="no earlier"):
            registry.rollback(store, "popularity")
        registry.promote(store, "popularity", 1)
        registry.promote(store, "popularity", 2)
        assert registry.load(store, "popularity").params == {"recent_days": 1}
        assert registry.rollback(store, "popularity") == 1
        assert registry.load(store, "popularity").params == {"recent_days": None}
        info = registry.show(store, "popularity", 2)
    assert info["status"] == "candidate" and info["manifest"]["model"] == "popularity"
    assert info["metrics"]["fit_seconds"] >= 0


def test_train_and_recommend_commands(shop: Settings) -> None:
    trained = aisle(shop, "train", "--model", "popularity", "--promote")
    assert trained["version"] == 1 and trained["promoted"] and trained["users"] == 12
    got = aisle(shop, "recommend", "c0", "--model", "popularity", "-n", "3", "--explain")
    assert len(got["items"]) == 3 and all(i["because"]["kind"] for i in got["items"])
    listed = aisle(shop, "models", "list")
    assert listed["versions"][0]["status"] == "production"


def test_erasure_reaches_every_trained_model(shop: Settings) -> None:
    """`aisle erase` removes the customer from every version, schedules the retrains, and
    `aisle privacy verify` finds no trace under home (the model artifacts included)."""
    aisle(shop, "train", "--model", "popularity")
    aisle(shop, "train", "--model", "popularity")
    receipt = aisle(shop, "erase", "--user", "c3")
    assert "removed from popularity" in receipt["models"]
    verified = aisle(shop, "privacy", "verify", "--user", "c3")
    assert verified["clean"], verified
    with Store(shop.home) as store:
        due = registry.retrains_due(store)
        pseudonym = pseudonymiser_for(store, shop).one("c3")
        assert find_traces(store, pseudonym).clean
        assert due["name"].to_list() == ["popularity"]
        train(store, shop, "popularity")  # the retrain settles what is owed
        assert registry.retrains_due(store).height == 0
