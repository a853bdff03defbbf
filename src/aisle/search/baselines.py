"""Search baselines that every evaluation prints beside aisle's own methods.

- ``popularity``: the products clicked most in the store, whatever the query (the floor).
- ``bm25-tantivy``: plain BM25 as tantivy does it by default: an in-memory index with two text
  fields, title and description, under the ``default`` tokenizer, and tantivy's own query
  parser over both fields (a disjunction). Shoppers' text is reduced to its words first
  (lowercased, every character that is not a letter or digit a space) so that no query syntax
  (``AND``, ``-``, ``:``, quotes, brackets) can change its meaning or fail to parse.
- ``bm25s``: the bm25s library with its defaults (``bm25s.tokenize``: lowercase, words of two
  or more characters, English stop words; ``BM25()``: Lucene's variant, k1 1.5, b 0.75) over
  title + description as one text.

Ties are broken by item_id, ascending, so every ranking is deterministic. Over a catalog the
lexical baselines return only the products that match (none: a zero result); over a judged
pool they return the whole pool, the products that match first.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import bm25s
import numpy as np
import numpy.typing as npt
import polars as pl
import tantivy

from aisle.config import Settings
from aisle.evaluation.search import Ranked, SearchTask
from aisle.storage import Store

#: Hits fetched per query beyond k from a catalog, so ties at the cut-off break by item_id.
TIE_MARGIN: Final = 1_000
#: tantivy's writer needs at least 15 MB of heap.
WRITER_HEAP: Final = 50_000_000
_NOT_WORD = re.compile(r"[\W_]+")

#: One raw query's scores: rows of ``task.products`` that match (within a pool's rows where
#: given), and their scores.
Scorer = Callable[
    [str, npt.NDArray[np.int64] | None], tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]
]


def query_words(query: str | None) -> str:
    """A shopper's query as plain words: lowercased, everything but letters and digits a space."""
    return _NOT_WORD.sub(" ", (query or "").lower()).strip()


def product_text(products: pl.DataFrame) -> list[str]:
    """Title and description of each product as one text (a missing part left out)."""
    texts = products.select(
        pl.concat_str(["title", "description"], separator=" ", ignore_nulls=True).fill_null("")
    ).to_series()
    return texts.to_list()


def _order(
    item_ids: npt.NDArray[np.str_], scores: npt.NDArray[np.float64]
) -> npt.NDArray[np.int64]:
    """Positions sorted by score, descending, then item_id, ascending."""
    return np.lexsort((item_ids, -scores)).astype(np.int64)


def _pool_rows(task: SearchTask) -> dict[int, npt.NDArray[np.int64]]:
    """Each pool case's distinct products as rows of ``task.products``."""
    assert task.pools is not None
    rows = (
        task.pools.unique(["case", "item_id"], maintain_order=True)
        .join(task.products.select("item_id").with_row_index("row"), on="item_id", how="inner")
        .group_by("case", maintain_order=True)
        .agg(pl.col("row").cast(pl.Int64))
    )
    return {int(c): np.asarray(r, dtype=np.int64) for c, r in rows.iter_rows()}


def rank_lexical(task: SearchTask, k: int, scorer: Scorer) -> Ranked:
    """Rank every case with a lexical scorer: each distinct query once over the catalog, or each
    case over its pool (the matching products, then the rest of the pool, by item_id)."""
    ids = task.products["item_id"].to_numpy().astype(np.str_)
    queries = [q or "" for q in task.cases["query"].to_list()]
    if task.pools is None:
        answers: dict[str, list[str]] = {}
        for text in dict.fromkeys(queries):
            rows, scores = scorer(text, None)
            top = rows[_order(ids[rows], scores)][:k]
            answers[text] = ids[top].tolist()
        return Ranked([answers[text] for text in queries])
    pools = _pool_rows(task)
    items: list[list[str]] = []
    for case, text in enumerate(queries):
        pool = pools.get(case, np.empty(0, dtype=np.int64))
        rows, scores = scorer(text, pool)
        ordered = np.sort(pool)
        everything = np.zeros(pool.size, dtype=np.float64)  # the products that do not match: 0
        everything[np.searchsorted(ordered, rows)] = scores
        items.append(ids[ordered[_order(ids[ordered], everything)]].tolist())
    return Ranked(items)


