"""The search engine on a small catalog: retrieval, fusion, pools, learnt ranking, explain."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from aisle.search import engine as engine_module
from aisle.search.clicks import ClickHistory
from aisle.search.dense import DenseIndex
from aisle.search.documents import conform
from aisle.search.engine import SearchEngine
from aisle.search.lexical import LexicalIndex
from aisle.search.ltr import SearchRanker
from aisle.search.taste import personalised, standing
from aisle.search.training import click_groups

TITLES = {
    "p1": "Red paper lantern",
    "p2": "Blue paper lantern",
    "p3": "Red wool scarf",
    "p4": "Gears of War 3 - Xbox 360",
    "p5": "Gears of War 3 Limited Edition - Xbox 360",
    "p6": "Halo: Reach - Xbox 360",
    "p7": "Ceramic tea cup",
    "p8": "Glass tea cup set of 4",
}


@pytest.fixture(scope="module")
def documents() -> pl.DataFrame:
    return conform(
        pl.DataFrame(
            {
                "item_id": list(TITLES),
                "title": list(TITLES.values()),
                "price": [5.0, 5.0, 20.0, 60.0, 150.0, 40.0, 8.0, 25.0],
                "popularity": [3.0, 1.0, 2.0, 50.0, 5.0, 30.0, 1.0, 2.0],
                "category": ["home", "home", "fashion", "games", "games", "games", "home", "home"],
            }
        )
    )


@pytest.fixture(scope="module")
def lexical(documents: pl.DataFrame) -> LexicalIndex:
    return LexicalIndex.create(documents)


def ranked(engine: SearchEngine, query: str, **kwargs: object) -> list[str]:
    columns, _, _ = engine.rank(query, **kwargs)  # type: ignore[arg-type]
    return [engine.catalog.item_ids[c] for c in columns]


def test_lexical_fusion_finds_the_product_named(
    documents: pl.DataFrame, lexical: LexicalIndex
) -> None:
    engine = SearchEngine(documents, lexical)
    assert ranked(engine, "red lantern")[0] == "p1"
    assert set(ranked(engine, "tea cup")[:2]) == {"p7", "p8"}
    assert ranked(engine, "zzzz qqqq") == []


def test_a_query_of_product_ids_puts_those_products_first(
    documents: pl.DataFrame, tmp_path: Path
) -> None:
    engine = SearchEngine(documents, LexicalIndex.create(documents, tmp_path / "lexical"))
    assert ranked(engine, "p7")[0] == "p7"  # no word of its title, found by its id
    assert ranked(engine, " P6, p4 ")[:2] == ["p6", "p4"]  # several, as typed, any case
    assert ranked(engine, "p7 lantern")[0] in {"p1", "p2"}  # a word that is no id: text only
    assert "p7" not in ranked(engine, "tea cup", pool=["p8"])  # a judged pool stays as given
    engine.remove(["p7"])
    assert "p7" not in ranked(engine, "p7")
    engine.upsert(pl.DataFrame({"item_id": ["X-10"], "title": ["Paper fan"]}))
    assert ranked(engine, "x-10") == ["X-10"]


def test_a_pool_is_ranked_whole_and_alone(documents: pl.DataFrame, lexical: LexicalIndex) -> None:
    engine = SearchEngine(documents, lexical)
    got = ranked(engine, "red lantern", pool=["p7", "p1", "p3", "unknown"])
    assert got[0] == "p1"
    assert sorted(got) == ["p1", "p3", "p7"]  # unknown products are not invented


def test_dense_vectors_bring_in_products_without_shared_words(
    documents: pl.DataFrame, lexical: LexicalIndex
) -> None:
    class Encoder:
        name, dimensions, source = "toy", 2, "toy"

        def encode(self, texts: list[str]) -> np.ndarray:
            return np.asarray([[1.0, 0.0] if "mug" in t else [0.0, 1.0] for t in texts], np.float32)

    vectors = np.asarray([[1.0, 0.0] if "cup" in t else [0.0, 1.0] for t in TITLES.values()],
                         dtype=np.float32)  # fmt: skip
    engine = SearchEngine(documents, lexical, vectors=vectors, encoder=Encoder())
    assert set(ranked(engine, "mug")) == {"p7", "p8"}
    graph = DenseIndex.create(list(TITLES), vectors)  # what large catalogs search instead
    routed = SearchEngine(documents, lexical, vectors=vectors, encoder=Encoder(), dense=graph)
    assert ranked(routed, "mug") == ranked(engine, "mug")


def test_hostile_queries_never_raise(documents: pl.DataFrame, lexical: LexicalIndex) -> None:
    engine = SearchEngine(documents, lexical)
    for query in ['"call of duty: black ops (2)" AND OR -', "", "   ", "\x00\x07", "🎮" * 50]:
        engine.search(query, explain=True)


def _clicks() -> pl.DataFrame:
    """Shoppers who type 'gears' want the limited edition; 'halo' the only Halo."""
    start = datetime(2024, 1, 1, tzinfo=UTC)
    rows = []
    for day in range(60):
        rows.append(("gears", "p5", f"g{day}", start + timedelta(days=day)))
        rows.append(("halo", "p6", f"h{day}", start + timedelta(days=day, hours=1)))
        rows.append(("red lantern", "p1", f"r{day}", start + timedelta(days=day, hours=2)))
    return pl.DataFrame(rows, schema=["query", "item_id", "user_id", "timestamp"], orient="row")


def _learnt(documents: pl.DataFrame, lexical: LexicalIndex) -> tuple[SearchEngine, np.ndarray]:
    """An engine whose ranker learnt from ``_clicks``, and the ranker's training rows."""
    clicks = _clicks()
    items = documents["item_id"].to_list()
    history = ClickHistory().fit(clicks[:90]).index(items)
    learner = SearchEngine(documents, lexical, clicks=history)
    rows, labels, groups = click_groups(learner, clicks[90:])
    assert len(groups) == 90 and labels.sum() == 90
    ranker = SearchRanker(learner.feature_names, trees=50, min_rows=5).fit(rows, labels, groups)
    engine = SearchEngine(
        documents, lexical, clicks=ClickHistory().fit(clicks).index(items), ranker=ranker
    )
    return engine, rows


