"""Dataset adapters: tiny frames shaped like read_source output, then the real datasets."""

from __future__ import annotations

import hashlib
import json
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from aisle.config import Settings
from aisle.domain import EVENT_SCHEMA, PRODUCT_SCHEMA, RecordKind
from aisle.errors import ConfigError
from aisle.ingest.adapters import AdaptContext, Adapter, get_adapter
from aisle.ingest.adapters.amazon_games import AmazonGamesSasrec
from aisle.ingest.adapters.bestbuy import BestBuyClicks, BestBuyProducts
from aisle.ingest.adapters.canonical import Canonical
from aisle.ingest.adapters.crowdflower import Crowdflower, product_ids
from aisle.ingest.adapters.mapping import MappingAdapter
from aisle.ingest.adapters.movielens import DEFAULT_GENRES, MOVIE_COLUMNS, MovieLens100k
from aisle.ingest.readers import read_source

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
EVENTS, PRODUCTS = RecordKind.EVENTS, RecordKind.PRODUCTS


@pytest.fixture
def ctx() -> AdaptContext:
    return AdaptContext(settings=Settings(), source="test")


def raw_frame(columns: dict[str, list[Any]], first_line: int = 1) -> pl.DataFrame:
    """A frame as read_source returns it: the columns, the physical ``_line``, ``_bad_encoding``."""
    n = len(next(iter(columns.values())))
    lines = pl.Series("_line", range(first_line, first_line + n), dtype=pl.Int64)
    return pl.DataFrame(columns).with_columns(lines, pl.lit(False).alias("_bad_encoding"))


def assert_events_contract(out: pl.DataFrame, raw: pl.DataFrame, source: str) -> None:
    """One row per raw row, same order, ``_line`` kept, only canonical columns, source set."""
    assert out.height == raw.height
    assert out["_line"].to_list() == raw["_line"].to_list()
    assert set(out.columns) - {"_line", "_pre_reason"} <= set(EVENT_SCHEMA)
    assert set(out["source"]) == {source}
    # text flags stay text for the pipeline to cast (and quarantine when unreadable)
    assert out["consent_personalisation"].dtype in (pl.Boolean, pl.String)


def assert_products_contract(out: pl.DataFrame, source: str) -> None:
    """Only canonical product columns plus ``_line``; list and JSON fields well formed."""
    assert "_line" in out.columns
    assert set(out.columns) - {"_line"} <= set(PRODUCT_SCHEMA)
    assert set(out["source"]) == {source}
    if "category_path" in out.columns:
        assert out["category_path"].dtype == pl.List(pl.String)
    if "attributes" in out.columns:
        for text in out["attributes"].drop_nulls():
            assert isinstance(json.loads(text), dict)


def md5_id(title: str, description: str) -> str:
    return "cf-" + hashlib.md5(f"{title}\x1f{description}".encode()).hexdigest()[:16]


# --- the registry -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "movielens-100k",
        "amazon-games-sasrec",
        "bestbuy-clicks",
        "bestbuy-products",
        "crowdflower",
        "canonical",
    ],
)
def test_builtin_adapters_load_and_follow_the_protocol(name: str) -> None:
    adapter = get_adapter(name, Settings())
    assert isinstance(adapter, Adapter)
    assert adapter.name == name
    for kind in adapter.kinds:
        adapter.read_options(kind)


# --- MovieLens 100K ---------------------------------------------------------------------------


def test_movielens_ratings_become_rating_events(ctx: AdaptContext) -> None:
    raw = raw_frame(
        {
            "user_id": ["196", "186"],
            "item_id": ["242", "302"],
            "rating": ["3", "5"],
            "timestamp": ["881250949", "891717742"],
        }
    )
    out = MovieLens100k().events(raw, ctx)
    assert_events_contract(out, raw, "movielens-100k")
    assert out["type"].to_list() == ["rating", "rating"]
    assert out["value"].to_list() == ["3", "5"]
    assert out["item_id"].to_list() == ["242", "302"]
    assert out["timestamp"].to_list() == ["881250949", "891717742"]
    assert MovieLens100k().user_columns == ("user_id",)


