"""Popularity: the same ranking for everyone, all-time or trending (recent weight only)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import polars as pl

from aisle.features.interactions import Interactions
from aisle.models.base import BaseRecommender, Explanation, SideInfo


class Popularity(BaseRecommender):
    """Items ranked by the customers who interacted with them (``recent_days``: only within
    that many days of the newest interaction, i.e. trending)."""

    name: ClassVar[str] = "popularity"
    defaults: ClassVar[dict[str, object]] = {"recent_days": None}

    def _fit(self, data: Interactions, side: SideInfo | None) -> None:
        log = data.log
        if self.params["recent_days"] is not None and log.height:
            since = log["timestamp"].max() - pl.duration(days=self.params["recent_days"])
            log = log.filter(pl.col("timestamp") >= since)
        counts = log.group_by("item").agg(pl.col("user").n_unique().alias("n"))
        popularity = np.zeros(data.n_items, dtype=np.float32)
        popularity[counts["item"].to_numpy()] = counts["n"].to_numpy()
        self.popularity = popularity

    def score_users(self, users: np.ndarray) -> np.ndarray:
        """The same scores for every user."""
        return np.tile(self.popularity, (len(users), 1))

    def score_history(self, items: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        """Popularity ignores history."""
        return self.popularity.copy()

    def _item_similarities(self, item: int) -> np.ndarray:
        return self.popularity.copy()

    def explain(self, user_id: str, item_id: str, n: int = 3) -> Explanation:
        """Popular with this many customers."""
        column = self.item_column(item_id)
        return Explanation(item_id, "popularity", [("customers", float(self.popularity[column]))])

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"popularity": self.popularity}

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        self.popularity = arrays["popularity"]
