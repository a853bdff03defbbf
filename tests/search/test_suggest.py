"""Autocomplete: the shopper-count threshold, PII never suggested, word-start and accent-blind
matching, popularity ranking, typo fallback, artifacts, speed, and real Best Buy prefixes."""

from __future__ import annotations

import json
import random
import statistics
import time
from pathlib import Path

import polars as pl
import pytest

from aisle.config import load_settings
from aisle.pipeline import ingest
from aisle.search.documents import conform, search_documents
from aisle.search.suggest import Suggester, Suggestion
from aisle.storage import Store
from tests.conftest import SHARED_DATA, TEST_SECRET


def documents() -> pl.DataFrame:
    rows = [
        ("g3", "Gears of War 3 - Xbox 360", 300.0),
        ("g2", "Gears of War 2 - Xbox 360", 40.0),
        ("bf", "Battlefield 3 - Xbox 360", 200.0),
        ("bm", "Batman: Arkham City - Xbox 360", 250.0),
        ("pk", "Pokémon Rumble Crêpe Édition", 5.0),
        ("zh", "小米电视机 4K 超高清", 3.0),
    ]
    return conform(pl.DataFrame(rows, schema=["item_id", "title", "popularity"], orient="row"))


def typed(rows: list[tuple[str, int]]) -> pl.DataFrame:
    """query typed by n distinct shoppers."""
    return pl.DataFrame(
        [(query, f"{query}/{i}") for query, n in rows for i in range(n)],
        schema={"query": pl.String, "user_id": pl.String},
        orient="row",
    )


QUERIES = typed(
    [
        ("gears of war 3", 500),
        ("battlefield 3", 120),
        ("zorblax quest", 5),  # exactly at the threshold
        ("quibbit saga", 4),  # one shopper short
        ("send to jane.doe@example.com", 40),
        ("call me 415-555-2671", 40),
        ("laborday_videogames_20110902", 60),  # a campaign tag, not shoppers' words
        ("Battlefeild 3", 30),  # counted with "battlefield 3"
    ]
)


@pytest.fixture(scope="module")
def suggester() -> Suggester:
    return Suggester().fit(documents(), QUERIES, min_users=5)


def texts(found: list[Suggestion]) -> list[str]:
    return [s.text for s in found]


def test_a_query_needs_min_users_distinct_shoppers(suggester: Suggester) -> None:
    assert texts(suggester.suggest("zorb")) == ["zorblax quest"]
    assert suggester.suggest("quib") == []
    assert suggester.suggest("quibbit saga") == []
    four = typed([("zorblax quest", 4)])
    assert Suggester().fit(documents(), four, min_users=5).suggest("zorb") == []


def test_queries_with_pii_are_never_suggested(suggester: Suggester) -> None:
    everything = [s.text for p in "abcdefghijklmnopqrstuvwxyz0123456789"
                  for s in suggester.suggest(p, n=50)]  # fmt: skip
    assert not any("@" in t or "555" in t for t in everything)
    assert suggester.suggest("send") == [] and suggester.suggest("call me") == []
    assert suggester.suggest("jane") == [] and suggester.suggest("415") == []
    assert not any("laborday" in t for t in everything)


def test_misspelled_queries_count_for_their_correction(suggester: Suggester) -> None:
    found = suggester.suggest("battle")
    assert found[0] == Suggestion("battlefield 3", "query", 150.0)
    assert "battlefeild 3" not in texts(suggester.suggest("battlef", n=50))


def test_ranked_by_popularity_with_titles_and_queries(suggester: Suggester) -> None:
    found = suggester.suggest("gea")
    assert found[0] == Suggestion("gears of war 3", "query", 500.0)
    # the title the query already covers is left out; the other Gears title stays
    assert texts(found) == ["gears of war 3", "Gears of War 2 - Xbox 360"]
    weights = [s.weight for s in suggester.suggest("b")]
    assert weights == sorted(weights, reverse=True)


def test_any_word_start_matches(suggester: Suggester) -> None:
    assert "gears of war 3" in texts(suggester.suggest("war"))
    assert texts(suggester.suggest("arkham")) == ["Batman: Arkham City - Xbox 360"]
    assert texts(suggester.suggest("of war 2")) == ["Gears of War 2 - Xbox 360"]
    assert suggester.suggest("ears") == []  # not inside a word


