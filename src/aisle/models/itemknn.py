"""Item-based nearest neighbours: items bought together are similar; a user's items vote.

Similarity is the cosine of two items' columns of the user x item matrix (binarised, or the
interaction weights), optionally shrunk towards zero for items with little support
(``dot / (|i| |j| + shrinkage)``), and only each item's ``neighbours`` most similar items are
kept: a sparse items x items matrix ``S`` whose row ``i`` holds item ``i``'s neighbours. A user
with history vector ``h`` (the same binarised or weighted row) scores ``h @ S``: every item the
user has spreads its similarity to its neighbours. Everything is sparse matrix products; the
top-k pruning runs over blocks of items sized to bound memory.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from scipy import sparse

from aisle.features.interactions import Interactions
from aisle.models.base import BaseRecommender, Explanation, SideInfo

#: Upper bound on the co-occurrence entries computed at once while pruning (memory: ~12 B each).
BLOCK_ENTRIES = 1 << 24


def _blocks(xt: sparse.csr_matrix, x: sparse.csr_matrix, budget: int) -> list[tuple[int, int]]:
    """Item ranges whose co-occurrence rows hold at most ``budget`` entries before summing
    (an upper bound: the sum, over each item's users, of those users' item counts)."""
    user_degree = np.diff(x.indptr).astype(np.int64)
    work = np.asarray(xt.astype(bool).astype(np.int64) @ user_degree).ravel()
    ends = np.cumsum(work)
    ranges, start = [], 0
    while start < xt.shape[0]:
        base = ends[start - 1] if start else 0
        stop = int(np.searchsorted(ends, base + budget, side="right"))
        stop = max(stop, start + 1)  # one item whose row alone exceeds the budget still goes
        ranges.append((start, min(stop, xt.shape[0])))
        start = stop
    return ranges


def _keep_top(values: np.ndarray, indices: np.ndarray, indptr: np.ndarray, k: int) -> np.ndarray:
    """Mask of the ``k`` largest values of each CSR row (ties: the lower columns); only rows
    holding more than ``k`` entries are looked at, one at a time."""
    keep = np.ones(len(values), dtype=bool)
    if k <= 0:
        return ~keep
    for row in np.flatnonzero(np.diff(indptr) > k):
        start, stop = indptr[row], indptr[row + 1]
        segment = values[start:stop]
        threshold = np.partition(segment, len(segment) - k)[len(segment) - k]
        above = segment > threshold
        ties = np.flatnonzero(segment == threshold)
        lowest = np.argsort(indices[start:stop][ties], kind="stable")[: k - int(above.sum())]
        above[ties[lowest]] = True
        keep[start:stop] = above
    return keep


def cosine_neighbours(
    x: sparse.csr_matrix, neighbours: int, shrinkage: float = 0.0, budget: int = BLOCK_ENTRIES
) -> sparse.csr_matrix:
    """Items x items: each row holds that item's ``neighbours`` most cosine-similar items
    (positive similarities only, never the item itself), from a users x items matrix."""
    x = sparse.csr_matrix(x, dtype=np.float32)
    n_items = x.shape[1]
    xt = x.T.tocsr()
    norms = np.sqrt(np.asarray(xt.multiply(xt).sum(axis=1)).ravel()).astype(np.float32)
    blocks: list[sparse.csr_matrix] = []
    for start, stop in _blocks(xt, x, budget):
        block = sparse.csr_matrix(xt[start:stop] @ x, dtype=np.float32)
        rows = np.repeat(np.arange(start, stop), np.diff(block.indptr))
        columns = block.indices
        block.data /= norms[rows] * norms[columns] + np.float32(shrinkage)
        block.data[(rows == columns) | ~(block.data > 0)] = 0.0
        block.eliminate_zeros()
        keep = _keep_top(block.data, block.indices, block.indptr, neighbours)
        block.data[~keep] = 0.0
        block.eliminate_zeros()
        blocks.append(block)
    if not blocks:
        return sparse.csr_matrix((n_items, n_items), dtype=np.float32)
    similarity = sparse.csr_matrix(sparse.vstack(blocks, format="csr"), dtype=np.float32)
    similarity.sort_indices()
    return similarity


class ItemKNN(BaseRecommender):
    """Item-item cosine neighbours. ``neighbours``: kept per item; ``shrinkage``: added to the
    cosine's denominator (damps similarities resting on few customers); ``binary``: count
    each user-item pair once (True) or by its interaction weight (False)."""

    name: ClassVar[str] = "itemknn"
    defaults: ClassVar[dict[str, Any]] = {"neighbours": 100, "shrinkage": 0.0, "binary": True}

    similarity: sparse.csr_matrix

    def _vectors(self, matrix: sparse.csr_matrix) -> sparse.csr_matrix:
        """Rows of interactions as the model reads them (binarised or weighted)."""
        matrix = sparse.csr_matrix(matrix, dtype=np.float32, copy=True)
        if self.params["binary"]:
            matrix.data[:] = 1.0
        return matrix

    def _fit(self, data: Interactions, side: SideInfo | None) -> None:
        self.similarity = cosine_neighbours(
            self._vectors(data.matrix), int(self.params["neighbours"]),
            float(self.params["shrinkage"]),
        )  # fmt: skip
        self.report.extra["similarity_entries"] = int(self.similarity.nnz)

    def score_users(self, users: np.ndarray) -> np.ndarray:
        """Each user's history row times the similarity matrix."""
        history = self._vectors(self.seen_matrix[np.asarray(users, dtype=np.int64)])
        return np.asarray((history @ self.similarity).toarray(), dtype=np.float32)

    def score_history(self, items: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        """The history's items (repeats add up; weights default to 1 each) vote for their
        neighbours; only those items' rows of the similarity matrix are touched."""
        items = np.asarray(items, dtype=np.int64)
        w = np.ones(len(items), np.float32) if weights is None else np.asarray(weights, np.float32)
        unique, inverse = np.unique(items, return_inverse=True)
        summed = np.bincount(inverse, weights=w, minlength=len(unique)).astype(np.float32)
        if self.params["binary"]:
            summed = (summed > 0).astype(np.float32)
        scores = self.similarity[unique].T @ summed
        return np.asarray(scores, dtype=np.float32).reshape(len(self.items))

    def _item_similarities(self, item: int) -> np.ndarray:
        """The item's row: its kept neighbours, zero elsewhere."""
        return np.asarray(self.similarity[item].toarray(), dtype=np.float32).ravel()

    def explain(self, user_id: str, item_id: str, n: int = 3) -> Explanation:
        """The user's items that contributed most to the item's score (their similarity to it
        times the user's weight on them): exactly the terms of ``h @ S``."""
        row, column = self.user_row(user_id), self.item_column(item_id)
        history = self._vectors(self.seen_matrix[row])
        items = history.indices
        contribution = self.similarity[items][:, [column]].toarray().ravel() * history.data
        order = np.argsort(-contribution, kind="stable")[:n]
        because = [(self.items[items[i]], float(contribution[i])) for i in order]
        return Explanation(item_id, "items", because)

    def _arrays(self) -> dict[str, np.ndarray]:
        s = self.similarity
        return {"indptr": s.indptr, "indices": s.indices, "data": s.data}

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        n = len(self.items)
        self.similarity = sparse.csr_matrix(
            (arrays["data"], arrays["indices"], arrays["indptr"]), shape=(n, n)
        )
