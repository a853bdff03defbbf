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
    title_words: list[frozenset[str]]
    title_keys: list[str]
    log_popularity: np.ndarray
    price: np.ndarray
    category: list[str | None]
    brand: list[str | None]
    updated: np.ndarray  # seconds since the epoch (NaN: unknown), for "newest first"
    released: np.ndarray  # seconds since the epoch (NaN: unknown)

    @classmethod
    def of(cls, documents: pl.DataFrame) -> Catalog:
        """From a search-document frame."""
        titles = documents["title"].fill_null("").to_list()
        return cls(
            item_ids=documents["item_id"].to_list(),
            title_words=[frozenset(query_words(title)) for title in titles],
            title_keys=[query_key(title) for title in titles],
            log_popularity=np.log1p(documents["popularity"].fill_null(0).to_numpy()),
            price=documents["price"].fill_null(np.nan).to_numpy().astype(np.float64),
            category=documents["category"].to_list(),
            brand=documents["brand"].to_list(),
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
    cover = np.zeros(n, dtype=np.float32)
    contains = np.zeros(n, dtype=np.float32)
    for row, column in enumerate(columns):
        if words:
            cover[row] = len(catalog.title_words[column].intersection(words)) / len(words)
        contains[row] = float(bool(key) and key in catalog.title_keys[column])
    price = catalog.price[columns]
    fits = np.ones(n, dtype=np.float32)
    if evidence.price_min is not None:
        fits *= np.nan_to_num(price >= evidence.price_min, nan=0.0)
    if evidence.price_max is not None:
        fits *= np.nan_to_num(price <= evidence.price_max, nan=0.0)
    category = np.zeros(n, dtype=np.float32)
    predicted = dict(evidence.categories)
    liked = evidence.affinity or {}
    for row, column in enumerate(columns):
        name = catalog.category[column]
        if name is not None:
            category[row] = predicted.get(name, 0.0)
    personal_category = _affinity(liked.get("category", {}), catalog.category, columns)
    personal_brand = _affinity(liked.get("brand", {}), catalog.brand, columns)
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


def _affinity(
    shares: dict[str, float], values: list[str | None], columns: np.ndarray
) -> np.ndarray:
    out = np.zeros(len(columns), dtype=np.float32)
    if not shares:
        return out
    for row, column in enumerate(columns):
        value = values[column]
        if value is not None:
            out[row] = shares.get(value, 0.0)
    return out


def _seconds(column: pl.Series) -> np.ndarray:
    """A datetime column as float seconds since the epoch, NaN where missing."""
    return np.asarray(column.dt.epoch("s").cast(pl.Float64).fill_null(np.nan).to_numpy())


def _days_since(seconds: np.ndarray, at: float | None) -> np.ndarray:
    if at is None:
        return np.full(len(seconds), np.nan, dtype=np.float32)
    return ((at - seconds) / 86_400).astype(np.float32)