def movie_rows(flags: list[list[str]]) -> pl.DataFrame:
    """u.item rows: fixed columns, then one column per genre named after it."""
    n = len(flags)
    columns: dict[str, list[Any]] = {
        "movie_id": [str(i + 1) for i in range(n)],
        "title": [f"Movie {i + 1} (1995)" for i in range(n)],
        "release_date": ["01-Jan-1995", *[""] * (n - 1)],
        "video_release_date": [None] * n,
        "imdb_url": ["http://us.imdb.com/M/title-exact?Toy", *[None] * (n - 1)],
    }
    for g, genre in enumerate(DEFAULT_GENRES):
        columns[genre] = [row[g] for row in flags]
    return raw_frame(columns)


def test_movielens_movies_become_products_with_genres(ctx: AdaptContext) -> None:
    toy_story = ["0", "0", "0", "1", "1", "1", *["0"] * 13]
    no_genre = ["0"] * 19
    raw = movie_rows([toy_story, no_genre])
    out = MovieLens100k().products(raw, ctx)
    assert_products_contract(out, "movielens-100k")
    assert out["item_id"].to_list() == ["1", "2"]
    assert out["category_path"].to_list() == [["Animation", "Children's", "Comedy"], []]
    assert json.loads(out["attributes"][0]) == {
        "release_date": "01-Jan-1995",
        "imdb_url": "http://us.imdb.com/M/title-exact?Toy",
    }
    assert json.loads(out["attributes"][1]) == {"release_date": None, "imdb_url": None}
    assert out["price"].to_list() == [None, None]
    assert out["currency"].to_list() == [None, None]


def test_movielens_locate_reads_genre_names_beside_u_item(tmp_path: Path) -> None:
    (tmp_path / "u.item").write_text("", encoding="latin-1")
    (tmp_path / "u.genre").write_text("Zed|1\nAlpha|0\n\n", encoding="latin-1")
    adapter = MovieLens100k()
    assert adapter.locate(tmp_path, PRODUCTS) == tmp_path / "u.item"
    options = adapter.read_options(PRODUCTS)
    assert options.column_names == (*MOVIE_COLUMNS, "Alpha", "Zed")
    assert options.encoding == "latin-1"
    assert options.delimiter == "|"


def test_movielens_locate_falls_back_to_standard_genres_and_u_data(tmp_path: Path) -> None:
    (tmp_path / "u.data").write_text("1\t2\t3\t4\n")
    adapter = MovieLens100k()
    assert adapter.locate(tmp_path, EVENTS) == tmp_path / "u.data"
    assert adapter.locate(tmp_path, PRODUCTS) == tmp_path / "u.item"
    assert adapter.read_options(PRODUCTS).column_names == (*MOVIE_COLUMNS, *DEFAULT_GENRES)
    events = adapter.read_options(EVENTS)
    assert (events.delimiter, events.has_header) == ("\t", False)


# --- Amazon Games -----------------------------------------------------------------------------


def test_amazon_lines_become_purchases_at_synthetic_ordered_times(ctx: AdaptContext) -> None:
    raw = raw_frame({"user": ["1", "1", "2"], "item": ["6393", "13504", "7"]})
    out = AmazonGamesSasrec().events(raw, ctx)
    assert_events_contract(out, raw, "amazon-games-sasrec")
    assert out["type"].to_list() == ["purchase"] * 3
    assert out["value"].to_list() == [1.0] * 3
    assert out["price"].to_list() == [None] * 3
    assert out["timestamp"].dtype == EVENT_SCHEMA["timestamp"]
    start = datetime(2014, 7, 1, tzinfo=UTC)
    assert [(t - start).total_seconds() for t in out["timestamp"]] == [1, 2, 3]
    assert out["user_id"].to_list() == ["1", "1", "2"]
    assert AmazonGamesSasrec().read_options(EVENTS).delimiter == " "


# --- Best Buy ---------------------------------------------------------------------------------


