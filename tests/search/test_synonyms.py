"""Synonyms: configured phrases rewrite queries on word boundaries, mined pairs come from
shared clicks (real ones from the Best Buy log), and unrelated queries are never paired."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from aisle.search.synonyms import MINED_SCHEMA, Synonyms, mine_synonyms
from tests.conftest import SHARED_DATA


def clicks(rows: list[tuple[str, str, int]]) -> pl.DataFrame:
    """(query, item, shoppers): that many distinct shoppers typed the query and clicked it."""
    return pl.DataFrame(
        [(q, item, f"{q}/{item}/{i}") for q, item, n in rows for i in range(n)],
        schema={"query": pl.String, "item_id": pl.String, "user_id": pl.String},
        orient="row",
    )


# ------------------------------------------------------------------ configured


def test_two_way_phrases_rewrite_each_other() -> None:
    synonyms = Synonyms({"tv": ["television", "telly"]})
    assert synonyms.expand("TV stand") == ["television stand", "telly stand"]
    assert synonyms.expand("television stand") == ["tv stand", "telly stand"]


def test_phrases_match_on_word_boundaries_only() -> None:
    synonyms = Synonyms({"tv": ["television"], "call of duty": ["cod"]})
    assert synonyms.expand("tvs") == []
    assert synonyms.expand("stv") == []
    assert synonyms.expand("call of dutyx") == []
    assert synonyms.expand("Call of Duty: Black Ops") == ["cod black ops"]
    assert synonyms.expand("cod black ops") == ["call of duty black ops"]


def test_one_way_rules_do_not_go_back() -> None:
    synonyms = Synonyms({"cod =>": ["call of duty"]}, one_way={"bf3": ["battlefield 3"]})
    assert synonyms.expand("cod") == ["call of duty"]
    assert synonyms.expand("call of duty") == []
    assert synonyms.expand("bf3 limited") == ["battlefield 3 limited"]
    assert synonyms.expand("battlefield 3") == []


def test_the_longest_phrase_wins_and_single_replacements_come_first() -> None:
    synonyms = Synonyms({"new york": ["nyc"], "new": ["brand new"], "tee": ["t shirt"]})
    assert synonyms.expand("new york tee") == ["nyc tee", "new york t shirt", "nyc t shirt"]
    assert synonyms.expand("new tee")[:2] == ["brand new tee", "new t shirt"]


def test_expansions_are_capped_and_never_repeat_the_query() -> None:
    synonyms = Synonyms({"a": ["b", "c", "d"], "x": ["y", "z"]}, max_expansions=3)
    assert len(synonyms.expand("a x")) == 3
    assert "a x" not in synonyms.expand("a x")
    assert Synonyms().expand("anything") == []
    assert Synonyms({"tv": ["television"]}).expand("") == []


# ------------------------------------------------------------------ mined


SHOP = clicks(
    [
        ("call of duty", "mw3", 30), ("call of duty", "black-ops", 10),
        ("cod", "mw3", 6), ("cod", "black-ops", 2),
        ("Call of Duty", "mw3", 3),  # the same query after normalisation
        ("battlefield", "bf3", 20), ("battlefeild", "bf3", 4),
        ("batman", "arkham", 25), ("batman arkham city", "arkham", 12),
        ("forza 4", "forza", 20), ("forza 4", "wheel", 2),
        ("dead island", "island", 40),
        ("rare words", "mw3", 2),  # too few shoppers
        ("laborday_videogames_20110902", "island", 30),  # a campaign tag
    ]
)  # fmt: skip


def test_queries_with_the_same_clicks_are_mined_with_their_kind() -> None:
    mined = mine_synonyms(SHOP, min_users=3)
    assert mined.schema == MINED_SCHEMA
    pairs = {(q, s): k for q, s, k in mined.select("query", "synonym", "kind").rows()}
    assert pairs[("cod", "call of duty")] == "synonym"
    assert pairs[("call of duty", "cod")] == "synonym"
    assert pairs[("battlefeild", "battlefield")] == "spelling"
    assert ("battlefield", "battlefeild") not in pairs  # a typo is no rewrite target
    assert pairs[("batman", "batman arkham city")] == "refinement"
    assert not any("rare" in q or "_" in q for q, _ in pairs)
    assert not any(q == s for q, s in pairs)
    row = mined.filter((pl.col("query") == "cod") & (pl.col("synonym") == "call of duty"))
    assert row["support"].item() == 43  # 30 + 10 + 3 typed "call of duty", any case
    assert row["query_support"].item() == 8
    assert 0.99 < row["similarity"].item() <= 1.0


def test_unrelated_queries_are_not_mined() -> None:
    mined = mine_synonyms(SHOP, min_users=3)
    partners = set(mined.filter(pl.col("query") == "forza 4")["synonym"])
    assert partners == set()
    assert set(mined.filter(pl.col("query") == "dead island")["synonym"]) == set()


def test_thresholds_decide_what_is_mined() -> None:
    assert mine_synonyms(SHOP, min_users=50).height == 0
    strict = set(
        mine_synonyms(SHOP, min_users=3, min_similarity=1.0).select("query", "synonym").rows()
    )
    assert ("cod", "call of duty") not in strict  # 6:2 against 33:10 clicks, not quite equal
    assert ("batman", "batman arkham city") in strict  # the same one product
    assert mine_synonyms(SHOP.head(0)).height == 0


def test_mined_synonyms_rewrite_whole_queries_into_more_typed_ones() -> None:
    synonyms = Synonyms(mined=mine_synonyms(SHOP, min_users=3))
    assert synonyms.expand("cod") == ["call of duty"]
    assert synonyms.expand("battlefeild") == ["battlefield"]
    assert synonyms.expand("call of duty") == []  # never into the rarer "cod"
    assert synonyms.expand("cod zombies") == []  # mined from whole queries only
    assert synonyms.expand("batman") == []  # a refinement is not another name


def test_saved_and_loaded_the_same(tmp_path: Path) -> None:
    synonyms = Synonyms(
        {"tv": ["television"], "cod =>": ["call of duty"]},
        mined=mine_synonyms(SHOP, min_users=3),
        max_expansions=4,
    )
    path = tmp_path / "synonyms.json"
    synonyms.save(path)
    assert json.loads(path.read_text())["format"] == "aisle-synonyms"
    loaded = Synonyms.load(path)
    for query in ["tv", "cod", "battlefeild", "television set", "call of duty"]:
        assert loaded.expand(query) == synonyms.expand(query)
    assert loaded.mined.equals(synonyms.mined)


# ------------------------------------------------------------------ Best Buy


@pytest.fixture(scope="module")
def bestbuy_clicks() -> pl.DataFrame:
    path = SHARED_DATA / "bestbuy-small-xbox" / "clicks.csv.gz"
    if not path.is_file():
        pytest.skip(f"Best Buy click log not found at {path} (set AISLE_DATA)")
    return pl.read_csv(path, schema_overrides={"sku": pl.String}).select(
        "query", pl.col("sku").alias("item_id"), pl.col("user").alias("user_id")
    )


@pytest.mark.integration
def test_real_synonyms_are_mined_from_the_best_buy_log(bestbuy_clicks: pl.DataFrame) -> None:
    mined = mine_synonyms(bestbuy_clicks)
    pairs = {(q, s): k for q, s, k in mined.select("query", "synonym", "kind").rows()}
    assert pairs[("cod", "call of duty")] == "synonym"
    assert pairs[("mw3", "modern warfare 3")] == "synonym"
    assert pairs[("bf3", "battlefield 3")] == "synonym"
    assert pairs[("madden 2012", "madden 12")] == "synonym"
    assert pairs[("forza4", "forza 4")] == "spelling"
    assert pairs[("batman", "batman arkham city")] == "refinement"
    assert not any(q.startswith("laborday") for q, _ in pairs)


@pytest.mark.integration
def test_unrelated_popular_queries_are_not_synonyms(bestbuy_clicks: pl.DataFrame) -> None:
    mined = mine_synonyms(bestbuy_clicks)
    popular = ["dead island", "gears of war 3", "batman", "forza 4", "battlefield 3",
               "fifa 12", "nba 2k12", "madden 12", "skyrim", "just dance 3"]  # fmt: skip
    among = mined.filter(pl.col("query").is_in(popular) & pl.col("synonym").is_in(popular))
    assert among.height == 0
    for query in ["batman", "forza 4"]:
        partners = set(mined.filter(pl.col("query") == query)["synonym"])
        assert not partners & {"dead island", "gears of war 3", "fifa 12", "battlefield 3"}


@pytest.mark.integration
def test_best_buy_queries_expand_to_what_most_shoppers_typed(
    bestbuy_clicks: pl.DataFrame,
) -> None:
    synonyms = Synonyms(mined=mine_synonyms(bestbuy_clicks))
    assert "call of duty" in synonyms.expand("cod")
    assert synonyms.expand("mw3")[0] == "modern warfare 3"
    assert synonyms.expand("bf3")[0] == "battlefield 3"
    assert synonyms.expand("batman") == []
    assert synonyms.expand("gears of war 2") == []
