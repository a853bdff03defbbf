"""Recommenders, all under one protocol (``aisle.models.base``), found by name."""

from __future__ import annotations

import importlib

from aisle.errors import AisleError
from aisle.models.base import BaseRecommender

#: Every model by its name on the command line: "module:class", imported on first use.
MODELS = {
    "popularity": "aisle.models.popularity:Popularity",
    "itemknn": "aisle.models.itemknn:ItemKNN",
    "als": "aisle.models.factorization:ALS",
    "bpr": "aisle.models.factorization:BPR",
    "two-tower": "aisle.models.two_tower:TwoTower",
    "sasrec": "aisle.models.sasrec:SASRec",
    "ranker": "aisle.models.ranker:Ranker",
}


def model_class(name: str) -> type[BaseRecommender]:
    """The class of a model by name."""
    target = MODELS.get(name)
    if target is None:
        raise AisleError(f"no model called {name!r}; choose from {', '.join(MODELS)}")
    module, attribute = target.split(":")
    found = getattr(importlib.import_module(module), attribute)
    if not (isinstance(found, type) and issubclass(found, BaseRecommender)):
        raise AisleError(f"{target} is not a recommender")
    return found


def available_models() -> list[str]:
    """Registered models whose module can be imported."""
    names = []
    for name in MODELS:
        try:
            model_class(name)
        except ImportError:
            continue
        names.append(name)
    return names
