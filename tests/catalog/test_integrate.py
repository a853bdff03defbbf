"""Integration of several sources: per-field rules, recorded conflicts and version history."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from aisle.catalog.integrate import integrate
from aisle.config import CatalogSettings, MappingAdapterSettings, Settings
from aisle.domain import PRODUCT_SCHEMA
from aisle.errors import ConfigError
from aisle.pipeline import ingest
from aisle.storage import Store

POLICY = CatalogSettings(source_priority=["shop-feed", "marketplace"])
EARLY, LATE = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC)


def records(*rows: dict[str, Any]) -> pl.DataFrame:
    """Accepted product records as the pipeline hands them over."""
    filled = [
        {
            **{field: None for field in PRODUCT_SCHEMA},
            "aliases": [],
            "record_id": f"r-{i}-{row['source']}-{row['item_id']}",
            "import_id": 1,
            **row,
        }
        for i, row in enumerate(rows)
    ]
    return pl.DataFrame(
        filled, schema={**PRODUCT_SCHEMA, "record_id": pl.String, "import_id": pl.Int32}
    )


def catalog(store: Store) -> dict[str, dict[str, Any]]:
    return {row["item_id"]: row for row in store.query("SELECT * FROM products").to_dicts()}


def conflicts(store: Store) -> dict[tuple[str, str], dict[str, Any]]:
    rows = store.query("SELECT * FROM product_conflicts").to_dicts()
    return {(row["item_id"], row["field"]): row for row in rows}


def test_each_field_follows_its_rule_and_every_disagreement_is_recorded(home: Path) -> None:
    shop = {"item_id": "A", "source": "shop-feed", "title": "Desk Lamp", "price": 20.0,
            "description": "A lamp.", "updated_at": EARLY, "currency": "EUR"}  # fmt: skip
    market = {"item_id": "A", "source": "marketplace", "title": "LED Desk Lamp 40cm",
              "price": 18.5, "description": "An LED desk lamp with a 40 cm arm.",
              "updated_at": LATE, "currency": "USD", "brand": "Lumo"}  # fmt: skip
    with Store(home) as store:
        outcome = integrate(store, records(shop, market), POLICY)
        product = catalog(store)["A"]
        found = conflicts(store)
    assert outcome.items == 1 and outcome.changed == 1
    assert product["title"] == "Desk Lamp"  # priority: the shop's own feed
    assert product["price"] == 18.5 and product["currency"] == "USD"  # freshest, with its currency
    assert product["description"].startswith("An LED desk lamp")  # most complete
    assert product["brand"] == "Lumo"  # only one source has it: no conflict
    assert "LED Desk Lamp 40cm" in product["aliases"]
    assert product["source"] == "marketplace+shop-feed"
    assert set(found) == {("A", "title"), ("A", "price"), ("A", "description")}
    title = found[("A", "title")]
    assert title["chosen"] == "shop-feed" and title["rule"] == "priority"
    assert {c["source"]: c["value"] for c in json.loads(title["candidates"])} == {
        "shop-feed": "Desk Lamp", "marketplace": "LED Desk Lamp 40cm"}  # fmt: skip
    assert (
        "freshest" in found[("A", "price")]["why"] and "2026-03-01" in found[("A", "price")]["why"]
    )
    assert found[("A", "description")]["rule"] == "complete"


def test_attributes_merge_key_by_key(home: Path) -> None:
    shop = {"item_id": "A", "source": "shop-feed", "title": "Lamp",
            "attributes": json.dumps({"colour": "black", "watts": 5})}  # fmt: skip
    market = {"item_id": "A", "source": "marketplace", "title": "Lamp",
              "attributes": json.dumps({"colour": "Black ", "material": "steel", "watts": 7})}  # fmt: skip
    with Store(home) as store:
        integrate(store, records(shop, market), POLICY)
        attributes = json.loads(catalog(store)["A"]["attributes"])
        found = conflicts(store)
    assert attributes == {"colour": "black", "material": "steel", "watts": 5}
    assert ("A", "attributes.watts") in found and found[("A", "attributes.watts")][
        "chosen"
    ] == "shop-feed"
    assert ("A", "attributes.colour") in found  # "black" and "Black " differ as JSON text


def test_case_and_spacing_are_not_conflicts(home: Path) -> None:
    rows = records({"item_id": "A", "source": "shop-feed", "title": "Desk  Lamp"},
                   {"item_id": "A", "source": "marketplace", "title": "desk lamp"})  # fmt: skip
    with Store(home) as store:
        integrate(store, rows, POLICY)
        assert conflicts(store) == {}
        assert catalog(store)["A"]["title"] == "Desk  Lamp"


def test_unlisted_sources_rank_last(home: Path) -> None:
    rows = records({"item_id": "A", "source": "zz-scraper", "title": "Lamp X"},
                   {"item_id": "A", "source": "marketplace", "title": "Lamp"})  # fmt: skip
    with Store(home) as store:
        integrate(store, rows, POLICY)
        assert catalog(store)["A"]["title"] == "Lamp"


def test_history_grows_only_when_the_canonical_record_changes(home: Path) -> None:
    first = {"item_id": "A", "source": "marketplace", "title": "Lamp", "price": 10.0}
    with Store(home) as store:
        integrate(store, records(first), POLICY)
        again = integrate(store, records(first), POLICY)
        assert again.changed == 0
        integrate(store, records({**first, "price": 12.0}), POLICY)
        history = store.query(
            "SELECT version, price, changed_fields FROM product_history ORDER BY version"
        )
        assert catalog(store)["A"]["price"] == 12.0
        assert store.scalar("SELECT count(*) FROM product_sources") == 1  # latest per source
        assert store.scalar("SELECT count(*) FROM product_versions") == 3  # every record
    assert history["version"].to_list() == [1, 2]
    assert history["price"].to_list() == [10.0, 12.0]
    assert history["changed_fields"].to_list()[1] == ["price"]


def test_an_unknown_rule_is_a_config_error(home: Path) -> None:
    policy = CatalogSettings(field_rules={"title": "loudest"})
    with Store(home) as store, pytest.raises(ConfigError, match="loudest"):
        integrate(store, records({"item_id": "A", "source": "x", "title": "Lamp"}), policy)


def test_two_feeds_through_the_pipeline(tmp_path: Path) -> None:
    """Two shop feeds, each a configured adapter: one canonical record per product."""
    from tests.conftest import TEST_SECRET, write_csv

    feed = MappingAdapterSettings(
        kind="products", columns={"item_id": "sku", "title": "name", "price": "price"}
    )
    settings = Settings(
        home=tmp_path / "home",
        secret_key=TEST_SECRET,
        adapters={"shop-feed": feed, "marketplace": feed},
        catalog=POLICY,
    )
    shop = write_csv(tmp_path / "shop.csv", ["sku", "name", "price"],
                     [("A", "Desk Lamp", "20"), ("B", "Mug", "5")])  # fmt: skip
    market = write_csv(tmp_path / "market.csv", ["sku", "name", "price"],
                       [("A", "LED Desk Lamp", "18"), ("C", "Kettle", "30")])  # fmt: skip
    ingest("products", shop, "shop-feed", settings)
    ingest("products", market, "marketplace", settings)
    with Store(settings.home) as store:
        products = catalog(store)
        found = conflicts(store)
    assert sorted(products) == ["A", "B", "C"]
    assert products["A"]["title"] == "Desk Lamp" and products["A"]["aliases"] == ["LED Desk Lamp"]
    assert {field for _, field in found} == {"title", "price"}
