"""Side information: what the catalog knows of the items that models may use beyond behaviour."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from aisle.catalog.embeddings import load_vectors
from aisle.config import Settings
from aisle.errors import NotFoundError
from aisle.features.interactions import Interactions
from aisle.storage import Store


@dataclass
class SideInfo:
    """Rows aligned with ``Interactions.items``: text embeddings, and a frame of price,
    category and brand."""

    item_vectors: np.ndarray | None = None
    item_meta: pl.DataFrame | None = None


def side_information(store: Store, settings: Settings, data: Interactions) -> SideInfo:
    """Price, first category and brand from the catalog, and the items' text embeddings where
    the catalog build made them (zero vectors for items it did not embed)."""
    catalog = store.query(
        "SELECT item_id, price, category_path[1] AS category, brand FROM catalog_products"
    ).unique("item_id", keep="first", maintain_order=True)
    meta = pl.DataFrame({"item_id": data.items}).join(catalog, on="item_id", how="left")
    side = SideInfo(item_meta=meta)
    try:
        ids, vectors = load_vectors(settings.home, settings.catalog.embedding_model)
    except NotFoundError:
        return side
    rows = {item: i for i, item in enumerate(ids)}
    pairs = [(j, rows[item]) for j, item in enumerate(data.items) if item in rows]
    if pairs:
        aligned = np.zeros((data.n_items, vectors.shape[1]), dtype=np.float32)
        target, source = (np.asarray(p, dtype=np.int64) for p in zip(*pairs, strict=True))
        aligned[target] = vectors[source]
        side.item_vectors = aligned
    return side
