"""Matrix factorisation: ALS (implicit feedback, Hu, Koren & Volinsky 2008) and BPR (Rendle et
al. 2009), trained by the ``implicit`` library's CPU classes on one thread.

Both learn a vector per user and per item; a user's score for an item is their dot product.
Only the vectors are kept (float32 arrays), so scoring, fold-in and artifacts are plain numpy.
OpenBLAS runs on one thread around training and scoring (``implicit`` is many times slower
with a BLAS threadpool, and a single user's scores are too small to share out).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import numpy as np
from implicit.cpu.als import AlternatingLeastSquares
from implicit.cpu.bpr import BayesianPersonalizedRanking
from scipy import sparse
from threadpoolctl import ThreadpoolController

from aisle.features.interactions import Interactions
from aisle.models.base import BaseRecommender, SideInfo

_controller: ThreadpoolController | None = None


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """BLAS on one thread inside the block (what OPENBLAS_NUM_THREADS=1 would set), restored
    after. The controller is built once: looking the libraries up costs ~0.3 ms, a limit 30 us."""
    global _controller  # noqa: PLW0603 - one lazily built controller per process
    if _controller is None:
        _controller = ThreadpoolController()
    with _controller.limit(limits=1, user_api="blas"):
        yield


def _history(
    items: np.ndarray, weights: np.ndarray | None, default: float
) -> tuple[np.ndarray, np.ndarray]:
    """Distinct items of a history and their summed weights (``default`` per occurrence)."""
    items = np.asarray(items, dtype=np.int64)
    w = np.full(len(items), default) if weights is None else np.asarray(weights, np.float64)
    unique, inverse = np.unique(items, return_inverse=True)
    return unique, np.bincount(inverse, weights=w, minlength=len(unique))


class _Factorization(BaseRecommender):
    """Shared by ALS and BPR: factors as arrays, dot-product scores, cosine item similarity."""

    user_arrays: ClassVar[tuple[str, ...]] = ("user_factors",)  # erasure zeroes the row
    user_factors: np.ndarray
    item_factors: np.ndarray

    def _item_vectors(self) -> np.ndarray:
        """The item vectors that carry similarity (BPR's bias column left out)."""
        return self.item_factors

    def _store(
        self, user_factors: np.ndarray, item_factors: np.ndarray, data: Interactions
    ) -> np.ndarray:
        """Keep the trained vectors; returns the mask of items nobody interacted with."""
        self.user_factors = np.ascontiguousarray(user_factors, dtype=np.float32)
        self.item_factors = np.ascontiguousarray(item_factors, dtype=np.float32)
        # items nobody interacted with were never trained: no vector, a score of 0 (ALS) or
        # the lowest bias (BPR), never the leftovers of the random start
        untouched: np.ndarray = np.diff(data.matrix.tocsc().indptr) == 0
        self.item_factors[untouched] = 0.0
        self._prepare()
        return untouched

    def _prepare(self) -> None:
        """Derived state (after fitting or loading)."""
        vectors = self._item_vectors()
        self._item_norms = np.linalg.norm(vectors, axis=1).astype(np.float32)
        self._item_factors64 = self.item_factors.astype(np.float64)

    def _dot(self, vectors: np.ndarray) -> np.ndarray:
        """Scores of every item for these user vectors (rows, or one vector). Summed in
        float64 and rounded to float32: a user's scores come out the same whether scored
        alone (BLAS gemv) or in a batch (gemm), so near-ties cannot swap places between
        ``recommend`` and ``recommend_batch``."""
        with one_blas_thread():
            scores = np.asarray(vectors, dtype=np.float64) @ self._item_factors64.T
        return scores.astype(np.float32)

    def score_users(self, users: np.ndarray) -> np.ndarray:
        """``user_factors[users] @ item_factors.T``."""
        return self._dot(self.user_factors[np.asarray(users, dtype=np.int64)])

    def _item_similarities(self, item: int) -> np.ndarray:
        """Cosine of the item vectors (0 for items without one)."""
        vectors = self._item_vectors()
        with one_blas_thread():
            dots = vectors @ vectors[item]
        denominator = self._item_norms * self._item_norms[item]
        similarity: np.ndarray = np.divide(
            dots, denominator, out=np.zeros_like(dots), where=denominator > 0
        )
        return similarity

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"user_factors": self.user_factors, "item_factors": self.item_factors}

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        self.user_factors = arrays["user_factors"]
        self.item_factors = arrays["item_factors"]
        self._prepare()


