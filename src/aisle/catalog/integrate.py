"""One canonical record per product from several sources.

Every source's latest record of an item is kept (``product_sources``). Per field a rule picks
the winner among the sources that have a value: ``priority`` (the most trusted source, then
the freshest), ``freshest`` (the latest ``updated_at``, else when it arrived) or ``complete``
(the longest text or category path). Attributes are merged key by key under the
``attributes`` rule. Each disagreement is recorded with its candidates, the winner and why;
each change of the canonical record adds a version to ``product_history``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import polars as pl

from aisle.config import CatalogSettings
from aisle.errors import ConfigError
from aisle.storage import Store
from aisle.storage.catalog import (
    SOURCE_COLUMNS,
    canonical_names,
    keep_source_records,
    replace_canonical,
    source_records,
)

RULES = ("priority", "freshest", "complete")
#: Fields a rule decides, besides attributes; currency follows the price.
FIELDS = ("title", "description", "category_path", "brand", "price")
_ORDER = {
    "priority": (["priority", "fresh"], [False, True]),
    "freshest": (["fresh", "priority"], [True, False]),
    "complete": (["size", "priority"], [True, False]),
}
_CONFLICTS = {
    "item_id": pl.String, "field": pl.String, "candidates": pl.String, "chosen": pl.String,
    "rule": pl.String, "why": pl.String,
}  # fmt: skip
_HASHED = ("title", "description", "category_path", "brand", "price", "currency", "attributes")


@dataclass(frozen=True)
class Integration:
    """What one integration changed."""

    items: int
    changed: int
    conflicts: int


def integrate(
    store: Store, records: pl.DataFrame, policy: CatalogSettings, *, now: datetime | None = None
) -> Integration:
    """Keep accepted product records as their sources' latest word, then re-resolve the items
    they touch."""
    if records.height == 0:
        return Integration(0, 0, 0)
    now = now or datetime.now(UTC)
    keep_source_records(store, records, now)
    return resolve_items(store, records["item_id"].unique(), policy, now=now)


def resolve_items(
    store: Store, items: pl.Series, policy: CatalogSettings, *, now: datetime | None = None
) -> Integration:
    """Rebuild the canonical record, conflicts and history of these items from their sources."""
    now = now or datetime.now(UTC)
    rows = source_records(store, items)
    if rows.height == 0:
        return Integration(0, 0, 0)
    known = canonical_names(store, items)
    products, conflicts = resolve(rows, policy, store=store, known=known)
    conflicts = conflicts.with_columns(pl.lit(now).alias("resolved_at"))
    history = _new_versions(store, products, now)
    replace_canonical(store, products, conflicts, history)
    return Integration(products.height, history.height, conflicts.height)


def resolve(
    rows: pl.DataFrame, policy: CatalogSettings, *, store: Store, known: pl.DataFrame | None = None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Canonical products (the products table's columns) and conflicts (item_id, field,
    candidates, chosen, rule, why) from source records; names ``known`` before (item_id,
    title, aliases) stay aliases."""
    rules = {field: policy.field_rules.get(field, "priority") for field in (*FIELDS, "attributes")}
    unknown = {f: r for f, r in rules.items() if r not in RULES}
    if unknown:
        raise ConfigError(f"catalog.field_rules: unknown rules {unknown}; choose from {RULES}")
    rows = _ranked_sources(rows, policy.source_priority)
    canonical = rows.group_by("item_id").agg(
        pl.col("source").unique().sort().str.join("+"),
        pl.col("updated_at").max(),
    )
    found: list[pl.DataFrame] = []
    for field in FIELDS:
        winners, conflicts = _decide(_candidates(rows, field), field, rules[field])
        found.append(conflicts)
        canonical = canonical.join(
            winners.select(
                "item_id", pl.col("value").alias(field), pl.col("chosen").alias(f"_{field}")
            ),
            on="item_id",
            how="left",
        )
    attributes, conflicts = _merge_attributes(rows, rules["attributes"], store)
    found.append(conflicts)
    picked = rows.select("item_id", "source", "currency", "record_id", "import_id")
    canonical = (
        canonical.join(attributes, on="item_id", how="left")
        .join(_aliases(rows, known), on="item_id", how="left")
        .with_columns(pl.coalesce("_price", "_title").alias("_from"))
        .join(picked.rename({"source": "_from"}), on=["item_id", "_from"], how="left")
        .join(
            picked.select("item_id", pl.col("source").alias("_title"), "record_id", "import_id"),
            on=["item_id", "_title"],
            how="left",
            suffix="_title",
        )
        .with_columns(
            pl.coalesce("record_id_title", "record_id").alias("record_id"),
            pl.coalesce("import_id_title", "import_id").alias("import_id"),
            pl.col("aliases").list.set_difference(pl.concat_list("title")),
        )
        .select(SOURCE_COLUMNS)
        .sort("item_id")
    )
    return canonical, pl.concat([f.cast(_CONFLICTS) for f in found])  # type: ignore[arg-type]


