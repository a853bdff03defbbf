"""Per-field BM25 from term statistics in memory: the same scores as tantivy's (the oracle),
on a small catalog, on long descriptions (quantised lengths) and after live updates."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from aisle.errors import StoreError
from aisle.search.documents import conform
from aisle.search.lexical import LexicalIndex
from aisle.search.lexical_fields import TEXT_FIELDS, field_texts
from aisle.search.term_statistics import NORMS, TermStatistics, quantised
from tests.conftest import SHARED_DATA

QUERIES = ["desk lamp", "lamps", "LED", "call of duty black ops", "lamp lamp lamps",
           "ceramic mug", "手机", "xbox 360 shooter", "", "zzqqxx", "Lumo lighting home"]  # fmt: skip


def product(item_id: str, title: str, **fields: Any) -> dict[str, Any]:
    return {"item_id": item_id, "title": title, **fields}


def documents(rows: list[dict[str, Any]]) -> pl.DataFrame:
    return conform(pl.DataFrame(rows, infer_schema_length=None))


WORDS = ["lamp", "desk", "bright", "reading", "brass", "led", "usb", "shade", "mug", "water"]
RNG = np.random.default_rng(3)
CATALOG = documents(
    [
        product("lamp-1", "LED Desk Lamp", description="A bright desk lamp with a USB port.",
                brand="Lumo", category="Lighting", category_path=["Home", "Lighting"]),
        product("lamp-2", "Floor Lamp, brass", description="Tall lamp for reading.",
                brand="Lumo", category="Lighting", category_path=["Home", "Lighting"]),
        product("mug-1", "Ceramic Mug 350ml", description="Dishwasher safe mug.",
                brand="Potter & Co", category="Kitchen", category_path=["Home", "Kitchen"]),
        product("kettle-1", "Electric Kettle 1.7L", description="Boils water fast; lamp-free.",
                brand="Boilr", category="Kitchen", attributes="colour black capacity 1.7 l"),
        product("game-1", "Call of Duty: Black Ops - Xbox 360", description="Shooter.",
                brand="Activision", category="Shooters",
                category_path=["Video Games", "Shooters"], aliases="cod black ops"),
        product("zh-1", "苹果手机壳 透明", description="适用于iPhone 15", brand="苹果",
                category="手机配件"),
        product("odd", "x" * 45 + " lamp", description=None, brand=None, category=None),
    ]
    # long descriptions: lengths past 40 tokens are stored rounded down by tantivy
    + [product(f"long-{n}", f"Lamp model {n}",
               description=" ".join(RNG.choice(WORDS, int(RNG.integers(5, 400)))))
       for n in range(40)]
)  # fmt: skip


def oracle(index: LexicalIndex, query: str, items: list[str]) -> np.ndarray:
    return index.field_scores(query, items)


def mine(index: LexicalIndex, stats: TermStatistics, query: str, items: list[str],
         frame: pl.DataFrame) -> np.ndarray:  # fmt: skip
    position = {item: i for i, item in enumerate(frame["item_id"].to_list())}
    return stats.field_scores(index.tokens(query), np.asarray([position[i] for i in items]))


def test_norm_table_is_tantivys() -> None:
    assert NORMS[:41].tolist() == list(range(41))
    assert NORMS[41:50].tolist() == [42, 44, 46, 48, 50, 52, 54, 56, 60]
    assert NORMS[-1] == 2_013_265_944 and np.all(np.diff(NORMS) > 0)
    assert quantised(np.asarray([0, 40, 41, 43, 59, 60, 10**6])).tolist() == [
        0, 40, 40, 42, 56, 60, 983_064]  # fmt: skip


def test_scores_equal_tantivys_field_scores() -> None:
    index = LexicalIndex.create(CATALOG)
    stats = TermStatistics.of(field_texts(CATALOG), index.tokenizers)
    items = CATALOG["item_id"].to_list()
    for query in QUERIES:
        expected = oracle(index, query, items)
        got = mine(index, stats, query, items, CATALOG)
        assert got.shape == (len(items), len(TEXT_FIELDS)) and got.dtype == np.float32
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6, err_msg=query)
    assert stats.doc_freq("title", "lamp") == 43  # stemmed: "lamps" and "lamp"
    assert stats.doc_freq("title", "x" * 45) == 0  # 40 bytes or more: dropped as tantivy does


def test_scores_follow_upserts_and_removals_like_tantivy() -> None:
    index = LexicalIndex.create(CATALOG)
    stats = TermStatistics.of(field_texts(CATALOG), index.tokenizers)
    changed = documents([
        product("lamp-2", "Desk lamp, brass", description="Lamp for the desk.", brand="Lumo"),
        product("new-1", "Reading lamp", description="A lamp. A lamp. A desk lamp.",
                brand="Brightr", category="Lighting"),
    ])  # fmt: skip
    index.upsert(changed)
    frame = pl.concat([CATALOG, changed.filter(pl.col("item_id") == "new-1")])
    stats.upsert([CATALOG["item_id"].to_list().index("lamp-2"), CATALOG.height],
                 field_texts(changed))  # fmt: skip
    items = ["lamp-1", "lamp-2", "new-1", "kettle-1", "long-3"]
    for query in ["desk lamp", "brass", "reading lamp", "brightr"]:
        expected = oracle(index, query, items)
        np.testing.assert_allclose(mine(index, stats, query, items, frame), expected,
                                   rtol=1e-5, atol=1e-6, err_msg=query)  # fmt: skip
    index.delete(["lamp-1", "new-1"])
    stats.remove([0, CATALOG.height])
    gone = mine(index, stats, "desk lamp", ["lamp-1", "new-1", "lamp-2"], frame)
    assert np.all(gone[:2] == 0) and gone[2].sum() > 0


def test_scores_of_candidates_in_any_order_with_repeats() -> None:
    index = LexicalIndex.create(CATALOG)
    stats = TermStatistics.of(field_texts(CATALOG), index.tokenizers)
    columns = np.asarray([5, 0, 0, 44, 2])
    scores = stats.field_scores(index.tokens("lamp"), columns)
    assert np.array_equal(scores[1], scores[2])
    alone = stats.field_scores(index.tokens("lamp"), np.asarray([0]))
    np.testing.assert_array_equal(alone[0], scores[1])
    assert stats.field_scores(index.tokens("lamp"), np.zeros(0, np.int64)).shape == (0, 6)


def test_scores_equal_tantivys_on_the_best_buy_catalog() -> None:
    products = SHARED_DATA / "bestbuy-small-xbox" / "products.jsonl.gz"
    clicks = SHARED_DATA / "bestbuy-small-xbox" / "clicks.csv.gz"
    if not products.is_file():
        pytest.skip(f"Best Buy data not found at {products.parent} (set AISLE_DATA)")
    raw = pl.read_ndjson(products)
    catalog = documents(
        [
            product(str(r["sku"]), r.get("name") or "", description=r.get("longDescription"))
            for r in raw.to_dicts()
        ]
    )
    index = LexicalIndex.create(catalog)
    stats = TermStatistics.of(field_texts(catalog), index.tokenizers)
    queries = pl.read_csv(clicks, infer_schema=False)["query"].unique().sort().head(300)
    items = catalog["item_id"].to_list()
    for query in queries.to_list():
        np.testing.assert_allclose(mine(index, stats, query, items, catalog),
                                   oracle(index, query, items), rtol=1e-4, atol=1e-5)  # fmt: skip


def test_saved_statistics_load_to_the_same_scores(tmp_path: Path) -> None:
    index = LexicalIndex.create(CATALOG)
    stats = TermStatistics.of(field_texts(CATALOG), index.tokenizers)
    stats.save(tmp_path / "terms")
    loaded = TermStatistics.load(tmp_path / "terms")
    columns = np.arange(CATALOG.height)
    for query in QUERIES:
        tokens = index.tokens(query)
        assert np.array_equal(loaded.field_scores(tokens, columns),
                              stats.field_scores(tokens, columns))  # fmt: skip
    assert not list(tmp_path.rglob("*.pkl"))
    stats.remove([0])
    with pytest.raises(StoreError, match="build them again"):
        stats.save(tmp_path / "changed")
