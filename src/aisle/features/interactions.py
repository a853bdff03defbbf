"""Interactions: accepted, consented behaviour turned into what recommenders fit on.

Each event weighs its type's weight (``[recommend.event_weights]``), decayed by age when a half
life is set; a matched return cancels its purchase in proportion to the quantity returned.
Only events whose customer consented to personalisation count. The result is a weighted
user x item matrix, the time-ordered log behind it (for sequential models) and the id maps.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any

import numpy as np
import polars as pl
from scipy import sparse

from aisle.config import RecommendSettings
from aisle.storage import Store

#: Columns of the events frame interactions are built from.
EVENT_COLUMNS = ("event_id", "user_id", "item_id", "type", "value", "timestamp", "ref_event_id")


def load_events(
    store: Store,
    *,
    sources: Sequence[str] | None = None,
    until: datetime | None = None,
) -> pl.DataFrame:
    """Accepted events with a customer and an item whose customer consented to
    personalisation (bots, duplicates and quarantined records never reach the events table)."""
    where, params = "", list[Any]()
    if sources:
        where += " AND source IN (SELECT unnest(?::VARCHAR[]))"
        params.append(list(sources))
    if until is not None:
        where += " AND timestamp < ?"
        params.append(until)
    return store.query(
        f"SELECT {', '.join(EVENT_COLUMNS)} FROM events WHERE user_id IS NOT NULL "
        f"AND item_id IS NOT NULL AND consent_personalisation {where} "
        "ORDER BY user_id, timestamp, event_id",
        params,
    )


@dataclass(frozen=True)
class Interactions:
    """Users x items: ``matrix`` holds summed weights; ``log`` the positive events in time
    order (user, item as indexes; weight; value; timestamp)."""

    users: list[str]
    items: list[str]
    matrix: sparse.csr_matrix
    log: pl.DataFrame

    @property
    def n_users(self) -> int:
        """Number of users."""
        return len(self.users)

    @property
    def n_items(self) -> int:
        """Number of items (every known item, with or without interactions)."""
        return len(self.items)

    @cached_property
    def user_index(self) -> dict[str, int]:
        """User id -> row."""
        return {u: i for i, u in enumerate(self.users)}

    @cached_property
    def item_index(self) -> dict[str, int]:
        """Item id -> column."""
        return {item: i for i, item in enumerate(self.items)}

    @cached_property
    def data_hash(self) -> str:
        """A digest of what was learnt from: ids, matrix structure and weights."""
        digest = hashlib.sha256()
        for part in (self.users, self.items):
            digest.update("\x1f".join(part).encode())
        for array in (self.matrix.indptr, self.matrix.indices, self.matrix.data):
            digest.update(np.ascontiguousarray(array).tobytes())
        return digest.hexdigest()[:16]

    def sequences(self) -> list[np.ndarray]:
        """Per user (by row), the items interacted with in time order."""
        grouped = (
            self.log.group_by("user", maintain_order=True)
            .agg(pl.col("item"))
            .join(pl.DataFrame({"user": np.arange(self.n_users, dtype=np.int32)}), on="user",
                  how="right")
            .sort("user")
        )  # fmt: skip
        return [
            np.asarray(items if items is not None else [], dtype=np.int32)
            for items in grouped["item"].to_list()
        ]

    def seen(self, user: int) -> np.ndarray:
        """The items a user (row) interacted with."""
        start, end = self.matrix.indptr[user], self.matrix.indptr[user + 1]
        return np.asarray(self.matrix.indices[start:end])


def weigh(events: pl.DataFrame, settings: RecommendSettings) -> pl.DataFrame:
    """Each event's weight: type weight x time decay, purchases reduced by their returns;
    returns themselves and unweighted types drop out."""
    returned = (
        events.filter(pl.col("type") == "return")
        .group_by("ref_event_id")
        .agg(pl.col("value").fill_null(1).sum().alias("_returned"))
        .rename({"ref_event_id": "event_id"})
    )
    weighted = (
        events.filter(pl.col("type") != "return")
        .join(returned, on="event_id", how="left")
        .with_columns(
            pl.col("type")
            .replace_strict(settings.event_weights, default=0.0, return_dtype=pl.Float64)
            .alias("weight")
        )
    )
    kept = (1 - pl.col("_returned").fill_null(0) / pl.col("value").fill_null(1).clip(1)).clip(0, 1)
    weighted = weighted.with_columns(
        pl.when(pl.col("type") == "purchase")
        .then(pl.col("weight") * kept)
        .otherwise("weight")
        .alias("weight")
    )
    if settings.half_life_days:
        age = (pl.col("timestamp").max() - pl.col("timestamp")).dt.total_seconds() / 86_400
        weighted = weighted.with_columns(
            pl.col("weight") * (0.5 ** (age / settings.half_life_days))
        )
    return weighted.filter(pl.col("weight") > 0).drop("_returned")


def build_interactions(
    events: pl.DataFrame,
    settings: RecommendSettings,
    *,
    items: Sequence[str] = (),
) -> Interactions:
    """Interactions from events (see ``load_events``); ``items`` adds known items that may have
    no interactions (the catalog, or a test file's items) so models can rank them too."""
    weighted = weigh(events, settings)
    users = weighted["user_id"].unique(maintain_order=True).sort().to_list()
    item_ids = sorted(set(weighted["item_id"].unique().to_list()) | set(items))
    user_map = pl.DataFrame({"user_id": users, "user": np.arange(len(users), dtype=np.int32)})
    item_map = pl.DataFrame({"item_id": item_ids, "item": np.arange(len(item_ids), dtype=np.int32)})
    log = (
        weighted.join(user_map, on="user_id")
        .join(item_map, on="item_id")
        .sort(["user", "timestamp", "event_id"])
        .select("user", "item", pl.col("weight").cast(pl.Float32), "value", "timestamp")
    )
    summed = log.group_by("user", "item").agg(pl.col("weight").sum())
    matrix = sparse.csr_matrix(
        (summed["weight"].to_numpy(), (summed["user"].to_numpy(), summed["item"].to_numpy())),
        shape=(len(users), len(item_ids)),
        dtype=np.float32,
    )
    matrix.sort_indices()
    return Interactions(users, item_ids, matrix, log)


def restrict(data: Interactions, keep: pl.Series) -> Interactions:
    """The same users and items (same rows and columns) with only the log rows where ``keep``
    is true: an inner training split that indexes like the whole."""
    log = data.log.filter(keep)
    summed = log.group_by("user", "item").agg(pl.col("weight").sum())
    matrix = sparse.csr_matrix(
        (summed["weight"].to_numpy(), (summed["user"].to_numpy(), summed["item"].to_numpy())),
        shape=(data.n_users, data.n_items),
        dtype=np.float32,
    )
    matrix.sort_indices()
    return Interactions(list(data.users), list(data.items), matrix, log)


def leave_last_out(events: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Each user's latest event (ties broken by event id) held out; users with one event stay
    whole in training."""
    ordered = events.sort(["user_id", "timestamp", "event_id"])
    last = pl.int_range(pl.len()).over("user_id") == pl.len().over("user_id") - 1
    several = pl.len().over("user_id") > 1
    test = ordered.filter(last & several)
    return ordered.filter(~(last & several)), test


def time_split(events: pl.DataFrame, cut: datetime) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Events before the cut, and from the cut on."""
    return events.filter(pl.col("timestamp") < cut), events.filter(pl.col("timestamp") >= cut)
