"""Search evaluation (`aisle evaluate-search`): the method protocol, the registry and the
harness that scores every method on a held-out click log or judged file (EVALUATION.md).

**Clicks** (Best Buy): every row of the test file is one case, read with the adapter's reader
and mapped by its adapter, never imported: no row is dropped or merged, a row the quality
rules would reject counts and a row that does not parse counts (with no query). Customer ids
are pseudonymised in memory with the store's key (as ingestion does) and queries scrubbed and
normalised as ingestion does. The case's time is ``query_time`` where the file has it, else the
event time. A row whose item the catalog lacks scores 0 whatever a method returns. Methods are
asked for ``max(k, 10)`` items; MAP@k, MRR@10, Recall@10, NDCG@10 and the zero-result rate
(cases with an empty list) follow.

**Judgements** (Crowdflower): each distinct query of the file (after scrubbing and
normalisation; cases numbered in order of first appearance) is one case whose pool is the
file's usable rows with that query, products keyed as the crowdflower adapter keys them; the
products ranked are the file's own (title and description normalised as ingestion does). The
pool is judged row by row: a product judged twice for one query is two rows of the pool, both
at the product's position. The ranking over the pool is completed deterministically: the
method's items in its order (first occurrence counts), then the pool's products it left out
by item_id, and rows of one product in file order. nDCG@10 uses gain 2^(r-1) - 1 (and linear
r - 1) with a log2 discount and the ideal DCG of the pool's own grades; a query whose pool has
no gain is left out of the mean (and counted). Quadratic weighted kappa is computed over all
pool rows for methods that return grades (rounded to the nearest grade 1..4).

The store is opened read-only and nothing of the test file is written anywhere. Baselines
break score ties by item_id (ascending): see ``aisle.search.baselines``.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path
from typing import Any, Final, Protocol

import numpy as np
import polars as pl

from aisle.config import Settings
from aisle.domain import RecordKind
from aisle.errors import AisleError, ConfigError
from aisle.evaluation import search_metrics as sm
from aisle.ingest.adapters import AdaptContext, get_adapter
from aisle.ingest.fetch import fetch_url, is_url, redacted
from aisle.ingest.readers import LINE, read_source
from aisle.privacy.pii import scrub_columns
from aisle.privacy.pseudonymise import Pseudonymiser, load_keys
from aisle.privacy.rotation import pseudonymiser_for
from aisle.quality.coerce import to_records
from aisle.search.documents import search_documents
from aisle.search.judgments import read_judgments
from aisle.storage import Store


@dataclass(frozen=True)
class SearchTask:
    """What a method ranks: the cases, their judged pools (or the whole catalog), the products."""

    cases: pl.DataFrame
    """case (Int64, 0..n-1), query (String), user_id (String | null: the store's pseudonym),
    at (Datetime UTC | null)."""
    pools: pl.DataFrame | None
    """case, item_id: each case's judged pool (Crowdflower); None: rank the whole catalog."""
    products: pl.DataFrame
    """Search documents (aisle.search.documents.conform) of every item that may be ranked."""


@dataclass(frozen=True)
class Ranked:
    """A method's answer: item ids per case, best first (at least k; a pool case: its whole
    pool), and predicted grades 1..4 per pools row (in pools row order) where it predicts."""

    items: list[list[str]]
    grades: np.ndarray | None = None


class SearchMethod(Protocol):
    """A ranking method under evaluation."""

    name: str

    def rank(self, task: SearchTask, k: int) -> Ranked:
        """Rank every case of the task."""
        ...


#: Builds a method from what the store holds (training clicks, judgements) for a task.
MethodFactory = Callable[[Store, Settings, SearchTask], SearchMethod]

#: Every method by its name on the command line: "module:factory", imported on first use.
SEARCH_METHODS: Final[dict[str, str]] = {
    "popularity": "aisle.search.baselines:popularity",
    "bm25-tantivy": "aisle.search.baselines:bm25_tantivy",
    "bm25s": "aisle.search.baselines:bm25s_default",
    "text-only": "aisle.search.methods:text_only",
    "click-aware": "aisle.search.methods:click_aware",
}
#: The cut-off of MRR, Recall and NDCG, whatever the MAP cut-off.
DEPTH: Final = 10
#: The column holding the time of the query, where a click log has one.
QUERY_TIME: Final = "query_time"
CLICKS, JUDGMENTS = "clicks", "judgments"

Progress = Callable[[str], None]


def method_factories(names: Sequence[str] | None) -> tuple[dict[str, MethodFactory], list[str]]:
    """The factories of the named methods (all when none is named) and a note for each one
    whose module cannot be imported yet (skipped, never fatal). An unknown name fails."""
    chosen = list(dict.fromkeys(names)) if names else list(SEARCH_METHODS)
    unknown = [name for name in chosen if name not in SEARCH_METHODS]
    if unknown:
        raise ConfigError(
            f"no search method called {', '.join(map(repr, unknown))}; "
            f"choose from {', '.join(SEARCH_METHODS)}"
        )
    factories: dict[str, MethodFactory] = {}
    notes: list[str] = []
    for name in chosen:
        module, attribute = SEARCH_METHODS[name].split(":")
        try:
            factories[name] = getattr(import_module(module), attribute)
        except (ImportError, AttributeError) as error:
            notes.append(
                f"method {name!r} skipped: {SEARCH_METHODS[name]} is not available ({error})"
            )
    return factories, notes


# -- cases ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cases:
    """A task with its truth: ``truth`` holds case, item_id and, for judgements, relevance."""

    task: SearchTask
    truth: pl.DataFrame
    counts: dict[str, int]
    notes: list[str] = field(default_factory=list)


def _read_raw(source: str, settings: Settings, adapter_name: str, kind: RecordKind) -> Any:
    adapter = get_adapter(adapter_name, settings)
    if kind not in adapter.kinds:
        raise AisleError(
            f"adapter {adapter_name!r} reads {', '.join(sorted(adapter.kinds))}, not {kind}"
        )
    # a download lives outside home, and only until it is read: it holds raw customer ids
    with tempfile.TemporaryDirectory(prefix="aisle-download-") as scratch:
        if is_url(source):
            timeout = settings.ingest.http_timeout_seconds
            path = fetch_url(source, Path(scratch), timeout=timeout)
        else:
            path = adapter.locate(Path(source), kind)
        return adapter, read_source(path, adapter.read_options(kind))


def _pseudonymiser(store: Store, settings: Settings) -> Pseudonymiser:
    """The store's key chain (checked), or the configured one where the store holds no
    pseudonyms yet (a read-only store cannot record it)."""
    if store.scalar("SELECT count(*) FROM key_state"):
        return pseudonymiser_for(store, settings)
    return Pseudonymiser(load_keys(settings))


def click_cases(store: Store, settings: Settings, source: str, adapter_name: str) -> Cases:
    """Every row of a click log as a case over the store's whole catalog."""
    label = redacted(source) if is_url(source) else source
    adapter, raw = _read_raw(source, settings, adapter_name, RecordKind.EVENTS)
    # raw customer ids are replaced in memory, before anything else sees the rows
    frame = _pseudonymiser(store, settings).frame(raw.frame, adapter.user_columns)
    frame, _ = scrub_columns(frame, adapter.text_columns)
    canonical = adapter.events(frame, AdaptContext(settings, label))
    if QUERY_TIME in frame.columns:
        canonical = canonical.with_columns(frame[QUERY_TIME].alias("timestamp"))
    parsing = adapter.parsing
    typed, _ = to_records(canonical, RecordKind.EVENTS, timestamp_format=parsing.timestamp_format,
                          timezone=parsing.timezone, epoch_unit=parsing.epoch_unit)  # fmt: skip
    rows = pl.concat(
        [
            typed.select(LINE, "query", "user_id", pl.col("timestamp").alias("at"), "item_id"),
            raw.malformed.select(pl.col(LINE).cast(pl.Int64)),
        ],
        how="diagonal_relaxed",
    ).sort(LINE)
    rows = rows.with_row_index("case").with_columns(pl.col("case").cast(pl.Int64))
    products = search_documents(store)
    if products.height == 0:
        raise AisleError("the store's catalog is empty: ingest the products before evaluating")
    known = rows["item_id"].is_in(products["item_id"].implode()).fill_null(False)
    return Cases(
        task=SearchTask(rows.select("case", "query", "user_id", "at"), None, products),
        truth=rows.filter(known).select("case", "item_id"),
        counts={
            "rows": rows.height,
            "unknown_items": int((~known).sum()),
            "malformed": raw.malformed.height,
        },
    )


def judged_cases(store: Store, settings: Settings, source: str, adapter_name: str) -> Cases:
    """Each query of a judged file as a case over its own judged pool."""
    judged = read_judgments(source, adapter_name, settings)
    usable = judged.rows.filter(pl.col("reasons").list.len() == 0)
    queries = usable.select("query").unique(maintain_order=True).with_row_index("case")
    pool = usable.join(queries.with_columns(pl.col("case").cast(pl.Int64)), on="query")
    pool = pool.sort("case", LINE)
    cases = queries.select(
        pl.col("case").cast(pl.Int64),
        "query",
        pl.lit(None, dtype=pl.String).alias("user_id"),
        pl.lit(None, dtype=pl.Datetime("us", "UTC")).alias("at"),
    )
    catalog = store.query("SELECT DISTINCT item_id FROM products")["item_id"]
    unknown = int((~pool["item_id"].is_in(catalog.implode())).sum())
    notes = []
    if unknown:
        notes.append(f"{unknown:,} judged rows name products the store's catalog lacks; they are "
                     "ranked from the file's own title and description")  # fmt: skip
    return Cases(
        task=SearchTask(cases, pool.select("case", "item_id"), judged.products),
        truth=pool.select("case", "item_id", "relevance"),
        counts={
            "rows": judged.rows.height + judged.malformed.height,
            "unusable_rows": judged.rows.height - usable.height + judged.malformed.height,
            "unknown_items": unknown,
        },
        notes=notes,
    )


# -- scoring --------------------------------------------------------------------------------


def _positions(items: list[list[str]]) -> pl.DataFrame:
    """case, item_id, position (1-based) of each item's first occurrence in its case's list."""
    lists = pl.Series("item_id", items, dtype=pl.List(pl.String))
    return (
        lists.to_frame()
        .with_row_index("case")
        .with_columns(pl.col("case").cast(pl.Int64))
        .explode("item_id")
        .with_columns(pl.int_range(1, pl.len() + 1).over("case").alias("position"))
        .filter(pl.col("item_id").is_not_null())
        .group_by("case", "item_id")
        .agg(pl.col("position").min())
    )


def click_ranks(items: list[list[str]], truth: pl.DataFrame, cases: int) -> sm.Ranks:
    """Rank of each case's relevant item in its list (0: absent, or no relevant item known)."""
    found = truth.join(_positions(items), on=["case", "item_id"], how="inner")
    ranks = np.zeros(cases, dtype=np.int64)
    ranks[found["case"].to_numpy()] = found["position"].to_numpy()
    return ranks


def pool_ranks(items: list[list[str]], truth: pl.DataFrame) -> pl.DataFrame:
    """The pools' rows (in truth order) with ``rank``: the method's order completed by item_id,
    rows of one product in file order."""
    ordered = (
        truth.with_row_index("_row")
        .join(_positions(items), on=["case", "item_id"], how="left")
        .sort(["case", "position", "item_id", "_row"], nulls_last=True)
        .with_columns(pl.int_range(1, pl.len() + 1).over("case").alias("rank"))
    )
    return ordered.sort("_row").drop("_row", "position")


def _check(name: str, ranked: Ranked, task: SearchTask) -> None:
    if len(ranked.items) != task.cases.height:
        raise AisleError(
            f"method {name!r} ranked {len(ranked.items)} cases, the task has {task.cases.height}"
        )
    rows = task.pools.height if task.pools is not None else 0
    if ranked.grades is not None and len(ranked.grades) != rows:
        raise AisleError(f"method {name!r} graded {len(ranked.grades)} rows, the pools have {rows}")


def click_metrics(ranked: Ranked, cases: Cases, k: int) -> dict[str, float | None]:
    """MAP@k, MRR@10, Recall@10, NDCG@10 and the zero-result rate of one method."""
    ranks = click_ranks(ranked.items, cases.truth, cases.task.cases.height)
    lengths = np.array([len(items) for items in ranked.items], dtype=np.int64)
    return {
        f"map@{k}": sm.map_at_k(ranks, k),
        "mrr": sm.mrr_at_k(ranks, DEPTH),
        f"recall@{DEPTH}": sm.recall_at_k(ranks, DEPTH),
        f"ndcg@{DEPTH}": sm.ndcg_at_k(ranks, DEPTH),
        "zero_results": sm.zero_result_rate(lengths),
    }


def judged_metrics(ranked: Ranked, cases: Cases) -> tuple[dict[str, float | None], int]:
    """nDCG@10 (exponential and linear gain) and kappa of one method; how many queries had
    no gain to rank."""
    rows = pool_ranks(ranked.items, cases.truth)
    exponential, skipped = sm.mean_graded_ndcg(rows, DEPTH, "exponential")
    linear, _ = sm.mean_graded_ndcg(rows, DEPTH, "linear")
    kappa = None
    if ranked.grades is not None:
        truth = cases.truth["relevance"].to_numpy()
        kappa = sm.quadratic_weighted_kappa(truth, np.asarray(ranked.grades))
    return {f"ndcg@{DEPTH}": exponential, f"ndcg@{DEPTH}_linear": linear, "kappa": kappa}, skipped


@dataclass
class SearchEvaluation:
    """The figures of one evaluation run: per method, its metrics and seconds."""

    dataset: str
    protocol: str
    source: str
    k: int
    counts: dict[str, int]
    methods: dict[str, dict[str, float | None]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """One JSON object: dataset, cases, unknown_items, methods and the other counts."""

        def rounded(value: float | None) -> float | None:
            return None if value is None or not np.isfinite(value) else round(value, 6)

        return {
            "dataset": self.dataset,
            "protocol": self.protocol,
            "source": self.source,
            "k": self.k,
            "cases": self.counts["cases"],
            "unknown_items": self.counts["unknown_items"],
            "counts": self.counts,
            "methods": {
                name: {key: rounded(value) for key, value in figures.items()}
                for name, figures in self.methods.items()
            },
            "notes": self.notes,
        }


def evaluate_search(
    store: Store,
    settings: Settings,
    *,
    source: str,
    protocol: str,
    adapter: str,
    methods: Sequence[str] | None = None,
    k: int = 5,
    progress: Progress | None = None,
) -> SearchEvaluation:
    """Score every chosen method on a held-out click log (``protocol="clicks"``) or judged
    file (``"judgments"``). The store is only read."""
    if k < 1:
        raise ConfigError("k must be at least 1")
    if protocol not in (CLICKS, JUDGMENTS):
        raise ConfigError(f"unknown protocol {protocol!r}; use {CLICKS} or {JUDGMENTS}")
    say = progress or (lambda _stage: None)
    factories, notes = method_factories(methods)
    say(f"reading {source}")
    build = click_cases if protocol == CLICKS else judged_cases
    cases = build(store, settings, source, adapter)
    label = redacted(source) if is_url(source) else source
    counts = {"cases": cases.task.cases.height, **cases.counts}
    result = SearchEvaluation(adapter, protocol, label, k, counts, notes=notes + cases.notes)
    for name, factory in factories.items():
        say(f"ranking with {name}")
        started = time.perf_counter()
        ranked = factory(store, settings, cases.task).rank(cases.task, max(k, DEPTH))
        seconds = time.perf_counter() - started
        _check(name, ranked, cases.task)
        if protocol == CLICKS:
            figures = click_metrics(ranked, cases, k)
        else:
            figures, skipped = judged_metrics(ranked, cases)
            counts["queries_without_gain"] = skipped
        result.methods[name] = {**figures, "seconds": seconds}
    return result