def _ranked_sources(rows: pl.DataFrame, priority: list[str]) -> pl.DataFrame:
    """Each row's trust rank (listed sources first, the rest by name) and freshness."""
    listed = {source: rank for rank, source in enumerate(priority)}
    others = sorted(set(rows["source"].drop_nulls()) - set(listed))
    ranks = {**listed, **{s: len(listed) + i for i, s in enumerate(others)}}
    return rows.with_columns(
        pl.col("source")
        .replace_strict(ranks, default=len(ranks), return_dtype=pl.Int32)
        .alias("priority"),
        pl.coalesce("updated_at", "received_at").alias("fresh"),
    )


def _candidates(rows: pl.DataFrame, field: str) -> pl.DataFrame:
    """Sources that have a value for the field: value, its size and a comparison key."""
    value = pl.col(field)
    kind = rows.schema[field]
    if isinstance(kind, pl.List):
        present = value.list.len() > 0
        size = value.list.len()
        key = value.list.join(" > ").str.to_lowercase()
    elif kind == pl.Float64:
        present = value.is_finite()
        size = pl.lit(1)
        key = value.round(2).cast(pl.String)
    else:
        present = value.str.strip_chars().str.len_chars() > 0
        size = value.str.len_chars()
        key = value.str.to_lowercase().str.replace_all(r"\s+", " ").str.strip_chars()
    return rows.filter(present.fill_null(False)).select(
        "item_id",
        pl.lit(field).alias("field"),
        "source",
        "priority",
        "fresh",
        value.alias("value"),
        size.cast(pl.Int64).alias("size"),
        key.alias("key"),
    )