@dataclass
class Popularity:
    """The most clicked products first, whatever the query; ties by item_id."""

    clicks: pl.DataFrame
    name: str = "popularity"

    def rank(self, task: SearchTask, k: int) -> Ranked:
        """The same list for every catalog case; each pool by its products' clicks."""
        counts = (
            task.products.select("item_id")
            .join(self.clicks, on="item_id", how="left")
            .with_columns(pl.col("clicks").fill_null(0))
            .sort(["clicks", "item_id"], descending=[True, False])
        )
        if task.pools is None:
            top = counts["item_id"].head(k).to_list()
            return Ranked([list(top) for _ in range(task.cases.height)])
        ranked = (
            task.pools.unique(["case", "item_id"], maintain_order=True)
            .join(counts.with_row_index("order"), on="item_id", how="inner")
            .sort("case", "order")
            .group_by("case", maintain_order=True)
            .agg("item_id")
        )
        lists = dict(ranked.iter_rows())
        return Ranked([list(lists.get(case, [])) for case in range(task.cases.height)])


def popularity(store: Store, settings: Settings, task: SearchTask) -> Popularity:
    """Popularity from the store's click events."""
    clicks = store.query(
        "SELECT item_id, count(*) AS clicks FROM events "
        "WHERE type = 'click' AND item_id IS NOT NULL GROUP BY item_id"
    )
    return Popularity(clicks.with_columns(pl.col("clicks").cast(pl.Int64)))


class TantivyBm25:
    """BM25 with tantivy's defaults over title and description."""

    name = "bm25-tantivy"

    def __init__(self, products: pl.DataFrame) -> None:
        builder = tantivy.SchemaBuilder()
        builder.add_unsigned_field("row", stored=False, indexed=True, fast=True)
        builder.add_text_field("title")
        builder.add_text_field("description")
        self.schema = builder.build()
        self.index = tantivy.Index(self.schema)
        writer = self.index.writer(heap_size=WRITER_HEAP, num_threads=1)
        titles = products["title"].to_list()
        descriptions = products["description"].to_list()
        for row, (title, description) in enumerate(zip(titles, descriptions, strict=True)):
            document = tantivy.Document()
            document.add_unsigned("row", row)
            if title:
                document.add_text("title", title)
            if description:
                document.add_text("description", description)
            writer.add_document(document)
        writer.commit()
        writer.wait_merging_threads()
        self.index.reload()
        self.searcher = self.index.searcher()
        self.size = products.height
        self.limit = self.size

    def scores(
        self, text: str, pool: npt.NDArray[np.int64] | None
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        """The rows matching ``text`` (within ``pool``) and their BM25 scores."""
        empty = np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64)
        text = query_words(text)
        if not text or self.size == 0 or (pool is not None and pool.size == 0):
            return empty
        query = self.index.parse_query(text, ["title", "description"])
        limit = min(self.size, self.limit)
        if pool is not None:
            within = tantivy.Query.term_set_query(self.schema, "row", pool.tolist())
            query = tantivy.Query.boolean_query(
                [
                    (tantivy.Occur.Must, query),
                    (tantivy.Occur.Must, tantivy.Query.const_score_query(within, 0.0)),
                ]
            )
            limit = pool.size
        hits = self.searcher.search(query, limit).hits
        if not hits:
            return empty
        rows = self.searcher.fast_field_values("row", [address for _, address in hits])
        return np.asarray(rows, dtype=np.int64), np.asarray([s for s, _ in hits], dtype=np.float64)

    def rank(self, task: SearchTask, k: int) -> Ranked:
        """Rank every case of the task."""
        self.limit = k + TIE_MARGIN
        return rank_lexical(task, k, self.scores)


def bm25_tantivy(store: Store, settings: Settings, task: SearchTask) -> TantivyBm25:
    """BM25 (tantivy defaults) over the task's products."""
    return TantivyBm25(task.products)


class Bm25sDefault:
    """BM25 with the bm25s library's defaults over title + description."""

    name = "bm25s"

    def __init__(self, products: pl.DataFrame) -> None:
        self.size = products.height
        self.retriever = bm25s.BM25()
        if self.size:
            corpus = bm25s.tokenize(product_text(products), show_progress=False)
            self.retriever.index(corpus, show_progress=False)

    def scores(
        self, text: str, pool: npt.NDArray[np.int64] | None
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        """The rows scoring above 0 for ``text`` (within ``pool``) and their scores."""
        tokens = bm25s.tokenize([text], return_ids=False, show_progress=False)[0]
        if not tokens or self.size == 0:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64)
        scores = np.asarray(self.retriever.get_scores(tokens), dtype=np.float64)
        rows = np.flatnonzero(scores > 0).astype(np.int64)
        if pool is not None:
            rows = rows[np.isin(rows, pool)]
        return rows, scores[rows]

    def rank(self, task: SearchTask, k: int) -> Ranked:
        """Rank every case of the task."""
        return rank_lexical(task, k, self.scores)


def bm25s_default(store: Store, settings: Settings, task: SearchTask) -> Bm25sDefault:
    """BM25 (bm25s defaults) over the task's products."""
    return Bm25sDefault(task.products)
