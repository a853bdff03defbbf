"""Vectors of the queries shoppers asked before, kept with an index version.

Most searches repeat a query asked before (on Best Buy, nine in ten held-out searches). A
server that loads their vectors with the index answers them without running the text encoder,
which costs more than the rest of a search together. Only queries that ``min_users`` distinct
shoppers typed and in which the PII scrubber finds nothing are kept; they are keyed as the
engine searches them (understood: normalised and spelling-corrected).
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import numpy as np
import polars as pl

from aisle.privacy.pii import scrub
from aisle.search.engine import SearchEngine

#: Past queries whose vectors an index version keeps, at most (the most asked first).
PAST_QUERIES: Final = 20_000
#: Distinct shoppers who must have typed a query before its vector is kept.
MIN_USERS: Final = 2
_TEXTS: Final = "texts.parquet"
_VECTORS: Final = "vectors.npy"


def past_queries(
    engine: SearchEngine,
    clicks: pl.DataFrame,
    *,
    min_users: int = MIN_USERS,
    limit: int = PAST_QUERIES,
) -> list[str]:
    """The understood texts of the queries in ``clicks`` (query, user_id) that ``min_users``
    distinct shoppers typed, most typed first, at most ``limit``, none holding PII."""
    counted = (
        clicks.select("query", "user_id")
        .drop_nulls()
        .group_by("query")
        .agg(pl.col("user_id").unique())
        .sort(pl.col("user_id").list.len(), "query", descending=[True, False])
        .head(4 * limit)  # spellings of one query meet below; the rarest never matter
    )
    understood = [_searched(engine, query) for query in counted["query"]]
    merged = (
        counted.with_columns(pl.Series("text", understood, dtype=pl.String))
        .filter(pl.col("text") != "")
        .explode("user_id")
        .group_by("text")
        .agg(pl.col("user_id").n_unique().alias("users"))
        .filter(pl.col("users") >= min_users)
        .sort(["users", "text"], descending=[True, False])
    )
    kept = [text for text in merged["text"] if not scrub(text)[1]]
    return kept[:limit]


def _searched(engine: SearchEngine, query: str) -> str:
    parsed = engine.understand(query)
    return parsed.text.strip() if parsed is not None else query.strip()


def save_query_vectors(engine: SearchEngine, texts: list[str], folder: Path) -> int:
    """Encode ``texts`` with the engine's encoder and save them under ``folder``; how many."""
    if engine.encoder is None or not texts:
        return 0
    engine.prime(texts)
    kept = [text for text in texts if text in engine.query_vectors]
    folder.mkdir(parents=True, exist_ok=True)
    pl.DataFrame({"text": kept}, schema={"text": pl.String}).write_parquet(folder / _TEXTS)
    matrix = np.stack([engine.query_vectors[text] for text in kept]).astype(np.float32)
    np.save(folder / _VECTORS, matrix, allow_pickle=False)
    return len(kept)


def load_query_vectors(engine: SearchEngine, folder: Path) -> int:
    """Put the vectors saved under ``folder`` in the engine's query cache; how many."""
    if engine.encoder is None or not (folder / _TEXTS).is_file():
        return 0
    texts = pl.read_parquet(folder / _TEXTS)["text"].to_list()
    matrix = np.load(folder / _VECTORS, allow_pickle=False)
    if len(texts) != len(matrix):
        return 0  # not written together: encode on demand instead
    engine.query_vectors.update(zip(texts, matrix, strict=True))
    return len(texts)