def _decide(
    candidates: pl.DataFrame, field: str, rule: str, by: tuple[str, ...] = ("item_id",)
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The winner per item (and attribute) under the rule, and the conflicts: groups whose
    candidates disagree."""
    columns, descending = _ORDER[rule]
    ranked = candidates.sort([*by, *columns], descending=[False] * len(by) + descending,
                             nulls_last=True)  # fmt: skip
    decided = ranked.group_by(list(by), maintain_order=True).agg(
        pl.col("value").first(),
        pl.col("source").first().alias("chosen"),
        pl.col("field").first(),
        pl.col("fresh").first(),
        pl.col("size").first(),
        pl.col("key").n_unique().alias("distinct"),
        pl.col("source").str.join(", ").alias("sources"),
        pl.struct("source", "value").alias("candidates"),
    )
    why = {
        "priority": pl.format("{} is the most trusted of {}", "chosen", "sources"),
        "freshest": pl.format(
            "{} is the freshest (updated {})", "chosen", pl.col("fresh").dt.strftime("%Y-%m-%d")
        ),
        "complete": pl.format("{} is the most complete ({} long)", "chosen", "size"),
    }[rule]
    conflicts = decided.filter(pl.col("distinct") > 1).select(
        "item_id",
        "field",
        pl.format(
            "[{}]", pl.col("candidates").list.eval(pl.element().struct.json_encode()).list.join(",")
        ).alias("candidates"),
        "chosen",
        pl.lit(rule).alias("rule"),
        why.alias("why"),
    )
    return decided, conflicts


def _merge_attributes(
    rows: pl.DataFrame, rule: str, store: Store
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Attributes merged key by key: (item_id, attributes JSON) and the conflicts."""
    with store.registered(
        "_rows", rows.select("item_id", "source", "priority", "fresh", "attributes")
    ):
        pairs = store.query(
            "SELECT r.item_id, 'attributes.' || j.key AS field, j.key AS name, r.source, "
            "r.priority, r.fresh, j.value::VARCHAR AS value, length(j.value::VARCHAR) AS size, "
            "lower(j.value::VARCHAR) AS key "
            "FROM _rows r, json_each(r.attributes) j "
            "WHERE json_type(j.value) <> 'NULL' AND j.value::VARCHAR NOT IN ('\"\"', '[]', '{}')"
        )
    if pairs.height == 0:
        empty = pl.DataFrame(schema={"item_id": pl.String, "attributes": pl.String})
        return empty, pl.DataFrame(schema=_CONFLICTS)
    winners, conflicts = _decide(pairs, "attributes", rule, by=("item_id", "name"))
    quoted = pl.struct(pl.col("name").alias("k")).struct.json_encode().str.slice(5).str.head(-1)
    merged = (
        winners.sort("item_id", "name")
        .group_by("item_id", maintain_order=True)
        .agg(pl.format("{}:{}", quoted, "value").str.join(",").alias("entries"))
        .select("item_id", pl.concat_str(pl.lit("{"), "entries", pl.lit("}")).alias("attributes"))
    )
    return merged, conflicts


def _aliases(rows: pl.DataFrame, known: pl.DataFrame | None) -> pl.DataFrame:
    """Every name the sources gave an item (titles and their aliases) and every name it had
    before, first seen first."""
    names = pl.concat_list(pl.concat_list("title"), pl.col("aliases").fill_null([]))
    frames = [rows, known] if known is not None and known.height else [rows]
    return (
        pl.concat([f.select("item_id", names.alias("aliases")) for f in frames])
        .explode("aliases")
        .drop_nulls("aliases")
        .unique(maintain_order=True)
        .group_by("item_id", maintain_order=True)
        .agg("aliases")
    )


def _new_versions(store: Store, products: pl.DataFrame, now: datetime) -> pl.DataFrame:
    """A history row for each item whose canonical content changed (or is new)."""
    with store.registered("_canonical", products):
        return store.query(
            f"""
            WITH new AS (SELECT *, md5(concat_ws(chr(31), {_hash_columns()})) AS content_hash
                         FROM _canonical),
            last AS (SELECT item_id, max(version) AS version,
                            arg_max(content_hash, version) AS content_hash
                     FROM product_history WHERE item_id IN (SELECT item_id FROM _canonical)
                     GROUP BY item_id),
            old AS (SELECT * FROM products WHERE item_id IN (SELECT item_id FROM _canonical))
            SELECT n.* EXCLUDE (content_hash), coalesce(l.version, 0) + 1 AS version,
                   n.content_hash,
                   list_filter([{_changed()}], lambda x: x IS NOT NULL) AS changed_fields,
                   ?::TIMESTAMPTZ AS changed_at
            FROM new n LEFT JOIN last l USING (item_id) LEFT JOIN old o USING (item_id)
            WHERE l.content_hash IS DISTINCT FROM n.content_hash
            """,
            [now],
        )


def _hash_columns() -> str:
    parts = {"category_path": "array_to_string(category_path, '>')", "price": "price::VARCHAR"}
    return ", ".join(f"coalesce({parts.get(c, f'{c}::VARCHAR')}, '')" for c in _HASHED)


def _changed() -> str:
    return ", ".join(f"CASE WHEN n.{c} IS DISTINCT FROM o.{c} THEN '{c}' END" for c in _HASHED)
