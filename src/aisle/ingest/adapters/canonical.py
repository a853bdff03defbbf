"""Files already in aisle's own schema, and the field coercions other adapters share."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from aisle.domain import (
    EVENT_REQUIRED,
    EVENT_SCHEMA,
    PRODUCT_REQUIRED,
    PRODUCT_SCHEMA,
    SEARCH_REQUIRED,
    RecordKind,
)
from aisle.ingest.adapters.base import AdaptContext, BaseAdapter, Parsing
from aisle.ingest.readers import ReadOptions

#: Fields holding a list of texts; in delimited files written as "a > b > c".
LIST_FIELDS = ("category_path", "aliases")
CONSENT_FIELDS = ("consent_personalisation", "consent_analytics")
_SPLIT = "\x1f"
_SUFFIXES = (".parquet", ".jsonl", ".jsonl.gz", ".ndjson", ".csv", ".csv.gz", ".tsv", ".tsv.gz")


def blank_to_null(text: pl.Expr) -> pl.Expr:
    """The text, or null where it is empty or only whitespace."""
    return pl.when(text.str.strip_chars() != "").then(text)


def optional_column(raw: pl.DataFrame, name: str, dtype: pl.DataType | None = None) -> pl.Expr:
    """The raw column ``name``, or a null column of ``dtype`` (String) when the file lacks it."""
    if name in raw.columns:
        return pl.col(name)
    return pl.lit(None, dtype=dtype or pl.String()).alias(name)


def list_field(raw: pl.DataFrame, column: str) -> pl.Expr:
    """A list-of-text field: lists are kept, text such as "a > b > c" is split into its parts."""
    dtype = raw.schema[column]
    if isinstance(dtype, pl.List):
        if dtype.inner.is_nested():  # lists of lists: the records holding them are quarantined
            return pl.col(column)
        return pl.col(column).cast(pl.List(pl.String()))
    parts = pl.col(column).cast(pl.String()).str.replace_all(r"\s*>\s*", _SPLIT).str.split(_SPLIT)
    return parts.list.eval(pl.element().str.strip_chars()).list.eval(
        pl.element().filter(pl.element() != "")
    )


def json_text(raw: pl.DataFrame, column: str) -> pl.Expr:
    """A JSON-object field as text: objects (structs, from JSONL) encoded, text kept.

    Any other value (a list, a number) is kept under the key "value" so it stays an object.
    """
    dtype = raw.schema[column]
    if isinstance(dtype, pl.Struct):
        return pl.col(column).struct.json_encode()
    if dtype == pl.String():
        return pl.col(column)
    return pl.struct(pl.col(column).alias("value")).struct.json_encode()


def flag_field(raw: pl.DataFrame, column: str, default: bool) -> pl.Expr:
    """A consent flag whose missing values take the configured ``default``.

    Booleans are kept and numbers are true when non-zero. Text stays text ("yes", "0", ...) for
    the pipeline to cast, so an unreadable value is quarantined rather than guessed.
    """
    dtype = raw.schema[column]
    if dtype == pl.Boolean():
        flag = pl.col(column).fill_null(default)
    elif dtype.is_numeric():
        flag = (pl.col(column) != 0).fill_null(default)
    else:
        text = pl.col(column).cast(pl.String())
        flag = blank_to_null(text).fill_null(pl.lit(str(default).lower()))
    return flag.alias(column)


def consent_fields(raw: pl.DataFrame, ctx: AdaptContext) -> list[pl.Expr]:
    """Consent flags from the file where it has them, else the configured defaults."""
    ingest = ctx.settings.ingest
    defaults = (ingest.default_consent_personalisation, ingest.default_consent_analytics)
    return [
        flag_field(raw, name, default) if name in raw.columns else pl.lit(default).alias(name)
        for name, default in zip(CONSENT_FIELDS, defaults, strict=True)
    ]


def canonical_field(raw: pl.DataFrame, name: str) -> pl.Expr:
    """One canonical field read from a column of the same name, in its text-friendly form."""
    if name in LIST_FIELDS:
        return list_field(raw, name).alias(name)
    if name == "attributes":
        return json_text(raw, name).alias(name)
    return pl.col(name)


@dataclass
class Canonical(BaseAdapter):
    """CSV, JSONL or Parquet whose columns are named like the canonical event or product fields.

    Any subset of the fields may be present as long as the required ones are. Timestamps are
    ISO 8601 (or epoch seconds). ``source`` is always this adapter's name; consent flags come from
    the file where present (missing values take the settings' defaults), else from the defaults.
    """

    name: str = "canonical"
    kinds: frozenset[RecordKind] = frozenset({RecordKind.EVENTS, RecordKind.PRODUCTS})
    user_columns: tuple[str, ...] = ("user_id",)
    text_columns: tuple[str, ...] = ("query",)
    parsing: Parsing = field(default_factory=Parsing)

    def locate(self, path: Path, kind: RecordKind) -> Path:
        """A folder means its ``events.*`` or ``products.*`` file (Parquet, JSONL, CSV or TSV)."""
        if not path.is_dir():
            return path
        candidates = [path / f"{kind.value}{suffix}" for suffix in _SUFFIXES]
        return next((c for c in candidates if c.exists()), candidates[0])

    def read_options(self, kind: RecordKind) -> ReadOptions:
        """Format from the suffix; the fields every record of that kind needs must be there."""
        if kind is RecordKind.PRODUCTS:
            return ReadOptions(required_columns=PRODUCT_REQUIRED)
        # search events carry a query instead of an item, so item_id is checked per row
        return ReadOptions(
            required_columns=tuple(f for f in EVENT_REQUIRED if f in SEARCH_REQUIRED)
        )

    def events(self, raw: pl.DataFrame, ctx: AdaptContext) -> pl.DataFrame:
        """The file's event fields as they are, with source and consent filled in."""
        fields = [
            f for f in EVENT_SCHEMA if f in raw.columns and f not in ("source", *CONSENT_FIELDS)
        ]
        return raw.select(
            pl.col("_line"),
            *(canonical_field(raw, f) for f in fields),
            pl.lit(self.name).alias("source"),
            *consent_fields(raw, ctx),
        )

    def products(self, raw: pl.DataFrame, ctx: AdaptContext) -> pl.DataFrame:
        """The file's product fields, lists split and attributes as JSON text."""
        fields = [f for f in PRODUCT_SCHEMA if f in raw.columns and f != "source"]
        return raw.select(
            pl.col("_line"),
            *(canonical_field(raw, f) for f in fields),
            pl.lit(self.name).alias("source"),
        )