def test_case_accents_and_punctuation_do_not_matter(suggester: Suggester) -> None:
    pokemon = ["Pokémon Rumble Crêpe Édition"]
    assert texts(suggester.suggest("poke")) == pokemon
    assert texts(suggester.suggest("POKÉ")) == pokemon
    assert texts(suggester.suggest("crepe ed")) == pokemon
    assert texts(suggester.suggest("Batman: Ark")) == ["Batman: Arkham City - Xbox 360"]
    assert texts(suggester.suggest("小米")) == ["小米电视机 4K 超高清"]
    assert texts(suggester.suggest("电视")) == ["小米电视机 4K 超高清"]


def test_a_typo_falls_back_to_the_corrected_words(suggester: Suggester) -> None:
    assert texts(suggester.suggest("battlefeild"))[0] == "battlefield 3"
    assert texts(suggester.suggest("gaers of w"))[:1] == ["gears of war 3"]


def test_a_complete_word_is_not_a_prefix(suggester: Suggester) -> None:
    assert texts(suggester.suggest("gears ")) == texts(suggester.suggest("gears o"))[:2]
    assert suggester.suggest("bat ") == []


@pytest.mark.parametrize("prefix", ["", "   ", "\x00", "😀", "a" * 5000, "((", "$"])
def test_bad_prefixes_never_raise(suggester: Suggester, prefix: str) -> None:
    found = suggester.suggest(prefix)
    assert all(isinstance(s, Suggestion) for s in found)
    assert suggester.suggest("gea", n=0) == []
    assert suggester.suggest(None) == []  # type: ignore[arg-type]


def test_saved_as_json_and_loaded_the_same(suggester: Suggester, tmp_path: Path) -> None:
    suggester.save(tmp_path / "suggest")
    document = json.loads((tmp_path / "suggest" / "suggestions.json").read_text())
    assert document["format"] == "aisle-suggest"
    loaded = Suggester.load(tmp_path / "suggest")
    for prefix in ["g", "gea", "war", "poké", "battlefeild", "zorb", "小米"]:
        assert loaded.suggest(prefix) == suggester.suggest(prefix)


# ------------------------------------------------------------------ Best Buy


@pytest.fixture(scope="module")
def bestbuy(tmp_path_factory: pytest.TempPathFactory) -> tuple[Suggester, pl.DataFrame]:
    """A suggester over the Best Buy catalog (popularity from its clicks) and its queries."""
    folder = SHARED_DATA / "bestbuy-small-xbox"
    if not folder.is_dir():
        pytest.skip(f"Best Buy data not found at {folder} (set AISLE_DATA)")
    home = tmp_path_factory.mktemp("suggest-home")
    settings = load_settings(home=home, secret_key=TEST_SECRET)
    ingest("products", folder, "bestbuy-products", settings)
    ingest("events", folder, "bestbuy-clicks", settings)
    with Store(home) as store:
        docs = search_documents(store)
    queries = pl.read_csv(folder / "clicks.csv.gz").select("query", pl.col("user").alias("user_id"))
    return Suggester().fit(docs, queries, min_users=5), queries


@pytest.mark.integration
def test_best_buy_prefixes(bestbuy: tuple[Suggester, pl.DataFrame]) -> None:
    suggester = bestbuy[0]
    assert texts(suggester.suggest("gea"))[0] == "gears of war 3"
    bat = " ".join(texts(suggester.suggest("bat", n=5))).lower()
    assert "batman" in bat and "battlefield" in bat
    assert texts(suggester.suggest("Dead Is"))[0] == "dead island"
    assert "gears of war 3" in texts(suggester.suggest("war"))
    assert texts(suggester.suggest("battlefeild"))[0] == "battlefield 3"
    mw3 = texts(suggester.suggest("modern warefare"))
    assert mw3[0] == "modern warfare 3" and "modern warefare 3" not in mw3
    everything = {s.text for p in "abcdefghijklmnopqrstuvwxyz0123456789"
                  for s in suggester.suggest(p, n=50)}  # fmt: skip
    assert not any("_" in t or "2127204" in t for t in everything)  # tags and SKU lists


@pytest.mark.integration
def test_best_buy_suggestions_take_under_a_millisecond(
    bestbuy: tuple[Suggester, pl.DataFrame],
) -> None:
    suggester, queries = bestbuy
    rng = random.Random(0)
    prefixes = [q[: rng.randint(1, len(q))] for q in queries["query"].unique().sort() if q]
    spent = []
    for prefix in prefixes:
        start = time.perf_counter()
        suggester.suggest(prefix)
        spent.append(time.perf_counter() - start)
    # Measured: median 0.04 ms, p95 0.19 ms over 5,164 prefixes on a loaded 2-core Xeon.
    assert statistics.median(spent) < 1e-3