def test_the_ranker_learns_what_shoppers_click(
    documents: pl.DataFrame, lexical: LexicalIndex, tmp_path: Path
) -> None:
    engine, rows = _learnt(documents, lexical)
    ranker = engine.ranker
    assert ranker is not None
    assert ranked(engine, "gears")[0] == "p5"  # plain BM25 prefers the shorter title, p4
    assert ranked(SearchEngine(documents, lexical), "gears")[0] == "p4"

    ranker.save(tmp_path / "ranker")
    again = SearchRanker.load(tmp_path / "ranker")
    assert np.array_equal(again.predict(rows[:20]), ranker.predict(rows[:20]))
    result = engine.search("gears", explain=True)
    assert result.hits[0].why  # the features that lifted it, with their part of the score


def test_the_ranker_says_which_features_it_reads() -> None:
    rng = np.random.default_rng(0)
    rows = np.column_stack([rng.random(400), np.zeros(400)])  # the second never varies
    labels = (rows[:, 0] > 0.5).astype(np.float32)
    ranker = SearchRanker(("useful", "constant"), trees=5, min_rows=5)
    ranker.fit(rows, labels, np.full(40, 10))
    assert ranker.reads(("useful",)) and ranker.reads(("constant", "useful"))
    assert not ranker.reads(("constant",)) and not ranker.reads(("absent",))


