"""What shoppers clicked after each query: time-decayed, smoothed query-item click history.

A query is keyed by its letters and digits only (NFKC, lowercase, no spaces or punctuation),
so "Gears of War 3", "gears-of-war 3" and "gearsofwar3" share their history. Each click weighs
``0.5 ** (age / half_life_days)``, age measured from the newest click known, and counts once
per (customer, query, item). Three kinds of evidence come out per (query, item):

* the query's own history: the item's share of the query's clicks, smoothed towards the
  item's overall share (``prior`` pseudo-clicks), and the weight behind it;
* the words' history: for each word of the query, the item's smoothed share of the clicks of
  queries holding that word, combined as a mean log (naive Bayes over words), for queries
  never seen whole;
* the item's recent popularity.

The tables are small frames (key, item, weight) saved as Parquet; lookups go through dicts
of arrays built once on load.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import numpy as np
import polars as pl

#: Feature names, in the order ``ClickHistory.features`` returns their columns.
CLICK_FEATURES: Final = (
    "query_share",  # smoothed share of the query's clicks
    "query_log_clicks",  # log(1 + decayed clicks of the item for the query)
    "query_weight",  # log(1 + decayed clicks of the query): how much to trust the share
    "query_rank",  # the item's rank in the query's history (1 = most clicked; 0 if absent)
    "words_log_share",  # mean over the query's words of log smoothed share
    "item_recent",  # log(1 + the item's decayed clicks over all queries)
)
_WORDS: Final = re.compile(r"[^\W_]+")
_KEY_DROP: Final = r"[^\p{L}\p{N}]+"


def query_key(text: str) -> str:
    """A query's key: NFKC, lowercase, letters and digits only."""
    return "".join(_WORDS.findall(unicodedata.normalize("NFKC", text).lower()))


def query_words(text: str) -> list[str]:
    """A query's words as the history counts them (distinct, in order)."""
    return list(dict.fromkeys(_WORDS.findall(unicodedata.normalize("NFKC", text).lower())))


def query_key_expr(column: str) -> pl.Expr:
    """``query_key`` of a string column, as a polars expression."""
    return pl.col(column).str.normalize("NFKC").str.to_lowercase().str.replace_all(_KEY_DROP, "")


@dataclass
class _Lookup:
    """Per key: item columns, their weights and the key's total, for fast access."""

    items: dict[str, np.ndarray] = field(default_factory=dict)
    weights: dict[str, np.ndarray] = field(default_factory=dict)
    totals: dict[str, float] = field(default_factory=dict)

    @classmethod
    def of(cls, frame: pl.DataFrame, index: dict[str, int]) -> _Lookup:
        lookup = cls()
        if not frame.height:
            return lookup
        ordered = frame.with_columns(
            pl.col("item_id").replace_strict(index, default=-1, return_dtype=pl.Int64).alias("col")
        ).filter(pl.col("col") >= 0)
        grouped = (
            ordered.sort(["key", "weight", "col"], descending=[False, True, False])
            .group_by("key", maintain_order=True)
            .agg(pl.col("col"), pl.col("weight"))
        )
        for key, cols, weights in grouped.iter_rows():
            lookup.items[key] = np.asarray(cols, dtype=np.int64)
            lookup.weights[key] = np.asarray(weights, dtype=np.float64)
            lookup.totals[key] = float(np.sum(weights))
        return lookup


