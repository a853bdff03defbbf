"""The lexical index: matching, fuzzy terms, filters, sorts, facets, updates, field scores."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import polars as pl
import pytest

from aisle.config import Settings
from aisle.errors import StoreError
from aisle.pipeline import ingest
from aisle.search.documents import conform, search_documents
from aisle.search.lexical import LexicalHits, LexicalIndex
from aisle.search.lexical_fields import MANIFEST, PRICE_RANGES, TEXT_FIELDS
from aisle.storage import Store

NASTY = [
    '"call of duty: black ops (2)" AND OR -',
    "",
    "   ",
    "((",
    "title:lamp",
    "lamp^3 mug~2",
    "[1 TO 5]",
    "* ? \\ / ! + - && ||",
    "NOT",
    "'",
    "\x00lamp",
    "lamp " * 200,
]


def product(item_id: str, title: str, **fields: Any) -> dict[str, Any]:
    return {"item_id": item_id, "title": title, **fields}


def documents(rows: list[dict[str, Any]]) -> pl.DataFrame:
    return conform(pl.DataFrame(rows, infer_schema_length=None))


CATALOG = documents(
    [
        product("lamp-1", "LED Desk Lamp", description="A bright desk lamp with a USB port.",
                brand="Lumo", category="Lighting", category_path=["Home", "Lighting"],
                price=25.0, popularity=10.0, updated_at=datetime(2024, 3, 1, tzinfo=UTC)),
        product("lamp-2", "Floor Lamp, brass", description="Tall lamp for reading.",
                brand="Lumo", category="Lighting", category_path=["Home", "Lighting"],
                price=80.0, popularity=3.0, updated_at=datetime(2024, 5, 1, tzinfo=UTC)),
        product("mug-1", "Ceramic Mug 350ml", description="Dishwasher safe mug.",
                brand="Potter & Co", category="Kitchen", category_path=["Home", "Kitchen"],
                price=9.5, popularity=30.0, updated_at=datetime(2023, 1, 1, tzinfo=UTC)),
        product("kettle-1", "Electric Kettle 1.7L", description="Boils water fast; lamp-free.",
                brand="Boilr", category="Kitchen", category_path=["Home", "Kitchen"],
                price=None, popularity=1.0, attributes="colour black capacity 1.7 l"),
        product("game-1", "Call of Duty: Black Ops - Xbox 360", description="Shooter.",
                brand="Activision", category="Shooters",
                category_path=["Video Games", "Shooters"], price=19.99, popularity=50.0,
                aliases="cod black ops"),
        product("game-2", "Call of Duty: Modern Warfare 3 - Xbox 360", description="Shooter.",
                brand="Activision", category="Shooters",
                category_path=["Video Games", "Shooters"], price=59.99, popularity=70.0),
        product("ps-3", "PS3 controller", brand=None, category=None, price=30.0),
        product("zh-1", "苹果手机壳 透明", description="适用于iPhone 15", brand="苹果",
                category="手机配件", price=12.0),
        product("zh-2", "小米电视机 4K 超高清", brand="小米", category="电视", price=2999.0),
        product("zh-3", "华为 Mate 60 Pro 手机", brand="华为", category="手机", price=899.0),
    ]
)  # fmt: skip


@pytest.fixture(scope="module")
def index() -> LexicalIndex:
    return LexicalIndex.create(CATALOG)


def test_finds_products_by_title_and_ranks_the_best_match_first(index: LexicalIndex) -> None:
    hits = index.search("desk lamp")
    assert isinstance(hits, LexicalHits)
    assert hits.item_ids[0] == "lamp-1"
    assert set(hits.item_ids) >= {"lamp-1", "lamp-2"}
    assert hits.scores.dtype == np.float32
    assert list(hits.scores) == sorted(hits.scores, reverse=True)
    assert hits.total == len(hits.item_ids)


def test_total_counts_matches_beyond_the_limit(index: LexicalIndex) -> None:
    hits = index.search("lamp", limit=1)
    assert len(hits) == 1
    assert hits.total == 3  # two lamps and the lamp-free kettle's description


def test_names_are_stemmed_and_descriptions_are_not(index: LexicalIndex) -> None:
    assert set(index.search("lamps").item_ids) == {"lamp-1", "lamp-2"}  # titles
    assert "kettle-1" in index.search("lamp").item_ids  # its description says "lamp-free"
    assert index.search("mugs").item_ids == ["mug-1"]
    assert index.search("reading").item_ids == ["lamp-2"]  # description, as written
    assert index.search("read").total == 0


@pytest.mark.parametrize("query", NASTY)
def test_shoppers_syntax_never_raises(index: LexicalIndex, query: str) -> None:
    hits = index.search(query, fuzzy=True, require_all=True)
    assert isinstance(hits, LexicalHits)


def test_quoted_query_with_operators_searches_its_words(index: LexicalIndex) -> None:
    hits = index.search('"call of duty: black ops (2)" AND OR -')
    assert hits.item_ids[0] == "game-1"


def test_query_without_terms_lists_every_product(index: LexicalIndex) -> None:
    assert index.search("", limit=100).total == CATALOG.height
    assert index.search("?!", filters={"brand": "Lumo"}).total == 2


def test_require_all(index: LexicalIndex) -> None:
    assert set(index.search("brass lamp").item_ids) == {"lamp-1", "lamp-2", "kettle-1"}
    assert index.search("brass lamp", require_all=True).item_ids == ["lamp-2"]
    assert index.search("brass lamp xylophone", require_all=True).total == 0


def test_fields_are_searched_with_their_boosts(index: LexicalIndex) -> None:
    assert "kettle-1" in index.search("black capacity").item_ids  # attributes
    assert index.search("cod").item_ids == ["game-1"]  # aliases
    assert set(index.search("activision").item_ids) == {"game-1", "game-2"}  # brand
    assert set(index.search("kitchen").item_ids) == {"mug-1", "kettle-1"}  # category path
    # a title match outranks a description match
    assert index.search("lamp").item_ids[-1] == "kettle-1"


def test_chinese_queries_find_segmented_titles(index: LexicalIndex) -> None:
    assert index.search("手机壳").item_ids[0] == "zh-1"
    assert index.search("电视").item_ids == ["zh-2"]  # inside 电视机
    assert index.search("华为 mate").item_ids[0] == "zh-3"
    assert "zh-1" in index.search("iphone").item_ids  # latin in a Chinese description


def test_fuzzy_finds_misspellings_below_exact_matches(index: LexicalIndex) -> None:
    assert index.search("ceramik").total == 0
    assert index.search("ceramik", fuzzy=True).item_ids == ["mug-1"]
    assert index.search("elektrik", fuzzy=True).item_ids == ["kettle-1"]  # 2 edits, 8 letters
    assert index.search("cerrmik", fuzzy=True).total == 0  # 2 edits, 7 letters
    assert index.search("dishwashr", fuzzy=True).total == 0  # descriptions are not fuzzed
    # "lamb" is one edit from "lamp": the fuzzy match ranks below the exact one
    exact_and_fuzzy = documents([product("a", "lamb chop"), product("b", "lamp shade")])
    small = LexicalIndex.create(exact_and_fuzzy)
    assert small.search("lamb", fuzzy=True).item_ids == ["a", "b"]
    assert small.search("lamb").item_ids == ["a"]


def test_fuzzy_leaves_short_terms_and_numbers_alone(index: LexicalIndex) -> None:
    assert index.search("mig", fuzzy=True).total == 0  # 3 letters: not "mug"
    assert "ps-3" not in index.search("ps4", fuzzy=True).item_ids


def test_filters_are_exact_and_any_of_several(index: LexicalIndex) -> None:
    assert set(index.search("lamp", filters={"brand": "Lumo"}).item_ids) == {"lamp-1", "lamp-2"}
    assert index.search("lamp", filters={"brand": "lumo"}).total == 0  # exact, not analysed
    both = index.search("", filters={"brand": ["Lumo", "Boilr"]})
    assert set(both.item_ids) == {"lamp-1", "lamp-2", "kettle-1"}
    kitchen = index.search("", filters={"category": "Kitchen", "brand": ["Boilr", "Lumo"]})
    assert kitchen.item_ids == ["kettle-1"]
    assert index.search("", filters={"brand": []}).total == 0


def test_filters_do_not_change_scores(index: LexicalIndex) -> None:
    plain = index.search("lamp")
    filtered = index.search("lamp", filters={"brand": "Lumo"}, price_min=0)
    scores = dict(zip(plain.item_ids, plain.scores, strict=True))
    for item, score in zip(filtered.item_ids, filtered.scores, strict=True):
        assert score == pytest.approx(scores[item])


def test_price_bounds_are_inclusive(index: LexicalIndex) -> None:
    hits = index.search("", price_min=19.99, price_max=59.99, limit=100)
    assert set(hits.item_ids) == {"lamp-1", "game-1", "game-2", "ps-3"}
    assert set(index.search("", price_max=10).item_ids) == {"mug-1"}
    assert "kettle-1" not in index.search("", price_min=0).item_ids  # no price


def test_sorts(index: LexicalIndex) -> None:
    by_price = index.search("", sort="price", limit=100)
    prices = by_price.scores[~np.isnan(by_price.scores)]
    assert list(prices) == sorted(prices)
    assert by_price.item_ids[0] == "mug-1"
    assert by_price.item_ids[-1] == "kettle-1"  # no price: last
    assert index.search("", sort="-price").item_ids[0] == "zh-2"
    assert index.search("", sort="popularity").item_ids[:2] == ["game-2", "game-1"]
    newest = index.search("lamp", sort="newest")
    assert newest.item_ids[:2] == ["lamp-2", "lamp-1"]
    assert newest.scores[0] == pytest.approx(datetime(2024, 5, 1, tzinfo=UTC).timestamp())


def test_misuse_is_refused(index: LexicalIndex) -> None:
    with pytest.raises(ValueError, match="sort"):
        index.search("lamp", sort="cheapest")
    with pytest.raises(ValueError, match="filter"):
        index.search("lamp", filters={"colour": "red"})
    with pytest.raises(ValueError, match="facets"):
        index.facet_counts("lamp", ["colour"])
    with pytest.raises(ValueError, match="boosts"):
        LexicalIndex.create(CATALOG, boosts={"colour": 2.0})


def test_field_scores_are_each_fields_bm25(index: LexicalIndex) -> None:
    items = ["lamp-1", "kettle-1", "nope", "lamp-1"]
    scores = index.field_scores("desk lamp", items)
    assert scores.shape == (4, len(TEXT_FIELDS))
    assert scores.dtype == np.float32
    assert np.all(scores[2] == 0)  # unknown item
    assert np.array_equal(scores[0], scores[3])
    title, description = TEXT_FIELDS.index("title"), TEXT_FIELDS.index("description")
    assert scores[0, title] > 0 and scores[0, description] > 0
    assert scores[1, title] == 0 and scores[1, description] > 0
    # oracle: an index searching only one field, unboosted, scores exactly that
    for column, field in enumerate(TEXT_FIELDS):
        only = LexicalIndex.create(CATALOG, boosts={f: float(f == field) for f in TEXT_FIELDS})
        hits = only.search("desk lamp")
        expected = dict(zip(hits.item_ids, hits.scores, strict=True))
        for row, item in enumerate(items):
            assert scores[row, column] == pytest.approx(expected.get(item, 0.0), rel=1e-5)


def test_field_scores_without_terms_or_items(index: LexicalIndex) -> None:
    assert index.field_scores("", ["lamp-1"]).tolist() == [[0.0] * len(TEXT_FIELDS)]
    assert index.field_scores("lamp", []).shape == (0, len(TEXT_FIELDS))


def duckdb_counts(frame: pl.DataFrame, column: str) -> dict[str, int]:
    rows = duckdb.sql(
        f"SELECT {column}, count(*) FROM frame WHERE {column} IS NOT NULL GROUP BY {column}"
    ).fetchall()
    return {str(value): int(count) for value, count in rows}


def duckdb_price_counts(frame: pl.DataFrame) -> dict[str, int]:
    cases = " ".join(
        f"WHEN price >= {low} {'' if high is None else f'AND price < {high}'} THEN '{label}'"
        for label, (low, high) in PRICE_RANGES.items()
    )
    rows = duckdb.sql(
        f"SELECT CASE {cases} END AS bucket, count(*) FROM frame GROUP BY bucket"
    ).fetchall()
    found = {label: int(count) for label, count in rows if label is not None}
    return {label: found.get(label, 0) for label in PRICE_RANGES}


def random_catalog(size: int, seed: int = 1) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    words = np.array(["red", "blue", "lamp", "mug", "kettle", "desk", "chair", "steel", "oak"])
    prices = np.round(rng.lognormal(3.3, 1.3, size), 2)
    return documents(
        [
            product(f"p{i}", " ".join(rng.choice(words, 3)),
                    brand=None if i % 17 == 0 else f"brand{rng.integers(0, 30)}",
                    category=f"cat{rng.integers(0, 8)}",
                    price=None if i % 13 == 0 else float(prices[i]))
            for i in range(size)
        ]
    )  # fmt: skip


@pytest.mark.parametrize(
    ("query", "options"),
    [
        (None, {}),
        ("lamp", {}),
        ("red steel", {"require_all": True}),
        ("oak", {"filters": {"category": ["cat1", "cat2"]}, "price_min": 10, "price_max": 100}),
    ],
)
def test_facet_counts_equal_a_duckdb_count_of_all_matches(
    query: str | None, options: dict[str, Any]
) -> None:
    catalog = random_catalog(1500)
    index = LexicalIndex.create(catalog)
    counts = index.facet_counts(query, ["brand", "category", "price"], **options)
    matched = index.search(query or "", limit=catalog.height, **options)
    assert matched.total == len(matched.item_ids)  # the limit left nothing out
    frame = catalog.filter(pl.col("item_id").is_in(matched.item_ids))
    assert counts["brand"] == duckdb_counts(frame, "brand")
    assert counts["category"] == duckdb_counts(frame, "category")
    assert counts["price"] == duckdb_price_counts(frame)
    assert sum(counts["category"].values()) == matched.total
    assert index.facet_counts(query, [], **options) == {}


def test_upsert_replaces_by_item_id_and_is_searchable_within_a_second() -> None:
    index = LexicalIndex.create(CATALOG)
    started = time.perf_counter()
    index.upsert(documents([product("mug-1", "Porcelain Teacup", brand="Potter & Co"),
                            product("new-1", "Walnut Desk Organiser", price=15.0)]))  # fmt: skip
    hits = index.search("teacup")
    elapsed = time.perf_counter() - started
    assert hits.item_ids == ["mug-1"]
    assert elapsed < 1.0
    assert index.search("ceramic").total == 0  # the old title is gone
    assert index.search("walnut").item_ids == ["new-1"]
    assert len(index) == CATALOG.height + 1
    assert sorted(index.item_ids) == sorted([*CATALOG["item_id"], "new-1"])


def test_delete_counts_what_it_removed() -> None:
    index = LexicalIndex.create(CATALOG)
    started = time.perf_counter()
    assert index.delete(["lamp-1", "lamp-1", "no-such-item"]) == 1
    assert index.search("desk").total == 0
    assert time.perf_counter() - started < 1.0
    assert index.delete(["no-such-item"]) == 0
    assert index.delete([]) == 0
    assert len(index) == CATALOG.height - 1


def test_on_disk_index_reopens_with_its_settings(tmp_path: Path) -> None:
    path = tmp_path / "lexical"
    boosts = {"title": 4.0, "description": 0.5}
    created = LexicalIndex.create(CATALOG, path, boosts=boosts, tokenizers="default")
    created.upsert(documents([product("new-1", "Walnut Desk Organiser")]))
    expected = created.search("desk lamps")
    del created
    manifest = json.loads((path / MANIFEST).read_text())
    assert manifest["fields"] == list(TEXT_FIELDS)
    assert manifest["tokenizers"] == dict.fromkeys(TEXT_FIELDS, "default")
    assert manifest["boosts"]["title"] == 4.0
    assert manifest["documents"] == CATALOG.height + 1
    assert "created_at" in manifest
    opened = LexicalIndex.open(path)
    assert opened.tokenizers["title"] == "default"
    assert opened.boosts["title"] == 4.0
    again = opened.search("desk lamps")
    assert again.item_ids == expected.item_ids
    assert np.array_equal(again.scores, expected.scores)
    assert "lamp-2" not in again.item_ids  # no stemming: "lamps" is not "lamp"
    assert opened.search("walnut").item_ids == ["new-1"]


def test_one_writer_at_a_time(tmp_path: Path) -> None:
    first = LexicalIndex.create(CATALOG, tmp_path / "lexical")
    first.upsert(documents([product("new-1", "Walnut Desk Organiser")]))  # holds the writer
    second = LexicalIndex.open(tmp_path / "lexical")
    assert second.search("walnut").item_ids == ["new-1"]
    with pytest.raises(StoreError, match="cannot write"):
        second.delete(["new-1"])
    first.close()
    assert second.delete(["new-1"]) == 1


def test_opening_nothing_or_creating_over_an_index_fails(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no search index"):
        LexicalIndex.open(tmp_path / "missing")
    LexicalIndex.create(CATALOG, tmp_path / "lexical")
    with pytest.raises(StoreError, match="exists already"):
        LexicalIndex.create(CATALOG, tmp_path / "lexical")
    manifest = json.loads((tmp_path / "lexical" / MANIFEST).read_text())
    (tmp_path / "lexical" / MANIFEST).write_text(json.dumps({**manifest, "format": 0}))
    with pytest.raises(StoreError, match="rebuild"):
        LexicalIndex.open(tmp_path / "lexical")


def test_documents_without_text_or_price_are_indexed() -> None:
    sparse = documents([product("a", None), product("b", "", brand="", price=float("nan"))])
    index = LexicalIndex.create(sparse)
    assert len(index) == 2
    assert index.facet_counts(None, ["brand", "price"]) == {
        "brand": {}, "price": dict.fromkeys(PRICE_RANGES, 0)
    }  # fmt: skip


@pytest.mark.integration
def test_best_buy_catalog(shared_data: Path, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", secret_key="s" * 48)
    ingest("products", shared_data / "bestbuy-small-xbox", "bestbuy-products", settings)
    with Store(settings.home) as store:
        catalog = search_documents(store)
    index = LexicalIndex.create(catalog)
    assert len(index) == catalog.height
    top = index.search("gears of war 3", limit=3)
    titles = dict(zip(catalog["item_id"], catalog["title"], strict=True))
    assert all("Gears of War 3" in titles[item] for item in top.item_ids)
    assert index.search("modern warfar", fuzzy=True).item_ids[0] in {
        item for item, title in titles.items() if "Modern Warfare" in title
    }
    counts = index.facet_counts("batman", ["brand", "category", "price"])
    matched = index.search("batman", limit=catalog.height)
    frame = catalog.filter(pl.col("item_id").is_in(matched.item_ids))
    assert counts["brand"] == duckdb_counts(frame, "brand")
    assert counts["category"] == duckdb_counts(frame, "category")
    assert counts["price"] == duckdb_price_counts(frame)
    started = time.perf_counter()
    for _ in range(20):
        index.field_scores("call of duty black ops", matched.item_ids[:100] * 10)
    assert (time.perf_counter() - started) / 20 < 0.05


def test_remembered_addresses_follow_commits_by_another_process(tmp_path: Path) -> None:
    """The item ids of document addresses are remembered between searches; a commit through
    another LexicalIndex (another process) moves documents, and none is named wrongly."""
    writer = LexicalIndex.create(CATALOG, tmp_path / "lexical")
    reader = LexicalIndex.open(tmp_path / "lexical")
    before = reader.search("lamp")
    assert reader.search("lamp").item_ids == before.item_ids  # from the remembered addresses
    writer.upsert(documents([product("lamp-1", "Kettle descaler"),
                             product("lamp-9", "Desk lamp, green")]))  # fmt: skip
    writer.delete(["lamp-2"])
    for n in range(12):  # segments enough for tantivy to merge: documents change addresses
        writer.upsert(documents([product(f"mug-{n + 2}", f"Mug number {n}")]))
    writer.close()  # waits for the merges
    reader._index.reload()  # what tantivy's reader does by itself shortly after a commit
    after = reader.search("lamp")
    assert "lamp-1" not in after.item_ids and "lamp-2" not in after.item_ids
    assert "lamp-9" in after.item_ids
    assert reader.search("descaler").item_ids == ["lamp-1"]
