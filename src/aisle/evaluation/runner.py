"""Train every model on what the store holds and score it on held-out events.

``evaluate`` builds the interactions from the store's events with the items of training and
test (so test-only items are candidates too), fits each model, ranks each test user's relevant
items under the chosen protocol (``aisle.evaluation.protocols``) and averages the metrics
(``aisle.evaluation.metrics``). Test users and items training does not know are counted and
reported. Where the test events are explicit ratings, RMSE and MAE come from every model that
predicts ratings (a ``predict_ratings(rows, columns)`` method) and always from a user/item
bias baseline, so a rating dataset is never without them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import polars as pl

from aisle.config import Settings
from aisle.errors import AisleError
from aisle.evaluation import metrics as m
from aisle.evaluation.protocols import (
    PROTOCOLS,
    SAMPLED_SEED,
    SPLITS,
    Ranking,
    Split,
    Task,
    build_truth,
    detect_split,
    interacted,
    make_task,
    rank,
)
from aisle.features.interactions import Interactions, build_interactions, load_events
from aisle.features.side import side_information
from aisle.models import available_models, model_class
from aisle.models.base import BaseRecommender
from aisle.storage import Store

#: The baselines every evaluation should show beside aisle's own methods (EVALUATION.md).
BASELINES: Final = ("popularity", "itemknn", "als")
#: HR@n is kept for n = 1..this, for the report's curve.
CURVE_LENGTH: Final = 50
NEW_ITEMS: Final = "new-items-only"
#: Models that rank items without interactions from side information (text embeddings);
#: every other model is id-only and ranks such items last.
CONTENT_MODELS: Final = frozenset({"two-tower"})

Progress = Callable[[str], None]


@dataclass
class ModelResult:
    """One model's figures: metrics (keys like ``ndcg@10``), times, losses, variants."""

    name: str
    params: dict[str, Any]
    metrics: dict[str, float]
    train_seconds: float
    eval_seconds: float
    losses: list[float] = field(default_factory=list)
    variants: dict[str, dict[str, float]] = field(default_factory=dict)
    #: HR@n for n = 1..CURVE_LENGTH (the report's plot)
    hit_curve: list[float] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """Machine-readable form."""
        out: dict[str, Any] = _clean({
            "metrics": self.metrics,
            "train_seconds": round(self.train_seconds, 4),
            "eval_seconds": round(self.eval_seconds, 4),
            "params": self.params,
            "losses": self.losses,
            "variants": self.variants,
        })  # fmt: skip
        return out


@dataclass
class EvaluationResult:
    """Everything one evaluation found, protocol label included."""

    protocol: str
    label: str
    split: Split
    k: int
    cutoffs: list[int]
    seed: int
    dataset: dict[str, int]
    unknown: dict[str, Any]
    counts: dict[str, int]
    models: dict[str, ModelResult]
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)
    ratings: dict[str, Any] | None = None
    missing_baselines: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: the held-out file's import reconciliation (filled in by the command)
    test_file: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """One machine-readable object."""
        out: dict[str, Any] = _clean({
            "protocol": self.protocol,
            "protocol_label": self.label,
            "split": self.split,
            "k": self.k,
            "seed": self.seed if self.protocol != "full" else None,
            "dataset": self.dataset,
            "unknown": self.unknown,
            "counts": self.counts,
            "test_file": self.test_file,
            "models": {name: r.to_json() for name, r in self.models.items()},
            "variants": self.variants,
            "ratings": self.ratings,
            "missing_baselines": self.missing_baselines,
            "notes": self.notes,
        })  # fmt: skip
        return out


