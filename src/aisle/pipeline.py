"""The one place that wires the stages: read, pseudonymise, adapt, assess, store, profile."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from aisle.catalog.integrate import integrate
from aisle.config import Settings
from aisle.domain import EVENT_SCHEMA, PRODUCT_SCHEMA, Fate, Reason, RecordKind
from aisle.errors import AisleError
from aisle.ingest.adapters import AdaptContext, Adapter, get_adapter
from aisle.ingest.fetch import fetch_url, is_url, redacted
from aisle.ingest.identity import content_ids
from aisle.ingest.readers import RawBatch, read_source
from aisle.privacy import audit
from aisle.privacy.consent import apply_withdrawals
from aisle.privacy.erasure import erased_among
from aisle.privacy.pii import scrub_columns
from aisle.privacy.rotation import pseudonymiser_for
from aisle.quality.assess import EventContext, ProductContext, assess_events, assess_products
from aisle.quality.coerce import to_records
from aisle.quality.drift import detect_drift
from aisle.quality.profile import profile_frame, save_profile
from aisle.releases import release_arrived
from aisle.storage import Store
from aisle.storage.ledger import (
    ImportResult,
    close_import,
    fail_import,
    mark_interrupted,
    open_import,
)

__all__ = ["ImportResult", "Importer", "ingest"]

Progress = Callable[[str], None]
_PRODUCT_CONTENT = [
    "item_id",
    "title",
    "description",
    "category_path",
    "brand",
    "price",
    "currency",
    "attributes",
    "source",  # the same record from a second source is that source's word, not a duplicate
]


def _payloads(frame: pl.DataFrame) -> pl.Expr:
    columns = [c for c in frame.columns if not c.startswith("_")]
    return pl.struct(columns).struct.json_encode()


class Importer:
    """Runs imports against one store with one set of settings."""

    def __init__(self, settings: Settings, store: Store, progress: Progress | None = None) -> None:
        self.settings = settings
        self.store = store
        self.pseudonymiser = pseudonymiser_for(store, settings)
        self.progress = progress or (lambda _stage: None)
        self._staged: dict[str, list[pl.DataFrame]] = {}
        self._first_of: dict[str, str] = {}  # current pseudonym -> first-generation one
        self._id_frame = pl.DataFrame()

    def _stage(self, table: str, frame: pl.DataFrame) -> None:
        """Hold ledger rows until the import's end: one large insert per table lets DuckDB
        write them straight to the database file, where a small insert followed by a large
        one in the same transaction would send it all through the checkpoint."""
        if frame.height:
            self._staged.setdefault(table, []).append(frame)

    def _write_staged(self) -> None:
        staged, self._staged = self._staged, {}
        for table, frames in staged.items():
            self.store.append(table, pl.concat(frames, how="diagonal_relaxed"))

    # -- one import --------------------------------------------------------------------------
    def _adapter(self, kind: RecordKind, name: str) -> Adapter:
        adapter = get_adapter(name, self.settings)
        if kind not in adapter.kinds:
            reads = ", ".join(sorted(adapter.kinds))
            raise AisleError(f"adapter {name!r} reads {reads}, not {kind}")
        return adapter

    def run(self, kind: RecordKind | str, source: str | Path, adapter_name: str) -> ImportResult:
        """Import one file or URL of ``kind`` through the named adapter."""
        started = time.perf_counter()
        kind = RecordKind(kind)
        adapter = self._adapter(kind, adapter_name)
        given = str(source)
        # what the ledger says: a URL without its query string or credentials
        label = redacted(given) if is_url(given) else given
        # a download lives outside home, and only until it is read: it holds raw customer ids
        with tempfile.TemporaryDirectory(prefix="aisle-download-") as scratch:
            path = self._resolve(given, adapter, kind, Path(scratch))
            self.progress(f"reading {path.name}")
            raw = read_source(path, adapter.read_options(kind))
        return self._import(kind, raw, adapter, label, started)

    def run_batch(self, kind: RecordKind | str, raw: RawBatch, adapter_name: str) -> ImportResult:
        """Import records already read (an HTTP batch) through the named adapter: the same
        checks, privacy and ledger as a file."""
        started = time.perf_counter()
        kind = RecordKind(kind)
        adapter = self._adapter(kind, adapter_name)
        return self._import(kind, raw, adapter, raw.source, started)

    def _import(
        self, kind: RecordKind, raw: RawBatch, adapter: Adapter, label: str, started: float
    ) -> ImportResult:
        frame, first, self._first_of = self.pseudonymiser.frames(raw.frame, adapter.user_columns)
        # record ids hash the first-generation pseudonyms: they outlive key rotations
        self._id_frame = first
        # free text customers wrote is scrubbed at the same boundary, before anything is kept
        frame, pii_found = scrub_columns(frame, adapter.text_columns)
        raw = RawBatch(frame, label, raw.sha256, raw.format, raw.malformed)
        mark_interrupted(self.store)
        import_id = open_import(self.store, kind.value, label, adapter.name, raw.sha256)
        ctx = AdaptContext(self.settings, label)
        try:
            with self.store.transaction():
                derived: list[ImportResult] = []
                if kind is RecordKind.EVENTS:
                    products = adapter.derived_products(raw.frame, ctx)
                    if products is not None:
                        self.progress("building the catalog")
                        pid = open_import(
                            self.store,
                            RecordKind.PRODUCTS.value,
                            label,
                            adapter.name,
                            raw.sha256,
                        )
                        part = self._products(pid, label, adapter, products, None)
                        part.seconds = time.perf_counter() - started
                        derived.append(part)
                    self.progress("checking events")
                    result = self._events(import_id, label, adapter, raw, ctx)
                else:
                    self.progress("checking products")
                    canonical = adapter.products(raw.frame, ctx)
                    result = self._products(import_id, label, adapter, canonical, raw)
                result.derived = derived
                result.pii_scrubbed = dict(pii_found)
                self._write_staged()
                result.seconds = time.perf_counter() - started
                for part in [*derived, result]:
                    close_import(self.store, part)
                    audit.record(
                        self.store,
                        "import",
                        str(part.import_id),
                        {k: v for k, v in part.to_json().items() if k not in ("drift", "derived")},
                    )
        except BaseException as error:
            self._staged = {}
            self._record_failure(import_id, error)
            raise
        return result

    def _record_failure(self, import_id: int, error: BaseException) -> None:
        """Mark the import failed. The Ctrl-C that stopped it can fire again while this runs
        (a signal DuckDB noticed before Python did), so try a few times; the error that
        stopped the import is still the one raised."""
        for _attempt in range(3):
            try:
                fail_import(self.store, import_id, error)
            except BaseException:  # an interruption or a broken connection: try again
                continue
            return

    def _resolve(self, source: str, adapter: Adapter, kind: RecordKind, scratch: Path) -> Path:
        if is_url(source):
            self.progress(f"downloading {redacted(source)}")
            return fetch_url(
                source,
                scratch,
                timeout=self.settings.ingest.http_timeout_seconds,
            )
        return adapter.locate(Path(source), kind)

    def _malformed(self, raw: RawBatch | None, namespace: str) -> pl.DataFrame:
        if raw is None or raw.malformed.height == 0:
            return pl.DataFrame()
        bad = raw.malformed
        return bad.select(
            content_ids(bad, ["text"], namespace + ":malformed").alias("record_id"),
            pl.col("_line").alias("line"),
            pl.lit([Reason.MALFORMED_ROW.value], dtype=pl.List(pl.String)).alias("reasons"),
            pl.col("error").alias("detail"),
        )

    def _write_outcome(
        self,
        *,
        result: ImportResult,
        assessed: pl.DataFrame,
        schema: dict[str, pl.DataType],
        id_column: str,
        raw: RawBatch | None,
        malformed: pl.DataFrame,
    ) -> pl.DataFrame:
        """Quarantine and duplicate rows, the counts; returns the accepted records."""
        now = datetime.now(UTC)
        kind = result.kind
        fate = pl.col("_fate")
        # whose record it is, for erasure; nothing at all of customers already erased
        erased = pl.col("_erased") if "_erased" in assessed.columns else pl.lit(False)
        owner = (
            pl.when(erased).then(None).otherwise(pl.col("user_id"))
            if "user_id" in assessed.columns
            else pl.lit(None, dtype=pl.String)
        )
        held = assessed.filter(fate == Fate.QUARANTINED.value)
        if raw is not None and "_line" in raw.frame.columns:
            rows = raw.frame.join(held.select("_line"), on="_line", how="semi")
            sources = rows.select("_line", _payloads(raw.frame).alias("payload"))
            held = held.join(sources, on="_line", how="left")
        else:  # records derived from other rows: their canonical form is their source
            held = held.with_columns(pl.struct(list(schema)).struct.json_encode().alias("payload"))
        quarantine = held.select(
            pl.col(id_column).alias("record_id"),
            pl.lit(kind).alias("kind"),
            pl.lit(result.import_id).alias("import_id"),
            pl.col("_line").alias("line"),
            # categorical: a handful of distinct texts, which DuckDB takes much faster
            pl.col("_reasons").cast(pl.List(pl.Categorical)).alias("reasons"),
            pl.col("_detail").cast(pl.Categorical).alias("detail"),
            pl.col("item_id"),
            owner.alias("user_id"),
            pl.col("_hold_until").alias("hold_until"),
            pl.when(erased).then(None).otherwise(pl.col("payload")).alias("payload"),
            pl.lit("held").alias("status"),
            pl.lit(now).alias("created_at"),
        )
        if malformed.height:
            quarantine = pl.concat(
                [
                    quarantine,
                    malformed.with_columns(
                        pl.lit(kind).alias("kind"),
                        pl.lit(result.import_id).alias("import_id"),
                        pl.lit("held").alias("status"),
                        pl.lit(now).alias("created_at"),
                    ),
                ],
                how="diagonal_relaxed",
            )
        duplicates = assessed.filter(fate == Fate.DUPLICATE.value).select(
            pl.col(id_column).alias("record_id"),
            pl.lit(kind).alias("kind"),
            pl.lit(result.import_id).alias("import_id"),
            pl.col("_line").alias("line"),
            pl.col("_duplicate_of").alias("duplicate_of"),
            pl.col("_dup_rule").alias("rule"),
            owner.alias("user_id"),
        )
        self._stage("quarantine", quarantine)
        self._stage("duplicates", duplicates)
        accepted = assessed.filter(fate == Fate.ACCEPTED.value).with_columns(
            pl.lit(result.import_id).alias("import_id")
        )
        result.records = pl.concat(
            [
                quarantine.select(
                    "line",
                    pl.lit(Fate.QUARANTINED.value).alias("fate"),
                    pl.col("reasons").cast(pl.List(pl.String)),
                    pl.col("detail").cast(pl.String),
                ),
                duplicates.select("line", pl.lit(Fate.DUPLICATE.value).alias("fate")),
                accepted.select(
                    pl.col("_line").alias("line"), pl.lit(Fate.ACCEPTED.value).alias("fate")
                )
                if "_line" in accepted.columns
                else pl.DataFrame(),
            ],
            how="diagonal_relaxed",
        )
        result.input = assessed.height + malformed.height
        result.accepted = accepted.height
        result.quarantined = quarantine.height
        result.duplicates = duplicates.height
        if quarantine.height:
            counts = quarantine.select(pl.col("reasons").explode().value_counts()).unnest("reasons")
            result.reasons = dict(zip(counts[:, 0].to_list(), counts[:, 1].to_list(), strict=True))
        if duplicates.height:
            rules = duplicates["rule"].value_counts()
            result.duplicate_rules = dict(
                zip(rules[:, 0].to_list(), rules[:, 1].to_list(), strict=True)
            )
        return accepted

    def _events(
        self, import_id: int, source: str, adapter: Adapter, raw: RawBatch, ctx: AdaptContext
    ) -> ImportResult:
        result = ImportResult(import_id, RecordKind.EVENTS.value, source, adapter.name)
        canonical = adapter.events(raw.frame, ctx)
        if "_bad_encoding" in raw.frame.columns:
            canonical = canonical.with_columns(raw.frame["_bad_encoding"])
        given = "event_id" in canonical.columns and canonical["event_id"].null_count() == 0
        id_frame = canonical if given else self._id_frame
        id_columns = (
            ["event_id"] if given else [c for c in raw.frame.columns if not c.startswith("_")]
        )
        # DuckDB hashes the ids on the other core while Polars casts the records
        with ThreadPoolExecutor(max_workers=1) as hasher:
            ids = hasher.submit(content_ids, id_frame, id_columns, adapter.name)
            parsing = adapter.parsing
            typed, flags = to_records(
                canonical,
                RecordKind.EVENTS,
                timestamp_format=parsing.timestamp_format,
                timezone=parsing.timezone,
                epoch_unit=parsing.epoch_unit,
            )
            typed = typed.with_columns(ids.result().alias("event_id"))
        typed = apply_withdrawals(self.store, typed, self._first_of)
        quality = self.settings.quality
        has_catalog = bool(self.store.scalar("SELECT count(*) > 0 FROM products"))
        if not adapter.checks_catalog:
            has_catalog = False
            result.notes.append(f"unknown-item check off: {adapter.name} has no catalog")
        elif not has_catalog and quality.check_unknown_items:
            result.notes.append("unknown-item check skipped: the catalog is empty")
        seen = self._seen(RecordKind.EVENTS, typed["event_id"], "events", "event_id")
        returners = typed.filter(pl.col("type") == "return").select("user_id", "item_id").unique()
        with self.store.registered("_returners", returners):
            stored_purchases = self.store.query(
                "SELECT e.event_id, e.user_id, e.item_id, e.timestamp FROM events e "
                "JOIN _returners r USING (user_id, item_id) WHERE e.type = 'purchase'"
            )
        known = self.store.query("SELECT item_id FROM products")["item_id"] if has_catalog else None
        event_ctx = EventContext(
            quality,
            datetime.now(UTC),
            known,
            seen,
            stored_purchases,
            self._recent_events(typed, quality.near_duplicate_seconds),
            erased_among(self.store, typed["user_id"], self._first_of),
        )
        assessed = assess_events(typed, flags, event_ctx)
        accepted = self._write_outcome(
            result=result,
            assessed=assessed,
            schema=EVENT_SCHEMA,
            id_column="event_id",
            raw=raw,
            malformed=self._malformed(raw, adapter.name),
        )
        result.kept = accepted.select([*EVENT_SCHEMA, "import_id"])
        self.store.append("events", result.kept)
        self._profile(result, accepted.select(list(EVENT_SCHEMA)))
        return result

    def _seen(self, kind: RecordKind, ids: pl.Series, table: str, column: str) -> pl.Series:
        """Which of these record ids the store has already: kept, held or marked duplicate."""
        with self.store.registered("_batch_ids", ids.rename("id").to_frame()):
            return self.store.query(
                f"SELECT {column} AS id FROM {table} WHERE {column} IN (SELECT id FROM _batch_ids) "
                "UNION ALL SELECT record_id FROM quarantine WHERE kind = ? "
                "AND record_id IN (SELECT id FROM _batch_ids) "
                "UNION ALL SELECT record_id FROM duplicates WHERE kind = ? "
                "AND record_id IN (SELECT id FROM _batch_ids)",
                [kind.value, kind.value],
            )["id"]

    def _recent_events(self, typed: pl.DataFrame, windows: dict[str, float]) -> pl.DataFrame:
        """Stored events that a burst in this batch may have begun with: same user, item and
        type, within the type's window before the batch's first such event."""
        keys = ["user_id", "item_id", "type"]
        spans = (
            typed.filter(pl.col("type").is_in(list(windows)) & pl.col("timestamp").is_not_null())
            .group_by(keys)
            .agg(pl.col("timestamp").min().alias("first"), pl.col("timestamp").max().alias("last"))
            .with_columns(
                pl.col("type")
                .replace_strict(windows, return_dtype=pl.Float64)
                .alias("window_seconds")
            )
        )
        if spans.height == 0:
            return pl.DataFrame()
        # a constant bound lets DuckDB skip the row groups of older events unread
        since = spans.select(
            (pl.col("first") - pl.duration(seconds=pl.col("window_seconds"))).min()
        ).item()
        with self.store.registered("_spans", spans):
            return self.store.query(
                "SELECT e.event_id, e.user_id, e.item_id, e.type, e.timestamp "
                "FROM events e JOIN _spans s USING (user_id, item_id, type) "
                "WHERE e.timestamp >= ? "
                "AND e.timestamp BETWEEN s.first - to_seconds(s.window_seconds) AND s.last",
                [since],
            )

    def _products(
        self,
        import_id: int,
        source: str,
        adapter: Adapter,
        canonical: pl.DataFrame,
        raw: RawBatch | None,
    ) -> ImportResult:
        result = ImportResult(import_id, RecordKind.PRODUCTS.value, source, adapter.name)
        if (
            raw is not None
            and "_bad_encoding" in raw.frame.columns
            and (canonical.height == raw.frame.height)
        ):
            canonical = canonical.with_columns(raw.frame["_bad_encoding"])
        typed, flags = to_records(canonical, RecordKind.PRODUCTS)
        typed = typed.with_columns(
            pl.col("aliases").fill_null(pl.lit([], dtype=pl.List(pl.String))),
            pl.col("source").fill_null(adapter.name),
        ).with_columns(
            content_ids(typed, _PRODUCT_CONTENT, "product").alias("record_id"),
        )
        seen = self._seen(RecordKind.PRODUCTS, typed["record_id"], "product_versions", "record_id")
        assessed = assess_products(typed, flags, ProductContext(self.settings.quality, seen))
        accepted = self._write_outcome(
            result=result,
            assessed=assessed,
            schema=PRODUCT_SCHEMA,
            id_column="record_id",
            raw=raw,
            malformed=self._malformed(raw, adapter.name),
        )
        integrate(self.store, accepted, self.settings.catalog)
        result.released = release_arrived(self.store, self.settings, datetime.now(UTC))
        self._profile(result, accepted.select(list(PRODUCT_SCHEMA)))
        return result

    def _profile(self, result: ImportResult, accepted: pl.DataFrame) -> None:
        profile = profile_frame(accepted, result.kind)
        save_profile(self.store, result.import_id, result.kind, profile)
        if accepted.height == 0:  # nothing arrived, so nothing can have drifted
            return
        drifts = detect_drift(self.store, result.import_id, result.kind, self.settings.quality)
        result.drift = [
            {
                "column": d.column,
                "metric": d.metric,
                "value": round(d.value, 4),
                "threshold": d.threshold,
                "flagged": d.flagged,
            }
            for d in drifts
        ]


def ingest(
    kind: RecordKind | str,
    source: str | Path,
    adapter: str,
    settings: Settings,
    *,
    progress: Progress | None = None,
) -> ImportResult:
    """Import one source into the store under ``settings.home``."""
    with Store(settings.home) as store:
        return Importer(settings, store, progress).run(kind, source, adapter)
