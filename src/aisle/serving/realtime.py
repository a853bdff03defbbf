"""What shoppers did since the live models were trained: recent items per customer, trending.

Serving answers from the trained models plus this layer, so an event changes a customer's
recommendations at once: SASRec reads the latest sequence, ALS folds the customer in and
item-kNN scores from the recent items, all through the models' ``score_history``. Trending
is a decayed count of behaviour per item, updated on every event.
"""

from __future__ import annotations

import math
import threading
import time
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from itertools import repeat
from operator import itemgetter
from typing import Final

import numpy as np
import polars as pl

#: How much each kind of behaviour says about taste, for trending.
TREND_WEIGHTS: Final = {"view": 1.0, "click": 1.0, "add_to_cart": 3.0, "purchase": 5.0}
#: Behaviour that enters a customer's recent sequence (what they looked at or bought).
SEQUENCE_TYPES: Final = ("view", "click", "add_to_cart", "purchase", "rating")
#: Items kept per customer: longer sequences than any model reads.
RECENT_ITEMS: Final = 200
#: Customers whose recent items are kept, at most: memory stays bounded between retrains (the
#: least recently active are dropped first; the store keeps their events for the next one).
MAX_CUSTOMERS: Final = 1_000_000


class Activity:
    """Recent items per customer (pseudonym) and decayed item counts; thread-safe."""

    def __init__(
        self, *, half_life_hours: float = 24.0, max_customers: int = MAX_CUSTOMERS
    ) -> None:
        self.max_customers = max_customers
        # (batch number, item) per customer, oldest first; lists (not deques): a batch of
        # mostly new customers makes thousands of them
        self._recent: dict[str, list[tuple[int, str]]] = {}
        self._sequence = 0  # numbers every recorded batch, so a retrain can drop what it saw
        self._item_index: dict[str, int] = {}
        self._items: list[str] = []
        self._trend = np.zeros(0, dtype=np.float64)
        self._decay_per_second = math.log(2) / (half_life_hours * 3600.0)
        self._decayed_at = time.monotonic()
        self._lock = threading.Lock()
        self.events = 0  # behaviour recorded since start: the retrain trigger counts it

    # -- writing ----------------------------------------------------------------------------
    def record(self, events: pl.DataFrame) -> None:
        """Accepted events (user_id, item_id, type, timestamp): appended in time order."""
        kept = events.filter(
            pl.col("type").is_in(SEQUENCE_TYPES)
            & pl.col("item_id").is_not_null()
            & pl.col("user_id").is_not_null()
        ).sort("timestamp", maintain_order=True)
        if kept.height == 0:
            return
        per_user = kept.group_by("user_id", maintain_order=True).agg("item_id")
        weights = kept.select(
            "item_id",
            pl.col("type").replace_strict(TREND_WEIGHTS, default=0.0, return_dtype=pl.Float64),
        )
        counted = weights.group_by("item_id").agg(pl.col("type").sum().alias("weight"))
        users, item_lists = per_user["user_id"].to_list(), per_user["item_id"].to_list()
        with self._lock:
            self._sequence += 1  # a batch's items share its number: a marker falls between
            number = repeat(self._sequence)
            for user, items in zip(users, item_lists, strict=True):
                # popped and put back: the dict's order is least recently active first
                recent = self._recent.pop(user, None)
                if recent is None:
                    recent = []
                self._recent[user] = recent
                recent.extend(zip(number, items, strict=False))  # number repeats forever
                if len(recent) > RECENT_ITEMS:
                    del recent[:-RECENT_ITEMS]
            while len(self._recent) > self.max_customers:  # the least recently active go
                del self._recent[next(iter(self._recent))]
            self._add_trend(counted["item_id"].to_list(), counted["weight"].to_numpy())
            self.events += kept.height

    def preload(self, events: pl.DataFrame) -> None:
        """Events that arrived after the models were trained, read from the store at start."""
        self.record(events)

    def marker(self) -> int:
        """A point in the stream: ``drop_until`` it once a model has learnt what came before."""
        return self._sequence

    def drop_until(self, marker: int) -> None:
        """Forget recent items recorded up to ``marker``: the live models now know them."""
        with self._lock:
            emptied = []
            for user, recent in self._recent.items():
                known = bisect_right(recent, marker, key=itemgetter(0))
                if known:
                    del recent[:known]
                if not recent:
                    emptied.append(user)
            for user in emptied:
                del self._recent[user]

    def forget(self, pseudonym: str) -> None:
        """Drop a customer's recent items (erasure)."""
        with self._lock:
            self._recent.pop(pseudonym, None)

    def _add_trend(self, items: Sequence[str], weights: np.ndarray) -> None:
        self._decay()
        fresh = [i for i in items if i not in self._item_index]
        for item in fresh:
            self._item_index[item] = len(self._items)
            self._items.append(item)
        if fresh:
            self._trend = np.concatenate([self._trend, np.zeros(len(fresh))])
        columns = np.fromiter((self._item_index[i] for i in items), dtype=np.int64)
        np.add.at(self._trend, columns, weights)

    def _decay(self) -> None:
        now = time.monotonic()
        elapsed = now - self._decayed_at
        if elapsed > 1.0:  # decaying on every event would cost a pass over all items
            self._trend *= math.exp(-self._decay_per_second * elapsed)
            self._decayed_at = now

    # -- reading ----------------------------------------------------------------------------
    def recent(self, pseudonym: str) -> list[str]:
        """The customer's items since training, oldest first."""
        with self._lock:
            found = self._recent.get(pseudonym)
            return [item for _, item in found] if found else []

    def trending(self, n: int, exclude: Iterable[str] = ()) -> list[tuple[str, float]]:
        """The ``n`` items with the most decayed behaviour, strongest first."""
        with self._lock:
            scores = self._trend.copy()
            items = list(self._items)
            index = dict(self._item_index)
        for item in exclude:
            column = index.get(item)
            if column is not None:
                scores[column] = -np.inf
        n = min(n, int((scores > 0).sum()))
        if n <= 0:
            return []
        top = np.argpartition(-scores, n - 1)[:n]
        top = top[np.lexsort((top, -scores[top]))]
        return [(items[i], float(scores[i])) for i in top]

    @property
    def customers(self) -> int:
        """Customers with recent items."""
        return len(self._recent)
