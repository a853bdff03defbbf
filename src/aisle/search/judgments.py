"""Graded relevance judgements: read a judged file, give every row a fate, keep the accepted.

A judgement says how well one product answers one query (1 = irrelevant .. 4 = fully
relevant). Every row of a judged file ends accepted, quarantined (missing query or title, a
relevance outside 1..4, bytes that are not text, a line that does not parse; the detail names
the file, the line and the field) or a duplicate: of a row stored before (rule ``exact``) or of
a judgement of the same query and product stored before or earlier in the file (rule
``same_judgment``; the first one stands). Query text is scrubbed of PII before anything is kept.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import polars as pl

from aisle.config import Settings
from aisle.domain import Fate, Reason, RecordKind
from aisle.errors import UnknownAdapterError
from aisle.ingest.adapters import AdaptContext, get_adapter
from aisle.ingest.adapters.crowdflower import DESCRIPTION, TITLE, product_ids
from aisle.ingest.fetch import fetch_url, is_url, redacted
from aisle.ingest.identity import content_ids
from aisle.ingest.readers import LINE, read_source
from aisle.privacy import audit
from aisle.privacy.pii import scrub_series
from aisle.quality.coerce import to_records
from aisle.quality.dedupe import exact_duplicates
from aisle.search.documents import conform
from aisle.storage import Store
from aisle.storage.ledger import (
    ImportResult,
    close_import,
    fail_import,
    mark_interrupted,
    open_import,
)
from aisle.text import clean_series

#: The ledger's kind for judgement imports (quarantine and duplicate rows carry it too).
KIND: Final = "judgments"
GRADES: Final = (1, 2, 3, 4)
#: Rule of a duplicate that judges a query and product already judged.
SAME_JUDGMENT: Final = "same_judgment"

Progress = Callable[[str], None]


@dataclass(frozen=True)
class JudgmentColumns:
    """Where a judged file keeps the query, the product's text and the grade."""

    query: str
    title: str
    description: str
    relevance: str
    variance: str | None = None


#: Adapters whose files carry judgements, and their columns.
JUDGMENT_COLUMNS: Final[dict[str, JudgmentColumns]] = {
    "crowdflower": JudgmentColumns(
        "query", TITLE, DESCRIPTION, "median_relevance", "relevance_variance"
    ),
}


@dataclass(frozen=True)
class JudgedFile:
    """A judged file as read, before any fate is decided."""

    rows: pl.DataFrame
    """One per parsed row, in file order: ``_line``, ``record_id``, ``query`` (scrubbed,
    normalised), ``item_id``, ``relevance`` (Int64, null when not 1..4), ``variance``,
    ``reasons`` (empty when usable) and ``detail`` (the file, line and fields at fault)."""
    products: pl.DataFrame
    """Search documents of the judged products, one per item_id."""
    malformed: pl.DataFrame
    """Records that did not parse: ``_line``, ``error``, ``text``."""
    source: str
    sha256: str
    pii_scrubbed: dict[str, int]


def judgment_columns(adapter: str) -> JudgmentColumns:
    """The judgement columns of an adapter's files."""
    if adapter not in JUDGMENT_COLUMNS:
        known = ", ".join(sorted(JUDGMENT_COLUMNS))
        raise UnknownAdapterError(f"adapter {adapter!r} carries no judgements; use one of {known}")
    return JUDGMENT_COLUMNS[adapter]


