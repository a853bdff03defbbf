"""The running service: one store, the live bundle, recent activity, and the writes.

Threads: requests that only read (search, recommendations) run on the event loop against the
live bundle. Writes (events, products, erasure) run in worker threads and hold the store's
lock, the one DuckDB connection being single-writer; what they change in memory (the search
engine, the models' customers) is applied afterwards on the loop, so a read never sees half
of it. Retraining fits outside the lock, in a thread niced below the requests', and swaps the
bundle in one assignment.
"""

from __future__ import annotations

import functools
import gc
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import polars as pl

from aisle.config import Settings
from aisle.domain import RecordKind
from aisle.errors import InputError
from aisle.ingest.readers import RawBatch
from aisle.ingest.structured import read_json_array, read_jsonl
from aisle.models import registry
from aisle.pipeline import Importer
from aisle.privacy import audit
from aisle.privacy.erasure import erase
from aisle.privacy.rotation import pseudonymiser_for
from aisle.serving.batching import GroupCommit
from aisle.serving.experiments import Assignment, Experiments, ExposureLog
from aisle.serving.ingesting import BatchOutcome, Span, answer_for, batch_size, merge
from aisle.serving.live import Live, load_live, load_models
from aisle.serving.metrics import Gauge, Metrics
from aisle.serving.priority import run_niced
from aisle.serving.realtime import Activity
from aisle.storage import Store
from aisle.storage.ledger import ImportResult

log = logging.getLogger("aisle.serving")


