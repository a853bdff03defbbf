"""Retrain and gate: a new version of a served model goes live only if it validates no worse
than the production one.

The gate compares *configurations* on one validation split (each customer's latest interaction
held out, as in ``tuning``): the candidate's parameters and the production version's are both
fitted on the training part and scored by NDCG@10 (and HR@10) of the held-out items. The
production artifact itself cannot be scored on that split: it was fitted on the held-out items
and would win by having seen them. A retrain at the production configuration therefore passes
by construction (it is fitted once and scored once), so a scheduled or erasure-owed retrain is
never blocked by fitting noise; a new configuration (say, from ``aisle tune``) must earn its
place.

``retrain`` holds the store only to read the training data and to register and promote, never
while fitting, so a server can keep ingesting on its one connection meanwhile. A candidate the
gate rejects is not registered: registering it would mark the retrains owed after an erasure
as done while production still carries the erased customers' influence. Both decisions go to
the audit log (action ``model_retrain``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import polars as pl

from aisle.config import Settings
from aisle.errors import ConfigError
from aisle.evaluation.metrics import hit_rate_at_k, ndcg_at_k
from aisle.features.interactions import Interactions
from aisle.models import model_class, registry
from aisle.models.base import BaseRecommender, SideInfo
from aisle.models.training import training_data
from aisle.models.tuning import held_out_ranks, validation_split
from aisle.privacy import audit
from aisle.storage import Store

__all__ = ["GateResult", "RetrainOutcome", "StoreAccess", "gate", "retrain"]

#: A zero-argument callable giving the store for the span of a ``with`` block (the server
#: wraps its one connection in a lock; the CLI opens the store anew).
StoreAccess = Callable[[], AbstractContextManager[Store]]

NDCG = "ndcg@10"
HIT_RATE = "hr@10"
AUDIT_ACTION = "model_retrain"


@dataclass(frozen=True)
class GateResult:
    """The gate's verdict, with both configurations' figures on the same validation split
    (``candidate`` is empty and ``incumbent`` None where there was nothing to score)."""

    model: str
    passed: bool
    reason: str
    tolerance: float
    validation_users: int
    candidate_params: dict[str, Any]
    candidate: dict[str, float]
    incumbent_params: dict[str, Any] | None = None
    incumbent: dict[str, float] | None = None
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """Machine-readable form."""
        return {"model": self.model, "passed": self.passed, "reason": self.reason,
                "tolerance": self.tolerance, "validation_users": self.validation_users,
                "candidate_params": self.candidate_params, "candidate": self.candidate,
                "incumbent_params": self.incumbent_params, "incumbent": self.incumbent,
                "seconds": self.seconds}  # fmt: skip


@dataclass
class RetrainOutcome:
    """What a retrain did. ``version`` is the new version (None when nothing was registered);
    ``previous`` the version in production before; ``settled`` how many owed retrain requests
    (after an erasure, say) the new version settles; ``forgotten`` how many customers left the
    store (erased, consent withdrawn) while it was fitting and were removed from it before it
    was saved; ``model`` the fitted model as registered, for a server to swap in."""

    name: str
    version: int | None
    promoted: bool
    gate: GateResult
    seconds: float
    reason: str
    previous: int | None = None
    settled: int = 0
    forgotten: int = 0
    model: BaseRecommender | None = field(default=None, repr=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        """Machine-readable form (without the model)."""
        return {"model": self.name, "version": self.version, "promoted": self.promoted,
                "previous": self.previous, "reason": self.reason, "seconds": self.seconds,
                "settled": self.settled, "forgotten": self.forgotten,
                "gate": self.gate.to_json()}  # fmt: skip


def _configuration(name: str, params: dict[str, Any]) -> dict[str, Any]:
    """Every parameter of a model (defaults filled in) in the form the registry stores them,
    so that a configuration read back from the registry compares equal to the one given."""
    cls = model_class(name)
    full: dict[str, Any] = json.loads(json.dumps(cls(**params).params, default=str))
    return full


def _validation_figures(
    name: str,
    params: dict[str, Any],
    split: tuple[Interactions, np.ndarray, np.ndarray],
    side: SideInfo | None,
) -> dict[str, float]:
    """NDCG@10 and HR@10 of the held-out items for a configuration fitted on the training part."""
    train, users, items = split
    model = model_class(name)(**params).fit(train, side)
    ranks = held_out_ranks(model, train, users, items)
    return {
        NDCG: float(ndcg_at_k(ranks, 10).mean()),
        HIT_RATE: float(hit_rate_at_k(ranks, 10).mean()),
    }


def gate(
    data: Interactions,
    side: SideInfo | None,
    name: str,
    candidate_params: dict[str, Any],
    incumbent_params: dict[str, Any] | None,
    *,
    tolerance: float = 0.0,
) -> GateResult:
    """Pass the candidate configuration when its validation NDCG@10 is at least the
    incumbent's minus ``tolerance``; with no incumbent (nothing in production) it passes.

    Both are fitted on the validation split's training part of ``data``; the same
    configuration is fitted once and passes. Without a customer with two interactions there
    is nothing to score, and only the incumbent's own configuration (or none) passes.
    """
    if tolerance < 0:
        raise ConfigError(f"the gate's tolerance must be >= 0, got {tolerance}")
    started = time.perf_counter()
    candidate = _configuration(name, candidate_params)
    incumbent = None if incumbent_params is None else _configuration(name, incumbent_params)
    split = validation_split(data)
    users = len(split[1])
    figures = _validation_figures(name, candidate, split, side) if users else {}
    incumbent_figures: dict[str, float] | None = None
    if incumbent is None:
        passed, reason = True, "no version in production: nothing to compare with"
    elif incumbent == candidate:
        incumbent_figures = figures
        passed, reason = True, "the production configuration: it scores the same by construction"
    elif not users:
        passed, reason = False, "no customer has two interactions: nothing to compare on"
    else:
        incumbent_figures = _validation_figures(name, incumbent, split, side)
        passed = figures[NDCG] >= incumbent_figures[NDCG] - tolerance
        sign = ">=" if passed else "<"
        reason = (
            f"validation {NDCG} {figures[NDCG]:.4f} {sign} production configuration's "
            f"{incumbent_figures[NDCG]:.4f} - tolerance {tolerance:g}"
        )
    seconds = time.perf_counter() - started
    return GateResult(name, passed, reason, tolerance, users, candidate, figures, incumbent,
                      incumbent_figures, seconds)  # fmt: skip


def _production(store: Store, name: str) -> tuple[int | None, dict[str, Any] | None]:
    """The version in production and its parameters (None, None when there is none)."""
    live = registry.versions(store, name).filter(pl.col("status") == "production")
    if live.height == 0:
        return None, None
    row = live.row(0, named=True)
    return int(row["version"]), json.loads(row["params"])


def _departed(store: Store, users: list[str]) -> list[str]:
    """Those of the given customers with no consented event left in the store: erased, or
    consent withdrawn, since the training data was read (the filter mirrors ``load_events``)."""
    fitted = pl.DataFrame({"user_id": users}, schema={"user_id": pl.String})
    with store.registered("_fitted_users", fitted):
        gone = store.query(
            "SELECT f.user_id FROM _fitted_users f WHERE NOT EXISTS (SELECT 1 FROM events e "
            "WHERE e.user_id = f.user_id AND e.item_id IS NOT NULL AND e.consent_personalisation)"
        )
    departed: list[str] = gone["user_id"].to_list()
    return departed


def _owed(store: Store, name: str, until: datetime) -> int:
    """Retrain requests of this model not yet done, made up to ``until``."""
    return int(
        store.scalar(
            "SELECT count(*) FROM model_retrains WHERE name = ? AND done_at IS NULL "
            "AND requested_at <= ?",
            [name, until],
        )
    )


def _reopen(store: Store, name: str, after: datetime) -> None:
    """Owe again the retrain requests made after the data was read, which ``register`` has just
    marked done: the new version learnt item-side state from the customers they concern."""
    store.execute(
        "UPDATE model_retrains SET done_at = NULL WHERE name = ? AND requested_at > ?",
        [name, after],
    )


def _metrics(model: BaseRecommender, verdict: GateResult, previous: int | None) -> dict[str, Any]:
    """What the registry keeps of a retrained version: fit figures and the gate's."""
    metrics: dict[str, Any] = {"fit_seconds": round(model.report.seconds, 3)}
    if model.report.losses:
        metrics["final_loss"] = model.report.losses[-1]
    metrics |= {f"validation_{k}": v for k, v in verdict.candidate.items()}
    if verdict.incumbent is not None:
        metrics |= {f"incumbent_{k}": v for k, v in verdict.incumbent.items()}
    metrics |= {"validation_users": verdict.validation_users, "gate_tolerance": verdict.tolerance,
                "replaced_version": previous}  # fmt: skip
    return metrics