def read_judgments(source: str | Path, adapter: str, settings: Settings) -> JudgedFile:
    """Read a judged file (path, dataset folder or URL) through the adapter's reader."""
    columns = judgment_columns(adapter)
    reader = get_adapter(adapter, settings)
    given = str(source)
    label = redacted(given) if is_url(given) else given
    options = reader.read_options(RecordKind.PRODUCTS)
    required = (*options.required_columns, columns.query, columns.title, columns.relevance)
    options = replace(options, required_columns=tuple(dict.fromkeys(required)))
    with tempfile.TemporaryDirectory(prefix="aisle-download-") as scratch:
        if is_url(given):
            timeout = settings.ingest.http_timeout_seconds
            path = fetch_url(given, Path(scratch), timeout=timeout)
        else:
            path = reader.locate(Path(given), RecordKind.PRODUCTS)
        raw = read_source(path, options)
    scrubbed, found = scrub_series(raw.frame[columns.query].cast(pl.String))
    frame = raw.frame.with_columns(scrubbed.alias(columns.query))
    typed, _ = to_records(
        reader.products(frame, AdaptContext(settings, label)), RecordKind.PRODUCTS
    )
    return JudgedFile(
        rows=_judged_rows(frame, columns, adapter, label),
        products=conform(typed),
        malformed=raw.malformed,
        source=label,
        sha256=raw.sha256,
        pii_scrubbed=dict(found),
    )


def _number(frame: pl.DataFrame, name: str | None) -> pl.Expr:
    """A column read as a number; absent, blank or unreadable -> null."""
    if name is None or name not in frame.columns:
        return pl.lit(None, dtype=pl.Float64)
    return pl.col(name).cast(pl.String).str.strip_chars().cast(pl.Float64, strict=False)


def _judged_rows(
    frame: pl.DataFrame, columns: JudgmentColumns, adapter: str, source: str
) -> pl.DataFrame:
    """Each parsed row as a judgement, with the reasons it cannot be one."""
    source_columns = [c for c in frame.columns if not c.startswith("_")]
    record_ids = content_ids(frame, source_columns, f"{adapter}:{KIND}")
    frame = frame.with_columns(
        clean_series(frame[columns.query].cast(pl.String)).alias("_query"),
        clean_series(frame[columns.title].cast(pl.String)).alias("_title"),
        # the adapter keys products on the raw text; a title that is only blanks is missing
        product_ids(frame[columns.title], frame[columns.description]).alias("_item_id"),
    )
    query, title = pl.col("_query"), pl.col("_title")
    relevance_text = pl.col(columns.relevance).cast(pl.String).str.strip_chars()
    grade = _number(frame, columns.relevance)
    bad_encoding = pl.col("_bad_encoding") if "_bad_encoding" in frame.columns else pl.lit(False)
    checks: list[tuple[pl.Expr, Reason, pl.Expr]] = [
        (bad_encoding, Reason.BAD_ENCODING, pl.lit("the row holds bytes that are not text")),
        (query.is_null(), Reason.MISSING_FIELD, pl.lit(f"field {columns.query!r}: missing")),
        (title.is_null(), Reason.MISSING_FIELD, pl.lit(f"field {columns.title!r}: missing")),
        (
            relevance_text.is_null() | (relevance_text == ""),
            Reason.MISSING_FIELD,
            pl.lit(f"field {columns.relevance!r}: missing"),
        ),
        (
            (relevance_text != "") & ~grade.is_in([float(g) for g in GRADES]).fill_null(False),
            Reason.BAD_RATING,
            pl.format(f"field {columns.relevance!r}: {{}} is not a grade 1..4", relevance_text),
        ),
    ]
    failing = [check.fill_null(False) for check, _, _ in checks]
    reasons = pl.concat_list(
        [
            pl.when(fails).then(pl.lit(reason.value))
            for fails, (_, reason, _) in zip(failing, checks, strict=True)
        ]
    ).list.drop_nulls()
    details = pl.concat_str(
        [pl.when(fails).then(text) for fails, (_, _, text) in zip(failing, checks, strict=True)],
        separator="; ",
        ignore_nulls=True,
    )
    variance = _number(frame, columns.variance)
    return frame.select(
        pl.col(LINE),
        pl.lit(record_ids).alias("record_id"),
        query.alias("query"),
        pl.when(title.is_not_null()).then(pl.col("_item_id")).alias("item_id"),
        pl.when(grade.is_in([float(g) for g in GRADES]))
        .then(grade.cast(pl.Int64))
        .alias("relevance"),
        variance.alias("variance"),
        reasons.alias("reasons"),
        pl.format(f"{source}, line {{}}: {{}}", pl.col(LINE), details).alias("detail"),
    )


