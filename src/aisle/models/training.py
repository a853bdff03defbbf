"""Training from the store: the interactions and side information a model fits on, then a
new registered version."""

from __future__ import annotations

from typing import Any

import numpy as np

from aisle.catalog.embeddings import load_vectors
from aisle.config import Settings
from aisle.errors import AisleError, NotFoundError
from aisle.features.interactions import Interactions, build_interactions, load_events
from aisle.models import model_class, registry
from aisle.models.base import BaseRecommender, SideInfo
from aisle.storage import Store


def training_data(store: Store, settings: Settings) -> tuple[Interactions, SideInfo]:
    """Interactions over every catalog item (consented events only) and the items' text
    embeddings and catalog facts where the catalog build made them."""
    events = load_events(store)
    catalog = store.query(
        "SELECT item_id, price, category_path[1] AS category, brand FROM catalog_products"
    )
    data = build_interactions(events, settings.recommend, items=catalog["item_id"].to_list())
    if data.n_users == 0:
        raise AisleError("no consented interactions in the store to learn from")
    side = SideInfo(item_meta=catalog)
    try:
        ids, vectors = load_vectors(settings.home, settings.catalog.embedding_model)
    except NotFoundError:
        return data, side
    rows = {item: i for i, item in enumerate(ids)}
    aligned = np.zeros((data.n_items, vectors.shape[1]), dtype=np.float32)
    known = [(j, rows[item]) for j, item in enumerate(data.items) if item in rows]
    if known:
        target, source = map(np.asarray, zip(*known, strict=True))
        aligned[target] = vectors[source]
    side.item_vectors = aligned
    return data, side


def train(
    store: Store, settings: Settings, name: str, params: dict[str, Any] | None = None
) -> tuple[BaseRecommender, int]:
    """Fit a model on the store's interactions and register it as a new version."""
    model = model_class(name)(**(params or {}))
    data, side = training_data(store, settings)
    model.fit(data, side)
    metrics = {"fit_seconds": round(model.report.seconds, 3)}
    if model.report.losses:
        metrics["final_loss"] = model.report.losses[-1]
    return model, registry.register(store, model, metrics)
