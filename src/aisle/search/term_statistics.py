"""Per-field BM25 of a query's candidates from term statistics held in memory (numpy).

The ranker reads the BM25 of the query in each text field of each candidate. Asking tantivy
took one search per field restricted to the candidates (6 ms a query at 100k products); here
the same scores come from postings kept as compressed sparse columns (field x token -> the
products holding it and how often), scored as tantivy scores: the same tokens (runs of letters
and digits, tokens of 40 bytes or more dropped, lower case, English stems where the field is
stemmed), document frequencies, field lengths quantised as tantivy stores them, k1 = 1.2 and
b = 0.75. Products added or changed later are kept beside the postings until the engine is
rebuilt; like tantivy before it merges segments, statistics still count replaced and removed
products.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
import polars as pl
from scipy import sparse

from aisle.errors import StoreError
from aisle.search.lexical_fields import TEXT_FIELDS, analyzer

#: tantivy's BM25 parameters (``tantivy::query::bm25``).
K1: Final = 1.2
B: Final = 0.75
#: tantivy's simple tokenizer: runs of alphanumeric characters (Rust's ``char::is_alphanumeric``).
TOKEN: Final = r"[\p{Alphabetic}\p{N}]+"
#: tantivy's ``RemoveLongFilter`` in the built-in analyzers: tokens of this many bytes or more go.
LONGEST: Final = 40
#: Products tokenised at a time while building (bounds the memory of the exploded tokens).
CHUNK: Final = 100_000
FORMAT: Final = "aisle-term-statistics"
VERSION: Final = 1
#: A query's terms as typed, each with its tokens in every text field (``LexicalIndex.tokens``).
QueryTokens = list[tuple[str, dict[str, list[str]]]]
Floats = npt.NDArray[np.float32]


def _norm_table() -> npt.NDArray[np.int64]:
    """tantivy's field-length codes decoded (``FIELD_NORMS_TABLE``): lengths 0..40 exactly, then
    groups of eight whose step doubles (42..56 by 2, 60..88 by 4, ...)."""
    values = list(range(41))
    step = 2
    while len(values) < 256:
        last = values[-1]
        values.extend(last + step * (i + 1) for i in range(min(8, 256 - len(values))))
        step *= 2
    return np.asarray(values, dtype=np.int64)


NORMS: Final = _norm_table()


def quantised(lengths: npt.NDArray[np.int64]) -> Floats:
    """Field lengths as tantivy stores them (one byte each, rounded down to a table value)."""
    codes = np.searchsorted(NORMS, lengths, side="right") - 1
    return NORMS[np.clip(codes, 0, 255)].astype(np.float32)


class TermStatistics:
    """Postings and lengths of every text field of a catalog, for scoring given candidates."""

    def __init__(self, tokenizers: Mapping[str, str]) -> None:
        self.tokenizers = dict(tokenizers)
        self.vocabulary: dict[str, int] = {}
        self._stems: dict[str, str] = {}
        self._postings: list[sparse.csc_matrix] = []
        self._doc_freq = [np.zeros(0, np.int64) for _ in TEXT_FIELDS]
        self._lengths = [np.zeros(0, np.int64) for _ in TEXT_FIELDS]
        self._total = [0] * len(TEXT_FIELDS)
        #: Products counted (tantivy's ``total_num_docs``: replaced and removed ones too).
        self.counted = 0
        self._base = 0
        self._stale = np.zeros(0, dtype=bool)  # columns whose postings are out of date
        #: Columns added or changed since the postings were built: per field, token -> count.
        self._overlay: dict[int, list[dict[int, int]]] = {}

    # -- building ------------------------------------------------------------------------------

    @classmethod
    def of(cls, texts: pl.DataFrame, tokenizers: Mapping[str, str]) -> TermStatistics:
        """From the text fields of every product (``lexical_fields.field_texts``; row = column)."""
        stats = cls(tokenizers)
        rows = texts.height
        blocks: list[list[sparse.csr_matrix]] = [[] for _ in TEXT_FIELDS]
        for start in range(0, rows, CHUNK):
            chunk = texts.slice(start, CHUNK)
            for f, field in enumerate(TEXT_FIELDS):
                docs, ids, counts, lengths = stats._counts(chunk[field], field)
                stats._lengths[f] = np.concatenate([stats._lengths[f], lengths])
                shape = (chunk.height, len(stats.vocabulary))
                blocks[f].append(sparse.csr_matrix((counts, (docs, ids)), shape=shape))
        width = len(stats.vocabulary)
        for f in range(len(TEXT_FIELDS)):
            for block in blocks[f]:
                block.resize((block.shape[0], width))  # tokens first seen in later chunks
            stacked = (
                sparse.vstack(blocks[f], format="csc")
                if blocks[f]
                else sparse.csc_matrix((rows, width), dtype=np.uint16)
            )
            blocks[f] = []
            stacked.sort_indices()
            stats._postings.append(stacked)
            stats._doc_freq[f] = np.diff(stacked.indptr).astype(np.int64)
            stats._total[f] = int(stats._lengths[f].sum())
        stats.counted = stats._base = rows
        stats._stale = np.zeros(rows, dtype=bool)
        return stats

    def _counts(
        self, texts: pl.Series, field: str
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, npt.NDArray[np.int64]]:
        """Row, token id and count of every (row, token) of these texts, and each row's length."""
        frame = pl.DataFrame(
            {"row": np.arange(len(texts), dtype=np.int32),
             "token": texts.cast(pl.String).str.to_lowercase().str.extract_all(TOKEN)}
        )  # fmt: skip
        tokens = frame.explode("token").filter(
            pl.col("token").is_not_null() & (pl.col("token").str.len_bytes() < LONGEST)
        )
        lengths = np.bincount(tokens["row"].to_numpy(), minlength=len(texts)).astype(np.int64)
        distinct = tokens["token"].unique(maintain_order=True).to_list()  # same ids every run
        if self.tokenizers[field] == "en_stem":
            fresh = [t for t in distinct if t not in self._stems]
            stem = analyzer("en_stem")
            self._stems.update((t, (stem.analyze(t) or [t])[0]) for t in fresh)
            keys = [self._stems[t] for t in distinct]
        else:
            keys = distinct
        ids = [self.vocabulary.setdefault(key, len(self.vocabulary)) for key in keys]
        self._grow()
        mapping = pl.DataFrame(
            {"token": distinct, "id": ids}, schema={"token": pl.String, "id": pl.Int32}
        )
        counted = (
            tokens.join(mapping, on="token").group_by("row", "id").len().with_columns(
                pl.col("len").clip(upper_bound=np.iinfo(np.uint16).max)
            )
        )  # fmt: skip
        return (
            counted["row"].to_numpy(),
            counted["id"].to_numpy(),
            counted["len"].to_numpy().astype(np.uint16),
            lengths,
        )

    def _grow(self) -> None:
        """Room in the document frequencies for tokens seen for the first time."""
        size = len(self.vocabulary)
        for f, freq in enumerate(self._doc_freq):
            if len(freq) < size:
                self._doc_freq[f] = np.concatenate([freq, np.zeros(size - len(freq), np.int64)])

    # -- live updates --------------------------------------------------------------------------

    def upsert(self, products: Sequence[int] | npt.NDArray[np.int64], texts: pl.DataFrame) -> None:
        """Products added (new columns) or changed: ``texts`` holds their text fields, row i
        for ``products[i]`` (a column)."""
        columns = np.asarray(products, dtype=np.int64)
        if not len(columns):
            return
        high = int(columns.max()) + 1
        if high > len(self._stale):
            self._stale = np.concatenate([self._stale, np.zeros(high - len(self._stale), bool)])
            for f in range(len(TEXT_FIELDS)):
                self._lengths[f] = np.concatenate(
                    [self._lengths[f], np.zeros(high - len(self._lengths[f]), np.int64)]
                )
        self._stale[columns[columns < self._base]] = True
        fresh: dict[int, list[dict[int, int]]] = {int(c): [] for c in columns}
        for f, field in enumerate(TEXT_FIELDS):
            rows, ids, counts, lengths = self._counts(texts[field], field)
            for column in columns:
                fresh[int(column)].append({})
            for row, token, count in zip(rows.tolist(), ids.tolist(), counts.tolist(), strict=True):
                fresh[int(columns[row])][f][token] = count
            np.add.at(self._doc_freq[f], ids, 1)
            self._lengths[f][columns] = lengths
            self._total[f] += int(lengths.sum())
        self._overlay.update(fresh)
        self.counted += len(columns)

    def remove(self, products: Sequence[int] | npt.NDArray[np.int64]) -> None:
        """Products (columns) taken out: they score nothing (and, as in tantivy, still count)."""
        columns = np.asarray(products, dtype=np.int64)
        self._stale[columns[columns < self._base]] = True
        for column in columns.tolist():
            self._overlay.pop(column, None)

    # -- scoring -------------------------------------------------------------------------------

    def counts(self, field: str, token: str, columns: npt.NDArray[np.int64]) -> Floats:
        """How often ``token`` occurs in ``field`` of each of ``columns`` (0: not at all)."""
        token_id = self.vocabulary.get(token, -1)
        return self._counts_of(TEXT_FIELDS.index(field), [token_id], columns)[:, 0]

    def _counts_of(
        self, f: int, token_ids: list[int], columns: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.float32]:
        """Counts of each token (columns of the result; -1: unknown) in field ``f`` of each
        candidate (rows)."""
        out = np.zeros((len(columns), len(token_ids)), dtype=np.float32)
        if not len(columns) or not token_ids:
            return out
        postings = self._postings[f]
        # the candidates in the postings' own integer type: searching a posting list with
        # another type would copy the whole list first (most of the time for common words)
        wanted = columns.astype(postings.indices.dtype)
        known = (columns < self._base) & ~self._stale[np.minimum(columns, max(self._base - 1, 0))]
        for rank, token_id in enumerate(token_ids):
            if not 0 <= token_id < postings.shape[1]:
                continue
            start, end = postings.indptr[token_id], postings.indptr[token_id + 1]
            if end > start:
                docs = postings.indices[start:end]
                at = np.minimum(np.searchsorted(docs, wanted), end - start - 1)
                found = (docs[at] == wanted) & known
                out[found, rank] = postings.data[start:end][at[found]]
        if self._overlay:
            for row, column in enumerate(columns.tolist()):
                fields = self._overlay.get(column)
                if fields is not None:
                    out[row] = [fields[f].get(t, 0) for t in token_ids]
        return out

    def field_scores(self, tokens: QueryTokens, columns: npt.NDArray[np.int64]) -> Floats:
        """BM25 of the query's tokens in each text field (columns in ``TEXT_FIELDS`` order,
        unboosted) of each candidate, as tantivy's per-field term queries score them."""
        columns = np.asarray(columns, dtype=np.int64)
        scores = np.zeros((len(columns), len(TEXT_FIELDS)), dtype=np.float32)
        if not len(columns) or not self.counted:
            return scores
        total = np.float32(self.counted)
        for f, field in enumerate(TEXT_FIELDS):
            wanted = [
                self.vocabulary.get(t, -1) for _, fields in tokens for t in fields.get(field, [])
            ]
            wanted = [t for t in wanted if t >= 0 and self._doc_freq[f][t]]
            if not wanted or not self._total[f]:
                continue
            average = np.float32(self._total[f]) / total
            norms = quantised(self._lengths[f][columns])
            cache = np.float32(K1) * (np.float32(1 - B) + np.float32(B) * norms / average)
            found = self._counts_of(f, wanted, columns)
            for rank, token_id in enumerate(wanted):  # in tantivy's order: float sums differ
                tf = found[:, rank]
                freq = np.float32(self._doc_freq[f][token_id])
                # tantivy's float32 operations in its order, and ln(1 + x) correctly rounded
                # (as glibc's logf; numpy's float32 log may be an ulp off): features equal to
                # the bit keep rankers learning the same trees (MAP@5 moved by 0.004 without)
                ratio = (total - freq + np.float32(0.5)) / (freq + np.float32(0.5))
                idf = np.float32(np.log(np.float64(np.float32(1.0) + ratio)))
                weight = np.float32(idf * np.float32(1 + K1))
                scores[:, f] += weight * (tf / (tf + cache))
        return scores

    def doc_freq(self, field: str, token: str) -> int:
        """Products whose ``field`` holds ``token`` (replaced and removed ones counted)."""
        token_id = self.vocabulary.get(token)
        if token_id is None:
            return 0
        return int(self._doc_freq[TEXT_FIELDS.index(field)][token_id])

    # -- artifacts -----------------------------------------------------------------------------

    def save(self, folder: Path) -> None:
        """Arrays (``np.save``), the vocabulary (Parquet) and a manifest; products added or
        changed since building are not saved (build again from the documents)."""
        if self._overlay or self._stale.any():
            raise StoreError("term statistics changed since they were built: build them again")
        folder.mkdir(parents=True, exist_ok=True)
        for f, field in enumerate(TEXT_FIELDS):
            postings = self._postings[f]
            for part in ("indptr", "indices", "data"):
                np.save(folder / f"{field}.{part}.npy", getattr(postings, part), allow_pickle=False)
            np.save(folder / f"{field}.lengths.npy", self._lengths[f], allow_pickle=False)
        pl.DataFrame({"token": list(self.vocabulary)}).write_parquet(folder / "vocabulary.parquet")
        manifest = {"format": FORMAT, "version": VERSION, "tokenizers": self.tokenizers,
                    "products": self.counted, "tokens": self._total}  # fmt: skip
        (folder / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> TermStatistics:
        """What ``save`` wrote (no pickles)."""
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
            raise StoreError(f"{folder} does not hold version {VERSION} {FORMAT}: rebuild")
        stats = cls(manifest["tokenizers"])
        tokens = pl.read_parquet(folder / "vocabulary.parquet")["token"].to_list()
        stats.vocabulary = {token: n for n, token in enumerate(tokens)}
        rows = int(manifest["products"])
        for f, field in enumerate(TEXT_FIELDS):
            parts = [np.load(folder / f"{field}.{p}.npy", allow_pickle=False)
                     for p in ("indptr", "indices", "data")]  # fmt: skip
            postings = sparse.csc_matrix((parts[2], parts[1], parts[0]), shape=(rows, len(tokens)))
            stats._postings.append(postings)
            stats._doc_freq[f] = np.diff(postings.indptr).astype(np.int64)
            stats._lengths[f] = np.load(folder / f"{field}.lengths.npy", allow_pickle=False)
        stats._total = [int(t) for t in manifest["tokens"]]
        stats.counted = stats._base = rows
        stats._stale = np.zeros(rows, dtype=bool)
        return stats

    @property
    def nbytes(self) -> int:
        """Memory held by the postings and lengths."""
        held = sum(int(p.data.nbytes + p.indices.nbytes + p.indptr.nbytes) for p in self._postings)
        return held + sum(int(a.nbytes) for a in self._lengths + self._doc_freq)
