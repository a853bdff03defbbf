"""The whole catalog build: on small made-up data, on the real Best Buy and UCI catalogs, and
through the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from aisle.catalog.build import build_catalog
from aisle.cli.main import app
from aisle.config import Settings
from aisle.pipeline import ingest
from aisle.storage import Store
from tests.conftest import TEST_SECRET, write_csv


def gaps(store: Store) -> dict[tuple[str, str], dict[str, Any]]:
    rows = store.query("SELECT * FROM product_gaps").to_dicts()
    return {(row["item_id"], row["field"]): row for row in rows}


def test_a_missing_price_is_filled_from_enough_sales_and_flagged_otherwise(
    settings: Settings, tmp_path: Path
) -> None:
    catalog = write_csv(tmp_path / "catalog.csv", ["item_id", "title", "price"],
                        [("A", "Lamp", ""), ("B", "Mug", ""), ("C", "Kettle", "30")])  # fmt: skip
    sales = [(f"u{i}", "A", "purchase", f"2026-01-0{i + 1}T10:00:00", str(p))
             for i, p in enumerate([10.0, 12.0, 11.0])]  # fmt: skip
    sales.append(("u1", "B", "purchase", "2026-01-02T10:00:00", "4"))
    events = write_csv(
        tmp_path / "events.csv", ["user_id", "item_id", "type", "timestamp", "price"], sales
    )
    ingest("products", catalog, "canonical", settings)
    ingest("events", events, "canonical", settings)
    with Store(settings.home) as store:
        report = build_catalog(store, settings, embed=False)
        found = gaps(store)
        prices = dict(store.query("SELECT item_id, price FROM catalog_products").iter_rows())
        stored = dict(store.query("SELECT item_id, price FROM products").iter_rows())
    assert report.prices_filled == 1
    assert (
        found[("A", "price")]["filled"] and found[("A", "price")]["how"] == "median of 3 purchases"
    )
    assert not found[("B", "price")]["filled"] and "only 1" in found[("B", "price")]["how"]
    assert ("C", "price") not in found
    assert prices == {"A": 11.0, "B": None, "C": 30.0}
    assert stored["A"] is None  # the sources' record is unchanged; the fill sits beside it
    assert found[("A", "description")]["how"].startswith("flagged")


@pytest.mark.integration
def test_best_buy_from_two_sources(shared_data: Path, tmp_path: Path) -> None:
    """The JSON and XML catalogs become one record per product; missing genres are inferred
    (or flagged); a rebuild with nothing changed re-embeds nothing."""
    settings = Settings(home=tmp_path / "home", secret_key=TEST_SECRET)
    folder = shared_data / "bestbuy-small-xbox"
    ingest("products", folder, "bestbuy-products", settings)
    ingest("products", folder / "small_product_data.xml.gz", "bestbuy-xml", settings)
    with Store(settings.home) as store:
        first = build_catalog(store, settings, model="static")
        again = build_catalog(store, settings, model="static")
        platforms = store.query(
            "SELECT count(DISTINCT item_id) FROM product_attributes "
            "WHERE attribute = 'platform' AND value = 'Xbox 360'"
        ).item()
        filled = store.query(
            "SELECT p.category_path, o.category_path AS stored, g.value "
            "FROM catalog_products p JOIN product_gaps g USING (item_id) "
            "JOIN products o USING (item_id) WHERE g.field = 'category' AND g.filled"
        )
        sources = store.query("SELECT DISTINCT source FROM products")["source"].to_list()
    assert first.products == 437 and sources == ["bestbuy-products+bestbuy-xml"]
    assert first.labelled > 200 and first.categories_filled + first.categories_flagged > 0
    assert first.categories_filled == filled.height
    for path, stored, genre in filled.iter_rows():  # the inferred genre appended
        assert path == [*stored, genre]
    assert platforms > 400
    assert first.embedded == 437 and again.embedded == 0 and again.embeddings_reused == 437


@pytest.mark.integration
def test_uci_catalog_from_transactions(shared_data: Path, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", secret_key=TEST_SECRET)
    ingest("events", shared_data / "uci-online-retail", "uci-online-retail", settings)
    with Store(settings.home) as store:
        report = build_catalog(store, settings)  # MiniLM on every title
        types = store.query(
            "SELECT value, count(*) AS n FROM product_attributes WHERE attribute = 'product_type' "
            "GROUP BY 1 ORDER BY n DESC LIMIT 20"
        )["value"].to_list()
        aliased = store.scalar("SELECT count(*) FROM products WHERE len(aliases) > 0")
    assert report.products > 3500
    assert report.non_product_codes >= 5  # POST, DOT, M, BANK CHARGES, ...
    assert report.categories_flagged == report.products  # nothing labelled to learn from
    assert report.categories_filled == 0
    assert report.products_with_attributes > 0.8 * report.products
    assert any("holder" in t.lower() for t in types)
    assert aliased > 100
    assert report.duplicates > 0 and report.embedded == report.products


def test_the_command_line(settings: Settings, tmp_path: Path) -> None:
    """build, show, conflicts, duplicates and attributes, as JSON."""
    runner = CliRunner()
    env = {"AISLE_SECRET_KEY": TEST_SECRET}
    feed = write_csv(tmp_path / "feed.csv", ["item_id", "title", "price"],
                     [("A", "Set of 3 red ceramic mugs", "12"), ("B", "Set of 3 red ceramic mugs", "12")])  # fmt: skip
    ingest("products", feed, "canonical", settings)

    def run(*args: str) -> dict[str, Any]:
        result = runner.invoke(app, ["--home", str(settings.home), *args, "--json"], env=env)
        assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
        payload = json.loads(result.stdout)
        assert isinstance(payload, dict)
        return payload

    built = run("catalog", "build", "--no-embed")
    assert built["products"] == 2 and built["duplicates"] == 1
    card = run("catalog", "show", "A")
    assert card["product"]["title"] == "Set of 3 red ceramic mugs"
    assert {a["attribute"] for a in card["attributes"]} >= {"colour", "material", "pack_quantity"}
    assert card["duplicates"][0]["item_id"] == "B"
    assert run("catalog", "conflicts")["conflicts"] == []
    assert run("catalog", "duplicates")["pairs"][0]["reason"]
    summary = run("catalog", "attributes")["attributes"]
    assert {row["attribute"] for row in summary} >= {"colour", "material"}
    missing = runner.invoke(app, ["--home", str(settings.home), "catalog", "show", "Z"], env=env)
    assert missing.exit_code == 2 and "no product 'Z'" in missing.stderr
