"""A recommender's scores for a customer, read by item id only for the items a search asks."""

from __future__ import annotations

import numpy as np

from aisle.search.taste import standing
from aisle.serving.searching import ItemScores


class Model:
    """The part of a recommender ``ItemScores`` reads."""

    items = ("a", "b", "c", "d")

    def knows_item(self, item_id: str) -> bool:
        return item_id in self.items

    def item_column(self, item_id: str) -> int:
        return self.items.index(item_id)


def test_only_scored_items_are_present() -> None:
    scores = ItemScores(Model(), np.asarray([0.5, -np.inf, 2.0, 1.0]))  # b: the customer's own
    assert scores["a"] == 0.5 and scores.get("b") is None and scores.get("zzz") is None
    assert list(scores) == ["a", "c", "d"] and len(scores) == 3
    assert dict(scores) == {"a": 0.5, "c": 2.0, "d": 1.0}
    # a search's standing reads them as it reads a dict of the same scores
    candidates = ["d", "b", "zzz", "a", "c"]
    assert np.array_equal(standing(scores, candidates), standing(dict(scores), candidates))
