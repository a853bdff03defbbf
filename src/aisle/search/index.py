"""The search index as artifacts under home: built from the store, versioned, loaded to serve.

``home/search/vN/`` holds the documents (Parquet), their vectors (``vectors.npy`` with the
model's name in the manifest), the tantivy index (``lexical/``), query understanding, the
click history, the learnt ranker, the autocomplete index, the vectors of past queries
(``queries/``) and ``manifest.json``; built with
the fine-tuned encoder ("minilm-clicks": MiniLM fine-tuned on the store's clicks within a time
budget), the model itself too (``encoder/``), which loading reads back. ``CURRENT``
names the version in use and is replaced atomically, so a reader sees the old version or the
new one, never half of one.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import numpy as np
import polars as pl

from aisle.catalog.embeddings import TextEncoder, encoder, product_text
from aisle.config import Settings
from aisle.errors import ConfigError, NotFoundError
from aisle.search.build import SearchParts, assemble, gather, store_clicks
from aisle.search.click_pairs import click_pairs
from aisle.search.clicks import ClickHistory
from aisle.search.dense import EXACT_BELOW, DenseIndex
from aisle.search.engine import SearchEngine
from aisle.search.lexical import LexicalIndex
from aisle.search.ltr import SearchRanker
from aisle.search.past_queries import load_query_vectors, past_queries, save_query_vectors
from aisle.search.query import QueryUnderstanding
from aisle.search.suggest import Suggester
from aisle.search.term_statistics import TermStatistics
from aisle.storage import Store

SEARCH_DIR: Final = "search"
CURRENT: Final = "CURRENT"
#: Where a version keeps its fine-tuned encoder.
ENCODER_DIR: Final = "encoder"
#: Where a version keeps the vectors of past queries (``past_queries``).
QUERIES_DIR: Final = "queries"
#: Encoders ``build_index`` takes besides the catalog's own embedding model.
FINE_TUNED: Final = "minilm-clicks"


@dataclass(frozen=True)
class IndexBuild:
    """What ``build_index`` made."""

    version: int
    path: Path
    products: int
    clicks: int
    judgements: int
    ranker: str  # "click-aware", "text-only" or "fusion" (too little to learn from)
    seconds: float
    encoder: str | None = None  # the text encoder of the vectors (None: no vectors)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready summary."""
        return {**self.__dict__, "path": str(self.path)}


def _root(home: Path) -> Path:
    return Path(home) / SEARCH_DIR


def current_version(home: Path) -> Path:
    """The folder of the version in use."""
    pointer = _root(home) / CURRENT
    if not pointer.is_file():
        raise NotFoundError("no search index yet: run `aisle index build`")
    return _root(home) / pointer.read_text(encoding="utf-8").strip()


def _fine_tuned(store: Store, parts: SearchParts, folder: Path, budget_s: float) -> TextEncoder:
    """MiniLM fine-tuned on the store's clicks (``finetune``) within ``budget_s`` seconds,
    saved under ``folder``; the parts' vectors re-encoded with it."""
    from aisle.search.finetune import fine_tune  # noqa: PLC0415 (heavy: torch training)

    pairs = click_pairs(store_clicks(store), parts.documents)
    run = fine_tune(pairs, folder, budget_s=budget_s)
    texts = product_text(parts.documents)  # sorted by item_id, as the documents are
    if not texts["item_id"].equals(parts.documents["item_id"]):
        raise ConfigError("search documents are not in item_id order: cannot align vectors")
    parts.vectors = run.encoder.encode(texts["text"].to_list())
    parts.encoder = run.encoder
    return run.encoder


