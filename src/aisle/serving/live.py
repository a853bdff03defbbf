"""The models and indexes the service answers from: loaded together, swapped together.

A ``Live`` bundle is never changed after it is built, except by the engine's own live
catalog updates; a retrain builds a new bundle beside the old one and the service swaps the
reference in one assignment, so a request holds either the old bundle or the new one and
none fails while it happens.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from aisle.errors import AisleError
from aisle.models import model_class, registry
from aisle.models.base import BaseRecommender
from aisle.storage import Store

if TYPE_CHECKING:
    from aisle.search.engine import SearchEngine
    from aisle.search.suggest import Suggester

log = logging.getLogger("aisle.serving")


@dataclass(frozen=True)
class Served:
    """One model version in service."""

    name: str
    version: int
    model: BaseRecommender
    trained_at: datetime


@dataclass
class Live:
    """Everything the service reads to answer: recommenders by name, search, autocomplete."""

    models: dict[str, Served] = field(default_factory=dict)
    engine: SearchEngine | None = None
    suggester: Suggester | None = None
    index_version: str | None = None
    #: item id -> (title, price), for answers.
    products: dict[str, tuple[str | None, float | None]] = field(default_factory=dict)
    #: Per model: (what it was computed for, engine columns of products the model never saw).
    cold_cache: dict[str, tuple[tuple[object, ...], np.ndarray]] = field(default_factory=dict)

    def listed(self, item_id: str, score: float) -> dict[str, Any]:
        """A product as answers list it: id, title, price and its score."""
        title, price = self.products.get(item_id, (None, None))
        return {"item_id": item_id, "title": title, "price": price, "score": score}

    def versions(self) -> dict[str, int]:
        """Model name -> version in service."""
        return {name: served.version for name, served in self.models.items()}

    def oldest_training(self) -> datetime | None:
        """When the least recently trained model was trained (events after it are replayed)."""
        times = [served.trained_at for served in self.models.values()]
        return min(times) if times else None


def load_models(store: Store) -> dict[str, Served]:
    """The production version of every registered model (its newest where none is)."""
    rows = registry.versions(store)
    served: dict[str, Served] = {}
    for name in rows["name"].unique(maintain_order=True).to_list():
        mine = rows.filter(pl.col("name") == name)
        live = mine.filter(pl.col("status") == "production")
        row = (live if live.height else mine).row(0, named=True)
        try:
            model = model_class(name).load(store.home / row["path"])
        except (AisleError, OSError, ValueError) as error:  # one broken artifact is not fatal
            log.error("model %s v%s not loaded: %s", name, row["version"], error)
            continue
        served[name] = Served(name, int(row["version"]), model, row["created_at"])
    return served


def load_search(home: Path) -> tuple[SearchEngine | None, Suggester | None, str | None]:
    """The current search index, or nothing when none was built."""
    from aisle.search.index import current_version, load_engine, load_suggester  # noqa: PLC0415

    try:
        folder = current_version(home)
    except AisleError:
        return None, None, None
    engine = load_engine(home)
    engine.query_vector("warm up")  # loads the query encoder now, not on the first search
    engine.query_vectors.pop("warm up", None)  # (the past queries' vectors stay)
    return engine, load_suggester(home), folder.name


def load_products(store: Store) -> dict[str, tuple[str | None, float | None]]:
    """Every catalog product's title and price."""
    frame = store.query("SELECT item_id, title, price FROM catalog_products")
    return {item: (title, price) for item, title, price in frame.iter_rows()}


def load_live(store: Store, *, search: bool = True) -> Live:
    """A fresh bundle from the registry, the catalog and the current search index."""
    engine, suggester, version = load_search(store.home) if search else (None, None, None)
    return Live(load_models(store), engine, suggester, version, load_products(store))
