"""The one protocol every recommender follows, and the shared machinery behind it.

A model learns from ``Interactions`` and scores items for users: ``score_users`` (known users,
by row) and ``score_history`` (anyone, from a list of items: fold-in without retraining) are
the two cores; recommending, excluding what a user has seen, batching, saving and loading are
shared. Artifacts are arrays (``arrays.npz``, never pickled) plus a JSON manifest.
"""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Protocol, Self, runtime_checkable

import numpy as np
import polars as pl
from scipy import sparse

from aisle.errors import AisleError, NotFoundError
from aisle.features.interactions import Interactions
from aisle.features.side import SideInfo

__all__ = ["BaseRecommender", "Explanation", "Recommendation", "Recommender", "SideInfo"]

MANIFEST = "manifest.json"
ARRAYS = "arrays.npz"
IDS = "ids.parquet"


@dataclass(frozen=True)
class Recommendation:
    """One recommended item and its score (higher is better)."""

    item_id: str
    score: float


@dataclass(frozen=True)
class Explanation:
    """Why an item was recommended: the contributions that weighed most, strongest first.
    ``kind`` says what they are: ``items`` (the user's items), ``attention`` (SASRec's
    attention over the user's sequence), ``popularity`` or ``features``."""

    item_id: str
    kind: str
    because: list[tuple[str, float]]


