"""Training groups for the search ranker: from clicks (one click, one group) and from graded
judgements (one query's judged pool, one group)."""

from __future__ import annotations

import numpy as np
import polars as pl

from aisle.search.engine import SearchEngine

#: Click groups used at most (the latest), to bound training time.
MAX_CLICK_GROUPS = 8000


def click_groups(
    engine: SearchEngine, clicks: pl.DataFrame, *, limit: int = MAX_CLICK_GROUPS
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Feature rows, labels (1 for the clicked product) and group sizes: one group per click
    (query, item_id), over the engine's retrieval pool for the query. Rows are computed once
    per distinct query; a click whose product the pool misses teaches nothing and is left out.
    """
    usable = clicks.filter(pl.col("query").is_not_null() & pl.col("item_id").is_not_null())
    if "timestamp" in usable.columns:
        usable = usable.sort("timestamp")
    usable = usable.tail(limit)
    cache: dict[tuple[str, object], tuple[np.ndarray, np.ndarray]] = {}
    blocks, labels, groups = [], [], []
    engine.prime(usable["query"].unique().to_list())
    times = usable["timestamp"] if "timestamp" in usable.columns else None
    for row, (query, item) in enumerate(usable.select("query", "item_id").iter_rows()):
        at = times[row] if times is not None else None
        key = (query, at.date() if at is not None else None)  # features by day of asking
        if key not in cache:
            parsed = engine.understand(query)
            searched = parsed.text if parsed is not None and parsed.text.strip() else query
            expansions = list(parsed.expansions) if parsed is not None else []
            columns = engine.candidates(query, searched, expansions)
            cache[key] = (columns, engine.feature_rows(query, columns, at=at))
        columns, rows = cache[key]
        target = engine.position.get(item)
        hit = columns == target
        if target is None or not hit.any():
            continue
        blocks.append(rows)
        labels.append(hit.astype(np.float32))
        groups.append(len(columns))
    if not blocks:
        width = len(engine.feature_names)
        return np.zeros((0, width), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)
    return np.vstack(blocks), np.concatenate(labels), np.asarray(groups, dtype=np.int64)


def judgement_groups(
    engine: SearchEngine, judgements: pl.DataFrame
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Feature rows, grades (relevance - 1: 0..3) and group sizes: one group per query, its
    judged pool (``judgements``: query, item_id, relevance)."""
    blocks, labels, groups = [], [], []
    engine.prime(judgements["query"].unique().to_list())
    for (query,), pool in judgements.group_by("query", maintain_order=True):
        columns = engine._columns(pool["item_id"].to_list())
        grade = dict(zip(pool["item_id"], pool["relevance"], strict=True))
        if not len(columns):
            continue
        blocks.append(engine.feature_rows(str(query), columns))
        labels.append(
            np.asarray([grade[engine.catalog.item_ids[c]] - 1 for c in columns], dtype=np.float32)
        )
        groups.append(len(columns))
    if not blocks:
        width = len(engine.feature_names)
        return np.zeros((0, width), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)
    return np.vstack(blocks), np.concatenate(labels), np.asarray(groups, dtype=np.int64)