def retrain(
    store_access: StoreAccess,
    settings: Settings,
    name: str,
    params: dict[str, Any] | None = None,
    *,
    tolerance: float | None = None,
) -> RetrainOutcome:
    """Fit ``name`` anew on the store's data and put it in production if it passes the gate.

    ``params`` None retrains the production version's configuration (the model's defaults
    when none is in production); ``tolerance`` None takes ``settings.serve.gate_tolerance``.
    The store is held (``with store_access() as store``) twice, briefly: to read the training
    data and the production version, then to register, promote and audit in one transaction.
    A rejected candidate is not registered; production stays and owed retrains stay owed.
    If production changed while fitting (a rollback, a promotion), nothing is registered.
    """
    started = time.perf_counter()
    tolerance = settings.serve.gate_tolerance if tolerance is None else tolerance
    with store_access() as store:
        read_at = datetime.now(UTC)
        data, side = training_data(store, settings)
        previous, incumbent_params = _production(store, name)
    candidate_params = params if params is not None else incumbent_params or {}
    verdict = gate(data, side, name, candidate_params, incumbent_params, tolerance=tolerance)
    model = (
        model_class(name)(**verdict.candidate_params).fit(data, side) if verdict.passed else None
    )
    with store_access() as store, store.transaction():
        outcome = RetrainOutcome(name, None, False, verdict, 0.0, "", previous)
        now_live = _production(store, name)[0]
        if model is None:
            decision = "rejected"
            outcome.reason = f"rejected by the gate ({verdict.reason}); nothing registered"
        elif now_live != previous:
            decision = "abandoned"
            outcome.reason = (
                f"production changed while fitting (v{previous} -> v{now_live}); nothing registered"
            )
        else:
            decision = "promoted"
            departed = _departed(store, model.users)
            for user in departed:
                model.forget_user(user)
            outcome.forgotten, outcome.settled = len(departed), _owed(store, name, read_at)
            outcome.version = registry.register(store, model, _metrics(model, verdict, previous))
            _reopen(store, name, read_at)
            registry.promote(store, name, outcome.version)
            outcome.promoted, outcome.model = True, model
            outcome.reason = f"v{outcome.version} in production ({verdict.reason})"
        outcome.seconds = time.perf_counter() - started
        audit.record(store, AUDIT_ACTION, name, {"decision": decision, **outcome.to_json()})
    return outcome
