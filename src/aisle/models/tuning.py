"""Hyperparameter search (optuna, TPE) on a validation split carved from the training data.

Each customer's latest interaction is held out for validation; a trial fits the model on the
rest and scores NDCG@10 of the held-out item among every item the customer has not
interacted with (the full-ranking protocol, pessimistic ties). The search stops at a time
budget. Test data is never seen: tune on what the store holds, evaluate elsewhere.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
import polars as pl

from aisle.errors import AisleError
from aisle.evaluation.metrics import hit_rate_at_k, ndcg_at_k
from aisle.features.interactions import Interactions, restrict
from aisle.models import model_class
from aisle.models.base import SideInfo

#: Search spaces: name -> (kind, low, high, log) or ("choice", [values]).
SPACES: dict[str, dict[str, tuple[Any, ...]]] = {
    "popularity": {"recent_days": ("choice", [None, 7, 30, 90, 365])},
    "itemknn": {"neighbours": ("int", 10, 500, True), "shrinkage": ("float", 0.0, 100.0, False)},
    "als": {
        "factors": ("int", 16, 256, True),
        "regularization": ("float", 1e-2, 30.0, True),
        "alpha": ("float", 0.1, 100.0, True),
        "iterations": ("int", 5, 30, False),
    },
    "bpr": {
        "factors": ("int", 16, 256, True),
        "learning_rate": ("float", 1e-3, 0.1, True),
        "regularization": ("float", 1e-4, 0.1, True),
        "iterations": ("int", 50, 400, True),
    },
    "sasrec": {
        "hidden": ("choice", [32, 50, 64]),
        "dropout": ("float", 0.1, 0.6, False),
        "learning_rate": ("float", 3e-4, 3e-3, True),
    },
    "two-tower": {
        "dimensions": ("choice", [32, 64, 128]),
        "learning_rate": ("float", 3e-4, 1e-2, True),
        "temperature": ("float", 0.02, 0.5, True),
    },
    "ranker": {
        "trees": ("int", 50, 500, True),
        "learning_rate": ("float", 0.01, 0.2, True),
        "leaves": ("int", 7, 63, False),
    },
}
#: Validation customers scored per trial, at most.
MAX_VALIDATION_USERS = 3000


@dataclass
class Tuning:
    """The best parameters found, and every trial."""

    model: str
    best_params: dict[str, Any]
    best_value: float
    metric: str = "ndcg@10"
    trials: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """Machine-readable form."""
        return {
            "model": self.model,
            "metric": self.metric,
            "best_params": self.best_params,
            "best_value": self.best_value,
            "trials": self.trials,
            "seconds": self.seconds,
        }


def validation_split(
    data: Interactions, seed: int = 0
) -> tuple[Interactions, np.ndarray, np.ndarray]:
    """Training part (same rows and columns) and, per validation customer (row), the held-out
    item: each customer's latest interaction, for customers with at least two."""
    last = pl.int_range(pl.len()).over("user") == pl.len().over("user") - 1
    several = pl.len().over("user") > 1
    held = data.log.select((last & several).alias("held"))["held"]
    train = restrict(data, ~held)
    truth = data.log.filter(held).select("user", "item")
    rng = np.random.default_rng(seed)
    if truth.height > MAX_VALIDATION_USERS:
        truth = truth[np.sort(rng.choice(truth.height, MAX_VALIDATION_USERS, replace=False))]
    return train, truth["user"].to_numpy(), truth["item"].to_numpy()


def held_out_ranks(
    model: Any, train: Interactions, users: np.ndarray, items: np.ndarray
) -> np.ndarray:
    """1-based rank of each held-out item among the items its customer has not interacted
    with in training (ties counted against it)."""
    ranks = np.empty(len(users))
    for start in range(0, len(users), 512):
        rows, targets = users[start : start + 512], items[start : start + 512]
        scores = np.asarray(model.score_users(rows), dtype=np.float64).copy()
        for i, row in enumerate(rows):
            seen = train.seen(int(row))
            scores[i, seen[seen != targets[i]]] = -np.inf
        mine = scores[np.arange(len(rows)), targets][:, None]
        ranks[start : start + 512] = (scores >= mine).sum(axis=1)
    return ranks


def _suggest(trial: optuna.Trial, space: dict[str, tuple[Any, ...]]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for name, spec in space.items():
        kind = spec[0]
        if kind == "choice":
            params[name] = trial.suggest_categorical(name, spec[1])
        elif kind == "int":
            params[name] = trial.suggest_int(name, spec[1], spec[2], log=spec[3])
        else:
            params[name] = trial.suggest_float(name, spec[1], spec[2], log=spec[3])
    return params


def tune(
    name: str,
    data: Interactions,
    side: SideInfo | None = None,
    *,
    minutes: float = 5.0,
    trials: int | None = None,
    fixed: dict[str, Any] | None = None,
    seed: int = 0,
) -> Tuning:
    """Search the model's space on the validation split for at most ``minutes`` (or
    ``trials``); ``fixed`` parameters are not searched."""
    space = {k: v for k, v in SPACES.get(name, {}).items() if k not in (fixed or {})}
    if not space:
        raise AisleError(f"no search space for {name!r}")
    train, users, items = validation_split(data, seed)
    if not len(users):
        raise AisleError("no customer has two interactions: nothing to validate on")
    found: list[dict[str, Any]] = []

    def objective(trial: optuna.Trial) -> float:
        params = {**(fixed or {}), **_suggest(trial, space)}
        started = time.perf_counter()
        model = model_class(name)(**params).fit(train, side)
        ranks = held_out_ranks(model, train, users, items)
        value = float(ndcg_at_k(ranks, 10).mean())
        found.append({"params": params, "ndcg@10": value,
                      "hr@10": float(hit_rate_at_k(ranks, 10).mean()),
                      "seconds": time.perf_counter() - started})  # fmt: skip
        return value

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    started = time.perf_counter()
    study.optimize(objective, n_trials=trials, timeout=minutes * 60)
    best = {**(fixed or {}), **study.best_params}
    return Tuning(name, best, float(study.best_value), trials=found,
                  seconds=time.perf_counter() - started)  # fmt: skip
