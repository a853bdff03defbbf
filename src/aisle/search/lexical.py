"""Lexical product search: BM25 over the text fields of the search documents, with exact
brand and category filters, price ranges, sorts and facet counts, on tantivy.

Every text goes through ``tokenize.segment`` (so Chinese is split into words) before tantivy's
own tokenizer sees it, on documents and queries alike. Shoppers' queries are never handed to
tantivy's query parser, whose syntax (quotes, colons, brackets, AND/OR, a leading minus) would
reject or reinterpret ordinary product queries: the query is reduced to its terms and built
as a boolean query of per-field term queries, each field boosted.
"""

from __future__ import annotations

import functools
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
from tantivy import FieldType, Occur, Order, Query

from aisle.errors import SearchError, StoreError
from aisle.search.documents import conform
from aisle.search.tokenize import has_cjk, segment_many, terms

#: The text fields searched, in the column order of ``field_scores``.
TEXT_FIELDS: Final = ("title", "description", "brand", "category", "attributes", "aliases")
#: tantivy's built-in analyzers a text field may use: "en_stem" also stems English words.
TOKENIZERS: Final = ("en_stem", "default")
#: Chosen by benchmarks/search_index.py. Stemming names lets "lamps" find "lamp" (+0.009
#: nDCG@10 on Crowdflower's judged pools, +0.002 MAP@5 on Best Buy clicks). Descriptions are
#: not stemmed: no worse in ranking (Crowdflower 0.7876 against 0.7874) and stemming them
#: cost a fifth of the indexing speed (19,500 against 24,500 products/s).
DEFAULT_TOKENIZERS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "title": "en_stem",
        "description": "default",
        "brand": "en_stem",
        "category": "en_stem",
        "attributes": "en_stem",
        "aliases": "en_stem",
    }
)
#: Chosen by benchmarks/search_index.py: MAP@5 on the first 80% of Best Buy clicks, nDCG@10 on
#: Crowdflower's judged pools as a second opinion. Best Buy is best without descriptions
#: (0.633) or with them weighted like titles (0.632; its synopses repeat the game's name);
#: Crowdflower is best on titles alone (0.798) and loses 0.03 at 1:1. Titles at twice the
#: description's weight sit between (0.629, 0.788) and keep every description word findable.
#: Brand, category and attribute boosts move Best Buy by under 0.001; attributes stay
#: searchable for the colours and materials shoppers type in other catalogs.
DEFAULT_BOOSTS: Final[Mapping[str, float]] = MappingProxyType(
    {
        "title": 2.0,
        "description": 1.0,
        "brand": 1.0,
        "category": 0.5,
        "attributes": 0.5,
        "aliases": 2.0,  # other names of the product: as good as its title
    }
)
#: Fuzzy matching looks at the names (title, brand, aliases) unstemmed: stems of misspelt
#: words are not near the stems of the right ones ("ceramik" stays, "ceramic" becomes
#: "ceram"), and near misses in descriptions are noise.
NAMES_FIELD: Final = "names"
#: A fuzzy match scores a constant (not BM25): this share of the title's boost, so that a
#: near miss ranks below the products that carry the word as typed.
FUZZY_WEIGHT: Final = 0.3
#: Terms shorter than this are never matched fuzzily ("ps3" is not "ps4"); from the second
#: length on, two edits are allowed.
FUZZY_MIN_LENGTH: Final = 4
FUZZY_TWO_EDITS_LENGTH: Final = 8
#: Price facet buckets: label -> [low, high) (high None: no upper bound).
PRICE_RANGES: Final[Mapping[str, tuple[float, float | None]]] = MappingProxyType(
    {
        "0-10": (0.0, 10.0),
        "10-25": (10.0, 25.0),
        "25-50": (25.0, 50.0),
        "50-100": (50.0, 100.0),
        "100-250": (100.0, 250.0),
        "250+": (250.0, None),
    }
)
#: Sorts ``search`` accepts besides relevance (None): field, order.
SORTS: Final[Mapping[str, tuple[str, Order]]] = MappingProxyType(
    {
        "price": ("price", Order.Asc),
        "-price": ("price", Order.Desc),
        "popularity": ("popularity", Order.Desc),
        "newest": ("updated_at", Order.Desc),
    }
)
#: Exact-valued fields for filters and facets: document column -> index field.
EXACT_FIELDS: Final[Mapping[str, str]] = MappingProxyType(
    {"brand": "brand_exact", "category": "category_exact"}
)
FACETS: Final = ("brand", "category", "price")
MANIFEST: Final = "manifest.json"
#: Version of the index's fields; an index of another version must be rebuilt.
FORMAT: Final = 2
#: Writer memory and threads. On 2 shared cores one indexing thread made 23,900-26,600
#: products/s and two 20,300-29,500, as other work allowed; one spends 7-15% less CPU per
#: product and leaves a core to the Python side preparing documents, and to serving.
WRITER_HEAP: Final = 256_000_000
WRITER_THREADS: Final = 1
UPDATE_HEAP: Final = 32_000_000
BATCH: Final = 10_000
#: Up to this many item ids are looked up one by one; more, through one term-set query.
ID_CLAUSES: Final = 1_000
#: The most distinct brands or categories ``facet_counts`` returns per facet.
FACET_VALUES: Final = 100_000

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


