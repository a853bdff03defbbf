"""The search engine: understand the query, retrieve (lexical + dense), re-rank, explain.

Retrieval pools the lexical hits of the query as typed and as understood (corrected, intents
removed, synonyms added), fuzzy lexical hits (on large catalogs only when some long word of
the query is in no product's name or the exact words find too few), the dense index's nearest
products and the products shoppers clicked after the same query; the pool is ordered by the
learnt ranker (its full model on the best of a screening by its first trees), or, without
one, by reciprocal-rank fusion of the lexical and dense orders. The ranker's per-field BM25
comes from term statistics held in memory (``term_statistics``), equal to tantivy's, not
from more searches. When nothing matches, the query is relaxed step by step (corrected,
fuzzier, dense only) and the answer says how.

(Tried and dropped: one disjunction-max search over all phrasings instead of one search
each saved 0.3 ms at 100k products but cost 0.01-0.03 MAP@5 on Best Buy clicks.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime

import numpy as np
import polars as pl

from aisle.catalog.embeddings import TextEncoder, product_text
from aisle.errors import SearchError
from aisle.search.clicks import ClickIndex
from aisle.search.dense import DenseIndex
from aisle.search.documents import conform
from aisle.search.features import (
    PERSONAL_FEATURES,
    Catalog,
    QueryEvidence,
    affinity_features,
    feature_names,
    features,
)
from aisle.search.lexical import LexicalIndex, QueryTokens, fuzzy_term
from aisle.search.lexical_fields import SORTS, TEXT_FIELDS, field_texts
from aisle.search.ltr import SearchRanker
from aisle.search.named import folded_ids, named_columns, named_first
from aisle.search.results import Hit, SearchResult, Understanding, Understood
from aisle.search.taste import PERSONAL_WEIGHT, RECOMMEND_WEIGHT, personalised, standing
from aisle.search.term_statistics import TermStatistics
from aisle.threads import torch_threads

#: Candidates taken from each retrieval route.
POOL = 100
#: Fuzzy lexical hits looked up when the fuzzy pass runs: the first ``POOL`` join the pool, all
#: of them give the candidates' fuzzy BM25 feature.
FUZZY_DEPTH = 4 * POOL
#: The fields a fuzzy match looks at (tantivy's "names" field is made of them).
NAME_FIELDS = ("title", "brand", "aliases")
#: Below this many products the fuzzy pass always runs (a fraction of a millisecond there);
#: from here on, only when a word of the query is in no product's name or the exact words
#: find fewer than ``POOL`` products: at 100k products it cost 1-2 ms a query, and skipping
#: it otherwise lost 0.011 MAP@5 text-only and gained 0.008 click-aware on Best Buy clicks
#: (the rule forced on that small catalog).
FUZZY_ALWAYS_BELOW = 20_000
#: Reciprocal-rank fusion constant (Cormack et al.): fused = sum 1 / (RRF_K + rank).
RRF_K = 60
#: Dense neighbours below this cosine do not count as matches on their own.
MIN_COSINE = 0.35
#: Torch threads while encoding queries: one query gains nothing from more, and on a busy
#: machine more only contend.
QUERY_THREADS = 1
#: Queries whose understanding is kept, at most.
UNDERSTOOD_CACHE = 10_000
#: Query vectors kept, at most (about 1.5 KB each with MiniLM): a serving process sees an
#: unbounded stream of distinct queries; the oldest go first.
QUERY_VECTOR_CACHE = 50_000
#: Queries whose candidates, feature rows and scores are kept (per day asked), at most: most
#: searches repeat a recent query (about 30 KB each for a pool of 200 candidates).
RANKED_CACHE = 4_096


class SearchEngine:
    """Hybrid retrieval and learnt ranking over one catalog (see the module's notes)."""

    def __init__(
        self,
        documents: pl.DataFrame,
        lexical: LexicalIndex,
        *,
        vectors: np.ndarray | None = None,
        encoder: TextEncoder | None = None,
        understanding: Understanding | None = None,
        clicks: ClickIndex | None = None,
        ranker: SearchRanker | None = None,
        dense: DenseIndex | None = None,
        terms: TermStatistics | None = None,
    ) -> None:
        self.documents = documents
        self.catalog = Catalog.of(documents)
        #: Postings of the documents' text fields, for the candidates' per-field BM25 (the
        #: same products in the same order may share one: ``terms=``).
        self.terms = terms or TermStatistics.of(field_texts(conform(documents)),
                                                lexical.tokenizers)  # fmt: skip
        self.position = {item: i for i, item in enumerate(self.catalog.item_ids)}
        self.folded_ids = folded_ids(self.catalog.item_ids)  # for queries that name products
        #: Products taken out since the engine was built (their columns stay, unused).
        self.removed = np.zeros(len(self.catalog.item_ids), dtype=bool)
        self.lexical = lexical
        self.vectors = vectors
        #: The nearest-neighbour graph over ``vectors`` for large catalogs (None: a full scan).
        self.dense = dense
        self.encoder = encoder
        self.understanding = understanding
        self.clicks = clicks
        self.ranker = ranker
        #: Weights of the customer's affinity and of a recommender's scores (``personalised``).
        self.personal_weights = (PERSONAL_WEIGHT, RECOMMEND_WEIGHT)
        #: Query vectors by the text searched (oldest first; ``past_queries`` fills it at load).
        self.query_vectors: dict[str, np.ndarray] = {}
        self._understood: dict[str, Understood] = {}
        self._fuzzy_hits: dict[str, dict[int, float]] = {}
        self._tokens: dict[str, QueryTokens] = {}
        self._ranked: dict[tuple[str, date], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        #: The dense index whose keys ``_dense_columns`` maps, and the map (key -> column).
        self._key_columns: tuple[DenseIndex, np.ndarray] | None = None

    # -- live catalog updates ---------------------------------------------------------------
    def upsert(self, products: pl.DataFrame) -> None:
        """Add or change products (a frame of search-document columns): searchable at once.

        A changed product keeps its column (and its click history); a new one is appended.
        Its text is embedded with the engine's encoder, so it is found by meaning too."""
        fresh = conform(products)
        if not fresh.height:
            return
        known = fresh.filter(pl.col("item_id").is_in(list(self.position)))
        added = fresh.filter(~pl.col("item_id").is_in(list(self.position)))
        kept_popularity = known.drop("popularity").join(
            self.documents.select("item_id", "popularity"), on="item_id", how="left"
        )
        documents = self.documents.update(kept_popularity.select(self.documents.columns),
                                          on="item_id", include_nulls=True)  # fmt: skip
        self.documents = pl.concat([documents, added.select(self.documents.columns)])
        self.catalog = Catalog.of(self.documents)
        self.position = {item: i for i, item in enumerate(self.catalog.item_ids)}
        self.folded_ids = folded_ids(self.catalog.item_ids)
        self.removed = np.concatenate([self.removed, np.zeros(added.height, dtype=bool)])
        self.removed[self._columns(fresh["item_id"].to_list())] = False
        if self.clicks is not None:
            self.clicks.grow(added.height)
        self.terms.upsert(self._columns(fresh["item_id"].to_list()), field_texts(fresh))
        if self.vectors is not None and self.encoder is not None:
            texts = product_text(fresh)
            encoded = self.encoder.encode(texts["text"].to_list())
            room = np.zeros((added.height, self.vectors.shape[1]), dtype=self.vectors.dtype)
            self.vectors = np.vstack([self.vectors, room])
            self.vectors[self._columns(texts["item_id"].to_list())] = encoded
            if self.dense is not None:
                self.dense.upsert(texts["item_id"].to_list(), encoded)
                self._key_columns = None  # new keys: the map is made again when next asked
        self.lexical.upsert(fresh)
        self.clear_caches(queries=False)

    def remove(self, item_ids: Sequence[str]) -> int:
        """Take products out of search at once; returns how many were there."""
        columns = self._columns([i for i in item_ids if i in self.position])
        gone = int((~self.removed[columns]).sum())
        self.removed[columns] = True
        self.terms.remove(columns)
        self.lexical.delete(list(item_ids))
        if self.dense is not None:
            self.dense.remove(list(item_ids))
        self.clear_caches(queries=False)
        return gone

    # -- query side -------------------------------------------------------------------------
    def prime(self, texts: Sequence[str]) -> None:
        """Encode many queries at once (evaluation), so single lookups hit the cache."""
        if self.encoder is None:
            return
        wanted = set(texts)
        for text in texts:  # what is searched: the query understood
            parsed = self.understand(text)
            if parsed is not None and parsed.text.strip():
                wanted.add(parsed.text)
        fresh = sorted(t for t in wanted if t not in self.query_vectors)
        with torch_threads(QUERY_THREADS):
            for start in range(0, len(fresh), 256):
                chunk = fresh[start : start + 256]
                for text, vector in zip(chunk, self.encoder.encode(chunk), strict=True):
                    self.query_vectors[text] = vector

    def query_vector(self, text: str) -> np.ndarray | None:
        """The query's unit vector (cached), or None without an encoder."""
        if self.encoder is None or self.vectors is None:
            return None
        found = self.query_vectors.get(text)
        if found is None:
            while len(self.query_vectors) >= QUERY_VECTOR_CACHE:
                del self.query_vectors[next(iter(self.query_vectors))]
            with torch_threads(QUERY_THREADS):
                found = self.query_vectors[text] = self.encoder.encode([text])[0]
        return found

    def understand(self, query: str) -> Understood | None:
        """The query understood, where the engine has query understanding (cached)."""
        if self.understanding is None:
            return None
        if query not in self._understood:
            if len(self._understood) >= UNDERSTOOD_CACHE:
                self._understood.clear()
            self._understood[query] = self.understanding.understand(query)
        return self._understood[query]

    # -- candidates and their evidence ------------------------------------------------------
    def _columns(self, item_ids: Sequence[str]) -> np.ndarray:
        return np.asarray([self.position[i] for i in item_ids if i in self.position], np.int64)

    def _lexical(self, text: str, *, fuzzy: bool, limit: int) -> dict[int, float]:
        if not text.strip():
            return {}
        hits = self.lexical.search(text, limit=limit, fuzzy=fuzzy)
        position = self.position
        scores = hits.scores.tolist()  # Python floats at once, not one numpy scalar at a time
        return {position[i]: s for i, s in zip(hits.item_ids, scores, strict=True) if i in position}

    def clear_caches(self, *, queries: bool = True) -> None:
        """Forget ranked queries, tokens and fuzzy hits (after the catalog changed) and, with
        ``queries``, query vectors and understandings too (to time queries cold)."""
        if queries:
            self.query_vectors.clear()
            self._understood.clear()
        self._ranked.clear()
        self._fuzzy_hits.clear()
        self._tokens.clear()

    def tokens(self, text: str) -> QueryTokens:
        """The text's terms and their tokens in each field (remembered for the last few texts)."""
        found = self._tokens.get(text)
        if found is None:
            if len(self._tokens) >= 64:
                self._tokens.clear()
            found = self._tokens[text] = self.lexical.tokens(text)
        return found

    def _signature(self, text: str) -> tuple[tuple[tuple[str, tuple[str, ...]], ...], ...]:
        """What the exact lexical query of ``text`` is made of: its tokens in every field."""
        return tuple(
            tuple((name, tuple(found)) for name, found in sorted(fields.items()))
            for _, fields in self.tokens(text)
        )

    def _dense_columns(self, keys: np.ndarray) -> np.ndarray:
        """The columns of dense-index keys (-1: not a product of this engine), through an
        array for the dense index in use: made once, grown as products are added."""
        dense = self.dense
        assert dense is not None
        if self._key_columns is None or self._key_columns[0] is not dense:
            table = np.full(dense.next_key, -1, dtype=np.int64)
            for item, key in dense.keys_in_use().items():
                table[key] = self.position.get(item, -1)
            self._key_columns = (dense, table)
        table = self._key_columns[1]
        if len(keys) and int(keys.max()) >= len(table):  # keys given since: map afresh
            self._key_columns = None
            return self._dense_columns(keys)
        return np.asarray(table[keys], dtype=np.int64)

    def _fuzzy(self, text: str) -> dict[int, float]:
        """Fuzzy lexical hits, remembered for the last few texts: retrieval and the features
        of the same query ask for the same ones."""
        if text not in self._fuzzy_hits:
            if len(self._fuzzy_hits) >= 8:
                self._fuzzy_hits.pop(next(iter(self._fuzzy_hits)))
            self._fuzzy_hits[text] = self._lexical(text, fuzzy=True, limit=FUZZY_DEPTH)
        return self._fuzzy_hits[text]

    def needs_fuzzy(self, text: str) -> bool:
        """Whether some word of ``text`` that may be matched fuzzily is in no product's name:
        only then can near spellings find what the words as typed do not. On small catalogs,
        always (``FUZZY_ALWAYS_BELOW``)."""
        if len(self.catalog.item_ids) < FUZZY_ALWAYS_BELOW:
            return True
        return any(
            fuzzy_term(term)
            and not any(self.terms.doc_freq(f, t) for f in NAME_FIELDS for t in fields.get(f, []))
            for term, fields in self.tokens(text)
        )

    def candidates(self, query: str, searched: str, expansions: Sequence[str] = ()) -> np.ndarray:
        """The retrieval pool of a query (item columns, lexical order first)."""
        # phrasings that reach the index as the same tokens ("Halo 3", "halo 3") search once
        phrasings: dict[object, str] = {}
        for text in (searched, query, *expansions):
            phrasings.setdefault(self._signature(text), text)
        pools = [
            np.fromiter(self._lexical(text, fuzzy=False, limit=POOL), np.int64)
            for text in phrasings.values()
        ]
        found = len(pd_unique(np.concatenate(pools))) if pools else 0
        if found < POOL or self.needs_fuzzy(searched):  # near spellings may find what is missing
            pools.append(np.fromiter(self._fuzzy(searched), np.int64)[:POOL])
        vector = self.query_vector(searched)
        if vector is not None and self.vectors is not None:
            if self.dense is not None:
                keys, cosines = self.dense.search_keys(vector, POOL)
                near = self._dense_columns(keys[cosines >= MIN_COSINE])
                pools.append(near[near >= 0])
            else:
                pools.append(_nearest(self.vectors @ vector, POOL, MIN_COSINE))
        if self.clicks is not None:
            pools.append(self.clicks.clicked(query, POOL))
        merged = np.concatenate(pools) if pools else np.zeros(0, np.int64)
        return pd_unique(merged)

    def _fuzzy_scores(self, text: str, columns: np.ndarray, bm25: np.ndarray) -> np.ndarray:
        """The fuzzy query's score of each candidate where the fuzzy pass runs for this text
        (0 past its ``FUZZY_DEPTH`` hits); elsewhere the exact BM25: with every word found as
        typed, near spellings add nothing worth a search. (Adding each word's fuzzy constant
        for the candidates holding it exactly, and not cutting at the depth, ranked worse on
        Best Buy clicks: MAP@5 0.725 against 0.738.)"""
        hits = self._fuzzy_hits.get(text)
        if hits is None and self.needs_fuzzy(text):
            hits = self._fuzzy(text)
        if hits is None:
            return bm25
        return np.asarray([hits.get(c, 0.0) for c in columns.tolist()], dtype=np.float64)

    def evidence(
        self,
        query: str,
        parsed: Understood | None,
        columns: np.ndarray,
        affinity: Mapping[str, Mapping[str, float]] | None = None,
        at: datetime | None = None,
    ) -> QueryEvidence:
        """Everything the features need about these candidates of this query."""
        searched = parsed.text if parsed is not None and parsed.text.strip() else query
        fields = self.terms.field_scores(self.tokens(searched), columns)
        boosts = np.asarray([self.lexical.boosts.get(f, 1.0) for f in TEXT_FIELDS])
        bm25 = np.asarray(fields, dtype=np.float64) @ boosts
        vector = self.query_vector(searched)
        dense = (
            self.vectors[columns] @ vector
            if vector is not None and self.vectors is not None
            else np.zeros(len(columns))
        )
        categories = tuple(parsed.categories) if parsed is not None else ()
        return QueryEvidence(
            text=searched,
            field_scores=fields,
            bm25=bm25,
            bm25_fuzzy=self._fuzzy_scores(searched, columns, bm25),
            dense=np.asarray(dense, dtype=np.float32),
            price_min=parsed.price_min if parsed is not None else None,
            price_max=parsed.price_max if parsed is not None else None,
            categories=categories,
            expansions=tuple(parsed.expansions) if parsed is not None else (),
            at=(at or datetime.now(UTC)).timestamp(),
            affinity={k: dict(v) for k, v in (affinity or {}).items()},
        )

    def feature_rows(
        self,
        query: str,
        columns: np.ndarray,
        affinity: Mapping[str, Mapping[str, float]] | None = None,
        at: datetime | None = None,
    ) -> np.ndarray:
        """Feature rows of these candidates, as the ranker sees them (asked ``at``: now)."""
        parsed = self.understand(query)
        evidence = self.evidence(query, parsed, columns, affinity, at)
        return features(self.catalog, columns, evidence, self.clicks, raw_query=query)

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The ranker's feature columns for this engine."""
        return feature_names(clicks=self.clicks is not None)

    # -- ranking ------------------------------------------------------------------------------
    def rank(
        self,
        query: str,
        *,
        pool: Sequence[str] | None = None,
        affinity: Mapping[str, Mapping[str, float]] | None = None,
        personal_scores: Mapping[str, float] | None = None,
        at: datetime | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Candidate columns best first, their scores and feature rows, for a query asked
        ``at`` (None: now). ``pool`` restricts ranking to these products (a judged pool);
        otherwise retrieval makes the pool. A customer's ``affinity`` (``customer_affinity``)
        and ``personal_scores`` (a recommender's scores for them, by item_id) lift the
        products they are likelier to want (``personalised``)."""
        at = at or datetime.now(UTC)
        key = (query, at.date()) if pool is None else None
        ranked = self._ranked.get(key) if key is not None else None
        if ranked is None:
            ranked = self._ranked_anew(query, pool, at)
            if key is not None:
                while len(self._ranked) >= RANKED_CACHE:
                    del self._ranked[next(iter(self._ranked))]
                self._ranked[key] = ranked
        columns, scores, rows = ranked
        if affinity or personal_scores:
            names = self.feature_names
            if affinity:  # the customer's columns filled in, the ranker asked again
                rows = rows.copy()
                category, brand = affinity_features(self.catalog, columns, affinity)
                rows[:, names.index("category_affinity")] = category
                rows[:, names.index("brand_affinity")] = brand
                if self.ranker is not None and self.ranker.reads(PERSONAL_FEATURES):
                    scores = self.ranker.predict_screened(rows)
            liked = rows[:, names.index("category_affinity")]
            liked = liked + rows[:, names.index("brand_affinity")]
            ids = self.catalog.item_ids
            recommended = standing(personal_scores or {}, [ids[c] for c in columns.tolist()])
            scores = personalised(scores, liked, recommended, self.personal_weights)
        named = self._named(query) if pool is None else np.zeros(0, np.int64)
        # products the query names by id first; ties by catalog order, deterministic
        order = np.lexsort((columns, -scores, -named_first(columns, named)))
        return columns[order], scores[order], rows[order]

    def _named(self, query: str) -> np.ndarray:
        """The columns of the products the query names by id (``aisle.search.named``)."""
        return named_columns(query, self.position, self.folded_ids)

    def _ranked_anew(
        self, query: str, pool: Sequence[str] | None, at: datetime
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Candidates (of ``pool``, or retrieved), their feature rows without a customer and
        their scores: what ``rank`` keeps per query and day."""
        parsed = self.understand(query)
        searched = parsed.text if parsed is not None and parsed.text.strip() else query
        expansions = list(parsed.expansions) if parsed is not None else []
        columns = (
            self._columns(pool)
            if pool is not None
            else pd_unique(np.concatenate([self._named(query),
                                           self.candidates(query, searched, expansions)]))
        )  # fmt: skip
        columns = columns[~self.removed[columns]]
        if not len(columns):
            return columns, np.zeros(0), np.zeros((0, len(self.feature_names)), np.float32)
        evidence = self.evidence(query, parsed, columns, None, at)
        rows = features(self.catalog, columns, evidence, self.clicks, raw_query=query)
        if self.ranker is not None:
            return columns, self.ranker.predict_screened(rows), rows
        return columns, _fused(evidence.bm25, evidence.dense), rows

    def search(
        self,
        query: str,
        *,
        limit: int = 10,
        offset: int = 0,
        filters: Mapping[str, str | Sequence[str]] | None = None,
        price_min: float | None = None,
        price_max: float | None = None,
        sort: str | None = None,
        facets: Sequence[str] = (),
        affinity: Mapping[str, Mapping[str, float]] | None = None,
        explain: bool = False,
        personal_scores: Mapping[str, float] | None = None,
    ) -> SearchResult:
        """A page of results for a shopper's query, within the filters (brand, category: one
        value or any of several) and price bounds (given, or read from the query: "under
        $20"), in relevance order or sorted ("price", "-price", "popularity", "newest");
        with counts per value of the asked facets. When nothing matches, the query is relaxed
        (the price read from the query dropped, then dense neighbours alone) and the result
        says so. With a customer, ``affinity`` and ``personal_scores`` personalise the order
        (see ``rank``)."""
        if sort is not None and sort not in SORTS:
            raise SearchError(f"unknown sort {sort!r}; choose one of {', '.join(SORTS)}")
        parsed = self.understand(query)
        searched = parsed.text if parsed is not None and parsed.text.strip() else query
        notes = parsed.explain() if parsed is not None else []
        read_min = parsed.price_min if parsed is not None else None
        read_max = parsed.price_max if parsed is not None else None
        low = price_min if price_min is not None else read_min
        high = price_max if price_max is not None else read_max
        columns, scores, rows = self.rank(query, affinity=affinity, personal_scores=personal_scores)
        relaxed: list[str] = []
        keep = self._allowed(columns, filters, low, high)
        only_read = (price_min, price_max) == (None, None) and (read_min, read_max) != (None, None)
        if not keep.any() and len(columns) and only_read:
            low = high = None
            keep = self._allowed(columns, filters, low, high)
            if keep.any():
                relaxed.append("dropped the price read from the query: nothing matched it")
        if not keep.any():
            columns, scores, rows = self._dense_only(query, searched, affinity, personal_scores)
            keep = self._allowed(columns, filters, low, high)
            if keep.any():
                relaxed.append("no product matched the words: nearest by meaning instead")
        columns, scores, rows = columns[keep], scores[keep], rows[keep]
        if sort is not None:
            order = self._sorted(columns, sort)
            columns, scores, rows = columns[order], scores[order], rows[order]
        counts = (
            self.lexical.facet_counts(searched, list(facets), filters=filters,
                                      price_min=low, price_max=high, fuzzy=True)
            if facets else {}
        )  # fmt: skip
        page = slice(offset, offset + limit)
        hits = [
            Hit(self.catalog.item_ids[c], float(s), self._why(row) if explain else None)
            for c, s, row in zip(columns[page], scores[page], rows[page], strict=True)
        ]
        return SearchResult(query, searched, hits, len(columns), counts, notes, relaxed)

    def _allowed(
        self,
        columns: np.ndarray,
        filters: Mapping[str, str | Sequence[str]] | None,
        low: float | None,
        high: float | None,
    ) -> np.ndarray:
        """Which of these candidates pass the filters and price bounds."""
        keep = np.ones(len(columns), dtype=bool)
        for name, wanted in (filters or {}).items():
            values = {"brand": self.catalog.brand, "category": self.catalog.category}.get(name)
            if values is None:
                raise SearchError(f"cannot filter on {name!r}; filters are brand and category")
            chosen = {wanted} if isinstance(wanted, str) else set(wanted)
            keep &= np.asarray([values[c] in chosen for c in columns], dtype=bool)
        price = self.catalog.price[columns]
        if low is not None:
            keep &= np.nan_to_num(price, nan=-np.inf) >= low
        if high is not None:
            keep &= np.nan_to_num(price, nan=np.inf) <= high
        return keep

    def _dense_only(
        self,
        query: str,
        searched: str,
        affinity: Mapping[str, Mapping[str, float]] | None,
        personal_scores: Mapping[str, float] | None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The nearest products by meaning, whatever their cosine, ranked as usual."""
        vector = self.query_vector(searched)
        if vector is None or self.vectors is None:
            empty = np.zeros(0, np.int64)
            return empty, np.zeros(0), np.zeros((0, len(self.feature_names)), np.float32)
        nearest = _nearest(self.vectors @ vector, POOL, -np.inf)
        ids = [self.catalog.item_ids[c] for c in nearest]
        return self.rank(query, pool=ids, affinity=affinity, personal_scores=personal_scores)

    def _sorted(self, columns: np.ndarray, sort: str) -> np.ndarray:
        """The order of these candidates by a sort key (missing values last)."""
        if sort in ("price", "-price"):
            key = self.catalog.price[columns]
            key = np.where(np.isnan(key), np.inf, key if sort == "price" else -key)
        elif sort == "popularity":
            key = -self.catalog.log_popularity[columns]
        else:
            key = -np.nan_to_num(self.catalog.updated[columns], nan=-np.inf)
        return np.argsort(key, kind="stable")

    def _why(self, row: np.ndarray) -> list[str]:
        names = self.feature_names
        if self.ranker is None:
            return [f"{n} = {v:.3g}" for n, v in zip(names, row, strict=True) if v]
        parts = self.ranker.contributions(row[None, :])[0][:-1]
        top = np.argsort(-np.abs(parts))[:4]
        return [f"{names[i]} = {row[i]:.3g} ({parts[i]:+.2f})" for i in top if parts[i]]


def _nearest(cosine: np.ndarray, k: int, least: float) -> np.ndarray:
    """Columns of the ``k`` highest cosines at or above ``least``, best first (ties by column).
    A partial sort: sorting every product's cosine took half the time of a query at 100k."""
    top = np.argpartition(-cosine, k - 1)[:k] if len(cosine) > k else np.arange(len(cosine))
    top = top[np.lexsort((top, -cosine[top]))]
    return top[cosine[top] >= least]


def _fused(bm25: np.ndarray, dense: np.ndarray) -> np.ndarray:
    """Reciprocal-rank fusion of the lexical and dense orders."""
    out = np.zeros(len(bm25))
    for scores in (bm25, dense):
        order = np.argsort(-scores, kind="stable")
        rank = np.empty(len(scores))
        rank[order] = np.arange(1, len(scores) + 1)
        out += np.where(scores > 0, 1.0 / (RRF_K + rank), 0.0)
    return out


def pd_unique(values: np.ndarray) -> np.ndarray:
    """Distinct values in order of first appearance."""
    _, first = np.unique(values, return_index=True)
    return values[np.sort(first)]