@runtime_checkable
class Recommender(Protocol):
    """What every recommender can do."""

    name: ClassVar[str]
    params: dict[str, Any]

    def fit(self, data: Interactions, side: SideInfo | None = None) -> Self: ...
    def score_users(self, users: np.ndarray) -> np.ndarray: ...
    def score_history(self, items: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray: ...
    def recommend(
        self, user_id: str, n: int = 10, *, history: Sequence[str] | None = None
    ) -> list[Recommendation]: ...
    def recommend_batch(
        self, user_ids: Sequence[str], n: int = 10
    ) -> list[list[Recommendation]]: ...
    def similar_items(self, item_id: str, n: int = 10) -> list[Recommendation]: ...
    def explain(self, user_id: str, item_id: str, n: int = 3) -> Explanation: ...
    def save(self, folder: Path) -> Path: ...


@dataclass
class FitReport:
    """What fitting took and what it saw; ``losses`` per epoch for models that have them."""

    seconds: float = 0.0
    users: int = 0
    items: int = 0
    interactions: int = 0
    data_hash: str = ""
    losses: list[float] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


class BaseRecommender(ABC):
    """Shared behaviour: subclasses implement ``_fit``, ``score_users``, ``score_history``,
    ``_item_similarities`` and ``_arrays`` / ``_restore`` (their learnt state as arrays)."""

    name: ClassVar[str] = "base"
    #: Default hyperparameters; the constructor's keywords override them.
    defaults: ClassVar[dict[str, Any]] = {}
    #: Names of ``_arrays`` entries indexed by user row (erasure zeroes the user's row).
    user_arrays: ClassVar[tuple[str, ...]] = ()

    def __init__(self, **params: Any) -> None:
        unknown = set(params) - set(self.defaults)
        if unknown:
            raise AisleError(f"{self.name}: unknown parameters {sorted(unknown)}")
        self.params: dict[str, Any] = {**self.defaults, **params}
        self.users: list[str] = []
        self.items: list[str] = []
        self.seen_matrix: sparse.csr_matrix = sparse.csr_matrix((0, 0), dtype=np.float32)
        self.report = FitReport()

    # -- what subclasses provide ----------------------------------------------------------
    @abstractmethod
    def _fit(self, data: Interactions, side: SideInfo | None) -> None:
        """Learn from the interactions."""

    @abstractmethod
    def score_users(self, users: np.ndarray) -> np.ndarray:
        """Scores of every item for these users (rows): shape (len(users), n_items). A user's
        scores must not depend on the batch they are scored in (round away BLAS noise)."""

    @abstractmethod
    def score_history(self, items: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        """Scores of every item for someone who interacted with these items (in time order),
        without retraining: shape (n_items,)."""

    @abstractmethod
    def _item_similarities(self, item: int) -> np.ndarray:
        """Similarity of every item to this one: shape (n_items,)."""

    @abstractmethod
    def _arrays(self) -> dict[str, np.ndarray]:
        """The learnt state as named arrays."""

    @abstractmethod
    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        """Set the learnt state back from ``_arrays``."""

    # -- shared ---------------------------------------------------------------------------
    def fit(self, data: Interactions, side: SideInfo | None = None) -> Self:
        """Learn from interactions (and side information where the model uses it)."""
        started = time.perf_counter()
        self.users, self.items = list(data.users), list(data.items)
        self.seen_matrix = data.matrix.tocsr(copy=True)
        self._user_index = dict(data.user_index)
        self._item_index = dict(data.item_index)
        self.report = FitReport(
            users=data.n_users,
            items=data.n_items,
            interactions=int(data.matrix.nnz),
            data_hash=data.data_hash,
        )
        self._fit(data, side)
        self.report.seconds = time.perf_counter() - started
        return self

    def knows(self, user_id: str) -> bool:
        """Whether the customer was in the training data."""
        return user_id in self._user_index

    def knows_item(self, item_id: str) -> bool:
        """Whether the item was in the training data."""
        return item_id in self._item_index

    def user_row(self, user_id: str) -> int:
        """The row of a known user."""
        row = self._user_index.get(user_id)
        if row is None:
            raise NotFoundError(f"{self.name}: unknown user (give the user's history instead)")
        return row

    def item_column(self, item_id: str) -> int:
        """The column of a known item."""
        column = self._item_index.get(item_id)
        if column is None:
            raise NotFoundError(f"{self.name}: unknown item {item_id!r}")
        return column

    def seen(self, user: int) -> np.ndarray:
        """Items the user (row) interacted with in training."""
        m = self.seen_matrix
        return np.asarray(m.indices[m.indptr[user] : m.indptr[user + 1]])

    def history_of(self, user: int) -> np.ndarray:
        """The user's training items (subclasses with sequences return them in time order)."""
        return self.seen(user)

    def _top(self, scores: np.ndarray, n: int, exclude: np.ndarray) -> list[Recommendation]:
        scores = scores.astype(np.float64, copy=True)
        scores[exclude] = -np.inf
        n = min(n, int(np.isfinite(scores).sum()))
        if n <= 0:
            return []
        top = np.argpartition(-scores, n - 1)[:n]
        top = top[np.lexsort((top, -scores[top]))]  # score, then column: deterministic
        return [Recommendation(self.items[i], float(scores[i])) for i in top]

    def recommend(
        self, user_id: str, n: int = 10, *, history: Sequence[str] | None = None
    ) -> list[Recommendation]:
        """The top ``n`` items the user has not interacted with; a ``history`` (item ids in
        time order) scores anyone, known or not, without retraining."""
        if history is not None:
            columns = np.asarray([self._item_index[i] for i in history if i in self._item_index],
                                 dtype=np.int64)  # fmt: skip
            return self._top(self.score_history(columns), n, columns)
        row = self.user_row(user_id)
        return self._top(self.score_users(np.asarray([row]))[0], n, self.seen(row))

    def recommend_batch(self, user_ids: Sequence[str], n: int = 10) -> list[list[Recommendation]]:
        """``recommend`` for many known users, scored together."""
        rows = np.asarray([self.user_row(u) for u in user_ids], dtype=np.int64)
        out: list[list[Recommendation]] = []
        for start in range(0, len(rows), 1024):
            chunk = rows[start : start + 1024]
            scores = self.score_users(chunk)
            out += [self._top(s, n, self.seen(r)) for s, r in zip(scores, chunk, strict=True)]
        return out

    def similar_items(self, item_id: str, n: int = 10) -> list[Recommendation]:
        """The ``n`` items most similar to this one."""
        column = self.item_column(item_id)
        similarity = self._item_similarities(column).astype(np.float64, copy=True)
        similarity[similarity <= 0] = -np.inf  # nothing in common is not similar
        return self._top(similarity, n, np.asarray([column]))

    def explain(self, user_id: str, item_id: str, n: int = 3) -> Explanation:
        """The user's items most similar to the recommended one (models with better reasons,
        such as SASRec's attention, override this)."""
        history = self.history_of(self.user_row(user_id))
        similarity = self._item_similarities(self.item_column(item_id))[history]
        order = np.argsort(-similarity, kind="stable")[:n]
        because = [(self.items[history[i]], float(similarity[i])) for i in order]
        return Explanation(item_id, "items", because)

    # -- erasure --------------------------------------------------------------------------
    def forget_user(self, user_id: str) -> bool:
        """Remove a customer from the model at once: their id, their training items and every
        per-user state row. Item-side state still carries their influence until the retrain
        the registry schedules. Returns False when the model never knew them."""
        row = self._user_index.pop(user_id, None)
        if row is None:
            return False
        self.users[row] = f"(erased {row})"
        m = self.seen_matrix.copy()
        m.data[m.indptr[row] : m.indptr[row + 1]] = 0
        m.eliminate_zeros()
        self.seen_matrix = m
        self._forget(row)
        return True

    def _forget(self, row: int) -> None:
        """Zero the user's row in every ``user_arrays`` entry (override for other layouts,
        such as sequences)."""
        arrays = self._arrays()
        for name in self.user_arrays:
            arrays[name] = arrays[name].copy()
            arrays[name][row] = 0
        self._restore(arrays)

    # -- artifacts ------------------------------------------------------------------------
    def save(self, folder: Path) -> Path:
        """Write the model as arrays + ids + a JSON manifest (no pickles)."""
        folder.mkdir(parents=True, exist_ok=True)
        arrays = {f"state_{k}": v for k, v in self._arrays().items()}
        m = self.seen_matrix
        arrays |= {"seen_indptr": m.indptr, "seen_indices": m.indices, "seen_data": m.data}
        np.savez(folder / ARRAYS, **arrays)  # type: ignore[arg-type]
        kinds = ["user"] * len(self.users) + ["item"] * len(self.items)
        pl.DataFrame({"kind": kinds, "id": [*self.users, *self.items]}).write_parquet(folder / IDS)
        manifest = {
            "model": self.name,
            "params": self.params,
            "created_at": datetime.now(UTC).isoformat(),
            "users": len(self.users),
            "items": len(self.items),
            "interactions": self.report.interactions,
            "data_hash": self.report.data_hash,
            "fit_seconds": self.report.seconds,
            "losses": self.report.losses,
            "extra": self.report.extra,
        }
        (folder / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str))
        return folder

    @classmethod
    def load(cls, folder: Path) -> Self:
        """A model saved by ``save``."""
        manifest = json.loads((folder / MANIFEST).read_text())
        if manifest["model"] != cls.name:
            raise AisleError(f"{folder} holds a {manifest['model']} model, not {cls.name}")
        model = cls(**manifest["params"])
        ids = pl.read_parquet(folder / IDS)
        model.users = ids.filter(pl.col("kind") == "user")["id"].to_list()
        model.items = ids.filter(pl.col("kind") == "item")["id"].to_list()
        model._user_index = {u: i for i, u in enumerate(model.users)}
        model._item_index = {item: i for i, item in enumerate(model.items)}
        with np.load(folder / ARRAYS, allow_pickle=False) as stored:
            arrays = {k: stored[k] for k in stored.files}
        model.seen_matrix = sparse.csr_matrix(
            (arrays["seen_data"], arrays["seen_indices"], arrays["seen_indptr"]),
            shape=(len(model.users), len(model.items)),
        )
        model._restore({k[6:]: v for k, v in arrays.items() if k.startswith("state_")})
        model.report = FitReport(
            seconds=manifest["fit_seconds"], users=manifest["users"], items=manifest["items"],
            interactions=manifest.get("interactions", 0),
            data_hash=manifest["data_hash"], losses=manifest["losses"], extra=manifest["extra"],
        )  # fmt: skip
        return model
