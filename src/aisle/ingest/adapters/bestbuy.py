"""Best Buy small (Xbox 360): search clicks become click events; the catalog becomes products.

The catalog comes two ways: ``products.jsonl.gz`` (a trimmed export, ``bestbuy-products``) and
the original ``small_product_data.xml.gz`` (``bestbuy-xml``). Both map onto products through the
same field rules, so the same SKU gives the same product; only the XML knows when it changed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from aisle.domain import PRODUCT_SCHEMA, EventType, RecordKind
from aisle.ingest.adapters.base import AdaptContext, BaseAdapter, Parsing, consent_columns
from aisle.ingest.adapters.canonical import blank_to_null, optional_column
from aisle.ingest.readers import ReadOptions

CLICK_COLUMNS = ("user", "sku", "query", "click_time")
CURRENCY = "USD"
#: The XML's update times, naive and taken as UTC; the freshest is the product's ``updated_at``.
XML_UPDATE_FIELDS = ("priceUpdateDate", "activeUpdateDate", "itemUpdateDate")
#: The XML holds the genre as a detail ``<detail><name>Genre</name><value>...</value></detail>``.
GENRE_DETAIL = "Genre"
_XML_TIMESTAMP_FORMATS = ("%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d")
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
        updated_at = pl.lit(None, dtype=PRODUCT_SCHEMA["updated_at"])
        return catalog_products(raw, self.name, updated_at)


def catalog_products(raw: pl.DataFrame, source: str, updated_at: pl.Expr) -> pl.DataFrame:
    """Products from Best Buy catalog records (either export): the one mapping of the fields."""
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
        pl.lit(source).alias("source"),
        updated_at.alias("updated_at"),
    )


@dataclass
class BestBuyXml(BaseAdapter):
    """``small_product_data.xml.gz``: the Products API's XML, from which the JSONL was made.

    Each ``<product>`` maps as in ``bestbuy-products`` (it has every field the JSONL has, and
    more); the genres come from its ``Genre`` details where it has no ``<genre>``. Unlike the
    JSONL it says when the record changed: ``updated_at`` is the latest of priceUpdateDate,
    activeUpdateDate and itemUpdateDate (UTC; an unreadable one is passed over). The export
    lists each SKU twice; the pipeline keeps one and marks the other its duplicate.
    """

    name: str = "bestbuy-xml"
    kinds: frozenset[RecordKind] = frozenset({RecordKind.PRODUCTS})
    file_names: dict[RecordKind, str] = field(
        default_factory=lambda: {RecordKind.PRODUCTS: "small_product_data.xml.gz"}
    )

    def read_options(self, kind: RecordKind) -> ReadOptions:
        """``<products><product>...</product></products>``; the repeated fields as lists."""
        return ReadOptions(
            format="xml",
            record_element="product",
            list_elements=("category", "feature", "detail", "genre"),
            required_columns=("sku", "name"),
        )

    def products(self, raw: pl.DataFrame, ctx: AdaptContext) -> pl.DataFrame:
        """One product per ``<product>``, as the JSONL's records map, with ``updated_at``."""
        empty = pl.lit([], dtype=pl.List(pl.String()))
        extra = []
        if "genre" not in raw.columns:
            extra.append(_detail_values(raw, GENRE_DETAIL).alias("genre"))
        if "features" in raw.columns and isinstance(raw.schema["features"], pl.List):
            extra.append(pl.col("features").fill_null(empty))  # the JSONL writes none as []
        return catalog_products(raw.with_columns(extra), self.name, _freshest(raw))


def _detail_values(raw: pl.DataFrame, name: str) -> pl.Expr:
    """The values of the ``<details>`` named ``name``, a list (empty when there are none)."""
    empty = pl.lit([], dtype=pl.List(pl.String()))
    details = raw.schema.get("details")
    if not isinstance(details, pl.List) or not isinstance(details.inner, pl.Struct):
        return empty
    fields = {f.name for f in details.inner.fields}
    if not {"name", "value"} <= fields:
        return empty
    entry = pl.element().struct
    values = pl.col("details").list.eval(
        entry.field("value").cast(pl.String()).filter(entry.field("name") == name)
    )
    return values.fill_null(empty)


def _freshest(raw: pl.DataFrame) -> pl.Expr:
    """The latest of the record's update times, as UTC; null when it has none readable."""
    stamps = [
        pl.coalesce(
            _text(raw, name).str.strip_chars().str.strptime(pl.Datetime("us"), fmt, strict=False)
            for fmt in _XML_TIMESTAMP_FORMATS
        )
        for name in XML_UPDATE_FIELDS
    ]
    return pl.max_horizontal(stamps).dt.replace_time_zone("UTC")
