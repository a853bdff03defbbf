"""Learning-to-rank features of (query, candidate product) pairs.

Text: the BM25 score of the query in each field, the whole-query BM25 (exact and fuzzy), the
dense cosine between the query's and the product's vectors, the share of the query's words
found in the title, and whether the whole query appears in the title. Product: popularity,
price, whether the price fits a price intent, and the predicted query category's probability
for the product's category. Click history (click-aware ranking only): see
``aisle.search.clicks``. Personal (with a customer): affinity to the product's category and
brand, from the customer's own behaviour.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import numpy as np
import polars as pl

from aisle.search.clicks import CLICK_FEATURES, ClickIndex, query_key, query_words
from aisle.search.lexical_fields import TEXT_FIELDS

TEXT_FEATURES: Final = (
    *(f"bm25_{name}" for name in TEXT_FIELDS),
    "bm25",
    "bm25_fuzzy",
    "dense_cosine",
    "title_cover",
    "title_contains",
    "query_words",
)
ITEM_FEATURES: Final = (
    "log_popularity",
    "log_price",
    "price_fits",
    "category_probability",
    "days_since_release",  # at the query's time; negative: not out yet; NaN: unknown
)
PERSONAL_FEATURES: Final = ("category_affinity", "brand_affinity")


#: Click history of the query as understood (corrected) and of its synonyms (the best).
UNDERSTOOD_FEATURES: Final = ("understood_share", "understood_weight", "synonym_share")


#: Features that may only lift a product (monotone constraints): more of the query's words,
#: more similar in meaning, more of the query's own clicks. Judged pools and the Best Buy
#: clicks carved for validation both ranked better with them than without.
RISING: Final = ("bm25", "bm25_title", "dense_cosine", "title_cover", "query_share",
                 "understood_share")  # fmt: skip


def feature_names(*, clicks: bool) -> tuple[str, ...]:
    """The feature columns, in order, with or without the click-history block."""
    names = TEXT_FEATURES + ITEM_FEATURES + PERSONAL_FEATURES
    return names + CLICK_FEATURES + UNDERSTOOD_FEATURES if clicks else names


@dataclass(frozen=True)
class Catalog:
    """Per-product arrays the features read, in the order of the documents' item ids."""

    item_ids: list[str]
    #: Which products' titles hold each word (``query_words``): word -> its id, and per id
    #: the sorted product columns (compressed sparse columns: ``title_starts`` bound each).
    title_vocabulary: dict[str, int]
    title_starts: np.ndarray
    title_columns: np.ndarray
    title_keys: list[str]
    log_popularity: np.ndarray
    price: np.ndarray
    category: list[str | None]
    brand: list[str | None]
    #: Each product's category and brand as a code (-1: none) into these names' order.
    category_codes: np.ndarray
    category_index: dict[str, int]
    brand_codes: np.ndarray
    brand_index: dict[str, int]
    updated: np.ndarray  # seconds since the epoch (NaN: unknown), for "newest first"
    released: np.ndarray  # seconds since the epoch (NaN: unknown)

    @classmethod
    def of(cls, documents: pl.DataFrame) -> Catalog:
        """From a search-document frame."""
        titles = documents["title"].fill_null("").to_list()
        vocabulary, starts, holders = _word_postings([query_words(title) for title in titles])
        category_codes, category_index = _codes(documents["category"])
        brand_codes, brand_index = _codes(documents["brand"])
        return cls(
            item_ids=documents["item_id"].to_list(),
            title_vocabulary=vocabulary,
            title_starts=starts,
            title_columns=holders,
            title_keys=[query_key(title) for title in titles],
            log_popularity=np.log1p(documents["popularity"].fill_null(0).to_numpy()),
            price=documents["price"].fill_null(np.nan).to_numpy().astype(np.float64),
            category=documents["category"].to_list(),
            brand=documents["brand"].to_list(),
            category_codes=category_codes,
            category_index=category_index,
            brand_codes=brand_codes,
            brand_index=brand_index,
            released=_seconds(documents["released_at"]),
            updated=_seconds(documents["updated_at"]),
        )


@dataclass(frozen=True)
class QueryEvidence:
    """What one query knows about its candidates, gathered by the engine."""

    text: str  # the query as searched (normalised, corrected)
    field_scores: np.ndarray  # (n, len(TEXT_FIELDS))
    bm25: np.ndarray
    bm25_fuzzy: np.ndarray
    dense: np.ndarray
    price_min: float | None = None
    price_max: float | None = None
    categories: tuple[tuple[str, float], ...] = ()
    expansions: tuple[str, ...] = ()
    at: float | None = None  # when the query was asked, seconds since the epoch
    affinity: dict[str, dict[str, float]] | None = None  # "category"/"brand" -> value -> share