def settle_memory() -> None:
    """Hide what the process now holds from the garbage collector: what is loaded to serve
    (models, index, recent activity) lives on, and a full collection would walk its millions
    of objects (a stall of up to ~0.5 s under load) to find no garbage among them. Called at
    start and after a swap, once the collection has freed what the swap let go."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def parse_batch(body: bytes, content_type: str, source: str, key: str) -> RawBatch:
    """A request body as read records: a JSON array, ``{key: [...]}``, or NDJSON lines."""
    text = body.lstrip()
    if not text:
        raise InputError("the request body is empty", source=source, field=key)
    try:
        if "ndjson" in content_type or "jsonl" in content_type:
            frame, malformed = read_jsonl(body, source)
        else:
            if text.startswith(b"{"):
                text = _unwrap(text, key, source)
            frame, malformed = read_json_array(text, source)
    except InputError as error:
        error.field = error.field or key  # the body as a whole is at fault
        raise
    except (ValueError, pl.exceptions.PolarsError) as error:
        raise InputError(f"the body is not valid JSON: {error}", source=source,
                         field=key) from error  # fmt: skip
    if all(column.startswith("_") for column in frame.columns):
        # no record has a single field: the importer has nothing to check or keep
        raise InputError("the batch holds no JSON object with a field", source=source,
                         field=key)  # fmt: skip
    unfit = next((c for c in frame.columns if not c or '"' in c or not c.isprintable()), None)
    if unfit is not None:
        # a field name no shop sends on purpose, and Arrow refuses a NUL in one
        raise InputError(f"the field name {unfit!r} is empty or holds a quote or control "
                         "character", source=source, field=key)  # fmt: skip
    return RawBatch(frame, source, "", "json", malformed)


def _unwrap(text: bytes, key: str, source: str) -> bytes:
    import orjson  # noqa: PLC0415

    try:
        parsed = orjson.loads(text)
    except orjson.JSONDecodeError as error:
        raise InputError(f"the body is not valid JSON: {error}", source=source) from error
    records = parsed.get(key) if isinstance(parsed, dict) else None
    if not isinstance(records, list):
        raise InputError(f"expected an array of records under {key!r}", source=source, field=key)
    return orjson.dumps(records)


class Service:
    """Everything ``aisle serve`` runs, minus HTTP."""

    def __init__(self, settings: Settings, *, search: bool = True) -> None:
        self.settings = settings
        self.store = Store(settings.home)
        self.lock = threading.RLock()
        self.pseudonymiser = pseudonymiser_for(self.store, settings)
        self.importer = Importer(settings, self.store)
        self.event_batches: GroupCommit[RawBatch, BatchOutcome] = GroupCommit(
            self._import_events, max_records=settings.serve.max_batch_events
        )
        self.metrics = Metrics()
        self.activity = Activity()
        self.experiments = Experiments.from_settings(settings)
        self.exposures = ExposureLog()
        self.live: Live = load_live(self.store, search=search)
        self.started_at = datetime.now(UTC)
        self.swaps = 0
        self._retraining = threading.Lock()
        self._retrained_at_events = 0
        self._last_retrain = time.monotonic()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._replay_recent()

    # -- the store ------------------------------------------------------------------------
    @contextmanager
    def store_access(self) -> Iterator[Store]:
        """The store, held by this thread until the block ends."""
        with self.lock:
            yield self.store

    def close(self) -> None:
        """Write what is buffered and close the store."""
        self.flush()
        with self.lock:
            self.store.close()

    def flush(self) -> None:
        """Write buffered exposures."""
        with self.lock:
            self.exposures.flush(self.store)

    def _replay_recent(self) -> None:
        """Events imported after the oldest live model was trained become recent activity."""
        since = self.live.oldest_training()
        if since is None:
            return
        with self.lock:
            recent = self.store.query(
                "SELECT e.user_id, e.item_id, e.type, e.timestamp FROM events e "
                "JOIN imports i USING (import_id) WHERE i.started_at > ? ORDER BY e.timestamp",
                [since],
            )
        self.activity.preload(recent)

    # -- identities -----------------------------------------------------------------------
    def pseudonym(self, raw: str) -> str:
        """The customer's pseudonym (the raw id goes no further than this call)."""
        return self.pseudonymiser.one(raw.strip())

    # -- writes (worker threads) ----------------------------------------------------------
    def ingest(self, kind: RecordKind, raw: RawBatch, adapter: str = "canonical") -> BatchOutcome:
        """Import a batch through the file path's checks; the accepted events become recent
        activity at once. Event batches posted together are imported together."""
        if kind is RecordKind.EVENTS and adapter == "canonical":
            return self.event_batches.submit(raw, batch_size(raw))
        with self.lock:
            result = self.importer.run_batch(kind, raw, adapter)
            accepted = pl.DataFrame()
            if kind is RecordKind.PRODUCTS:
                accepted = self.store.query(
                    "SELECT DISTINCT item_id FROM products WHERE import_id = ?",
                    [result.import_id],
                )
                if accepted.height:
                    with self.store.registered("_back", accepted):
                        self.store.execute(
                            "DELETE FROM product_removals "
                            "WHERE item_id IN (SELECT item_id FROM _back)"
                        )
        if kind is RecordKind.EVENTS:
            self._record_events(result)
        outcome = answer_for(result, Span(0, batch_size(raw)))
        if kind is RecordKind.PRODUCTS:
            outcome.accepted_items = accepted["item_id"].to_list()
        return outcome

    def _import_events(self, raws: Sequence[RawBatch]) -> list[BatchOutcome]:
        """Several requests' event batches as one import; each request's own answer."""
        merged, spans = merge(raws)
        with self.lock:
            result = self.importer.run_batch(RecordKind.EVENTS, merged, "canonical")
        self._record_events(result)
        self.metrics.count("event_imports")
        self.metrics.count("event_posts", len(raws))
        return [answer_for(result, span) for span in spans]

    def _record_events(self, result: ImportResult) -> None:
        if result.kept is not None:
            self.activity.record(result.kept.select("user_id", "item_id", "type", "timestamp"))
        for name, n in (("accepted", result.accepted), ("quarantined", result.quarantined),
                        ("duplicate", result.duplicates)):  # fmt: skip
            self.metrics.count("events", n, fate=name)

    def product_documents(self, item_ids: Sequence[str]) -> pl.DataFrame:
        """Search documents of these products as the catalog now holds them."""
        from aisle.search.documents import search_documents  # noqa: PLC0415

        with self.lock:
            return search_documents(self.store, item_ids)

    def remove_products(self, item_ids: Sequence[str]) -> list[str]:
        """Take products off sale: out of the catalog for search and the next training."""
        with self.lock:
            frame = pl.DataFrame({"item_id": list(item_ids)}, schema={"item_id": pl.String})
            with self.store.registered("_gone", frame):
                known = self.store.query(
                    "SELECT DISTINCT item_id FROM products WHERE item_id IN "
                    "(SELECT item_id FROM _gone) AND item_id NOT IN "
                    "(SELECT item_id FROM product_removals)"
                )["item_id"].to_list()
            if known:
                now = datetime.now(UTC)
                rows = pl.DataFrame({"item_id": known, "removed_at": [now] * len(known)})
                with self.store.transaction():
                    self.store.append("product_removals", rows)
                    audit.record(self.store, "product-removal", f"{len(known)} products",
                                 {"items": known})  # fmt: skip
        return known

    def erase(self, raw_user: str) -> tuple[dict[str, Any], str]:
        """Right to erasure: the store, snapshots, every registered model version."""
        pseudonym = self.pseudonym(raw_user)
        with self.lock:
            self.exposures.flush(self.store)
            receipt = erase(
                self.store,
                pseudonym,
                subject=self.pseudonymiser.first(raw_user.strip()),
                forget_in_models=lambda who: registry.forget_user(self.store, who),
            )
        self.activity.forget(pseudonym)
        return receipt.to_json(), pseudonym

    # -- in-memory changes (event loop) -----------------------------------------------------
    def apply_products(self, documents: pl.DataFrame) -> None:
        """Changed or new products into the live search engine and answers."""
        rows = documents.select("item_id", "title", "price").iter_rows()
        self.live.products.update({item: (title, price) for item, title, price in rows})
        if self.live.engine is not None and documents.height:
            self.live.engine.upsert(documents)

    def apply_removals(self, item_ids: Sequence[str]) -> None:
        """Removed products out of the live search engine."""
        if self.live.engine is not None and item_ids:
            self.live.engine.remove(list(item_ids))

    # -- which model answers ----------------------------------------------------------------
    def model_for(
        self, surface: str, pseudonym: str, asked: str | None
    ) -> tuple[str, Assignment | None]:
        """The model that answers this customer on this surface, and the experiment's arm
        that chose it; a model named in the request wins and is no experiment's."""
        if asked:
            return asked, None
        arm = self.experiments.variant_for(surface, pseudonym)
        if arm is None:
            return self.settings.serve.recommender, None
        return arm.model, arm

    def forget_in_live(self, pseudonym: str) -> None:
        """The erased customer out of the models in service (their artifacts already are)."""
        for served in self.live.models.values():
            served.model.forget_user(pseudonym)

    # -- the lifecycle ----------------------------------------------------------------------
    def reload_models(self) -> dict[str, int]:
        """Load the registry's production versions and swap them in at once."""
        with self.lock:
            models = load_models(self.store)
        current = self.live
        self.live = Live(models, current.engine, current.suggester, current.index_version,
                         current.products)  # fmt: skip
        self.swaps += 1
        del current
        settle_memory()
        log.info("models swapped in: %s", self.live.versions())
        return self.live.versions()

    def retrain(self, names: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Retrain the served models (or these) behind the validation gate; swap in what
        passed. One retrain at a time; requests go on meanwhile."""
        from aisle.models.lifecycle import retrain  # noqa: PLC0415 (training code, loaded late)

        with self._retraining:
            marker = self.activity.marker()
            events_before = self.activity.events
            outcomes = []
            for name in names or sorted(self.live.models):
                fit = functools.partial(retrain, self.store_access, self.settings, name,
                                        tolerance=self.settings.serve.gate_tolerance)  # fmt: skip
                outcome = run_niced(fit, name="aisle-retrain-fit")  # requests come first
                self.metrics.count("retrains", model=name, promoted=str(outcome.promoted).lower())
                outcomes.append(outcome)
            self._retrained_at_events = events_before
            promoted = {o.name for o in outcomes if o.promoted}
            if promoted:
                self.reload_models()
                # recent items stay until every model in service has learnt them
                if promoted >= set(self.live.models):
                    self.activity.drop_until(marker)
        return [o.to_json() for o in outcomes]

    # -- background work --------------------------------------------------------------------
    def start_background(self) -> None:
        """Flush exposures every second; retrain on the schedule and on data volume."""
        self._stop.clear()
        self._threads = [
            threading.Thread(target=self._flushing, name="aisle-flush", daemon=True),
            threading.Thread(target=self._retraining_loop, name="aisle-retrain", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def stop_background(self) -> None:
        """Stop the background threads (a retrain under way finishes first)."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=600)
        self._threads = []

    def _flushing(self) -> None:
        while not self._stop.wait(1.0):
            try:
                self.flush()
            except Exception as error:  # a failed flush must not stop the next
                log.error("exposure flush failed: %s", error)

    def retrain_due(self, now: float) -> bool:
        """Whether the schedule or the data volume calls for a retrain."""
        serve = self.settings.serve
        every = serve.retrain_every_minutes
        if every is not None and now - self._last_retrain >= every * 60:
            return True
        after = serve.retrain_after_events
        return after is not None and self.activity.events - self._retrained_at_events >= after

    def _retraining_loop(self) -> None:
        while not self._stop.wait(1.0):
            now = time.monotonic()
            if not self.live.models or not self.retrain_due(now):
                continue
            self._last_retrain = now
            try:
                self.retrain()
            except Exception as error:  # the service goes on with its models
                log.error("background retrain failed: %s", error)

    def gauges(self) -> list[Gauge]:
        """Readings for /metrics."""
        readings: list[Gauge] = [
            ("customers_with_recent_activity", {}, float(self.activity.customers)),
            ("model_swaps", {}, float(self.swaps)),
        ]
        readings += [("model_version", {"model": n}, float(v))
                     for n, v in self.live.versions().items()]  # fmt: skip
        if self.live.engine is not None:
            engine = self.live.engine
            searchable = len(engine.catalog.item_ids) - int(engine.removed.sum())
            readings.append(("searchable_products", {}, float(searchable)))
        return readings
