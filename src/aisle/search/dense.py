"""Dense product search: nearest products by cosine of their embeddings, on a usearch HNSW index
that takes upserts and removals while it serves.

usearch keys are integers: each item_id gets one when first added and keeps it through
upserts, saves and loads; a removed item's key is never given to another. A numpy copy of the
(unit) vectors answers exact cosines for a given list of candidates, and exact search on small
catalogs, where scanning every vector is cheap and approximate search gains nothing.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

# LightGBM's native library must load before usearch's: loaded after it, LightGBM resolves
# some C++ symbols to usearch's copies and every later fit fails with "Feature (Column_)
# appears more than one time" (seen with lightgbm 4 and usearch 2.26).
import lightgbm  # noqa: F401
import numpy as np
import numpy.typing as npt
import polars as pl
from usearch.index import BatchMatches, Index

from aisle.errors import StoreError

#: Graph parameters: 16 links per node and 128 candidates while adding are usearch's defaults
#: (32 links cost 1.7x the build time for +0.01 recall). 256 candidates while searching
#: (usearch: 64): shoppers' short queries sit far from product texts, where the graph needs a
#: wider search; on 30k Best Buy-like products embedded by the static model, recall@10 was
#: 0.85 / 0.90 / 0.94 / 0.96 at 64 / 128 / 256 / 512, at 0.3 / 0.5 / 0.9 / 1.4 ms.
CONNECTIVITY: Final = 16
EXPANSION_ADD: Final = 128
EXPANSION_SEARCH: Final = 256
#: The graph's vectors are stored as 8-bit integers: on 30k Best Buy-like products (static
#: model) it builds 4.5x faster than float32 and searches 2x faster (0.35 against 0.68 ms for
#: the 100 nearest), with the same share of the exact 10 nearest among them (0.95) and a
#: little less of the exact 100 (0.87 against 0.90). Cosines are not taken from it: they are
#: computed again from the float32 copy, so results come back in exact cosine order.
GRAPH_DTYPE: Final = "i8"
#: A quantised graph is asked for this many more neighbours than wanted (a quarter more, at
#: least 25), and the exact cosines pick the best of them (on 10k random 32-dimension vectors,
#: the hardest case for 8 bits, recall@10 goes from 0.95 to 0.99 or more).
OVERSAMPLE: Final = 25
#: Below this many vectors ``search`` scans them all: exact, and a few milliseconds at most
#: (benchmarks/search_index.py).
EXACT_BELOW: Final = 20_000

INDEX_FILE: Final = "vectors.usearch"
VECTORS_FILE: Final = "vectors.npy"  # the exact copy, where the graph's are quantised
ITEMS_FILE: Final = "items.parquet"
MANIFEST_FILE: Final = "manifest.json"

Vectors = npt.NDArray[np.float32]


def _unit(vectors: npt.ArrayLike, dimensions: int | None) -> Vectors:
    """Float32 rows of length 1 (zero rows stay zero); one vector becomes one row."""
    array = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
    if array.ndim != 2 or (dimensions is not None and array.shape[1] != dimensions):
        raise ValueError(f"expected vectors of {dimensions} dimensions, got shape {array.shape}")
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    unit: Vectors = np.divide(array, norms, out=np.zeros_like(array), where=norms > 0)
    return unit


class DenseIndex:
    """Item vectors searchable by cosine; item_ids map to usearch keys that never change."""

    def __init__(self, dimensions: int, *, dtype: str = GRAPH_DTYPE) -> None:
        self.dimensions = dimensions
        self.dtype = dtype
        self._index = Index(
            ndim=dimensions,
            metric="cos",
            dtype=dtype,
            connectivity=CONNECTIVITY,
            expansion_add=EXPANSION_ADD,
            expansion_search=EXPANSION_SEARCH,
        )
        self._keys: dict[str, int] = {}  # item_id -> usearch key
        self._ids_by_key: list[str | None] = []  # key -> item_id (None once removed)
        self._rows: dict[str, int] = {}  # item_id -> row of _vectors
        self._row_ids: list[str] = []  # row -> item_id
        self._key_rows = np.zeros(0, dtype=np.int64)  # key -> row of _vectors (-1: removed)
        self._vectors: Vectors = np.zeros((0, dimensions), dtype=np.float32)
        self._lock = threading.Lock()

    # -- building ----------------------------------------------------------------------------

    @classmethod
    def create(cls, item_ids: Sequence[str], vectors: npt.ArrayLike) -> DenseIndex:
        """An index of ``vectors`` (rows aligned with ``item_ids``; a repeated id keeps its
        last vector)."""
        array = np.asarray(vectors, dtype=np.float32)
        if array.ndim != 2:
            raise ValueError(f"expected a 2-D array of vectors, got shape {array.shape}")
        index = cls(array.shape[1])
        index.upsert(item_ids, array)
        return index

    def _store_rows(self, item_ids: list[str], vectors: Vectors) -> None:
        """Write the numpy copy: known ids in place, new ids appended (capacity doubles)."""
        known = [self._rows[i] for i in item_ids if i in self._rows]
        fresh = [i for i in item_ids if i not in self._rows]
        is_known = np.fromiter((i in self._rows for i in item_ids), bool, len(item_ids))
        self._vectors[known] = vectors[is_known]
        used = len(self._row_ids)
        needed = used + len(fresh)
        if needed > self._vectors.shape[0]:
            grown = np.zeros((max(needed, 2 * self._vectors.shape[0]), self.dimensions), np.float32)
            grown[:used] = self._vectors[:used]
            self._vectors = grown
        self._vectors[used:needed] = vectors[~is_known]
        for offset, item in enumerate(fresh):
            self._rows[item] = used + offset
        self._row_ids.extend(fresh)

    def upsert(self, item_ids: Sequence[str], vectors: npt.ArrayLike) -> None:
        """Add or replace the vectors of ``item_ids``; searchable on return."""
        array = _unit(vectors, self.dimensions)
        if len(item_ids) != array.shape[0]:
            raise ValueError(f"{len(item_ids)} item ids for {array.shape[0]} vectors")
        last = {item: row for row, item in enumerate(item_ids)}  # a repeated id: its last row
        ids, rows = list(last), np.fromiter(last.values(), np.int64, len(last))
        array = array[rows]
        if not ids:
            return
        with self._lock:
            replaced = [self._keys[i] for i in ids if i in self._keys]
            if replaced:
                self._index.remove(np.asarray(replaced, dtype=np.uint64))
            for item in ids:
                if item not in self._keys:
                    self._keys[item] = len(self._ids_by_key)
                    self._ids_by_key.append(item)
            keys = np.fromiter((self._keys[i] for i in ids), np.uint64, len(ids))
            self._index.add(keys, array)
            self._store_rows(ids, array)
            self._grow_key_rows()
            self._key_rows[keys.astype(np.int64)] = [self._rows[i] for i in ids]

    def remove(self, item_ids: Sequence[str]) -> int:
        """Remove ``item_ids``; returns how many were in the index."""
        with self._lock:
            present = [i for i in dict.fromkeys(item_ids) if i in self._keys]
            if not present:
                return 0
            keys = np.asarray([self._keys.pop(i) for i in present], dtype=np.uint64)
            self._index.remove(keys)
            for key in keys:
                self._ids_by_key[int(key)] = None
            self._key_rows[keys.astype(np.int64)] = -1
            for item in present:
                # Fill the hole with the last row, so the copy stays dense.
                row, last = self._rows.pop(item), len(self._row_ids) - 1
                moved = self._row_ids.pop()
                if row != last:
                    self._vectors[row] = self._vectors[last]
                    self._row_ids[row] = moved
                    self._rows[moved] = row
                    self._key_rows[self._keys[moved]] = row
            return len(present)

    def _grow_key_rows(self) -> None:
        if len(self._key_rows) < len(self._ids_by_key):
            room = np.full(len(self._ids_by_key) - len(self._key_rows), -1, dtype=np.int64)
            self._key_rows = np.concatenate([self._key_rows, room])

    def keys_in_use(self) -> dict[str, int]:
        """Every item's usearch key (``search_keys`` answers with them)."""
        with self._lock:
            return dict(self._keys)

    @property
    def next_key(self) -> int:
        """One past the highest key ever given (keys are never reused)."""
        return len(self._ids_by_key)

    def search_keys(self, vector: npt.ArrayLike, k: int) -> tuple[npt.NDArray[np.int64], Vectors]:
        """The keys (``keys_in_use``) of the ``k`` items nearest to ``vector`` and their exact
        cosines, best first: ``search`` without item ids, for callers that map keys to their
        own rows (the engine's columns) with an array."""
        query = _unit(vector, self.dimensions)[0]
        with self._lock:
            count = len(self._row_ids)
            if k <= 0 or count == 0:
                return np.zeros(0, np.int64), np.zeros(0, np.float32)
            if count < EXACT_BELOW:  # as ``search``: a scan, ties in row order
                ids, cosines = self._exact(query[None, :], k)[0]
                return np.asarray([self._keys[i] for i in ids], dtype=np.int64), cosines
            extra = 0 if self.dtype == "f32" else max(OVERSAMPLE, k // 4)
            matches = self._index.search(query, min(k + extra, count))
            keys = np.asarray(matches.keys, dtype=np.int64)
            rows = self._key_rows[keys]
            keys, rows = keys[rows >= 0], rows[rows >= 0]  # a removed key: never
            cosines = self._vectors[rows] @ query
        order = np.lexsort((keys, -cosines))[:k]  # ties: the older key first
        return keys[order], cosines[order].astype(np.float32)

    # -- reading -----------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._row_ids)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._rows

    @property
    def item_ids(self) -> list[str]:
        """Every item in the index."""
        return list(self._row_ids)

    def _exact(self, queries: Vectors, k: int) -> list[tuple[list[str], Vectors]]:
        count = len(self._row_ids)
        cosines = queries @ self._vectors[:count].T
        k = min(k, count)
        top = np.argpartition(-cosines, k - 1, axis=1)[:, :k]
        results = []
        for row, candidates in zip(cosines, top, strict=True):
            order = candidates[np.argsort(-row[candidates], kind="stable")]
            results.append(([self._row_ids[i] for i in order], row[order].astype(np.float32)))
        return results

    def search_many(
        self, vectors: npt.ArrayLike, k: int, *, exact: bool | None = None
    ) -> list[tuple[list[str], Vectors]]:
        """For each query vector (row), the ``k`` nearest items and their cosines, best first
        (fewer when the index holds fewer). ``exact``: scan every vector (True), search the
        graph (False), or scan below ``EXACT_BELOW`` vectors (None)."""
        queries = _unit(vectors, self.dimensions)
        with self._lock:  # an update moves rows and keys: read a consistent index
            count = len(self._row_ids)
            if k <= 0 or count == 0:
                return [([], np.zeros(0, np.float32)) for _ in range(queries.shape[0])]
            if exact or (exact is None and count < EXACT_BELOW):
                return self._exact(queries, k)
            return self._graph(queries, min(k, count))

    def _graph(self, queries: Vectors, k: int) -> list[tuple[list[str], Vectors]]:
        extra = 0 if self.dtype == "f32" else max(OVERSAMPLE, k // 4)
        wanted = min(k + extra, len(self._row_ids))
        matches = self._index.search(queries, wanted)
        if isinstance(matches, BatchMatches):
            rows = zip(matches.keys, matches.distances, matches.counts, strict=True)
        else:  # one query: usearch answers with a flat Matches
            rows = zip([matches.keys], [matches.distances], [len(matches.keys)], strict=True)
        results: list[tuple[list[str], Vectors]] = []
        for query, (keys, _, found) in zip(queries, rows, strict=True):
            named = [self._ids_by_key[int(key)] for key in keys[:found]]
            kept = [item for item in named if item is not None]  # a removed key: never
            at = np.fromiter((self._rows[i] for i in kept), np.int64, len(kept))
            cosines = self._vectors[at] @ query  # exact, whatever the graph stores
            order = np.argsort(-cosines, kind="stable")[:k]
            results.append(([kept[i] for i in order], cosines[order].astype(np.float32)))
        return results

    def search(
        self, vector: npt.ArrayLike, k: int, *, exact: bool | None = None
    ) -> tuple[list[str], Vectors]:
        """The ``k`` items nearest to ``vector`` and their cosines, best first."""
        return self.search_many(np.atleast_2d(np.asarray(vector, np.float32)), k, exact=exact)[0]

    def cosines(self, vector: npt.ArrayLike, item_ids: Sequence[str]) -> Vectors:
        """Exact cosine of ``vector`` with each of ``item_ids`` (0 for items not in the index)."""
        query = _unit(vector, self.dimensions)[0]
        scores = np.zeros(len(item_ids), dtype=np.float32)
        with self._lock:
            rows = np.fromiter((self._rows.get(i, -1) for i in item_ids), np.int64, len(item_ids))
            known = rows >= 0
            scores[known] = self._vectors[rows[known]] @ query
        return scores

    # -- saving ------------------------------------------------------------------------------

    def save(self, path: Path) -> None:
        """Write the index to the folder ``path``: usearch's file, the item ids and their keys
        (parquet) and a manifest."""
        path.mkdir(parents=True, exist_ok=True)
        with self._lock:
            self._index.save(str(path / INDEX_FILE))
            if self.dtype != "f32":  # the graph's own vectors are not exact: keep a copy,
                rows = [self._rows[i] for i in self._keys]  # rows in the items file's order
                np.save(path / VECTORS_FILE, self._vectors[rows], allow_pickle=False)
            pl.DataFrame(
                {
                    "item_id": list(self._keys),
                    "key": np.fromiter(self._keys.values(), np.uint64, len(self._keys)),
                }
            ).write_parquet(path / ITEMS_FILE)
            manifest = {
                "dimensions": self.dimensions,
                "metric": "cos",
                "dtype": self.dtype,
                "items": len(self._keys),
                "next_key": len(self._ids_by_key),
                "connectivity": CONNECTIVITY,
                "expansion_add": EXPANSION_ADD,
                "expansion_search": EXPANSION_SEARCH,
                "saved_at": datetime.now(UTC).isoformat(timespec="seconds"),
            }
        (path / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> DenseIndex:
        """The index saved in the folder ``path``."""
        files = [path / name for name in (INDEX_FILE, ITEMS_FILE, MANIFEST_FILE)]
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise StoreError(f"{path}: not a saved dense index (missing {', '.join(missing)})")
        manifest = json.loads((path / MANIFEST_FILE).read_text())
        items = pl.read_parquet(path / ITEMS_FILE)
        index = cls(int(manifest["dimensions"]), dtype=str(manifest.get("dtype", "f32")))
        index._index.load(str(path / INDEX_FILE))
        # usearch keeps the graph's own parameters in its file, but not this search-time one
        index._index.expansion_search = int(manifest["expansion_search"])  # type: ignore[misc]
        if len(index._index) != items.height:
            raise StoreError(
                f"{path}: {INDEX_FILE} holds {len(index._index)} vectors but {ITEMS_FILE} "
                f"{items.height} items (save the index again)"
            )
        ids_by_key: list[str | None] = [None] * int(manifest["next_key"])
        for item, key in zip(items["item_id"].to_list(), items["key"].to_list(), strict=True):
            ids_by_key[key] = item
        # Rows in usearch's own order: its keys and vectors come back aligned, in one piece.
        stored_keys = np.asarray(index._index.keys, dtype=np.uint64)
        row_ids = [ids_by_key[int(key)] for key in stored_keys]
        if any(item is None for item in row_ids):
            raise StoreError(f"{path}: {INDEX_FILE} holds keys that {ITEMS_FILE} does not name")
        index._ids_by_key = ids_by_key
        index._row_ids = [item for item in row_ids if item is not None]
        index._keys = dict(zip(index._row_ids, stored_keys.tolist(), strict=True))
        index._rows = {item: row for row, item in enumerate(index._row_ids)}
        index._grow_key_rows()
        index._key_rows[stored_keys.astype(np.int64)] = np.arange(len(stored_keys))
        if index._row_ids and index.dtype != "f32":
            exact = np.load(path / VECTORS_FILE, allow_pickle=False)
            saved_order = items["item_id"].to_list()  # the copy's rows: the items file's
            if len(exact) != len(index._row_ids):
                raise StoreError(f"{path}: {VECTORS_FILE} does not match {INDEX_FILE}")
            rows = {item: row for row, item in enumerate(saved_order)}
            index._vectors = np.ascontiguousarray(exact[[rows[i] for i in index._row_ids]])
        elif index._row_ids:
            stored: Any = index._index.get(stored_keys, dtype="f32")
            index._vectors = np.ascontiguousarray(np.vstack(stored), dtype=np.float32)
        return index