def _seen(store: Store, ids: pl.Series) -> pl.Series:
    """Which of these record ids a judgement import has met before, whatever their fate."""
    with store.registered("_judged_ids", ids.rename("id").to_frame()):
        return store.query(
            "SELECT record_id AS id FROM judgments WHERE record_id IN (SELECT id FROM _judged_ids)"
            " UNION ALL SELECT record_id FROM quarantine WHERE kind = ? "
            "AND record_id IN (SELECT id FROM _judged_ids) "
            "UNION ALL SELECT record_id FROM duplicates WHERE kind = ? "
            "AND record_id IN (SELECT id FROM _judged_ids)",
            [KIND, KIND],
        )["id"]


def assess_judgments(store: Store, judged: JudgedFile) -> pl.DataFrame:
    """The rows with ``_fate``, ``_duplicate_of`` and ``_dup_rule``."""
    rows = judged.rows.with_row_index("_row")
    exact = exact_duplicates(rows["record_id"], _seen(store, rows["record_id"]))
    rows = rows.with_columns(exact)
    usable = (pl.col("reasons").list.len() == 0) & pl.col("_duplicate_of").is_null()
    keys = ["query", "item_id"]
    candidates = rows.filter(usable)
    with store.registered("_judged_keys", candidates.select(keys).unique()):
        stored = store.query(
            "SELECT j.query, j.item_id, min(j.record_id) AS _stored FROM judgments j "
            "JOIN _judged_keys k USING (query, item_id) GROUP BY ALL"
        )
    firsts = candidates.group_by(keys, maintain_order=True).agg(
        pl.col("record_id").first().alias("_first")
    )
    rows = (
        rows.join(stored, on=keys, how="left", nulls_equal=False)
        .join(firsts, on=keys, how="left", nulls_equal=False)
        .sort("_row")
    )
    judged_before = pl.coalesce(
        pl.col("_stored"), pl.when(pl.col("_first") != pl.col("record_id")).then("_first")
    )
    quarantined = pl.col("reasons").list.len() > 0
    fate = (
        pl.when(pl.col("_duplicate_of").is_not_null())
        .then(pl.lit(Fate.DUPLICATE.value))
        .when(quarantined)
        .then(pl.lit(Fate.QUARANTINED.value))
        .when(judged_before.is_not_null())
        .then(pl.lit(Fate.DUPLICATE.value))
        .otherwise(pl.lit(Fate.ACCEPTED.value))
    )
    rule = (
        pl.when(pl.col("_duplicate_of").is_not_null())
        .then(pl.lit("exact"))
        .when(~quarantined & judged_before.is_not_null())
        .then(pl.lit(SAME_JUDGMENT))
    )
    return rows.with_columns(
        fate.alias("_fate"),
        pl.coalesce(pl.col("_duplicate_of"), pl.when(~quarantined).then(judged_before)).alias(
            "_duplicate_of"
        ),
        rule.alias("_dup_rule"),
    ).drop("_row", "_stored", "_first")


def _malformed(store: Store, judged: JudgedFile, adapter: str) -> pl.DataFrame:
    """Unparseable records as quarantine rows, or as duplicates when met before."""
    bad = judged.malformed
    if bad.height == 0:
        return pl.DataFrame()
    ids = content_ids(bad, ["text"], f"{adapter}:{KIND}:malformed")
    return bad.select(
        ids.alias("record_id"),
        pl.col(LINE),
        pl.format(f"{judged.source}, line {{}}: {{}}", pl.col(LINE), pl.col("error")).alias(
            "detail"
        ),
    ).with_columns(
        exact_duplicates(ids, _seen(store, ids)),
    )