def _count(result: tantivy.SearchResult) -> int:
    """How many documents matched (the stub of SearchResult omits ``count``)."""
    return int(getattr(result, "count", 0) or 0)


def _item_id(searcher: tantivy.Searcher, address: tantivy.DocAddress) -> str:
    return str(searcher.doc(address).get_first("item_id"))


def _schema(tokenizers: Mapping[str, str]) -> tantivy.Schema:
    builder = tantivy.SchemaBuilder()
    builder.add_text_field("item_id", stored=True, tokenizer_name="raw")
    for name in TEXT_FIELDS:
        # Positions only where a phrase query may one day look (titles); elsewhere term
        # frequencies are all BM25 needs, and the index is smaller without positions.
        option = "position" if name == "title" else "freq"
        builder.add_text_field(name, tokenizer_name=tokenizers[name], index_option=option)
    # Only which products hold a word: a fuzzy match scores a constant anyway.
    builder.add_text_field(NAMES_FIELD, tokenizer_name="default", index_option="basic")
    for exact in EXACT_FIELDS.values():
        builder.add_text_field(exact, tokenizer_name="raw", fast=True)
    builder.add_float_field("price", indexed=True, fast=True)
    builder.add_float_field("popularity", indexed=True, fast=True)
    builder.add_date_field("updated_at", indexed=True, fast=True)
    return builder.build()


@functools.cache
def _analyzer(tokenizer: str) -> tantivy.TextAnalyzer:
    """The query-side twin of tantivy's built-in analyzer of that name (same tokenizer and
    filters), so that query terms are the terms the index holds."""
    builder = (
        tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple())
        .filter(tantivy.Filter.remove_long(40))
        .filter(tantivy.Filter.lowercase())
    )
    if tokenizer == "en_stem":
        builder = builder.filter(tantivy.Filter.stemmer("english"))
    return builder.build()


def _finite(name: str) -> pl.Expr:
    column = pl.col(name)
    return pl.when(column.is_finite()).then(column).alias(name)


def _json_lines(documents: pl.DataFrame) -> pl.Series:
    """One JSON object per document, as tantivy's ``add_json`` reads it, without null fields."""
    category_text = (
        pl.when(pl.col("category_path").list.len() > 0)
        .then(pl.col("category_path").list.join(" "))
        .otherwise(pl.col("category"))
    )
    text = documents.select(
        pl.col("item_id"),
        *(
            segment_many(
                documents.select(category_text if name == "category" else pl.col(name)).to_series()
            ).alias(name)
            for name in TEXT_FIELDS
        ),
    )
    names = text.select(
        pl.concat_str(["title", "brand", "aliases"], separator=" ", ignore_nulls=True)
        .replace("", None)
        .alias(NAMES_FIELD)
    )
    exact = documents.select(
        *(
            pl.when(pl.col(column).str.strip_chars() != "").then(pl.col(column)).alias(field)
            for column, field in EXACT_FIELDS.items()
        ),
        _finite("price"),
        _finite("popularity"),
        pl.col("updated_at").dt.strftime("%Y-%m-%dT%H:%M:%S%.6fZ"),
    )
    encoded = pl.concat([text, names, exact], how="horizontal").select(
        pl.struct(pl.all()).struct.json_encode()
    )
    # item_id comes first and is never null, so every null field follows a comma; a comma and
    # quote inside a text value are escaped (\") and cannot match.
    fields = [*TEXT_FIELDS, NAMES_FIELD, *EXACT_FIELDS.values(), "price", "popularity"]
    pattern = "|".join([*fields, "updated_at"])
    return encoded.to_series().str.replace_all(f',"(?:{pattern})":null', "")