class ClickHistory:
    """Query-item click history of a store's click events (see the module's notes)."""

    def __init__(self, *, half_life_days: float = 14.0, prior: float = 2.0) -> None:
        self.half_life_days = half_life_days
        self.prior = prior
        self.now: datetime | None = None
        self.queries = pl.DataFrame(
            schema={"key": pl.String, "item_id": pl.String, "weight": pl.Float64}
        )
        self.words = self.queries.clear()
        self.items = pl.DataFrame(schema={"item_id": pl.String, "weight": pl.Float64})

    def fit(self, clicks: pl.DataFrame, now: datetime | None = None) -> ClickHistory:
        """Learn from clicks: a frame with query, item_id, user_id and timestamp."""
        typed = clicks.select(
            *(pl.col(name).cast(pl.String) for name in ("query", "item_id", "user_id")),
            pl.col("timestamp").cast(pl.Datetime("us", "UTC")),
        )
        usable = typed.filter(
            pl.col("query").is_not_null() & pl.col("item_id").is_not_null()
        ).with_columns(query_key_expr("query").alias("key"))
        usable = usable.filter(pl.col("key") != "")
        self.now = now or (usable["timestamp"].max() if usable.height else None)  # type: ignore[assignment]
        if self.now is not None and usable.height:
            age = (pl.lit(self.now) - pl.col("timestamp")).dt.total_seconds() / 86_400
            usable = usable.with_columns((0.5 ** (age.clip(0) / self.half_life_days)).alias("w"))
        else:
            usable = usable.with_columns(pl.lit(1.0).alias("w"))
        # one customer counts once per query and item: their latest click
        once = usable.group_by("user_id", "key", "item_id").agg(
            pl.col("w").max(), pl.col("query").last()
        )
        self.queries = once.group_by("key", "item_id").agg(pl.col("w").sum().alias("weight"))
        words = (
            once.with_columns(
                pl.col("query")
                .str.normalize("NFKC")
                .str.to_lowercase()
                .str.extract_all(r"[\p{L}\p{N}]+")
                .list.unique()
                .alias("word")
            )
            .explode("word")
            .filter(pl.col("word").is_not_null())
        )
        self.words = words.group_by(pl.col("word").alias("key"), "item_id").agg(
            pl.col("w").sum().alias("weight")
        )
        self.items = once.group_by("item_id").agg(pl.col("w").sum().alias("weight"))
        return self

    # -- lookups --------------------------------------------------------------------------
    def index(self, item_ids: Sequence[str]) -> ClickIndex:
        """Lookups keyed to these item columns (the catalog's order)."""
        return ClickIndex(self, list(item_ids))

    # -- artifacts ------------------------------------------------------------------------
    def save(self, folder: Path) -> None:
        """Three Parquet tables and a manifest."""
        folder.mkdir(parents=True, exist_ok=True)
        self.queries.write_parquet(folder / "queries.parquet")
        self.words.write_parquet(folder / "words.parquet")
        self.items.write_parquet(folder / "items.parquet")
        manifest = {
            "half_life_days": self.half_life_days,
            "prior": self.prior,
            "now": self.now.isoformat() if self.now else None,
            "queries": self.queries.height,
        }
        (folder / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> ClickHistory:
        """The history saved in ``folder``."""
        manifest: dict[str, Any] = json.loads((folder / "manifest.json").read_text("utf-8"))
        history = cls(half_life_days=manifest["half_life_days"], prior=manifest["prior"])
        history.now = datetime.fromisoformat(manifest["now"]) if manifest["now"] else None
        history.queries = pl.read_parquet(folder / "queries.parquet")
        history.words = pl.read_parquet(folder / "words.parquet")
        history.items = pl.read_parquet(folder / "items.parquet")
        return history


class ClickIndex:
    """A click history's lookups over a fixed list of item columns."""

    def __init__(self, history: ClickHistory, item_ids: list[str]) -> None:
        self.prior = history.prior
        position = {item: i for i, item in enumerate(item_ids)}
        self.queries = _Lookup.of(history.queries, position)
        self.words = _Lookup.of(history.words, position)
        self.recent = np.zeros(len(item_ids), dtype=np.float64)
        items = history.items.with_columns(
            pl.col("item_id").replace_strict(position, default=-1, return_dtype=pl.Int64)
        ).filter(pl.col("item_id") >= 0)
        self.recent[items["item_id"].to_numpy()] = items["weight"].to_numpy()
        total = float(self.recent.sum())
        # every item's prior share: its recent popularity, with a floor for unclicked ones
        self.share = (self.recent + 0.1) / (total + 0.1 * len(item_ids))

    def grow(self, count: int) -> None:
        """Make room for ``count`` new item columns at the end (products nobody clicked yet)."""
        if count <= 0:
            return
        floor = float(self.share.min()) if len(self.share) else 1.0
        self.recent = np.concatenate([self.recent, np.zeros(count)])
        self.share = np.concatenate([self.share, np.full(count, floor)])

    def clicked(self, query: str, limit: int = 50) -> np.ndarray:
        """Columns of the items most clicked after this query, most first."""
        return self.queries.items.get(query_key(query), np.zeros(0, dtype=np.int64))[:limit]

    def features(self, query: str, columns: np.ndarray) -> np.ndarray:
        """``CLICK_FEATURES`` of these item columns for this query: shape (len(columns), 6)."""
        columns = np.asarray(columns, dtype=np.int64)
        out = np.zeros((len(columns), len(CLICK_FEATURES)), dtype=np.float32)
        prior_share = self.share[columns]
        key = query_key(query)
        weights = self._weights(self.queries, key, columns)
        total = self.queries.totals.get(key, 0.0)
        out[:, 0] = (weights + self.prior * prior_share) / (total + self.prior)
        out[:, 1] = np.log1p(weights)
        out[:, 2] = np.log1p(total)
        if key in self.queries.items:
            rank = np.zeros(len(self.share), dtype=np.float32)
            known = self.queries.items[key]
            rank[known] = np.arange(1, len(known) + 1)
            out[:, 3] = rank[columns]
        words = query_words(query)
        if words:
            logs = np.zeros(len(columns), dtype=np.float64)
            for word in words:
                w = self._weights(self.words, word, columns)
                t = self.words.totals.get(word, 0.0)
                logs += np.log(np.maximum((w + self.prior * prior_share) / (t + self.prior), 1e-9))
            out[:, 4] = logs / len(words)
        else:
            out[:, 4] = np.log(prior_share)
        out[:, 5] = np.log1p(self.recent[columns])
        return out

    @staticmethod
    def _weights(lookup: _Lookup, key: str, columns: np.ndarray) -> np.ndarray:
        items = lookup.items.get(key)
        if items is None:
            return np.zeros(len(columns), dtype=np.float64)
        dense = np.zeros(int(max(items.max(), columns.max(initial=0))) + 1, dtype=np.float64)
        dense[items] = lookup.weights[key]
        picked: np.ndarray = dense[columns]
        return picked
