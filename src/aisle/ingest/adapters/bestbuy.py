"""Best Buy small (Xbox 360): search clicks become click events; the catalog becomes products."""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from aisle.domain import PRODUCT_SCHEMA, EventType, RecordKind
from aisle.ingest.adapters.base import AdaptContext, BaseAdapter, Parsing, consent_columns
from aisle.ingest.adapters.canonical import blank_to_null, optional_column
from aisle.ingest.readers import ReadOptions

CLICK_COLUMNS = ("user", "sku", "query", "click_time")
CURRENCY = "USD"
#: The category tree's root, which every product shares.
ROOT_CATEGORY = "Best Buy"
#: Catalog fields kept as product attributes, in order; the numeric ones become JSON numbers.
ATTRIBUTE_NUMBERS: dict[str, pl.DataType] = {
    "customerReviewCount": pl.Int64(),
    "customerReviewAverage": pl.Float64(),
    "salesRankLongTerm": pl.Int64(),
}
ATTRIBUTE_ORDER = (
    "type",
    "platform",
    "esrbRating",
    "releaseDate",
    "customerReviewCount",
    "customerReviewAverage",
    "salesRankLongTerm",
    "shortDescription",
    "features",
)


def _text(raw: pl.DataFrame, name: str) -> pl.Expr:
    """A text field of the catalog; empty text counts as missing."""
    return blank_to_null(optional_column(raw, name).cast(pl.String()))


def _as_list(raw: pl.DataFrame, name: str) -> pl.Expr:
    """A field that is a list of texts, or a single text, as a list (empty when missing)."""
    empty = pl.lit([], dtype=pl.List(pl.String()))
    if name not in raw.columns:
        return empty
    if isinstance(raw.schema[name], pl.List):
        return pl.col(name).cast(pl.List(pl.String())).fill_null(empty)
    return pl.concat_list(_text(raw, name)).list.drop_nulls()


def category_names(raw: pl.DataFrame) -> pl.Expr:
    """Names along categoryPath (a list of {id, name}) below the root, then the genres."""
    genres = _as_list(raw, "genre")
    if "categoryPath" not in raw.columns:
        return genres
    names = pl.col("categoryPath").list.eval(pl.element().struct.field("name"))
    below_root = names.list.eval(pl.element().filter(pl.element() != ROOT_CATEGORY))
    return below_root.fill_null(pl.lit([], dtype=pl.List(pl.String()))).list.concat(genres)


def _attribute(raw: pl.DataFrame, name: str) -> pl.Expr:
    """One attribute: numbers parsed (unreadable ones dropped), features as a list."""
    if name in ATTRIBUTE_NUMBERS:
        return _text(raw, name).str.strip_chars().cast(ATTRIBUTE_NUMBERS[name], strict=False)
    if name == "features":
        return optional_column(raw, name, pl.List(pl.String()))
    return _text(raw, name)


@dataclass
class BestBuyClicks(BaseAdapter):
    """``clicks.csv.gz``: a user searched ``query`` and clicked ``sku``.

    The event time is the click's; ``query_time`` and ``category`` (always the Xbox 360 games
    category) are not carried. The log has no sessions.
    """

    name: str = "bestbuy-clicks"
    kinds: frozenset[RecordKind] = frozenset({RecordKind.EVENTS})
    user_columns: tuple[str, ...] = ("user",)
    text_columns: tuple[str, ...] = ("query",)
    parsing: Parsing = field(
        default_factory=lambda: Parsing(timestamp_format="%Y-%m-%d %H:%M:%S%.f", timezone="UTC")
    )
    file_names: dict[RecordKind, str] = field(
        default_factory=lambda: {RecordKind.EVENTS: "clicks.csv.gz"}
    )

    def read_options(self, kind: RecordKind) -> ReadOptions:
        """The Kaggle CSV: user, sku, category, query, click_time, query_time."""
        return ReadOptions(format="csv", delimiter=",", required_columns=CLICK_COLUMNS)

    def events(self, raw: pl.DataFrame, ctx: AdaptContext) -> pl.DataFrame:
        """One click event per row, carrying the query that led to it."""
        return raw.select(
            pl.col("_line"),
            pl.col("user").alias("user_id"),
            pl.lit(None, dtype=pl.String()).alias("session_id"),
            pl.col("sku").alias("item_id"),
            pl.lit(EventType.CLICK.value).alias("type"),
            pl.col("query"),
            pl.col("click_time").alias("timestamp"),
            pl.lit(self.name).alias("source"),
            *consent_columns(ctx),
        )


@dataclass
class BestBuyProducts(BaseAdapter):
    """``products.jsonl.gz``: the Best Buy Products API records of the Xbox 360 games category.

    Prices are in US dollars: the sale price, else the regular one. The catalog snapshot has no
    reliable update time, so ``updated_at`` stays empty.
    """

    name: str = "bestbuy-products"
    kinds: frozenset[RecordKind] = frozenset({RecordKind.PRODUCTS})
    file_names: dict[RecordKind, str] = field(
        default_factory=lambda: {RecordKind.PRODUCTS: "products.jsonl.gz"}
    )

    def read_options(self, kind: RecordKind) -> ReadOptions:
        """JSON lines, nested lists and objects kept."""
        return ReadOptions(format="jsonl", required_columns=("sku", "name"))

    def products(self, raw: pl.DataFrame, ctx: AdaptContext) -> pl.DataFrame:
        """One product per record: name, long description, category path plus genre, brand."""
        attributes = pl.struct(_attribute(raw, a).alias(a) for a in ATTRIBUTE_ORDER)
        return raw.select(
            pl.col("_line"),
            pl.col("sku").cast(pl.String()).alias("item_id"),
            pl.col("name").cast(pl.String()).alias("title"),
            pl.coalesce(_text(raw, "longDescription"), _text(raw, "shortDescription")).alias(
                "description"
            ),
            category_names(raw).alias("category_path"),
            _text(raw, "manufacturer").alias("brand"),
            pl.coalesce(_text(raw, "salePrice"), _text(raw, "regularPrice")).alias("price"),
            pl.lit(CURRENCY).alias("currency"),
            attributes.struct.json_encode().alias("attributes"),
            pl.lit(self.name).alias("source"),
            pl.lit(None, dtype=PRODUCT_SCHEMA["updated_at"]).alias("updated_at"),
        )