def _check_tokenizers(tokenizers: str | Mapping[str, str] | None) -> dict[str, str]:
    if isinstance(tokenizers, str):
        tokenizers = dict.fromkeys(TEXT_FIELDS, tokenizers)
    merged = {**DEFAULT_TOKENIZERS, **(tokenizers or {})}
    for name, tokenizer in merged.items():
        if name not in TEXT_FIELDS:
            raise SearchError(
                f"unknown text field {name!r} in tokenizers; fields are {TEXT_FIELDS}"
            )
        if tokenizer not in TOKENIZERS:
            raise SearchError(f"unknown tokenizer {tokenizer!r}; choose one of {TOKENIZERS}")
    return merged


def _check_boosts(boosts: Mapping[str, float] | None) -> dict[str, float]:
    merged = dict(DEFAULT_BOOSTS)
    for name, boost in (boosts or {}).items():
        if name not in TEXT_FIELDS:
            raise SearchError(f"unknown text field {name!r} in boosts; fields are {TEXT_FIELDS}")
        if boost < 0:
            raise SearchError(f"boost of {name!r} is negative ({boost})")
        merged[name] = float(boost)
    return merged


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
        analysers = _check_tokenizers(tokenizers)
        merged = _check_boosts(boosts)
        if path is not None:
            path.mkdir(parents=True, exist_ok=True)
            if tantivy.Index.exists(str(path)):
                raise StoreError(
                    f"{path}: a search index exists already (open it, or remove the folder)"
                )
        index = tantivy.Index(_schema(analysers), path=None if path is None else str(path))
        created = datetime.now(UTC).isoformat(timespec="seconds")
        lexical = cls(index, path, merged, analysers, created)
        writer = index.writer(heap_size=heap_size, num_threads=threads)
        frame = conform(documents)
        # In batches: the writer's thread indexes one batch (it queues up to 10,000 documents)
        # while this one prepares the next, so preparation costs no wall time.
        for start in range(0, frame.height, BATCH):
            for line in _json_lines(frame.slice(start, BATCH)):
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
        self._write_manifest()

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
        lines = _json_lines(frame)
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

    def _tokens(self, query: str) -> QueryTokens:
        """Each term of ``query`` as typed, with its tokens in each text field (fields differ
        in stemming); a token already given by an earlier term ("lamp lamps") is left out."""
        seen: set[tuple[str, str]] = set()
        tokens: QueryTokens = []
        for term in terms(query):
            fields = {}
            for field, tokenizer in self.tokenizers.items():
                fresh = [t for t in _analyzer(tokenizer).analyze(term) if (field, t) not in seen]
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
        for term, fields in self._tokens(query):
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
            if fuzzy and len(term) >= FUZZY_MIN_LENGTH and term.isalpha() and not has_cjk(term):
                edits = 2 if len(term) >= FUZZY_TWO_EDITS_LENGTH else 1
                near = Query.fuzzy_term_query(self._schema, NAMES_FIELD, term, distance=edits)
                weight = FUZZY_WEIGHT * max(self.boosts["title"], 1e-3)
                matches.append((Occur.Should, Query.boost_query(near, weight)))
            if matches:
                clauses.append((occur, Query.boolean_query(matches)))
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
        searcher = self._index.searcher()
        if limit <= 0:
            total = _count(searcher.search(built, 1, count=True))
            return LexicalHits([], np.zeros(0, np.float32), total)
        if sort is None:
            result = searcher.search(built, limit, count=True)
        else:
            field, order = SORTS[sort]
            result = searcher.search(built, limit, count=True, order_by_field=field, order=order)
        ids = [_item_id(searcher, address) for _, address in result.hits]
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
        tokens = self._tokens(query)
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
