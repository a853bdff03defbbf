"""The generic adapter configured in settings: source columns mapped onto canonical fields."""

from __future__ import annotations

import json
from typing import Any

import polars as pl

from aisle.config import MappingAdapterSettings
from aisle.domain import EVENT_SCHEMA, PRODUCT_SCHEMA, RecordKind
from aisle.errors import ConfigError
from aisle.ingest.adapters.base import AdaptContext, BaseAdapter, Parsing
from aisle.ingest.adapters.canonical import CONSENT_FIELDS, LIST_FIELDS, flag_field, json_text
from aisle.ingest.adapters.canonical import list_field as split_list
from aisle.ingest.readers import ReadOptions

SCHEMAS: dict[RecordKind, dict[str, pl.DataType]] = {
    RecordKind.EVENTS: EVENT_SCHEMA,
    RecordKind.PRODUCTS: PRODUCT_SCHEMA,
}


def _constant(name: str, value: Any) -> pl.Expr:
    """A configured constant as a column: objects become JSON text, lists lists of text."""
    if isinstance(value, dict):
        return pl.lit(json.dumps(value, ensure_ascii=False)).alias(name)
    if isinstance(value, list):
        return pl.lit([str(v) for v in value], dtype=pl.List(pl.String())).alias(name)
    return pl.lit(value).alias(name)


class MappingAdapter(BaseAdapter):
    """A ``[adapters.NAME]`` table of the settings, as an adapter.

    ``columns`` maps canonical fields to source columns, ``constants`` fixes fields to a value,
    ``type_map`` renames source event types (unmapped values pass through, so the pipeline
    quarantines the unknown ones as ``bad_event_type``). When ``user_columns`` is empty the
    column mapped to ``user_id`` is pseudonymised, so no customer id is ever stored raw.
    """

    def __init__(self, name: str, spec: MappingAdapterSettings) -> None:
        try:
            kind = RecordKind(spec.kind)
        except ValueError:
            raise ConfigError(
                f"adapter {name!r}: kind {spec.kind!r} is not one of 'events', 'products'"
            ) from None
        schema = SCHEMAS[kind]
        for table, fields in (("columns", spec.columns), ("constants", spec.constants)):
            for target in fields:
                if target not in schema or target == "source":
                    known = ", ".join(f for f in schema if f != "source")
                    raise ConfigError(
                        f"adapter {name!r}: [adapters.{name}.{table}] names unknown {kind.value} "
                        f"field {target!r}; known fields: {known}"
                    )
        both = sorted(set(spec.columns) & set(spec.constants))
        if both:
            raise ConfigError(
                f"adapter {name!r}: field(s) {', '.join(both)} are in both columns and constants; "
                "keep one"
            )
        user_id_column = spec.columns.get("user_id")
        default_users = (user_id_column,) if user_id_column else ()
        super().__init__(
            name=name,
            kinds=frozenset({kind}),
            user_columns=tuple(spec.user_columns) or default_users,
            text_columns=(spec.columns["query"],) if "query" in spec.columns else (),
            parsing=Parsing(timestamp_format=spec.timestamp_format, timezone=spec.timezone),
        )
        self.kind = kind
        self.spec = spec

    def read_options(self, kind: RecordKind) -> ReadOptions:
        """Format from the suffix, the configured delimiter; every mapped column must exist."""
        required = tuple(dict.fromkeys(self.spec.columns.values()))
        return ReadOptions(delimiter=self.spec.delimiter, required_columns=required)

    def _field(self, raw: pl.DataFrame, target: str, column: str) -> pl.Expr:
        """The canonical field ``target`` read from the source ``column``."""
        if target in LIST_FIELDS:
            return split_list(raw, column).alias(target)
        if target == "attributes":
            return json_text(raw, column).alias(target)
        if target == "type":
            return pl.col(column).cast(pl.String()).replace(self.spec.type_map).alias(target)
        return pl.col(column).alias(target)

    def _constant_field(self, target: str, value: Any) -> pl.Expr:
        """The canonical field ``target`` fixed to ``value`` (a type goes through type_map)."""
        if target == "type" and isinstance(value, str):
            value = self.spec.type_map.get(value, value)
        return _constant(target, value)

    def _consent(self, raw: pl.DataFrame, ctx: AdaptContext) -> list[pl.Expr]:
        """Consent flags from mapped columns or constants, else the configured defaults."""
        ingest = ctx.settings.ingest
        defaults = (ingest.default_consent_personalisation, ingest.default_consent_analytics)
        exprs: list[pl.Expr] = []
        for target, default in zip(CONSENT_FIELDS, defaults, strict=True):
            if target in self.spec.columns:
                exprs.append(flag_field(raw, self.spec.columns[target], default).alias(target))
            elif target in self.spec.constants:
                exprs.append(_constant(target, bool(self.spec.constants[target])))
            else:
                exprs.append(pl.lit(default).alias(target))
        return exprs

    def _adapt(self, raw: pl.DataFrame, ctx: AdaptContext, kind: RecordKind) -> pl.DataFrame:
        """Mapped fields, then constants, then source (and consent, for events)."""
        if kind is not self.kind:
            raise NotImplementedError(f"adapter {self.name!r} carries {self.kind.value} only")
        mapped = [
            self._field(raw, t, c) for t, c in self.spec.columns.items() if t not in CONSENT_FIELDS
        ]
        fixed = [
            self._constant_field(t, v)
            for t, v in self.spec.constants.items()
            if t not in CONSENT_FIELDS
        ]
        consent = self._consent(raw, ctx) if kind is RecordKind.EVENTS else []
        return raw.select(
            pl.col("_line"), *mapped, *fixed, pl.lit(self.name).alias("source"), *consent
        )

    def events(self, raw: pl.DataFrame, ctx: AdaptContext) -> pl.DataFrame:
        """One event per source row, in order, with the mapped and constant fields."""
        return self._adapt(raw, ctx, RecordKind.EVENTS)

    def products(self, raw: pl.DataFrame, ctx: AdaptContext) -> pl.DataFrame:
        """One product per source row, with the mapped and constant fields."""
        return self._adapt(raw, ctx, RecordKind.PRODUCTS)
