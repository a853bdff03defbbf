"""Hyperparameter search: a validation split carved from training, a bounded search."""

from __future__ import annotations

import numpy as np

from aisle.models.popularity import Popularity
from aisle.models.tuning import held_out_ranks, tune, validation_split
from tests.models.test_conformance import shop


def test_the_validation_split_holds_out_each_customers_latest_item() -> None:
    data = shop()
    train, users, items = validation_split(data)
    assert len(users) == 40  # every customer with two or more interactions; not "solo"
    assert train.n_users == data.n_users and train.n_items == data.n_items
    for user, item in zip(users, items, strict=True):
        assert item not in train.seen(int(user))  # the held-out item is not in training
        assert data.log.filter(data.log["user"] == user)["item"][-1] == item


def test_ranks_are_pessimistic_about_ties() -> None:
    data = shop()
    train, users, items = validation_split(data)
    model = Popularity().fit(train)
    ranks = held_out_ranks(model, train, users, items)
    assert ranks.min() >= 1 and np.isfinite(ranks).all()
    assert ranks.max() <= data.n_items


def test_a_bounded_search_finds_parameters() -> None:
    found = tune("itemknn", shop(), trials=3)
    assert len(found.trials) == 3 and set(found.best_params) >= {"neighbours", "shrinkage"}
    assert 0 < found.best_value <= 1
    assert found.best_value == max(t["ndcg@10"] for t in found.trials)
