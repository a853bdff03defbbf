"""The lexical index's fields: names, tokenizers, boosts, the tantivy schema, and search
documents as the JSON lines tantivy reads."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

import polars as pl
import tantivy
from tantivy import Order

from aisle.errors import SearchError
from aisle.search.tokenize import segment_many

#: The text fields searched, in the column order of ``field_scores``.
TEXT_FIELDS: Final = ("title", "description", "brand", "category", "attributes", "aliases")
#: tantivy's built-in analyzers a text field may use: "en_stem" also stems English words.
TOKENIZERS: Final = ("en_stem", "default")
#: Chosen by benchmarks/search_index.py. Stemming names lets "lamps" find "lamp" (+0.009
#: nDCG@10 on Crowdflower's judged pools, +0.002 MAP@5 on Best Buy clicks). Descriptions are
#: not stemmed: no worse in ranking (Crowdflower 0.7876 against 0.7874) and stemming them
#: cost a fifth of the indexing speed (19,500 against 24,500 products/s).
DEFAULT_TOKENIZERS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "title": "en_stem",
        "description": "default",
        "brand": "en_stem",
        "category": "en_stem",
        "attributes": "en_stem",
        "aliases": "en_stem",
    }
)
#: Chosen by benchmarks/search_index.py: MAP@5 on the first 80% of Best Buy clicks, nDCG@10 on
#: Crowdflower's judged pools as a second opinion. Best Buy is best without descriptions
#: (0.633) or with them weighted like titles (0.632; its synopses repeat the game's name);
#: Crowdflower is best on titles alone (0.798) and loses 0.03 at 1:1. Titles at twice the
#: description's weight sit between (0.629, 0.788) and keep every description word findable.
#: Brand, category and attribute boosts move Best Buy by under 0.001; attributes stay
#: searchable for the colours and materials shoppers type in other catalogs.
DEFAULT_BOOSTS: Final[Mapping[str, float]] = MappingProxyType(
    {
        "title": 2.0,
        "description": 1.0,
        "brand": 1.0,
        "category": 0.5,
        "attributes": 0.5,
        "aliases": 2.0,  # other names of the product: as good as its title
    }
)
#: Fuzzy matching looks at the names (title, brand, aliases) unstemmed: stems of misspelt
#: words are not near the stems of the right ones ("ceramik" stays, "ceramic" becomes
#: "ceram"), and near misses in descriptions are noise.
NAMES_FIELD: Final = "names"
#: A fuzzy match scores a constant (not BM25): this share of the title's boost, so that a
#: near miss ranks below the products that carry the word as typed.
FUZZY_WEIGHT: Final = 0.3
#: Terms shorter than this are never matched fuzzily ("ps3" is not "ps4"); from the second
#: length on, two edits are allowed.
FUZZY_MIN_LENGTH: Final = 4
FUZZY_TWO_EDITS_LENGTH: Final = 8
#: Price facet buckets: label -> [low, high) (high None: no upper bound).
PRICE_RANGES: Final[Mapping[str, tuple[float, float | None]]] = MappingProxyType(
    {
        "0-10": (0.0, 10.0),
        "10-25": (10.0, 25.0),
        "25-50": (25.0, 50.0),
        "50-100": (50.0, 100.0),
        "100-250": (100.0, 250.0),
        "250+": (250.0, None),
    }
)
#: Sorts ``search`` accepts besides relevance (None): field, order.
SORTS: Final[Mapping[str, tuple[str, Order]]] = MappingProxyType(
    {
        "price": ("price", Order.Asc),
        "-price": ("price", Order.Desc),
        "popularity": ("popularity", Order.Desc),
        "newest": ("updated_at", Order.Desc),
    }
)
#: Exact-valued fields for filters and facets: document column -> index field.
EXACT_FIELDS: Final[Mapping[str, str]] = MappingProxyType(
    {"brand": "brand_exact", "category": "category_exact"}
)
FACETS: Final = ("brand", "category", "price")
MANIFEST: Final = "manifest.json"
#: Version of the index's fields; an index of another version must be rebuilt.
FORMAT: Final = 2
#: Writer memory and threads. On 2 shared cores one indexing thread made 23,900-26,600
#: products/s and two 20,300-29,500, as other work allowed; one spends 7-15% less CPU per
#: product and leaves a core to the Python side preparing documents, and to serving.
WRITER_HEAP: Final = 256_000_000
WRITER_THREADS: Final = 1
UPDATE_HEAP: Final = 32_000_000
BATCH: Final = 10_000
#: Up to this many item ids are looked up one by one; more, through one term-set query.
ID_CLAUSES: Final = 1_000
#: The most distinct brands or categories ``facet_counts`` returns per facet.
FACET_VALUES: Final = 100_000


def schema(tokenizers: Mapping[str, str]) -> tantivy.Schema:
    builder = tantivy.SchemaBuilder()
    builder.add_text_field("item_id", stored=True, tokenizer_name="raw")
    for name in TEXT_FIELDS:
        # Positions only where a phrase query may one day look (titles); elsewhere term
        # frequencies are all BM25 needs, and the index is smaller without positions.
        option = "position" if name == "title" else "freq"
        builder.add_text_field(name, tokenizer_name=tokenizers[name], index_option=option)
    # Only which products hold a word: a fuzzy match scores a constant anyway.
    builder.add_text_field(NAMES_FIELD, tokenizer_name="default", index_option="basic")
    for exact in EXACT_FIELDS.values():
        builder.add_text_field(exact, tokenizer_name="raw", fast=True)
    builder.add_float_field("price", indexed=True, fast=True)
    builder.add_float_field("popularity", indexed=True, fast=True)
    builder.add_date_field("updated_at", indexed=True, fast=True)
    return builder.build()


@functools.cache
def analyzer(tokenizer: str) -> tantivy.TextAnalyzer:
    """The query-side twin of tantivy's built-in analyzer of that name (same tokenizer and
    filters), so that query terms are the terms the index holds."""
    builder = (
        tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple())
        .filter(tantivy.Filter.remove_long(40))
        .filter(tantivy.Filter.lowercase())
    )
    if tokenizer == "en_stem":
        builder = builder.filter(tantivy.Filter.stemmer("english"))
    return builder.build()


def _finite(name: str) -> pl.Expr:
    column = pl.col(name)
    return pl.when(column.is_finite()).then(column).alias(name)


def field_texts(documents: pl.DataFrame) -> pl.DataFrame:
    """item_id and the text of every text field as the index reads it (segmented; the category
    field holds the whole category path)."""
    category_text = (
        pl.when(pl.col("category_path").list.len() > 0)
        .then(pl.col("category_path").list.join(" "))
        .otherwise(pl.col("category"))
    )
    return documents.select(
        pl.col("item_id"),
        *(
            segment_many(
                documents.select(category_text if name == "category" else pl.col(name)).to_series()
            ).alias(name)
            for name in TEXT_FIELDS
        ),
    )


def json_lines(documents: pl.DataFrame) -> pl.Series:
    """One JSON object per document, as tantivy's ``add_json`` reads it, without null fields."""
    text = field_texts(documents)
    names = text.select(
        pl.concat_str(["title", "brand", "aliases"], separator=" ", ignore_nulls=True)
        .replace("", None)
        .alias(NAMES_FIELD)
    )
    exact = documents.select(
        *(
            pl.when(pl.col(column).str.strip_chars() != "").then(pl.col(column)).alias(field)
            for column, field in EXACT_FIELDS.items()
        ),
        _finite("price"),
        _finite("popularity"),
        pl.col("updated_at").dt.strftime("%Y-%m-%dT%H:%M:%S%.6fZ"),
    )
    encoded = pl.concat([text, names, exact], how="horizontal").select(
        pl.struct(pl.all()).struct.json_encode()
    )
    # item_id comes first and is never null, so every null field follows a comma; a comma and
    # quote inside a text value are escaped (\") and cannot match.
    fields = [*TEXT_FIELDS, NAMES_FIELD, *EXACT_FIELDS.values(), "price", "popularity"]
    pattern = "|".join([*fields, "updated_at"])
    return encoded.to_series().str.replace_all(f',"(?:{pattern})":null', "")


def check_tokenizers(tokenizers: str | Mapping[str, str] | None) -> dict[str, str]:
    if isinstance(tokenizers, str):
        tokenizers = dict.fromkeys(TEXT_FIELDS, tokenizers)
    merged = {**DEFAULT_TOKENIZERS, **(tokenizers or {})}
    for name, tokenizer in merged.items():
        if name not in TEXT_FIELDS:
            raise SearchError(
                f"unknown text field {name!r} in tokenizers; fields are {TEXT_FIELDS}"
            )
        if tokenizer not in TOKENIZERS:
            raise SearchError(f"unknown tokenizer {tokenizer!r}; choose one of {TOKENIZERS}")
    return merged


def check_boosts(boosts: Mapping[str, float] | None) -> dict[str, float]:
    merged = dict(DEFAULT_BOOSTS)
    for name, boost in (boosts or {}).items():
        if name not in TEXT_FIELDS:
            raise SearchError(f"unknown text field {name!r} in boosts; fields are {TEXT_FIELDS}")
        if boost < 0:
            raise SearchError(f"boost of {name!r} is negative ({boost})")
        merged[name] = float(boost)
    return merged