class ALS(_Factorization):
    """Weighted matrix factorisation of implicit feedback by alternating least squares.

    Each user-item pair's preference is 1 with confidence ``1 + alpha * weight`` (its summed
    interaction weight); every unobserved pair is preference 0 with confidence 1. ``factors``:
    vector length; ``regularization``: L2 penalty on each vector; ``iterations``: sweeps of
    users then items; ``seed``: the random start. Training loss per iteration is recorded in
    ``report.losses`` (implicit computes it after each sweep: ~10% of the training time).
    The defaults come from leave-last-out HR@10 on MovieLens-100K and UCI Online Retail; the
    penalty is large because confidences reach hundreds on purchase data (weight 8 each).
    """

    name: ClassVar[str] = "als"
    defaults: ClassVar[dict[str, Any]] = {
        "factors": 64,
        "regularization": 10.0,
        "alpha": 1.0,
        "iterations": 15,
        "seed": 0,
    }

    def confidence(self, matrix: sparse.csr_matrix) -> sparse.csr_matrix:
        """What ``implicit`` is given: its solver reads each stored value as the confidence
        of a positive (``1 + alpha * weight`` here; implicit's own alpha stays 1)."""
        confidence = sparse.csr_matrix(matrix, dtype=np.float32, copy=True)
        confidence.data = 1.0 + np.float32(self.params["alpha"]) * confidence.data
        return confidence

    def _fit(self, data: Interactions, side: SideInfo | None) -> None:
        losses = self.report.losses

        def record(_iteration: int, _seconds: float, loss: float | None) -> None:
            if loss is not None:
                losses.append(float(loss))

        with one_blas_thread():
            model = AlternatingLeastSquares(
                factors=int(self.params["factors"]),
                regularization=float(self.params["regularization"]),
                iterations=int(self.params["iterations"]),
                calculate_training_loss=True,
                num_threads=1,
                random_state=self.params["seed"],
            )
            model.fit(self.confidence(data.matrix), show_progress=False, callback=record)
        self._store(model.user_factors, model.item_factors, data)
        typical = np.median(data.matrix.data) if data.matrix.nnz else 1.0
        self.history_weight = np.asarray([typical], dtype=np.float32)

    def _prepare(self) -> None:
        super()._prepare()
        y = self.item_factors.astype(np.float64)
        self._yty = y.T @ y

    def fold_in(self, items: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        """The vector ALS would give someone with this history, item vectors held fixed: the
        user step of training, ``(YᵀCY + λI) x = YᵀCp``, solved exactly for one user. Weights
        are interaction weights as in training (repeats add up); without them each occurrence
        weighs the median weight of the training pairs."""
        unique, w = _history(items, weights, float(self.history_weight[0]))
        factors = self.item_factors.shape[1]
        if not len(unique):
            return np.zeros(factors, dtype=np.float32)
        y = self.item_factors[unique].astype(np.float64)
        c = 1.0 + float(self.params["alpha"]) * w
        with one_blas_thread():
            a = self._yty + (y.T * (c - 1.0)) @ y
            a[np.diag_indices(factors)] += float(self.params["regularization"])
            x = np.linalg.solve(a, y.T @ c)
        return x.astype(np.float32)

    def score_history(self, items: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        """Scores from the folded-in vector (see ``fold_in``)."""
        return self._dot(self.fold_in(items, weights))

    def _arrays(self) -> dict[str, np.ndarray]:
        return super()._arrays() | {"history_weight": self.history_weight}

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        self.history_weight = arrays["history_weight"]
        super()._restore(arrays)


class BPR(_Factorization):
    """Bayesian personalised ranking: vectors trained so that each user's items outscore items
    sampled from the others' (interaction weights are ignored: a pair is there or not).

    ``implicit`` appends an item bias to every item vector and a constant 1 to every user
    vector, so the scores include the bias. ``factors``, ``learning_rate``,
    ``regularization``, ``iterations`` (epochs of SGD) and ``seed`` go to it as they are.
    """

    name: ClassVar[str] = "bpr"
    defaults: ClassVar[dict[str, Any]] = {
        "factors": 64,
        "learning_rate": 0.02,
        "regularization": 0.01,
        "iterations": 100,
        "seed": 0,
    }

    def _fit(self, data: Interactions, side: SideInfo | None) -> None:
        with one_blas_thread():
            model = BayesianPersonalizedRanking(
                factors=int(self.params["factors"]),
                learning_rate=float(self.params["learning_rate"]),
                regularization=float(self.params["regularization"]),
                iterations=int(self.params["iterations"]),
                num_threads=1,
                random_state=self.params["seed"],
            )
            model.fit(sparse.csr_matrix(data.matrix, dtype=np.float32), show_progress=False)
        untouched = self._store(model.user_factors, model.item_factors, data)
        if untouched.any() and not untouched.all():
            biases = self.item_factors[:, -1]
            biases[untouched] = biases[~untouched].min()
            self._prepare()

    def _item_vectors(self) -> np.ndarray:
        return self.item_factors[:, :-1]

    def score_history(self, items: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        """Fold-in by averaging: BPR has no closed-form user step, so the new user's vector
        is the (weighted) mean of the history items' vectors, plus the constant 1 that picks up
        each item's bias. Someone with no history gets the biases alone (popularity)."""
        unique, w = _history(items, weights, 1.0)
        vector = np.zeros(self.item_factors.shape[1], dtype=np.float32)
        if len(unique) and w.sum() > 0:
            vector[:-1] = (w @ self._item_vectors()[unique]) / w.sum()
        vector[-1] = 1.0
        return self._dot(vector)