def import_judgments(
    store: Store,
    settings: Settings,
    source: str | Path,
    adapter: str,
    *,
    progress: Progress | None = None,
) -> ImportResult:
    """Import a judged file's judgements into ``judgments``; the products are not imported
    here (the products import of the same file does that)."""
    started = time.perf_counter()
    say = progress or (lambda _stage: None)
    say(f"reading judgements from {source}")
    judged = read_judgments(source, adapter, settings)
    mark_interrupted(store)
    import_id = open_import(store, KIND, judged.source, adapter, judged.sha256)
    result = ImportResult(import_id, KIND, judged.source, adapter)
    try:
        with store.transaction():
            say("checking judgements")
            assessed = assess_judgments(store, judged)
            _write(store, result, assessed, _malformed(store, judged, adapter), adapter)
            result.pii_scrubbed = judged.pii_scrubbed
            result.seconds = time.perf_counter() - started
            close_import(store, result)
            details = {k: v for k, v in result.to_json().items() if k not in ("drift", "derived")}
            audit.record(store, "import", str(import_id), details)
    except BaseException as error:
        fail_import(store, import_id, error)
        raise
    return result


def _write(
    store: Store, result: ImportResult, assessed: pl.DataFrame, bad: pl.DataFrame, adapter: str
) -> None:
    """Store each fate and count them onto ``result``."""
    now = datetime.now(UTC)
    fate = pl.col("_fate")
    accepted = assessed.filter(fate == Fate.ACCEPTED.value)
    store.append(
        "judgments",
        accepted.select(
            "record_id", "query", "item_id", pl.col("relevance").cast(pl.Int32), "variance",
            pl.lit(adapter).alias("source"), pl.lit(result.import_id).alias("import_id"),
            pl.col(LINE).alias("line"),
        ),
    )  # fmt: skip
    malformed = bad.filter(pl.col("_duplicate_of").is_null()) if bad.height else bad
    held = assessed.filter(fate == Fate.QUARANTINED.value).select(
        "record_id", LINE, "reasons", "detail", "item_id"
    )
    if malformed.height:
        held = pl.concat(
            [
                held,
                malformed.select(
                    "record_id",
                    LINE,
                    pl.lit([Reason.MALFORMED_ROW.value], dtype=pl.List(pl.String)).alias("reasons"),
                    "detail",
                ),
            ],
            how="diagonal_relaxed",
        )
    store.append(
        "quarantine",
        held.select(
            "record_id", pl.lit(KIND).alias("kind"),
            pl.lit(result.import_id).alias("import_id"), pl.col(LINE).alias("line"),
            "reasons", "detail", "item_id",
            # no payload: `quality quarantine release` rebuilds every held row that has one as
            # an event or a product, and a judgement is neither; the detail names file and line
            pl.lit(None, dtype=pl.String).alias("payload"), pl.lit("held").alias("status"),
            pl.lit(now).alias("created_at"),
        ),
    )  # fmt: skip
    repeated = assessed.filter(fate == Fate.DUPLICATE.value).select(
        "record_id", LINE, "_duplicate_of", "_dup_rule"
    )
    if bad.height:
        again = bad.filter(pl.col("_duplicate_of").is_not_null())
        repeated = pl.concat(
            [repeated, again.select("record_id", LINE, "_duplicate_of", _dup_rule=pl.lit("exact"))]
        )
    store.append(
        "duplicates",
        repeated.select(
            "record_id", pl.lit(KIND).alias("kind"),
            pl.lit(result.import_id).alias("import_id"), pl.col(LINE).alias("line"),
            pl.col("_duplicate_of").alias("duplicate_of"), pl.col("_dup_rule").alias("rule"),
        ),
    )  # fmt: skip
    result.input = assessed.height + bad.height
    result.accepted = accepted.height
    result.quarantined = held.height
    result.duplicates = repeated.height
    if held.height:
        counts = held["reasons"].explode().value_counts()
        result.reasons = dict(zip(counts[:, 0].to_list(), counts[:, 1].to_list(), strict=True))
    if repeated.height:
        rules = repeated["_dup_rule"].value_counts()
        result.duplicate_rules = dict(
            zip(rules[:, 0].to_list(), rules[:, 1].to_list(), strict=True)
        )


def stored_judgments(store: Store) -> pl.DataFrame:
    """Every stored judgement: query, item_id, relevance, variance (for methods that learn)."""
    return store.query(
        "SELECT query, item_id, relevance, variance FROM judgments ORDER BY query, item_id"
    )