def test_bestbuy_clicks_become_click_events_with_their_query(ctx: AdaptContext) -> None:
    raw = raw_frame(
        {
            "user": ["f63e55a2", "3f33895e"],
            "sku": ["9713872", "1973042"],
            "category": ["abcat0701002"] * 2,
            "query": ["episode", "troy"],
            "click_time": ["2011-08-11 04:00:17.021", "2011-08-11 05:02:55.937"],
            "query_time": ["2011-08-11 03:59:04.27", "2011-08-11 05:02:07.564"],
        },
        first_line=2,
    )
    adapter = BestBuyClicks()
    out = adapter.events(raw, ctx)
    assert_events_contract(out, raw, "bestbuy-clicks")
    assert out["type"].to_list() == ["click", "click"]
    assert out["item_id"].to_list() == ["9713872", "1973042"]
    assert out["query"].to_list() == ["episode", "troy"]
    assert out["session_id"].to_list() == [None, None]
    parsed = out["timestamp"].str.strptime(pl.Datetime("us"), adapter.parsing.timestamp_format)
    assert parsed[0] == datetime(2011, 8, 11, 4, 0, 17, 21_000)
    assert adapter.user_columns == ("user",)


def bestbuy_catalog() -> pl.DataFrame:
    path = [
        {"id": "cat00000", "name": "Best Buy"},
        {"id": "abcat0700000", "name": "Video Games"},
        {"id": "abcat0701002", "name": "Xbox 360 Games"},
    ]
    return raw_frame(
        {
            "sku": ["1004622", "2000001"],
            "name": ["Sniper: Ghost Warrior - Xbox 360", "Halo - Xbox 360"],
            "type": ["Game", "Game"],
            "manufacturer": ["City Interactive", None],
            "platform": ["Xbox 360", "Xbox 360"],
            "esrbRating": ["M=Mature", None],
            "releaseDate": ["2010-07-01", None],
            "regularPrice": ["19.99", "59.99"],
            "salePrice": ["14.99", ""],
            "customerReviewCount": ["7", None],
            "customerReviewAverage": ["3.4", "n/a"],
            "salesRankLongTerm": ["5738", None],
            "genre": [["Shooter"], []],
            "categoryPath": [path, path[:1]],
            "shortDescription": ["Control the power of death", "Finish the fight"],
            "longDescription": ["SynopsisYour hands steady", None],
            "features": [["Stalk through the jungles"], []],
        }
    )


def test_bestbuy_catalog_becomes_products(ctx: AdaptContext) -> None:
    out = BestBuyProducts().products(bestbuy_catalog(), ctx)
    assert_products_contract(out, "bestbuy-products")
    assert out["item_id"].to_list() == ["1004622", "2000001"]
    assert out["title"].to_list() == ["Sniper: Ghost Warrior - Xbox 360", "Halo - Xbox 360"]
    assert out["description"].to_list() == ["SynopsisYour hands steady", "Finish the fight"]
    assert out["category_path"].to_list() == [["Video Games", "Xbox 360 Games", "Shooter"], []]
    assert out["brand"].to_list() == ["City Interactive", None]
    assert out["price"].to_list() == ["14.99", "59.99"]
    assert out["currency"].to_list() == ["USD", "USD"]
    assert out["updated_at"].to_list() == [None, None]
    first = json.loads(out["attributes"][0])
    assert first == {
        "type": "Game",
        "platform": "Xbox 360",
        "esrbRating": "M=Mature",
        "releaseDate": "2010-07-01",
        "customerReviewCount": 7,
        "customerReviewAverage": 3.4,
        "salesRankLongTerm": 5738,
        "shortDescription": "Control the power of death",
        "features": ["Stalk through the jungles"],
    }
    assert json.loads(out["attributes"][1])["customerReviewAverage"] is None


def test_bestbuy_catalog_without_optional_fields(ctx: AdaptContext) -> None:
    raw = raw_frame({"sku": ["1"], "name": ["Game"], "genre": ["Racing"]})
    out = BestBuyProducts().products(raw, ctx)
    assert out["category_path"].to_list() == [["Racing"]]
    assert out["description"].to_list() == [None]
    assert json.loads(out["attributes"][0])["platform"] is None


