"""`aisle index build`, `aisle search`, `aisle suggest` and aisle's own methods in
`aisle evaluate-search`, end to end on a real Best Buy slice."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from aisle.storage import Store
from tests.conftest import best_buy_store
from tests.conftest import json_result as json_out
from tests.conftest import run_aisle as aisle

TRAIN_CLICKS, TEST_CLICKS = 4_000, 300

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The Best Buy catalog and its first clicks by time in a store, indexed; the next
    clicks as a held-out file."""
    folder = tmp_path_factory.mktemp("search-cli")
    home, rows = best_buy_store(folder, TRAIN_CLICKS)
    rows.slice(TRAIN_CLICKS, TEST_CLICKS).write_csv(folder / "test.csv")
    built = json_out(aisle(home, "index", "build", "--json"))
    return {"home": home, "folder": folder, "built": built, "users": rows["user"].to_list()}


def test_index_build_learns_a_click_aware_ranker(shop: dict[str, Any]) -> None:
    built = shop["built"]
    assert built["products"] == 437
    assert built["clicks"] > 3_000
    assert built["ranker"] == "click-aware"
    manifest = json.loads((Path(built["path"]) / "manifest.json").read_text())
    assert manifest["embedding_model"] == "minilm"
    assert not list(Path(built["path"]).rglob("*.pkl"))


def test_search_finds_misspelled_games_and_reads_prices(shop: dict[str, Any]) -> None:
    out = json_out(aisle(shop["home"], "search", "battlefeild 3 under $70", "--json"))
    assert out["searched"].startswith("battlefield")
    assert "Battlefield 3" in out["hits"][0]["title"]
    assert all(hit["price"] is None or hit["price"] <= 70 for hit in out["hits"])
    out = json_out(aisle(shop["home"], "search", "gears of war 3", "-n", "3", "--json"))
    assert "Gears of War 3" in out["hits"][0]["title"]


def test_filters_sorting_paging_and_facets(shop: dict[str, Any]) -> None:
    home = shop["home"]
    first = json_out(aisle(home, "search", "war", "-n", "5", "--facets", "category,price",
                           "--json"))  # fmt: skip
    category = next(iter(first["facets"]["category"]))
    kept = json_out(aisle(home, "search", "war", "--filter", f"category={category}", "--json"))
    with Store(home, read_only=True) as store:
        titles = dict(store.query("SELECT item_id, category_path[-1] FROM catalog_products")
                      .iter_rows())  # fmt: skip
    assert kept["hits"] and all(titles[h["item_id"]] == category for h in kept["hits"])
    cheap = json_out(aisle(home, "search", "war", "--sort", "price", "--json"))
    prices = [h["price"] for h in cheap["hits"] if h["price"] is not None]
    assert prices == sorted(prices)
    second = json_out(aisle(home, "search", "war", "-n", "5", "--page", "2", "--json"))
    assert {h["item_id"] for h in second["hits"]}.isdisjoint(h["item_id"] for h in first["hits"])


def test_explain_personalise_and_hostile_input(shop: dict[str, Any]) -> None:
    home = shop["home"]
    user = shop["users"][0]
    out = json_out(aisle(home, "search", "halo", "--user", user, "--explain", "--json"))
    assert out["hits"][0]["why"]
    assert user not in json.dumps(out)
    for query in ['"call of duty: black ops (2)" AND OR -', "\x07", "zzqqxx"]:
        json_out(aisle(home, "search", query, "--json"))
    bad = aisle(home, "search", "halo", "--filter", "colour=red")
    assert bad.exit_code == 2 and "--filter" in bad.output


def test_suggest_completes_popular_queries(shop: dict[str, Any]) -> None:
    out = json_out(aisle(shop["home"], "suggest", "gea", "--json"))
    assert out["suggestions"] and out["suggestions"][0]["text"].startswith("gears")


def test_aisle_methods_beat_plain_bm25_on_held_out_clicks(shop: dict[str, Any]) -> None:
    out = json_out(aisle(shop["home"], "evaluate-search", "--clicks", str(shop["folder"] /
                         "test.csv"), "--adapter", "bestbuy-clicks", "--methods",
                         "bm25-tantivy,text-only,click-aware", "--json"))  # fmt: skip
    figures = out["methods"]
    assert out["cases"] == TEST_CLICKS
    assert figures["text-only"]["map@5"] > figures["bm25-tantivy"]["map@5"]
    assert figures["click-aware"]["map@5"] > figures["bm25-tantivy"]["map@5"]


def test_a_production_recommender_personalises_search(shop: dict[str, Any]) -> None:
    home = shop["home"]
    user = shop["users"][0]
    plain = json_out(aisle(home, "search", "xbox", "-n", "20", "--user", user, "--json"))
    json_out(aisle(home, "train", "--model", "itemknn", "--promote", "--json"))
    lifted = json_out(aisle(home, "search", "xbox", "-n", "20", "--user", user, "--json"))
    named = json_out(aisle(home, "search", "xbox", "-n", "20", "--user", user, "--model",
                           "itemknn", "--json"))  # fmt: skip
    assert [h["item_id"] for h in lifted["hits"]] == [h["item_id"] for h in named["hits"]]
    assert lifted["total"] == plain["total"]  # the same matches, in another order
    assert [h["item_id"] for h in lifted["hits"]] != [h["item_id"] for h in plain["hits"]]
    missing = aisle(home, "search", "xbox", "--user", user, "--model", "bpr")
    assert missing.exit_code == 2 and "bpr" in missing.output