def _clean(value: Any) -> Any:
    """NaN and infinities become null: the JSON stays standard."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        return _clean(value.item())
    return value


# -- ratings ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BiasBaseline:
    """r(u, i) = mean + b_u + b_i, biases regularised toward 0, fit by alternating updates."""

    mean: float
    user_bias: dict[str, float]
    item_bias: dict[str, float]
    low: float
    high: float

    def predict(self, users: Sequence[str], items: Sequence[str]) -> np.ndarray:
        """Predicted ratings (unknown users or items: bias 0), clipped to the training range."""
        bu = np.asarray([self.user_bias.get(u, 0.0) for u in users], dtype=np.float64)
        bi = np.asarray([self.item_bias.get(i, 0.0) for i in items], dtype=np.float64)
        return np.asarray(np.clip(self.mean + bu + bi, self.low, self.high))


def fit_bias_baseline(
    users: Sequence[str],
    items: Sequence[str],
    ratings: np.ndarray,
    *,
    user_reg: float = 10.0,
    item_reg: float = 25.0,
    iterations: int = 10,
) -> BiasBaseline:
    """The user/item bias model fitted on training ratings."""
    r = np.asarray(ratings, dtype=np.float64)
    if r.size == 0:
        raise AisleError("no training ratings to fit the bias baseline on")
    user_names, u = np.unique(np.asarray(users, dtype=object), return_inverse=True)
    item_names, i = np.unique(np.asarray(items, dtype=object), return_inverse=True)
    mean = float(r.mean())
    bu = np.zeros(len(user_names))
    bi = np.zeros(len(item_names))
    n_u = np.bincount(u, minlength=len(user_names))
    n_i = np.bincount(i, minlength=len(item_names))
    for _ in range(iterations):
        bi = np.bincount(i, r - mean - bu[u], minlength=len(item_names)) / (n_i + item_reg)
        bu = np.bincount(u, r - mean - bi[i], minlength=len(user_names)) / (n_u + user_reg)
    return BiasBaseline(
        mean,
        dict(zip(user_names.tolist(), bu.tolist(), strict=True)),
        dict(zip(item_names.tolist(), bi.tolist(), strict=True)),
        float(r.min()),
        float(r.max()),
    )


def _ratings(events: pl.DataFrame) -> pl.DataFrame:
    return events.filter((pl.col("type") == "rating") & pl.col("value").is_not_null())


def _rating_figures(
    train: pl.DataFrame, test: pl.DataFrame, data: Interactions
) -> tuple[dict[str, Any], BiasBaseline] | None:
    """RMSE/MAE of the bias baseline on the test ratings (all of them, unknowns included)."""
    test_r, train_r = _ratings(test), _ratings(train)
    if test_r.height == 0 or train_r.height == 0:
        return None
    baseline = fit_bias_baseline(
        train_r["user_id"].to_list(), train_r["item_id"].to_list(), train_r["value"].to_numpy()
    )
    predicted = baseline.predict(test_r["user_id"].to_list(), test_r["item_id"].to_list())
    actual = test_r["value"].to_numpy()
    known_users = test_r["user_id"].is_in(list(baseline.user_bias)).to_numpy()
    known_items = test_r["item_id"].is_in(list(baseline.item_bias)).to_numpy()
    figures = {
        "baseline": "user-item-bias",
        "rmse": m.rmse(predicted, actual),
        "mae": m.mae(predicted, actual),
        "n": test_r.height,
        "unknown_users": int((~known_users).sum()),
        "unknown_items": int((~known_items).sum()),
        "global_mean_rmse": m.rmse(np.full(len(actual), baseline.mean), actual),
    }
    return figures, baseline


def _model_ratings(
    model: BaseRecommender, test: pl.DataFrame, data: Interactions, baseline: BiasBaseline
) -> dict[str, float] | None:
    """RMSE/MAE of a model that predicts ratings; pairs it cannot place use the baseline."""
    predict = getattr(model, "predict_ratings", None)
    test_r = _ratings(test)
    if predict is None or test_r.height == 0:
        return None
    users, items = test_r["user_id"].to_list(), test_r["item_id"].to_list()
    rows = np.asarray([data.user_index.get(u, -1) for u in users], dtype=np.int64)
    cols = np.asarray([data.item_index.get(i, -1) for i in items], dtype=np.int64)
    predicted = baseline.predict(users, items)
    placed = (rows >= 0) & (cols >= 0)
    if placed.any():
        predicted[placed] = np.asarray(predict(rows[placed], cols[placed]), dtype=np.float64)
    actual = test_r["value"].to_numpy()
    return {"rmse": m.rmse(predicted, actual), "mae": m.mae(predicted, actual)}


# -- ranking ------------------------------------------------------------------------------------
def _hit_curve(ranking: Ranking) -> list[float]:
    if len(ranking.ranks) == 0:
        return []
    first = np.sort(ranking.ranks.min(axis=1))
    found = np.searchsorted(first, np.arange(1, CURVE_LENGTH + 1), side="right")
    return (found / len(first)).tolist()  # type: ignore[no-any-return]


def _figures(
    ranking: Ranking, cutoffs: Sequence[int], popularity: np.ndarray, data: Interactions
) -> dict[str, float]:
    known = ranking.top[:, 0] >= 0
    return {
        **m.ranking_metrics(ranking.ranks, ranking.n_truth, ranking.n_candidates, cutoffs),
        **m.list_metrics(ranking.top[known], popularity, data.n_users, data.n_items),
    }


def _unknown(test: pl.DataFrame, data: Interactions, trained: np.ndarray) -> dict[str, int]:
    """Test users and items training does not know, and how many test events they hold."""
    users = test["user_id"].is_in(data.users)
    trained_items = np.asarray(data.items, dtype=object)[trained].tolist()
    items = test["item_id"].is_in(trained_items)
    return {
        "users": int(test.filter(~users)["user_id"].n_unique()),
        "user_events": int((~users).sum()),
        "items": int(test.filter(~items)["item_id"].n_unique()),
        "item_events": int((~items).sum()),
    }


def resolve_models(names: Sequence[str] | None) -> dict[str, type[BaseRecommender]]:
    """The classes of the named models (every available one when none is named); an unknown
    or unavailable name fails here, before anything is trained."""
    classes: dict[str, type[BaseRecommender]] = {}
    for name in dict.fromkeys(names) if names else available_models():
        try:
            classes[name] = model_class(name)
        except ImportError as error:
            raise AisleError(f"model {name!r} is not available: {error}") from error
    return classes


def check_options(protocol: str, split: str, k: int) -> None:
    """Fail early on a protocol, split or cut-off the evaluation does not know."""
    if protocol not in PROTOCOLS:
        raise AisleError(f"unknown protocol {protocol!r}; choose from {', '.join(PROTOCOLS)}")
    if k < 1:
        raise AisleError("k must be at least 1")
    if split != "auto" and split not in SPLITS:
        raise AisleError(f"unknown split {split!r}; choose auto, {', '.join(SPLITS)}")


def evaluate(
    store: Store,
    settings: Settings,
    test_events: pl.DataFrame,
    *,
    models: Sequence[str] | None = None,
    k: int = 10,
    protocol: str = "full",
    params: dict[str, dict[str, Any]] | None = None,
    split: str = "auto",
    seed: int = SAMPLED_SEED,
    use_side: bool = True,
    progress: Progress | None = None,
) -> EvaluationResult:
    """Fit each model on the store's events and score it on ``test_events`` (``load_events``
    columns, pseudonymised with the store's key). ``split`` is ``auto`` (leave-last-out when
    every test user has one test item, else time), ``leave-last-out`` or ``time``.
    ``use_side``: models get the catalog's side information (``side_information``)."""
    say = progress or (lambda _message: None)
    check_options(protocol, split, k)
    classes = resolve_models(models)
    params = params or {}
    stray = sorted(set(params) - set(classes))
    if stray:
        raise AisleError(f"parameters given for models not in this run: {', '.join(stray)}")
    say("loading training events")
    train = load_events(store)
    if train.height == 0:
        raise AisleError("the store holds no events to train on: run `aisle ingest events` first")
    if test_events.height == 0:
        raise AisleError("the test file holds no accepted events to evaluate on")
    chosen: Split = detect_split(test_events) if split == "auto" else split  # type: ignore[assignment]
    truth = build_truth(test_events, chosen)
    test_items = test_events["item_id"].drop_nulls().unique().sort().to_list()
    data = build_interactions(train, settings.recommend, items=test_items)
    if data.n_users == 0:
        raise AisleError("no training event carries weight: nothing to learn from")
    history = interacted(train, data)
    task = make_task(data, truth, protocol, history=history, seed=seed)
    tasks: dict[str, Task] = {}
    if chosen == "time":
        tasks[NEW_ITEMS] = make_task(data, truth, protocol, history=history, new_items_only=True,
                                     seed=seed)  # fmt: skip
    pattern = data.matrix.tocsc()
    popularity = np.diff(pattern.indptr).astype(np.float64)  # users per item
    trained = popularity > 0
    side = side_information(store, settings, data) if use_side else None
    content = side is not None and side.item_vectors is not None
    cutoffs = sorted({k, 20})
    rated = _rating_figures(train, test_events, data)
    notes: list[str] = []
    overlap = int(test_events["event_id"].is_in(train["event_id"].implode()).sum())
    if overlap:
        notes.append(f"{overlap:,} test events are also training events: the test file overlaps "
                     "what the store holds, so the figures are optimistic")  # fmt: skip
    ranks_cold = sorted(CONTENT_MODELS & set(classes)) if content else []
    notes.append("items without training interactions rank last for id-only models"
                 + (f" (all but {', '.join(ranks_cold)})" if ranks_cold else ""))  # fmt: skip
    results: dict[str, ModelResult] = {}
    for name, cls in classes.items():
        say(f"training {name}")
        model = cls(**params.get(name, {}))
        started = time.perf_counter()
        model.fit(data, side)
        trained_in = time.perf_counter() - started
        say(f"evaluating {name}")
        cold = None if name in ranks_cold else ~trained
        started = time.perf_counter()
        ranking = rank(model, task, k=k, cold=cold)
        figures = _figures(ranking, cutoffs, popularity, data)
        variants = {
            key: _figures(rank(model, t, k=k, cold=cold), cutoffs, popularity, data)
            for key, t in tasks.items()
        }
        if rated is not None:
            own = _model_ratings(model, test_events, data, rated[1])
            if own is not None:
                figures |= own
        results[name] = ModelResult(
            name, dict(model.params), figures, trained_in, time.perf_counter() - started,
            [float(x) for x in model.report.losses], variants, _hit_curve(ranking),
        )  # fmt: skip
    missing = [b for b in BASELINES if b not in results]
    if missing:
        notes.append(f"baselines not in this run: {', '.join(missing)}")
    unknown: dict[str, Any] = _unknown(test_events, data, trained)
    unknown["handling"] = (
        "counted as misses in every average (unknown items are ranked: last for id-only models)"
        if chosen == "leave-last-out"
        else "unknown users are not test users (no purchase before the cut) and are left out; "
        "unknown items stay in the truth and are ranked"
    )
    dataset = {
        "train_events": train.height,
        "train_users": data.n_users,
        "train_items": int(trained.sum()),
        "train_interactions": int(data.matrix.nnz),
        "items": data.n_items,
        "test_events": test_events.height,
        "test_users": len(task.users),
        "truth_items": int(task.n_truth.sum()),
        "not_truth_events": truth.not_truth_events,
        "users_without_truth": truth.users_without_truth,
    }
    return EvaluationResult(
        protocol=protocol,
        label=task.label,
        split=chosen,
        k=k,
        cutoffs=cutoffs,
        seed=seed,
        dataset=dataset,
        unknown=unknown,
        counts=task.counts,
        models=results,
        variants={
            key: {"label": t.label, "test_users": len(t.users), "counts": t.counts}
            for key, t in tasks.items()
        },
        ratings=rated[0] if rated is not None else None,
        missing_baselines=missing,
        notes=notes,
    )