def test_bestbuy_locate_picks_the_file_of_each_kind(tmp_path: Path) -> None:
    assert BestBuyClicks().locate(tmp_path, EVENTS) == tmp_path / "clicks.csv.gz"
    assert BestBuyProducts().locate(tmp_path, PRODUCTS) == tmp_path / "products.jsonl.gz"
    assert BestBuyProducts().locate(tmp_path / "x.jsonl", PRODUCTS) == tmp_path / "x.jsonl"


# --- Crowdflower ------------------------------------------------------------------------------


def test_crowdflower_rows_become_products_keyed_by_content(ctx: AdaptContext) -> None:
    raw = raw_frame(
        {
            "id": ["1", "2", "3", "4"],
            "query": ["bridal shower", "led lights", "pillow", "pillow"],
            "product_title": ["Accent Pillow", "LED Lights", "Accent Pillow", "Accent Pillow"],
            "product_description": ['Red satin 8"', "", 'Red satin 8"', None],
            "median_relevance": ["1", "4", "3", "2"],
            "relevance_variance": ["0", "0", "0.5", "0"],
        }
    )
    out = Crowdflower().products(raw, ctx)
    assert_products_contract(out, "crowdflower")
    assert out.height == raw.height
    assert out["_line"].to_list() == raw["_line"].to_list()
    assert out["item_id"].to_list() == [
        md5_id("Accent Pillow", 'Red satin 8"'),
        md5_id("LED Lights", ""),
        md5_id("Accent Pillow", 'Red satin 8"'),
        md5_id("Accent Pillow", ""),
    ]
    assert out["description"].to_list() == ['Red satin 8"', None, 'Red satin 8"', None]
    assert "attributes" not in out.columns
    assert "query" not in out.columns


def test_crowdflower_ids_are_md5_based_and_null_without_title() -> None:
    ids = product_ids(pl.Series(["Tüte", None]), pl.Series(["ä", "x"]))
    assert ids.to_list() == [md5_id("Tüte", "ä"), None]


# --- Canonical --------------------------------------------------------------------------------


def test_canonical_csv_events_keep_fields_and_parse_consent(ctx: AdaptContext) -> None:
    raw = raw_frame(
        {
            "event_id": ["e1", "e2", "e3"],
            "user_id": ["u1", "u2", "u3"],
            "item_id": ["i1", "i2", None],
            "type": ["purchase", "view", "search"],
            "value": ["2", "", ""],
            "query": [None, None, "red shoes"],
            "timestamp": ["2024-01-01T10:00:00Z"] * 3,
            "source": ["elsewhere"] * 3,
            "consent_personalisation": ["true", "maybe", ""],
            "not_a_field": ["x"] * 3,
        }
    )
    out = Canonical().events(raw, ctx)
    assert_events_contract(out, raw, "canonical")
    assert "not_a_field" not in out.columns
    assert out["type"].to_list() == ["purchase", "view", "search"]
    assert out["timestamp"].to_list() == ["2024-01-01T10:00:00Z"] * 3
    # missing flags take the default; unreadable ones stay for the pipeline to quarantine
    assert out["consent_personalisation"].to_list() == ["true", "maybe", "true"]
    assert out["consent_analytics"].to_list() == [True, True, True]


def test_canonical_jsonl_events_keep_boolean_consent(ctx: AdaptContext) -> None:
    raw = raw_frame(
        {
            "user_id": ["u1", "u2"],
            "item_id": ["i1", "i2"],
            "type": ["view", "view"],
            "timestamp": ["2024-01-01T10:00:00", "2024-01-01T10:00:01"],
            "value": [1, None],
            "consent_analytics": [False, None],
        }
    )
    out = Canonical().events(raw, ctx)
    assert_events_contract(out, raw, "canonical")
    assert out["consent_analytics"].to_list() == [False, True]
    assert out["value"].to_list() == [1, None]


