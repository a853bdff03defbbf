"""Lexical product search: BM25 over the text fields of the search documents, with exact
brand and category filters, price ranges, sorts and facet counts, on tantivy.

Every text goes through ``tokenize.segment`` (so Chinese is split into words) before tantivy's
own tokenizer sees it, on documents and queries alike. Shoppers' queries are never handed to
tantivy's query parser, whose syntax (quotes, colons, brackets, AND/OR, a leading minus) would
reject or reinterpret ordinary product queries: the query is reduced to its terms and built
as a boolean query of per-field term queries, each field boosted.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import polars as pl
import tantivy
from tantivy import FieldType, Occur, Query

from aisle.errors import SearchError, StoreError
from aisle.search.documents import conform
from aisle.search.lexical_fields import (
    BATCH,
    EXACT_FIELDS,
    FACET_VALUES,
    FACETS,
    FORMAT,
    FUZZY_MIN_LENGTH,
    FUZZY_TWO_EDITS_LENGTH,
    FUZZY_WEIGHT,
    ID_CLAUSES,
    MANIFEST,
    NAMES_FIELD,
    PRICE_RANGES,
    SORTS,
    TEXT_FIELDS,
    UPDATE_HEAP,
    WRITER_HEAP,
    WRITER_THREADS,
    analyzer,
    check_boosts,
    check_tokenizers,
    json_lines,
    schema,
)
from aisle.search.tokenize import has_cjk, terms

Filters = Mapping[str, str | Sequence[str]]
#: A query's terms as typed, each with its tokens in every text field.
QueryTokens = list[tuple[str, dict[str, list[str]]]]


@dataclass(frozen=True)
class LexicalHits:
    """Products matching a query, best first. ``scores`` are BM25 relevance, or with a sort
    the sort value (price, popularity, updated_at in seconds since the epoch; NaN where the
    product has none). ``total`` counts every match, not only those returned."""

    item_ids: list[str]
    scores: npt.NDArray[np.float32]
    total: int

    def __len__(self) -> int:
        return len(self.item_ids)


def fuzzy_term(term: str) -> bool:
    """Whether a query term is matched fuzzily too: long enough, letters only, not Chinese."""
    return len(term) >= FUZZY_MIN_LENGTH and term.isalpha() and not has_cjk(term)


def _count(result: tantivy.SearchResult) -> int:
    """How many documents matched (the stub of SearchResult omits ``count``)."""
    return int(getattr(result, "count", 0) or 0)


def _item_id(searcher: tantivy.Searcher, address: tantivy.DocAddress) -> str:
    return str(searcher.doc(address).get_first("item_id"))


#: Item ids of document addresses remembered at most (a stored-document read costs more than
#: the rest of a hit; the popular products' addresses come back query after query).
ADDRESSES: Final = 262_144


class LexicalIndex:
    """A tantivy index of search documents: create, open, upsert, delete, search, facet."""

    def __init__(
        self,
        index: tantivy.Index,
        path: Path | None,
        boosts: Mapping[str, float],
        tokenizers: Mapping[str, str],
        created_at: str,
    ) -> None:
        self._index = index
        self._schema = index.schema
        self.path = path
        self.boosts: Mapping[str, float] = MappingProxyType(dict(boosts))
        self.tokenizers: Mapping[str, str] = MappingProxyType(dict(tokenizers))
        self.created_at = created_at
        self._writer: tantivy.IndexWriter | None = None
        self._lock = threading.Lock()
        #: (segment, document) -> item_id for the current reader, and the reader it was made
        #: for (documents, segments); replaced after every reload.
        self._addresses: dict[tuple[int, int], str] = {}
        self._reader: tuple[int, int] = (-1, -1)

    # -- building and opening -------------------------------------------------------------

    @classmethod
    def create(
        cls,
        documents: pl.DataFrame,
        path: Path | None = None,
        *,
        boosts: Mapping[str, float] | None = None,
        tokenizers: str | Mapping[str, str] | None = None,
        heap_size: int = WRITER_HEAP,
        threads: int = WRITER_THREADS,
    ) -> LexicalIndex:
        """Index ``documents`` (a frame of ``aisle.search.documents``) in memory, or in the
        directory ``path`` (created; it must not hold an index already). ``boosts`` and
        ``tokenizers`` (one for every text field, or some fields' own) replace the defaults
        field by field."""
        analysers = check_tokenizers(tokenizers)
        merged = check_boosts(boosts)
        if path is not None:
            path.mkdir(parents=True, exist_ok=True)
            if tantivy.Index.exists(str(path)):
                raise StoreError(
                    f"{path}: a search index exists already (open it, or remove the folder)"
                )
        index = tantivy.Index(schema(analysers), path=None if path is None else str(path))
        created = datetime.now(UTC).isoformat(timespec="seconds")
        lexical = cls(index, path, merged, analysers, created)
        writer = index.writer(heap_size=heap_size, num_threads=threads)
        frame = conform(documents)
        # In batches: the writer's thread indexes one batch (it queues up to 10,000 documents)
        # while this one prepares the next, so preparation costs no wall time.
        for start in range(0, frame.height, BATCH):
            for line in json_lines(frame.slice(start, BATCH)):
                writer.add_json(line)
        writer.commit()
        writer.wait_merging_threads()  # drops the writer and its memory: updates use a small one
        index.reload()
        lexical._write_manifest()
        return lexical

    @classmethod
    def open(cls, path: Path) -> LexicalIndex:
        """The index saved in the directory ``path``."""
        manifest_path = path / MANIFEST
        if not manifest_path.is_file() or not tantivy.Index.exists(str(path)):
            raise StoreError(f"{path}: no search index here (build one with LexicalIndex.create)")
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("format") != FORMAT:
            raise StoreError(
                f"{path}: search index format {manifest.get('format')}, this aisle reads "
                f"{FORMAT} (rebuild the index)"
            )
        index = tantivy.Index.open(str(path))
        boosts, tokenizers = manifest["boosts"], manifest["tokenizers"]
        return cls(index, path, boosts, tokenizers, manifest["created_at"])

    def _write_manifest(self) -> None:
        if self.path is None:
            return
        manifest = {
            "format": FORMAT,
            "fields": list(TEXT_FIELDS),
            "boosts": dict(self.boosts),
            "tokenizers": dict(self.tokenizers),
            "documents": len(self),
            "created_at": self.created_at,
            "updated_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "tantivy": metadata.version("tantivy"),
        }
        temporary = self.path / f".{MANIFEST}.tmp"
        temporary.write_text(json.dumps(manifest, indent=2) + "\n")
        os.replace(temporary, self.path / MANIFEST)  # never half a manifest

    # -- updates ---------------------------------------------------------------------------

    def _commit(self, writer: tantivy.IndexWriter) -> None:
        writer.commit()
        self._index.reload()  # searchable now, not on the reader's next poll
        self._addresses = {}  # after the reload: addresses of the old reader never land in it
        self._write_manifest()

    def _searcher(self) -> tuple[tantivy.Searcher, dict[tuple[int, int], str]]:
        """The current searcher and the item ids of its addresses (taken first: a reload in
        between leaves new addresses in a map about to be dropped, never old ones in the new).
        A reader reloaded behind this object's back (another process committed to the index
        on disk) changes its documents or segments, and the map is dropped."""
        addresses = self._addresses
        searcher = self._index.searcher()
        reader = (searcher.num_docs, searcher.num_segments)
        if reader != self._reader or len(addresses) >= ADDRESSES:
            addresses = self._addresses = {}
            self._reader = reader
        return searcher, addresses

    @staticmethod
    def _ids(
        searcher: tantivy.Searcher,
        addresses: dict[tuple[int, int], str],
        hits: list[tuple[Any, tantivy.DocAddress]],
    ) -> list[str]:
        ids = []
        for _, address in hits:
            key = (address.segment_ord, address.doc)
            item = addresses.get(key)
            if item is None:
                item = addresses[key] = _item_id(searcher, address)
            ids.append(item)
        return ids

    def _updater(self) -> tantivy.IndexWriter:
        """The writer for updates, made on the first one and kept (it holds the index's lock
        until ``close``)."""
        if self._writer is None:
            try:
                self._writer = self._index.writer(heap_size=UPDATE_HEAP, num_threads=1)
            except ValueError as error:  # tantivy's answer when another writer holds the lock
                where = self.path or "in-memory index"
                raise StoreError(
                    f"{where}: cannot write to the search index ({error}); close the other "
                    "LexicalIndex or process updating it"
                ) from error
        return self._writer

    def close(self) -> None:
        """Let go of the writer (and the index's lock); searching still works."""
        with self._lock:
            if self._writer is not None:
                self._writer.wait_merging_threads()
                self._writer = None

    def _id_query(self, item_ids: Sequence[str]) -> Query:
        if len(item_ids) > ID_CLAUSES:
            return Query.term_set_query(self._schema, "item_id", list(item_ids))
        # A term-set query walks the whole item_id dictionary; a few hundred term lookups
        # are cheaper (0.1 ms against 0.5 ms for 100 ids on Best Buy, more on big catalogs).
        return Query.boolean_query(
            [(Occur.Should, Query.term_query(self._schema, "item_id", item)) for item in item_ids]
        )

    def upsert(self, documents: pl.DataFrame) -> None:
        """Add ``documents``, replacing any product of the same item_id; searchable on return."""
        frame = conform(documents)
        if frame.height == 0:
            return
        lines = json_lines(frame)
        with self._lock:
            writer = self._updater()
            writer.delete_documents_by_query(self._id_query(frame["item_id"].to_list()))
            for line in lines:
                writer.add_json(line)
            self._commit(writer)

    def delete(self, item_ids: Sequence[str]) -> int:
        """Remove the products ``item_ids``; returns how many were in the index."""
        ids = list(dict.fromkeys(item_ids))
        if not ids:
            return 0
        with self._lock:
            found = _count(self._index.searcher().search(self._id_query(ids), 1, count=True))
            if found:
                writer = self._updater()
                writer.delete_documents_by_query(self._id_query(ids))
                self._commit(writer)
            return found

    # -- reading ---------------------------------------------------------------------------

    def __len__(self) -> int:
        return int(self._index.searcher().num_docs)

    @property
    def item_ids(self) -> list[str]:
        """Every item_id in the index (in index order)."""
        searcher = self._index.searcher()
        if searcher.num_docs == 0:
            return []
        hits = searcher.search(Query.all_query(), searcher.num_docs, count=False).hits
        return [_item_id(searcher, address) for _, address in hits]

    def tokens(self, query: str) -> QueryTokens:
        """Each term of ``query`` as typed, with its tokens in each text field (fields differ
        in stemming); a token already given by an earlier term ("lamp lamps") is left out."""
        seen: set[tuple[str, str]] = set()
        tokens: QueryTokens = []
        for term in terms(query):
            fields = {}
            for field, tokenizer in self.tokenizers.items():
                fresh = [t for t in analyzer(tokenizer).analyze(term) if (field, t) not in seen]
                seen.update((field, t) for t in fresh)
                if fresh:
                    fields[field] = fresh
            if fields:
                tokens.append((term, fields))
        return tokens

    def _field_query(self, field: str, tokens: QueryTokens) -> Query:
        return Query.boolean_query(
            [
                (Occur.Should, Query.term_query(self._schema, field, token))
                for _, fields in tokens
                for token in fields.get(field, [])
            ]
        )

    def _text_query(self, query: str, *, fuzzy: bool, require_all: bool) -> Query | None:
        """The boosted query over all text fields; None when ``query`` has no terms."""
        occur = Occur.Must if require_all else Occur.Should
        clauses = []
        for term, fields in self.tokens(query):
            matches = [
                (
                    Occur.Should,
                    Query.boost_query(
                        Query.term_query(self._schema, field, token), self.boosts[field]
                    ),
                )
                for field, field_tokens in fields.items()
                if self.boosts[field] > 0
                for token in field_tokens
            ]
            if fuzzy and fuzzy_term(term):
                edits = 2 if len(term) >= FUZZY_TWO_EDITS_LENGTH else 1
                near = Query.fuzzy_term_query(self._schema, NAMES_FIELD, term, distance=edits)
                weight = FUZZY_WEIGHT * max(self.boosts["title"], 1e-3)
                matches.append((Occur.Should, Query.boost_query(near, weight)))
            if matches and require_all:
                clauses.append((occur, Query.boolean_query(matches)))
            else:
                # one flat union of term queries: the same sum, and tantivy can skip blocks
                # that cannot reach the top (block-max WAND); nested unions cannot. On a 1M
                # recombined catalog: the same hits for 400 real queries, p99 35 -> 15 ms.
                clauses.extend(matches)
        return Query.boolean_query(clauses) if clauses else None

    def _query(
        self,
        query: str | None,
        *,
        fuzzy: bool,
        require_all: bool,
        filters: Filters | None,
        price_min: float | None,
        price_max: float | None,
    ) -> Query:
        """The text query (every product when it has no terms) restricted by the filters;
        filters add nothing to the score."""
        text = None
        if query is not None:
            text = self._text_query(query, fuzzy=fuzzy, require_all=require_all)
        restrictions = []
        for name, values in (filters or {}).items():
            if name not in EXACT_FIELDS:
                raise SearchError(f"cannot filter on {name!r}; filters are {tuple(EXACT_FIELDS)}")
            chosen = [values] if isinstance(values, str) else list(values)
            restrictions.append(Query.term_set_query(self._schema, EXACT_FIELDS[name], chosen))
        if price_min is not None or price_max is not None:
            restrictions.append(
                Query.range_query(
                    self._schema, "price", FieldType.Float, lower_bound=price_min,
                    upper_bound=price_max,
                )
            )  # fmt: skip
        base = Query.all_query() if text is None else text
        if not restrictions:
            return base
        return Query.boolean_query(
            [(Occur.Must, base)]
            + [(Occur.Must, Query.const_score_query(r, 0.0)) for r in restrictions]
        )

    def search(
        self,
        query: str,
        *,
        limit: int = 100,
        fuzzy: bool = False,
        require_all: bool = False,
        filters: Filters | None = None,
        price_min: float | None = None,
        price_max: float | None = None,
        sort: str | None = None,
    ) -> LexicalHits:
        """The products matching ``query`` (any term, or every term with ``require_all``;
        near spellings too with ``fuzzy``), within ``filters`` ({"brand" or "category": one
        value or any of several}) and the price bounds (inclusive), best first or in ``sort``
        order ("price", "-price", "popularity", "newest"). A query without terms lists every
        product within the filters."""
        if sort is not None and sort not in SORTS:
            raise SearchError(f"unknown sort {sort!r}; choose None or one of {tuple(SORTS)}")
        built = self._query(
            query, fuzzy=fuzzy, require_all=require_all, filters=filters,
            price_min=price_min, price_max=price_max,
        )  # fmt: skip
        searcher, addresses = self._searcher()
        if limit <= 0:
            total = _count(searcher.search(built, 1, count=True))
            return LexicalHits([], np.zeros(0, np.float32), total)
        if sort is None:
            result = searcher.search(built, limit, count=True)
        else:
            field, order = SORTS[sort]
            result = searcher.search(built, limit, count=True, order_by_field=field, order=order)
        ids = self._ids(searcher, addresses, result.hits)
        values = [np.nan if value is None else value for value, _ in result.hits]
        scores = np.asarray(values, dtype=np.float64)
        if sort == "newest":
            scores = scores / 1e9  # tantivy's dates are nanoseconds
        return LexicalHits(ids, scores.astype(np.float32), _count(result))

    def field_scores(self, query: str, item_ids: Sequence[str]) -> npt.NDArray[np.float32]:
        """BM25 of ``query`` against each text field of each of ``item_ids`` (rows) separately,
        columns in ``TEXT_FIELDS`` order, unboosted; 0 where a field does not match or the
        item is unknown."""
        scores = np.zeros((len(item_ids), len(TEXT_FIELDS)), dtype=np.float32)
        tokens = self.tokens(query)
        if not tokens or not item_ids:
            return scores
        unique = list(dict.fromkeys(item_ids))
        row = {item: i for i, item in enumerate(unique)}
        per_item = np.zeros((len(unique), len(TEXT_FIELDS)), dtype=np.float32)
        among = Query.const_score_query(self._id_query(unique), 0.0)
        searcher = self._index.searcher()
        for column, field in enumerate(TEXT_FIELDS):
            restricted = Query.boolean_query(
                [(Occur.Must, among), (Occur.Must, self._field_query(field, tokens))]
            )
            for score, address in searcher.search(restricted, len(unique), count=False).hits:
                per_item[row[_item_id(searcher, address)], column] = score
        return per_item[[row[item] for item in item_ids]]

    def facet_counts(
        self,
        query: str | None,
        facets: Sequence[str],
        *,
        filters: Filters | None = None,
        price_min: float | None = None,
        price_max: float | None = None,
        fuzzy: bool = False,
        require_all: bool = False,
    ) -> dict[str, dict[str, int]]:
        """For each facet ("brand", "category", "price"), the number of products per value
        over every product that ``search`` with the same arguments matches (None: all
        products). Brands and categories with no match are left out; every price range of
        ``PRICE_RANGES`` is listed."""
        unknown = [f for f in facets if f not in FACETS]
        if unknown:
            raise SearchError(f"unknown facets {unknown}; facets are {FACETS}")
        if not facets:
            return {}
        aggregations: dict[str, Any] = {}
        for facet in facets:
            if facet == "price":
                ranges = [
                    {"key": label, "from": low, **({} if high is None else {"to": high})}
                    for label, (low, high) in PRICE_RANGES.items()
                ]
                aggregations[facet] = {"range": {"field": "price", "ranges": ranges}}
            else:
                aggregations[facet] = {
                    "terms": {"field": EXACT_FIELDS[facet], "size": FACET_VALUES}
                }
        built = self._query(
            query, fuzzy=fuzzy, require_all=require_all, filters=filters,
            price_min=price_min, price_max=price_max,
        )  # fmt: skip
        result = self._index.searcher().aggregate(built, aggregations)
        counts: dict[str, dict[str, int]] = {}
        for facet in facets:
            buckets = result.get(facet, {}).get("buckets", [])
            found = {str(b["key"]): int(b["doc_count"]) for b in buckets}
            if facet == "price":
                counts[facet] = {label: found.get(label, 0) for label in PRICE_RANGES}
            else:
                counts[facet] = {k: v for k, v in found.items() if v > 0}
        return counts
