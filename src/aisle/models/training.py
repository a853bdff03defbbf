"""Training from the store: the interactions and side information a model fits on, then a
new registered version."""

from __future__ import annotations

from typing import Any

from aisle.config import Settings
from aisle.errors import AisleError
from aisle.features.interactions import Interactions, build_interactions, load_events
from aisle.features.side import SideInfo, side_information
from aisle.models import model_class, registry
from aisle.models.base import BaseRecommender
from aisle.storage import Store


def training_data(store: Store, settings: Settings) -> tuple[Interactions, SideInfo]:
    """Interactions over every catalog item (consented events only) and what the catalog knows
    of the items."""
    catalog = store.query("SELECT item_id FROM catalog_products")["item_id"].to_list()
    data = build_interactions(load_events(store), settings.recommend, items=catalog)
    if data.n_users == 0:
        raise AisleError("no consented interactions in the store to learn from")
    return data, side_information(store, settings, data)


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