def test_a_dense_index_used_first_does_not_break_the_ranker() -> None:
    """Regression: usearch loaded before LightGBM made every later fit fail with "Feature
    (Column_) appears more than one time"; a fresh process sees the import order as shipped."""
    script = (
        "import numpy as np\n"
        "from aisle.search.dense import DenseIndex\n"
        "DenseIndex.create(['a', 'b'], np.eye(2, dtype=np.float32)).search(np.ones(2), 1)\n"
        "from aisle.search.ltr import SearchRanker\n"
        "x = np.random.default_rng(0).random((40, 3))\n"
        "SearchRanker(('a', 'b', 'c'), trees=2, min_rows=1).fit(x, (x[:, 0] > 0.5) * 1.0,"
        " np.full(4, 10))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], check=False, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]


def test_products_added_changed_and_removed_are_searchable_at_once(
    documents: pl.DataFrame, tmp_path: Path
) -> None:
    class Encoder:
        name, dimensions, source = "toy", 2, "toy"

        def encode(self, texts: list[str]) -> np.ndarray:
            return np.asarray([[1.0, 0.0] if "dragon" in t.lower() else [0.0, 1.0]
                               for t in texts], np.float32)  # fmt: skip

    items = documents["item_id"].to_list()
    vectors = Encoder().encode(list(TITLES.values()))
    clicks = ClickHistory().fit(_clicks()).index(items)
    engine = SearchEngine(documents, LexicalIndex.create(documents, tmp_path / "lexical"),
                          vectors=vectors, encoder=Encoder(), clicks=clicks)  # fmt: skip
    started = time.perf_counter()
    engine.upsert(pl.DataFrame({"item_id": ["p9", "p3"], "title": ["Purple dragon lantern",
                                                                   "Green wool scarf"]}))  # fmt: skip
    assert ranked(engine, "dragon")[0] == "p9"  # new: found by its words and its meaning
    assert ranked(engine, "green scarf")[0] == "p3"  # changed: its new words match
    assert "p3" not in engine.lexical.search("red").item_ids  # and its old ones no longer
    assert engine.documents.filter(pl.col("item_id") == "p3")["popularity"].item() == 2.0
    assert engine.remove(["p1", "nope"]) == 1
    assert "p1" not in ranked(engine, "red lantern")
    assert time.perf_counter() - started < 1.0
    engine.upsert(pl.DataFrame({"item_id": ["p1"], "title": ["Red paper lantern"]}))
    assert ranked(engine, "red lantern")[0] == "p1"  # back after an upsert
    # the per-field BM25 follows the changes: the changed product scores its new words only
    changed = engine.position["p3"]
    fields = engine.terms.field_scores(engine.lexical.tokens("green scarf"), np.asarray([changed]))
    assert fields[0].sum() > 0
    assert engine.terms.field_scores(engine.lexical.tokens("red"), np.asarray([changed])).sum() == 0


def test_standing_is_the_rank_percentile_among_scored_candidates() -> None:
    got = standing({"a": 0.2, "b": 5.0, "c": -1.0, "x": 9.0}, ["a", "b", "z", "c"])
    assert got.tolist() == pytest.approx([2 / 3, 1.0, 0.0, 1 / 3])
    assert standing({}, ["a"]).tolist() == [0.0]
    scores = np.asarray([1.0, 2.0, 3.0])
    lifted = personalised(scores, np.asarray([0.0, 0.0, 0.0]), np.asarray([1.0, 0.0, 0.0]),
                          (0.5, 1.0))  # fmt: skip
    assert lifted[0] == pytest.approx(1.0 + float(np.std(scores)))
    assert lifted[1:].tolist() == [2.0, 3.0]


def test_a_recommenders_scores_lift_its_favourites(
    documents: pl.DataFrame, lexical: LexicalIndex
) -> None:
    engine = SearchEngine(documents, lexical)
    plain = engine.search("tea cup", limit=2)
    last = plain.hits[1].item_id
    scores = {last: 10.0, plain.hits[0].item_id: 1.0, "p1": 50.0}
    # weights count standard deviations of the candidates' scores: with two candidates,
    # one is half the gap between them
    engine.personal_weights = (0.5, 8.0)
    lifted = engine.search("tea cup", limit=2, personal_scores=scores)
    assert lifted.hits[0].item_id == last
    assert {h.item_id for h in lifted.hits} == {h.item_id for h in plain.hits}  # same matches
    engine.personal_weights = (0.5, 0.0)  # the recommender's weight at 0: no effect
    assert engine.search("tea cup", limit=2, personal_scores=scores).hits == plain.hits
    # affinity and scores together; neither changes which products match
    both = engine.search("tea cup", personal_scores=scores,
                         affinity={"category": {"home": 1.0}, "brand": {}})  # fmt: skip
    assert both.total == plain.total


def test_a_repeated_query_is_ranked_once_until_the_catalog_changes(
    documents: pl.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, _ = _learnt(documents, LexicalIndex.create(documents, tmp_path / "lexical"))
    retrieved: list[str] = []
    retrieve = engine.candidates

    def counted(query: str, searched: str, expansions: Sequence[str] = ()) -> np.ndarray:
        retrieved.append(query)
        return retrieve(query, searched, expansions)

    monkeypatch.setattr(engine, "candidates", counted)
    first = engine.search("gears of war")
    assert engine.search("gears of war") == first and retrieved == ["gears of war"]
    # another day's search is ranked again (days since release move with it)
    at = datetime(2030, 1, 1, 9, tzinfo=UTC)
    engine.rank("gears of war", at=at)
    assert len(retrieved) == 2
    # a customer's search reuses the candidates; their rows are what their features make
    liked = {"category": {"home": 1.0}, "brand": {}}
    columns, scores, rows = engine.rank("gears of war", affinity=liked, at=at)
    assert len(retrieved) == 2
    same = engine.feature_rows("gears of war", columns, liked, at)
    assert np.array_equal(rows, same, equal_nan=True)
    assert engine.ranker is not None
    assert np.allclose(np.sort(scores), np.sort(engine.ranker.predict_screened(rows)))
    engine.upsert(pl.DataFrame({"item_id": ["p9"], "title": ["Gears of War 3 Epic Edition"]}))
    assert "p9" in ranked(engine, "gears of war") and len(retrieved) == 3
    engine.remove(["p9"])
    assert "p9" not in ranked(engine, "gears of war") and len(retrieved) == 4
    monkeypatch.setattr(engine_module, "RANKED_CACHE", 2)
    for query in ("red", "blue", "tea"):
        engine.rank(query)
    assert len(engine._ranked) == 2


def test_the_dense_graph_pool_follows_added_and_removed_products(documents: pl.DataFrame) -> None:
    class Encoder:
        name, dimensions, source = "toy", 3, "toy"

        def encode(self, texts: list[str]) -> np.ndarray:
            return np.asarray([[1.0, 0.0, 0.0] if {"dragon", "wyvern"} & set(t.lower().split()) else
                               [0.0, 1.0, 0.0] if "tea" in t.lower() else [0.0, 0.0, 1.0]
                               for t in texts], np.float32)  # fmt: skip

    vectors = Encoder().encode(list(TITLES.values()))
    dense = DenseIndex.create(documents["item_id"].to_list(), vectors)
    engine = SearchEngine(documents, LexicalIndex.create(documents), vectors=vectors,
                          encoder=Encoder(), dense=dense)  # fmt: skip
    assert {"p7", "p8"} <= set(ranked(engine, "tea"))
    engine.upsert(pl.DataFrame({"item_id": ["p9"], "title": ["Dragon figure"]}))
    assert engine.lexical.search("wyvern").item_ids == []  # found by meaning alone:
    assert ranked(engine, "wyvern") == ["p9"]  # the graph's new key maps to the new column
    engine.remove(["p9"])
    assert ranked(engine, "wyvern") == []


def test_the_query_vector_cache_stays_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """A serving process sees endless distinct queries: the oldest vectors make room."""

    class Counting:
        calls = 0

        def encode(self, texts: list[str]) -> np.ndarray:
            Counting.calls += len(texts)
            return np.ones((len(texts), 4), dtype=np.float32) / 2

    monkeypatch.setattr(engine_module, "QUERY_VECTOR_CACHE", 3)
    engine = object.__new__(engine_module.SearchEngine)
    engine.encoder = Counting()  # type: ignore[assignment]
    engine.vectors = np.zeros((1, 4), dtype=np.float32)
    engine.query_vectors = {}
    for text in ["a", "b", "c", "d", "a"]:
        assert engine.query_vector(text) is not None
    assert len(engine.query_vectors) == 3
    assert Counting.calls == 5  # "a" had been pushed out by "d"
    engine.query_vector("d")
    assert Counting.calls == 5