def features(
    catalog: Catalog,
    columns: np.ndarray,
    evidence: QueryEvidence,
    clicks: ClickIndex | None = None,
    raw_query: str | None = None,
) -> np.ndarray:
    """The feature matrix of these candidate columns: shape (len(columns), features)."""
    n = len(columns)
    words = query_words(evidence.text)
    key = query_key(evidence.text)
    listed = columns.tolist()
    cover = np.zeros(n, dtype=np.float32)
    contains = np.zeros(n, dtype=np.float32)
    if words:
        cover = _title_cover(catalog, words, columns)
    if key:
        keys = catalog.title_keys
        contains = np.fromiter((key in keys[c] for c in listed), np.float32, n)
    price = catalog.price[columns]
    fits = np.ones(n, dtype=np.float32)
    if evidence.price_min is not None:
        fits *= np.nan_to_num(price >= evidence.price_min, nan=0.0)
    if evidence.price_max is not None:
        fits *= np.nan_to_num(price <= evidence.price_max, nan=0.0)
    codes = catalog.category_codes[columns]
    category = _shares(dict(evidence.categories), catalog.category_index, codes)
    personal_category, personal_brand = affinity_features(catalog, columns, evidence.affinity)
    blocks = [
        evidence.field_scores,
        evidence.bm25[:, None],
        evidence.bm25_fuzzy[:, None],
        evidence.dense[:, None],
        cover[:, None],
        contains[:, None],
        np.full((n, 1), len(words), dtype=np.float32),
        catalog.log_popularity[columns][:, None],
        np.log1p(np.nan_to_num(price, nan=0.0))[:, None],
        fits[:, None],
        category[:, None],
        _days_since(catalog.released[columns], evidence.at)[:, None],
        personal_category[:, None],
        personal_brand[:, None],
    ]
    if clicks is not None:
        raw = clicks.features(raw_query if raw_query is not None else evidence.text, columns)
        understood = clicks.features(evidence.text, columns)
        synonyms = np.zeros(n, dtype=np.float32)
        for phrase in evidence.expansions:
            synonyms = np.maximum(synonyms, clicks.features(phrase, columns)[:, 0])
        blocks += [raw, understood[:, [0, 2]], synonyms[:, None]]
    return np.hstack([np.asarray(b, dtype=np.float32) for b in blocks])


def affinity_features(
    catalog: Catalog, columns: np.ndarray, affinity: Mapping[str, Mapping[str, float]] | None
) -> tuple[np.ndarray, np.ndarray]:
    """A customer's affinity (``"category"``/``"brand"`` -> value -> share) to each candidate's
    category and to its brand: the ``PERSONAL_FEATURES`` columns."""
    liked = affinity or {}
    category = _shares(liked.get("category", {}), catalog.category_index,
                       catalog.category_codes[columns])  # fmt: skip
    brand = _shares(liked.get("brand", {}), catalog.brand_index, catalog.brand_codes[columns])
    return category, brand


def _word_postings(words: list[list[str]]) -> tuple[dict[str, int], np.ndarray, np.ndarray]:
    """Each word's id (in order of first use), and per id the sorted rows holding it."""
    vocabulary: dict[str, int] = {}
    ids = [vocabulary.setdefault(w, len(vocabulary)) for row in words for w in row]
    rows = np.repeat(np.arange(len(words), dtype=np.int64), [len(row) for row in words])
    order = np.lexsort((rows, np.asarray(ids, dtype=np.int64)))
    counts = np.bincount(np.asarray(ids, dtype=np.int64), minlength=len(vocabulary))
    starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return vocabulary, starts, rows[order]


def _title_cover(catalog: Catalog, words: list[str], columns: np.ndarray) -> np.ndarray:
    """The share of the (distinct) query words found in each candidate's title."""
    found = np.zeros(len(columns), dtype=np.float32)
    for word in words:
        word_id = catalog.title_vocabulary.get(word)
        if word_id is None:
            continue
        holders = catalog.title_columns[
            catalog.title_starts[word_id] : catalog.title_starts[word_id + 1]
        ]
        at = np.minimum(np.searchsorted(holders, columns), len(holders) - 1)
        found += holders[at] == columns
    return found / np.float32(len(words))


def _codes(values: pl.Series) -> tuple[np.ndarray, dict[str, int]]:
    """Each value's code in the sorted distinct values (-1 for null), and the codes by value."""
    names = values.drop_nulls().unique().sort().to_list()
    index = {name: code for code, name in enumerate(names)}
    codes = values.replace_strict(index, default=-1, return_dtype=pl.Int32).to_numpy()
    return np.asarray(codes, dtype=np.int64), index


def _shares(shares: Mapping[str, float], index: dict[str, int], codes: np.ndarray) -> np.ndarray:
    """The share of each candidate's value (0 where it has none or the value has no share)."""
    if not shares:
        return np.zeros(len(codes), dtype=np.float32)
    table = np.zeros(len(index) + 1, dtype=np.float32)  # the last entry answers code -1
    for name, share in shares.items():
        code = index.get(name)
        if code is not None:
            table[code] = share
    return np.asarray(table[codes], dtype=np.float32)


def _seconds(column: pl.Series) -> np.ndarray:
    """A datetime column as float seconds since the epoch, NaN where missing."""
    return np.asarray(column.dt.epoch("s").cast(pl.Float64).fill_null(np.nan).to_numpy())


def _days_since(seconds: np.ndarray, at: float | None) -> np.ndarray:
    if at is None:
        return np.full(len(seconds), np.nan, dtype=np.float32)
    return ((at - seconds) / 86_400).astype(np.float32)