def test_canonical_products_split_paths_from_csv_and_keep_jsonl_lists(
    ctx: AdaptContext,
) -> None:
    csv_raw = raw_frame(
        {
            "item_id": ["p1", "p2"],
            "title": ["Red mug", "Blue mug"],
            "category_path": ["Home > Kitchen >Mugs", None],
            "aliases": ["red cup > crimson mug", ""],
            "attributes": ['{"colour": "red"}', None],
        }
    )
    out = Canonical().products(csv_raw, ctx)
    assert_products_contract(out, "canonical")
    assert out["category_path"].to_list() == [["Home", "Kitchen", "Mugs"], None]
    assert out["aliases"].to_list() == [["red cup", "crimson mug"], []]
    jsonl_raw = raw_frame(
        {
            "item_id": ["p1"],
            "title": ["Red mug"],
            "category_path": [["Home", "Kitchen > Mugs"]],
            "attributes": [{"colour": "red", "size": 2}],
            "price": [9.5],
        }
    )
    out = Canonical().products(jsonl_raw, ctx)
    assert out["category_path"].to_list() == [["Home", "Kitchen > Mugs"]]
    assert json.loads(out["attributes"][0]) == {"colour": "red", "size": 2}
    assert out["price"].to_list() == [9.5]


def test_canonical_requires_the_fields_and_locates_files(tmp_path: Path) -> None:
    adapter = Canonical()
    assert set(adapter.read_options(EVENTS).required_columns) == {"user_id", "type", "timestamp"}
    assert set(adapter.read_options(PRODUCTS).required_columns) == {"item_id", "title"}
    (tmp_path / "products.jsonl").write_text("")
    assert adapter.locate(tmp_path, PRODUCTS) == tmp_path / "products.jsonl"
    assert adapter.locate(tmp_path / "e.csv", EVENTS) == tmp_path / "e.csv"


# --- Mapping ----------------------------------------------------------------------------------

SHOP_TOML = """
[adapters.shop-clicks]
kind = "events"
delimiter = ";"
timestamp_format = "%d/%m/%Y %H:%M"
timezone = "Europe/Paris"
columns = { user_id = "customer", item_id = "sku", type = "action", timestamp = "when" }
constants = { currency = "EUR" }
type_map = { pageview = "view", basket = "add_to_cart" }

[adapters.shop-catalog]
kind = "products"
columns = { item_id = "ref", title = "label", category_path = "rayon" }
constants = { currency = "EUR", attributes = { shop = "paris" } }
"""


def shop_settings(toml: str = SHOP_TOML) -> Settings:
    return Settings(adapters=tomllib.loads(toml)["adapters"])


def test_mapping_adapter_maps_columns_constants_and_types(ctx: AdaptContext) -> None:
    settings = shop_settings()
    adapter = get_adapter("shop-clicks", settings)
    assert isinstance(adapter, MappingAdapter)
    assert adapter.kinds == frozenset({EVENTS})
    assert adapter.user_columns == ("customer",)
    assert adapter.parsing.timestamp_format == "%d/%m/%Y %H:%M"
    assert adapter.parsing.timezone == "Europe/Paris"
    options = adapter.read_options(EVENTS)
    assert options.required_columns == ("customer", "sku", "action", "when")
    assert options.delimiter == ";"
    raw = raw_frame(
        {
            "customer": ["c1", "c2", "c3"],
            "sku": ["A", "B", "C"],
            "action": ["pageview", "basket", "wishlist"],
            "when": ["01/02/2024 10:00"] * 3,
            "extra": ["x"] * 3,
        }
    )
    out = adapter.events(raw, AdaptContext(settings=settings, source="test"))
    assert_events_contract(out, raw, "shop-clicks")
    # unmapped types pass through, so the pipeline quarantines them as bad_event_type
    assert out["type"].to_list() == ["view", "add_to_cart", "wishlist"]
    assert out["user_id"].to_list() == ["c1", "c2", "c3"]
    assert out["currency"].to_list() == ["EUR"] * 3
    assert out["timestamp"].to_list() == ["01/02/2024 10:00"] * 3
    assert "extra" not in out.columns


