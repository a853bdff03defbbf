"""The Adapter protocol: how a dataset's raw rows become canonical events and products."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import polars as pl

from aisle.config import Settings
from aisle.domain import EpochUnit, RecordKind
from aisle.ingest.readers import ReadOptions


@dataclass(frozen=True)
class AdaptContext:
    """What an adapter may know while mapping a batch."""

    settings: Settings
    source: str


@dataclass(frozen=True)
class Parsing:
    """How the common coercion step reads an adapter's string fields."""

    timestamp_format: str | None = None  # strptime format; None = ISO 8601 or epoch seconds
    timezone: str = "UTC"  # zone of naive timestamps
    epoch_unit: EpochUnit = "s"


@runtime_checkable
class Adapter(Protocol):
    """Maps one dataset's raw rows onto the canonical schemas.

    ``events`` returns exactly one row per raw row, in order, keeping ``_line``: the pipeline
    pairs every canonical record with its source row. Columns may be strings; the pipeline casts
    them to the schema and quarantines what does not cast. An optional ``_pre_reason``
    (one reason code or null) column carries a reason only the adapter can see. ``products`` may
    aggregate rows (one product per item). Customer ids arrive already pseudonymised.
    """

    name: str
    kinds: frozenset[RecordKind]
    user_columns: tuple[str, ...]
    text_columns: tuple[str, ...]  # source columns customers write: scrubbed of PII
    parsing: Parsing
    checks_catalog: bool  # False for datasets whose items have no catalog at all

    def locate(self, path: Path, kind: RecordKind) -> Path:
        """The file to read when ``path`` is a dataset folder (else ``path`` itself)."""
        ...

    def read_options(self, kind: RecordKind) -> ReadOptions:
        """How to read this dataset's file of that kind."""
        ...

    def events(self, raw: pl.DataFrame, ctx: AdaptContext) -> pl.DataFrame:
        """Canonical event columns (any subset of EVENT_SCHEMA) plus ``_line``."""
        ...

    def products(self, raw: pl.DataFrame, ctx: AdaptContext) -> pl.DataFrame:
        """Canonical product columns (any subset of PRODUCT_SCHEMA) plus ``_line``."""
        ...

    def derived_products(self, raw: pl.DataFrame, ctx: AdaptContext) -> pl.DataFrame | None:
        """Products implied by an events file (a catalog built from transactions), or None."""
        ...


@dataclass
class BaseAdapter:
    """Defaults shared by the dataset adapters."""

    name: str = ""
    kinds: frozenset[RecordKind] = frozenset()
    user_columns: tuple[str, ...] = ()
    text_columns: tuple[str, ...] = ()
    parsing: Parsing = field(default_factory=Parsing)
    checks_catalog: bool = True
    file_names: dict[RecordKind, str] = field(default_factory=dict)

    def locate(self, path: Path, kind: RecordKind) -> Path:
        """Resolve a dataset folder to the file of that kind."""
        if path.is_dir() and kind in self.file_names:
            return path / self.file_names[kind]
        return path

    def read_options(self, kind: RecordKind) -> ReadOptions:
        """Plain defaults: format from the suffix, sniffed delimiter, header row."""
        return ReadOptions()

    def events(self, raw: pl.DataFrame, ctx: AdaptContext) -> pl.DataFrame:
        """Adapters that carry events override this."""
        raise NotImplementedError(f"adapter {self.name!r} carries no events")

    def products(self, raw: pl.DataFrame, ctx: AdaptContext) -> pl.DataFrame:
        """Adapters that carry products override this."""
        raise NotImplementedError(f"adapter {self.name!r} carries no products")

    def derived_products(self, raw: pl.DataFrame, ctx: AdaptContext) -> pl.DataFrame | None:
        """Most sources imply no products."""
        return None


def consent_columns(ctx: AdaptContext) -> list[pl.Expr]:
    """Default consent flags for sources that carry none."""
    ingest = ctx.settings.ingest
    return [
        pl.lit(ingest.default_consent_personalisation).alias("consent_personalisation"),
        pl.lit(ingest.default_consent_analytics).alias("consent_analytics"),
    ]
