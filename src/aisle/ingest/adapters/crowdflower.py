"""CrowdFlower search relevance: the judged products (title and description) become products."""

from __future__ import annotations

from dataclasses import dataclass, field

import duckdb
import polars as pl

from aisle.domain import RecordKind
from aisle.ingest.adapters.base import AdaptContext, BaseAdapter
from aisle.ingest.adapters.canonical import blank_to_null
from aisle.ingest.readers import ReadOptions

TITLE = "product_title"
DESCRIPTION = "product_description"
ID_PREFIX = "cf-"
#: md5 is computed by DuckDB: stable across versions, unlike polars' own hash.
_ID_SQL = f"""
SELECT CASE WHEN title IS NULL THEN NULL
       ELSE '{ID_PREFIX}' || left(md5(title || chr(31) || coalesce(description, '')), 16)
       END AS item_id
FROM pairs ORDER BY _row
"""


def product_ids(titles: pl.Series, descriptions: pl.Series) -> pl.Series:
    """Item ids of (title, description) pairs: "cf-" + 16 hex of md5(title, 0x1F, description).

    The data has no product ids; one product is one distinct title and description, and a
    missing description counts as empty. Evaluation code uses this to key the judgements.
    """
    pairs = pl.DataFrame(
        {"title": titles.cast(pl.String()), "description": descriptions.cast(pl.String())}
    ).with_row_index("_row")
    with duckdb.connect() as con:
        con.register("pairs", pairs)
        ids: pl.DataFrame = con.sql(_ID_SQL).pl()
    return ids.get_column("item_id").cast(pl.String())


@dataclass
class Crowdflower(BaseAdapter):
    """``train_shared.csv.gz``: one product per judged (query, product) row.

    A product judged for several queries appears once per row with the same item id; the
    pipeline reconciles them. The judged query and its relevance are judgements, not product
    data, so nothing of them is carried (no attributes).
    """

    name: str = "crowdflower"
    kinds: frozenset[RecordKind] = frozenset({RecordKind.PRODUCTS})
    #: the judged query rides along in quarantined rows' payloads: scrub it like shoppers' text
    text_columns: tuple[str, ...] = ("query",)
    file_names: dict[RecordKind, str] = field(
        default_factory=lambda: {RecordKind.PRODUCTS: "train_shared.csv.gz"}
    )

    def read_options(self, kind: RecordKind) -> ReadOptions:
        """The Kaggle CSV: id, query, product_title, product_description, median_relevance, ..."""
        return ReadOptions(format="csv", delimiter=",", required_columns=(TITLE, DESCRIPTION))

    def products(self, raw: pl.DataFrame, ctx: AdaptContext) -> pl.DataFrame:
        """Title and description (empty -> null), keyed by a content hash."""
        ids = product_ids(raw.get_column(TITLE), raw.get_column(DESCRIPTION))
        return raw.select(
            pl.col("_line"),
            pl.lit(ids).alias("item_id"),
            pl.col(TITLE).alias("title"),
            blank_to_null(pl.col(DESCRIPTION)).alias("description"),
            pl.lit(self.name).alias("source"),
        )
