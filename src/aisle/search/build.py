"""Assembling a search engine from what the store holds: documents, product vectors, the
lexical index, query understanding, click history and the learnt rankers.

The rankers learn the way they will be used: the store's clicks are cut in time; the click
history and product popularity come from the earlier part, the labels from the later part
(``LABEL_SHARE``), so that features look only backwards as they do at query time. Judged
query pools (``judgments``) add graded groups to the text-only ranker. The history and
popularity are then rebuilt from every click for serving.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import polars as pl

from aisle.catalog.embeddings import (
    TextEncoder,
    embed_products,
    encoder,
    load_vectors,
    product_text,
)
from aisle.config import Settings
from aisle.search.clicks import ClickHistory
from aisle.search.documents import conform, search_documents
from aisle.search.engine import SearchEngine
from aisle.search.features import RISING
from aisle.search.lexical import LexicalIndex
from aisle.search.ltr import SearchRanker
from aisle.search.results import Understanding
from aisle.search.training import click_groups, judgement_groups
from aisle.storage import Store

log = logging.getLogger(__name__)

#: The latest share of the clicks that labels the ranker (the rest is its history).
LABEL_SHARE: Final = 0.2
#: Fewer labelled groups than this: no ranker (reciprocal-rank fusion orders results).
MIN_GROUPS: Final = 50

_CLICKS_SQL: Final = """
SELECT query, item_id, user_id, timestamp FROM events
WHERE type = 'click' AND query IS NOT NULL AND item_id IS NOT NULL
ORDER BY timestamp, event_id
"""


@dataclass
class SearchParts:
    """What engines are assembled from."""

    documents: pl.DataFrame
    lexical: LexicalIndex
    vectors: np.ndarray | None
    encoder: Any
    understanding: Understanding | None
    clicks: pl.DataFrame
    judgements: pl.DataFrame
    history: ClickHistory = field(default_factory=ClickHistory)  # of every click
    report: dict[str, Any] = field(default_factory=dict)


def store_clicks(store: Store) -> pl.DataFrame:
    """Click events that carry the query they followed, oldest first."""
    return store.query(_CLICKS_SQL)


def _vectors(
    documents: pl.DataFrame, settings: Settings, catalog: pl.DataFrame
) -> tuple[np.ndarray, TextEncoder]:
    """Unit vectors of the documents' text with the catalog's embedding model: the catalog's
    from its embedding artifacts (encoding only what changed), the rest encoded here."""
    model = settings.catalog.embedding_model
    embed_products(catalog, settings.home, model)
    ids, stored = load_vectors(settings.home, model)
    text_encoder = encoder(model, settings.home)
    position = {item: row for row, item in enumerate(ids)}
    vectors = np.zeros((documents.height, text_encoder.dimensions), dtype=np.float32)
    rows = [position.get(item, -1) for item in documents["item_id"]]
    known = np.asarray([row >= 0 for row in rows], dtype=bool)
    vectors[known] = stored[[row for row in rows if row >= 0]]
    if not known.all():
        texts = product_text(documents.filter(pl.Series(~known)))
        by_id = dict(zip(texts["item_id"], texts["text"], strict=True))
        missing = documents["item_id"].filter(pl.Series(~known)).to_list()
        vectors[~known] = text_encoder.encode([by_id[item] for item in missing])
    return vectors, text_encoder


def _understanding(documents: pl.DataFrame, clicks: pl.DataFrame, settings: Settings) -> Any:
    try:
        from aisle.search.query import QueryUnderstanding  # noqa: PLC0415 (optional part)
    except ImportError:  # pragma: no cover - the package always ships it
        return None
    configured = settings.search.synonyms or None
    return QueryUnderstanding().fit(documents, clicks if clicks.height else None, configured)


def with_popularity(documents: pl.DataFrame, clicks: pl.DataFrame) -> pl.DataFrame:
    """The documents with popularity recounted from these clicks (distinct customers)."""
    counted = clicks.group_by("item_id").agg(pl.col("user_id").n_unique().alias("_n"))
    return (
        documents.join(counted, on="item_id", how="left")
        .with_columns(pl.col("_n").fill_null(0).cast(pl.Float64).alias("popularity"))
        .drop("_n")
    )


def gather(
    store: Store,
    settings: Settings,
    extra: pl.DataFrame | None = None,
    *,
    embed: bool = True,
    understand: bool = True,
) -> SearchParts:
    """Documents (the store's catalog, plus ``extra`` products not in it), their vectors, the
    lexical index (in memory), query understanding, clicks and judgements."""
    documents = catalog = search_documents(store)
    if extra is not None and extra.height:
        fresh = conform(extra).filter(~pl.col("item_id").is_in(documents["item_id"].implode()))
        documents = pl.concat([documents, fresh]).sort("item_id")
    clicks = store_clicks(store)
    judgements = store.query("SELECT query, item_id, relevance FROM judgments ORDER BY query")
    vectors, text_encoder = _vectors(documents, settings, catalog) if embed else (None, None)
    understanding = _understanding(documents, clicks, settings) if understand else None
    return SearchParts(
        documents,
        LexicalIndex.create(documents),
        vectors,
        text_encoder,
        understanding,
        clicks,
        judgements,
        ClickHistory(half_life_days=settings.search.click_half_life_days).fit(clicks),
    )


def assemble(parts: SearchParts, *, clicks: bool) -> SearchEngine:
    """An engine whose ranker learnt from the parts: click-aware or text-only."""
    items = parts.documents["item_id"].to_list()
    cut = int(parts.clicks.height * (1 - LABEL_SHARE))
    history, labels = parts.clicks[:cut], parts.clicks[cut:]
    # popularity as known before the labels (where behaviour comes as clicks)
    earlier = with_popularity(parts.documents, history) if history.height else parts.documents
    learner = SearchEngine(
        earlier,
        parts.lexical,
        vectors=parts.vectors,
        encoder=parts.encoder,
        understanding=parts.understanding,
        clicks=ClickHistory(half_life_days=parts.history.half_life_days).fit(history).index(items)
        if clicks
        else None,
    )
    blocks = [click_groups(learner, labels)] if labels.height else []
    if parts.judgements.height:
        blocks.append(judgement_groups(learner, parts.judgements))
    ranker = None
    groups = np.concatenate([b[2] for b in blocks]) if blocks else np.zeros(0, np.int64)
    if len(groups) >= MIN_GROUPS:
        rows = np.vstack([b[0] for b in blocks])
        grades = np.concatenate([b[1] for b in blocks])
        # few groups (judged pools): small, well-fed trees; the Crowdflower split carved
        # from the shared file preferred them (nDCG@10 0.856 against 0.838 for 31 leaves)
        shape = (
            {"leaves": 31, "min_rows": 20} if len(groups) >= 2000 else {"leaves": 7, "min_rows": 50}
        )
        ranker = SearchRanker(learner.feature_names, rising=RISING, **shape)
        ranker.fit(rows, grades, groups)
        parts.report["clicks" if clicks else "text"] = ranker.report
    return SearchEngine(
        parts.documents,
        parts.lexical,
        vectors=parts.vectors,
        encoder=parts.encoder,
        understanding=parts.understanding,
        clicks=parts.history.index(items) if clicks else None,
        ranker=ranker,
        terms=learner.terms,  # the same products' texts in the same order
    )