def test_mapping_adapter_products(ctx: AdaptContext) -> None:
    adapter = get_adapter("shop-catalog", shop_settings())
    raw = raw_frame({"ref": ["r1"], "label": ["Mug"], "rayon": ["Home > Mugs"]})
    out = adapter.products(raw, ctx)
    assert_products_contract(out, "shop-catalog")
    assert out["category_path"].to_list() == [["Home", "Mugs"]]
    assert json.loads(out["attributes"][0]) == {"shop": "paris"}
    assert out["currency"].to_list() == ["EUR"]


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('columns = { item_id = "sku", colour = "c" }', r"'bad'.*'colour'"),
        ('constants = { colour = "red" }', r"'bad'.*'colour'"),
        ('columns = { source = "s" }', r"'bad'.*'source'"),
        ('columns = { title = "t" }', r"'bad'.*'title'"),  # a product field on an events adapter
    ],
)
def test_mapping_adapter_rejects_unknown_fields(table: str, message: str) -> None:
    settings = shop_settings(f'[adapters.bad]\nkind = "events"\n{table}\n')
    with pytest.raises(ConfigError, match=message):
        get_adapter("bad", settings)


def test_mapping_adapter_rejects_a_bad_kind() -> None:
    with pytest.raises(ConfigError, match=r"'bad'.*'orders'"):
        get_adapter("bad", shop_settings('[adapters.bad]\nkind = "orders"\n'))


# --- the real datasets ------------------------------------------------------------------------

REAL = [
    ("movielens-100k", "movielens-100k", EVENTS, 99_057),
    ("movielens-100k", "movielens-100k", PRODUCTS, 1_682),
    ("amazon-games-sasrec", "amazon-games-sasrec", EVENTS, 256_206),
    ("bestbuy-clicks", "bestbuy-small-xbox", EVENTS, 33_892),
    ("bestbuy-products", "bestbuy-small-xbox", PRODUCTS, 437),
    ("crowdflower", "crowdflower-relevance", PRODUCTS, 7_081),
]


@pytest.mark.integration
@pytest.mark.parametrize(
    ("name", "folder", "kind", "rows"), REAL, ids=[f"{r[0]}-{r[2].value}" for r in REAL]
)
def test_real_dataset_adapts_every_row(
    name: str, folder: str, kind: RecordKind, rows: int, ctx: AdaptContext
) -> None:
    path = SHARED_DATA / folder
    if not path.is_dir():
        pytest.skip(f"real dataset {folder!r} not found at {path} (../shared/data is absent)")
    adapter = get_adapter(name, Settings())
    batch = read_source(adapter.locate(path, kind), adapter.read_options(kind))
    raw = batch.frame
    assert batch.malformed.height == 0
    assert raw.height == rows
    if kind is EVENTS:
        out = adapter.events(raw, ctx)
        assert_events_contract(out, raw, name)
        assert out["user_id"].null_count() == 0
        assert out["item_id"].null_count() == 0
    else:
        out = adapter.products(raw, ctx)
        assert_products_contract(out, name)
        assert out.height == rows
        assert out["item_id"].null_count() == 0
        assert out["title"].null_count() == 0
    check_dataset_specifics(name, kind, out)


def check_dataset_specifics(name: str, kind: RecordKind, out: pl.DataFrame) -> None:
    """A few facts from each PROVENANCE.md that the adapted rows must show."""
    if name == "movielens-100k" and kind is EVENTS:
        assert set(out["value"].unique()) == {"1", "2", "3", "4", "5"}
        assert out["timestamp"].cast(pl.Int64).min() > 870_000_000
    elif name == "movielens-100k":
        assert out["category_path"].list.len().min() >= 1
        assert out.filter(pl.col("item_id") == "1")["category_path"].to_list() == [
            ["Animation", "Children's", "Comedy"]
        ]
    elif name == "amazon-games-sasrec":
        assert out["timestamp"].is_sorted()
        assert out["user_id"].n_unique() == 31_013
    elif name == "bestbuy-clicks":
        parsed = out["timestamp"].str.strptime(
            pl.Datetime("us"), "%Y-%m-%d %H:%M:%S%.f", strict=False
        )
        assert parsed.null_count() == 0
        assert out["query"].null_count() == 0
    elif name == "bestbuy-products":
        assert out["item_id"].n_unique() == 437
        assert not out["category_path"].list.contains("Best Buy").any()
        assert out["price"].cast(pl.Float64).min() > 0
        assert out["description"].null_count() == 0
    elif name == "crowdflower":
        assert out["item_id"].str.contains(r"^cf-[0-9a-f]{16}$").all()
        assert out["title"].n_unique() == 6_777
        assert out["item_id"].n_unique() >= 6_777
