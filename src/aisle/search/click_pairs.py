"""Click pairs for fine-tuning the bi-encoder: (query, product text) from click events,
weighted by distinct shoppers, and batches that never hold the same product or query twice."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Final

import numpy as np
import polars as pl

from aisle.catalog.embeddings import product_text
from aisle.errors import AisleError

_SAMPLE_ROUNDS: Final = 16  # draws per batch before settling for a smaller one


def normalise_query(queries: pl.Expr) -> pl.Expr:
    """A query as search matches it: NFKC, lower case, apostrophes dropped, every other run of
    punctuation or space one space, trimmed; nothing left becomes null.

    "Call of Duty: Black Ops" and "call of duty black ops" are one query; "Assassin's" reads
    "assassins".
    """
    text = (
        queries.cast(pl.String)
        .str.normalize("NFKC")
        .str.to_lowercase()
        .str.replace_all(r"['’`]", "")
        .str.replace_all(r"[^\p{L}\p{N}]+", " ")
        .str.strip_chars()
    )
    return pl.when(text.str.len_chars() > 0).then(text)


def _click_columns(clicks: pl.DataFrame) -> pl.DataFrame:
    """user_id, item_id, query of click events, from the raw log (user, sku, query) or the
    store's events (user_id, item_id, type, query)."""
    renames = {"user": "user_id", "sku": "item_id"}
    frame = clicks.rename({k: v for k, v in renames.items() if k in clicks.columns})
    missing = [c for c in ("user_id", "item_id", "query") if c not in frame.columns]
    if missing:
        raise AisleError(
            f"clicks lack column(s) {', '.join(missing)}: give the click log (user, sku, query) "
            "or click events (user_id, item_id, query)"
        )
    if "type" in frame.columns:
        frame = frame.filter(pl.col("type") == "click")
    return frame.select(
        pl.col("user_id").cast(pl.String),
        pl.col("item_id").cast(pl.String),
        normalise_query(pl.col("query")).alias("query"),
    )


def click_pairs(clicks: pl.DataFrame, documents: pl.DataFrame) -> pl.DataFrame:
    """(query, item_id, text, weight) of every normalised query and the product clicked for it.

    One row per (query, item_id); weight is the number of distinct users who made that click
    (a user seen as null counts once). Clicks without a query and clicks on products missing
    from ``documents`` are left out. The text is ``product_text``'s, so query vectors learned
    from the pairs meet product vectors made the same way. Sorted by query, then item_id.
    """
    texts = product_text(documents).select("item_id", "text")
    return (
        _click_columns(clicks)
        .lazy()
        .filter(pl.col("query").is_not_null() & pl.col("item_id").is_not_null())
        .group_by("query", "item_id")
        .agg(pl.col("user_id").n_unique().cast(pl.Int64).alias("weight"))
        .join(texts.lazy(), on="item_id", how="inner")
        .select("query", "item_id", "text", "weight")
        .sort("query", "item_id")
        .collect()
    )


def pairs_hash(pairs: pl.DataFrame) -> str:
    """sha256 of the pairs (query, item_id, text, weight), whatever their row order."""
    rows = pairs.select("query", "item_id", "text", "weight").sort("query", "item_id")
    return hashlib.sha256(rows.write_ndjson().encode("utf-8")).hexdigest()


def sample_batches(pairs: pl.DataFrame, batch_size: int, seed: int) -> Iterator[np.ndarray]:
    """Endless batches of row numbers of ``pairs``, drawn with replacement in proportion to
    weight, no product and no query twice in a batch.

    A batch is smaller than ``batch_size`` only when the pairs cannot fill one (fewer distinct
    products or queries than that). The same pairs and seed give the same batches.
    """
    if batch_size < 2:
        raise AisleError(f"batch_size must be at least 2 (in-batch negatives), not {batch_size}")
    if pairs.height == 0:
        raise AisleError("no pairs to draw batches from")
    codes = pairs.select(
        (pl.col("item_id").rank("dense") - 1).alias("item"),
        (pl.col("query").rank("dense") - 1).alias("query"),
    )
    items, queries = codes["item"].to_numpy(), codes["query"].to_numpy()
    weights = pairs["weight"].cast(pl.Float64).to_numpy()
    if not (weights > 0).any():
        raise AisleError("every pair has weight 0: nothing to draw")
    chance = weights / weights.sum()
    size = min(batch_size, int(items.max()) + 1, int(queries.max()) + 1)
    rng = np.random.default_rng(seed)
    while True:
        yield _draw_batch(items, queries, chance, size, rng)


def _draw_batch(
    items: np.ndarray,
    queries: np.ndarray,
    chance: np.ndarray,
    size: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Up to ``size`` rows drawn by ``chance``; a draw whose product or query is already in
    the batch is passed over."""
    taken_items = np.zeros(int(items.max()) + 1, dtype=bool)
    taken_queries = np.zeros(int(queries.max()) + 1, dtype=bool)
    batch: list[np.ndarray] = []
    count = 0
    for _ in range(_SAMPLE_ROUNDS):
        drawn = rng.choice(chance.size, size=4 * size, p=chance)
        drawn = drawn[~taken_items[items[drawn]] & ~taken_queries[queries[drawn]]]
        # first draw of each product and of each query: no two kept rows share either
        first = np.zeros(drawn.size, dtype=bool)
        first[np.unique(items[drawn], return_index=True)[1]] = True
        first_query = np.zeros(drawn.size, dtype=bool)
        first_query[np.unique(queries[drawn], return_index=True)[1]] = True
        kept = drawn[first & first_query][: size - count]
        taken_items[items[kept]] = True
        taken_queries[queries[kept]] = True
        batch.append(kept)
        count += kept.size
        if count == size:
            break
    return np.concatenate(batch)