def build_index(
    store: Store,
    settings: Settings,
    *,
    text_encoder: str | None = None,
    encoder_budget_s: float = 300.0,
) -> IndexBuild:
    """Build every search artifact from the store into a new version and make it current.
    ``text_encoder``: the catalog's embedding model (None), or "minilm-clicks" to fine-tune
    MiniLM on the store's clicks for ``encoder_budget_s`` seconds and index with it."""
    if text_encoder not in (None, settings.catalog.embedding_model, FINE_TUNED):
        raise ConfigError(
            f"unknown encoder {text_encoder!r}: leave it out (the catalog's "
            f"{settings.catalog.embedding_model!r}) or choose {FINE_TUNED!r}"
        )
    started = time.perf_counter()
    root = _root(settings.home)
    root.mkdir(parents=True, exist_ok=True)
    taken = [int(p.name[1:]) for p in root.glob("v*") if p.name[1:].isdigit()]
    version = max(taken, default=0) + 1
    folder = root / f"v{version}"
    tuned = text_encoder == FINE_TUNED
    parts = gather(store, settings, embed=not tuned)
    if tuned:
        _fine_tuned(store, parts, folder / ENCODER_DIR, encoder_budget_s)
    parts.lexical = LexicalIndex.create(parts.documents, folder / "lexical")
    clicks = parts.clicks.height > 0
    engine = assemble(parts, clicks=clicks)
    engine.documents.write_parquet(folder / "documents.parquet")
    if parts.vectors is not None:
        np.save(folder / "vectors.npy", parts.vectors, allow_pickle=False)
        if len(parts.vectors) >= EXACT_BELOW:  # a graph beats a full scan from here on
            items = engine.documents["item_id"].to_list()
            DenseIndex.create(items, parts.vectors).save(folder / "dense")
    if isinstance(parts.understanding, QueryUnderstanding):
        parts.understanding.save(folder / "understanding")
        corrector = parts.understanding.corrector_
    else:
        corrector = None
    engine.terms.save(folder / "terms")
    if clicks:
        parts.history.save(folder / "clicks")
    if engine.ranker is not None:
        engine.ranker.save(folder / "ranker")
    asked = past_queries(engine, parts.clicks) if clicks else []
    query_vectors = save_query_vectors(engine, asked, folder / QUERIES_DIR)
    queries = parts.clicks.select("query", "user_id") if clicks else None
    Suggester().fit(engine.documents, queries, corrector=corrector).save(folder / "suggest")
    kind = "fusion" if engine.ranker is None else "click-aware" if clicks else "text-only"
    model = FINE_TUNED if tuned else settings.catalog.embedding_model
    build = IndexBuild(version, folder, engine.documents.height, parts.clicks.height,
                       parts.judgements.height, kind, time.perf_counter() - started,
                       model if parts.vectors is not None else None)  # fmt: skip
    manifest = build.to_json() | {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "embedding_model": build.encoder,
        "encoder_path": ENCODER_DIR if tuned else None,
        "ranker_report": parts.report,
        "past_query_vectors": query_vectors,
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    pointer = root / f".{CURRENT}.{os.getpid()}"
    pointer.write_text(folder.name, encoding="utf-8")
    pointer.replace(root / CURRENT)  # atomic: readers see one version or the other
    return build


def load_engine(home: Path) -> SearchEngine:
    """The current version's engine, ready to search."""
    folder = current_version(home)
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    documents = pl.read_parquet(folder / "documents.parquet")
    vectors: np.ndarray | None = None
    text_encoder: TextEncoder | None = None
    if (folder / "vectors.npy").is_file() and manifest.get("embedding_model"):
        vectors = np.load(folder / "vectors.npy", allow_pickle=False)
        if manifest["embedding_model"] == FINE_TUNED:
            from aisle.search.finetune import FineTunedEncoder  # noqa: PLC0415

            text_encoder = FineTunedEncoder(folder / manifest.get("encoder_path", ENCODER_DIR))
        else:
            text_encoder = encoder(manifest["embedding_model"], home)
    understanding = (
        QueryUnderstanding.load(folder / "understanding")
        if (folder / "understanding").exists()
        else None
    )
    clicks = (
        ClickHistory.load(folder / "clicks").index(documents["item_id"].to_list())
        if (folder / "clicks").exists()
        else None
    )
    ranker = SearchRanker.load(folder / "ranker") if (folder / "ranker").exists() else None
    dense = DenseIndex.load(folder / "dense") if (folder / "dense").exists() else None
    # versions built before term statistics were saved: the engine builds them from the text
    terms = TermStatistics.load(folder / "terms") if (folder / "terms").exists() else None
    if terms is not None and terms.counted != documents.height:
        terms = None  # not these documents' (never written so): build them again
    engine = SearchEngine(
        documents, LexicalIndex.open(folder / "lexical"), vectors=vectors,
        encoder=text_encoder, understanding=understanding, clicks=clicks, ranker=ranker,
        dense=dense, terms=terms,
    )  # fmt: skip
    load_query_vectors(engine, folder / QUERIES_DIR)
    return engine


def load_suggester(home: Path) -> Suggester:
    """The current version's autocomplete index."""
    return Suggester.load(current_version(home) / "suggest")
