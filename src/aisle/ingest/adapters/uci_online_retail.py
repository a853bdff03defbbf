"""UCI Online Retail: invoice lines become purchases and returns; stock codes become products."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from aisle.domain import EventType, Reason, RecordKind
from aisle.ingest.adapters.base import AdaptContext, BaseAdapter, Parsing, consent_columns
from aisle.ingest.readers import ReadOptions
from aisle.text import clean_series

COLUMNS = (
    "InvoiceNo",
    "StockCode",
    "Description",
    "Quantity",
    "InvoiceDate",
    "UnitPrice",
    "CustomerID",
    "Country",
)
CURRENCY = "GBP"


def _stock_code() -> pl.Expr:
    return pl.col("StockCode").str.strip_chars().str.to_uppercase()


def is_product_code(code: pl.Expr, pattern: str, non_products: list[str]) -> pl.Expr:
    """True where the stock code is a real product (not postage, fees or adjustments)."""
    return code.str.contains(pattern) & ~code.is_in([c.upper() for c in non_products])


@dataclass
class UciOnlineRetail(BaseAdapter):
    """Invoice lines of the UCI Online Retail file (or any file in its layout)."""

    name: str = "uci-online-retail"
    kinds: frozenset[RecordKind] = frozenset({RecordKind.EVENTS})
    user_columns: tuple[str, ...] = ("CustomerID",)
    # InvoiceDate is UK local time as recorded, without a zone.
    parsing: Parsing = field(
        default_factory=lambda: Parsing(
            timestamp_format="%Y-%m-%d %H:%M:%S", timezone="Europe/London"
        )
    )

    def locate(self, path: Path, kind: RecordKind) -> Path:
        """A folder means its transactions file."""
        return path / "transactions.csv.gz" if path.is_dir() else path

    def read_options(self, kind: RecordKind) -> ReadOptions:
        """A comma-separated file with the eight UCI columns."""
        return ReadOptions(format="csv", required_columns=COLUMNS)

    def events(self, raw: pl.DataFrame, ctx: AdaptContext) -> pl.DataFrame:
        """One event per invoice line: purchase, or return for a cancellation ("C" invoice)."""
        quality = ctx.settings.quality
        invoice = pl.col("InvoiceNo").str.strip_chars()
        cancelled = invoice.str.starts_with("C")
        quantity = pl.col("Quantity").str.strip_chars().cast(pl.Float64, strict=False)
        codes = raw.select(_stock_code().unique().alias("code"))
        real = codes.filter(
            is_product_code(pl.col("code"), quality.product_code_pattern, quality.non_product_codes)
        )["code"]
        product = _stock_code().is_in(real.implode())
        adjustment = ~cancelled & (quantity < 0)
        pre_reason = (
            pl.when(~product)
            .then(pl.lit(Reason.NON_PRODUCT.value))
            .when(adjustment)
            .then(pl.lit(Reason.BAD_QUANTITY.value))
        )
        return raw.select(
            pl.col("_line"),
            pl.col("CustomerID").alias("user_id"),
            invoice.str.strip_prefix("C").alias("session_id"),
            _stock_code().alias("item_id"),
            pl.when(cancelled)
            .then(pl.lit(EventType.RETURN.value))
            .otherwise(pl.lit(EventType.PURCHASE.value))
            .alias("type"),
            # a return's quantity is recorded negative; the event carries how many came back.
            # Kept as text so that the pipeline's cast reports a quantity that is not a number.
            pl.when(cancelled)
            .then(pl.col("Quantity").str.strip_chars().str.strip_prefix("-"))
            .otherwise(pl.col("Quantity"))
            .alias("value"),
            pl.col("UnitPrice").alias("price"),
            pl.lit(CURRENCY).alias("currency"),
            pl.col("InvoiceDate").alias("timestamp"),
            pl.lit(self.name).alias("source"),
            *consent_columns(ctx),
            pre_reason.alias("_pre_reason"),
        )

    def derived_products(self, raw: pl.DataFrame, ctx: AdaptContext) -> pl.DataFrame:
        """One product per real stock code: the most used description wins, the rest are aliases.

        Only sold lines (positive quantity and price) vote, so stock notes such as "damaged" or
        "?" written on adjustment lines do not become product names.
        """
        quality = ctx.settings.quality
        quantity = pl.col("Quantity").cast(pl.Float64, strict=False)
        price = pl.col("UnitPrice").cast(pl.Float64, strict=False)
        lines = raw.select(
            pl.col("_line"),
            _stock_code().alias("item_id"),
            pl.col("Description").alias("title"),
            price.alias("price"),
            pl.col("InvoiceDate").alias("seen"),
            ((quantity > 0) & (price > 0) & ~pl.col("InvoiceNo").str.starts_with("C")).alias(
                "sold"
            ),
        ).filter(
            is_product_code(
                pl.col("item_id"), quality.product_code_pattern, quality.non_product_codes
            )
        )
        lines = lines.with_columns(clean_series(lines["title"]))
        votes = (
            lines.filter(pl.col("title").is_not_null())
            .group_by("item_id", "title")
            .agg(
                pl.col("sold").sum().alias("sold_lines"),
                pl.len().alias("lines"),
            )
            .sort(
                ["item_id", "sold_lines", "lines", "title"], descending=[False, True, True, False]
            )
        )
        titles = votes.group_by("item_id", maintain_order=True).agg(
            pl.col("title").first().alias("title"),
            pl.col("title").slice(1).alias("aliases"),
        )
        prices = lines.group_by("item_id").agg(
            pl.col("_line").min(),
            pl.col("price").filter(pl.col("sold")).median().alias("price"),
            pl.col("seen").max(),  # ISO text: the greatest is the latest
        )
        parsing = self.parsing
        last_seen = (
            pl.col("seen")
            .str.strptime(pl.Datetime("us"), parsing.timestamp_format, strict=False)
            .dt.replace_time_zone(parsing.timezone, ambiguous="earliest", non_existent="null")
            .dt.convert_time_zone("UTC")
        )
        return (
            prices.join(titles, on="item_id", how="left")
            .with_columns(
                pl.lit(CURRENCY).alias("currency"),
                pl.lit(self.name).alias("source"),
                pl.col("aliases").fill_null(pl.lit([], dtype=pl.List(pl.String))),
                last_seen.alias("updated_at"),  # when the shop last sold or listed it
            )
            .drop("seen")
            .sort("_line")
        )
