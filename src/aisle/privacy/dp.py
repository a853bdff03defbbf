"""Differentially private releases (OpenDP), with a privacy-budget ledger per dataset.

Popularity: each customer's set of purchased items is scaled to L2 norm at most
``contribution_bound`` (weight min(1, bound / sqrt(items))), summed per catalog item, and
released through OpenDP's Gaussian mechanism calibrated to (epsilon, delta). The catalog is
public, so ranking the noisy sums is post-processing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import opendp.prelude as dp
import polars as pl

from aisle.config import PrivacySettings
from aisle.errors import PrivacyBudgetError
from aisle.privacy import audit
from aisle.storage import Store

dp.enable_features("contrib")
ALL = "all"


@dataclass(frozen=True)
class Release:
    """One release: what was published and what it cost."""

    dataset: str
    what: str
    epsilon: float
    delta: float
    scale: float
    items: pl.DataFrame  # item_id, title, score (noisy)

    def to_json(self) -> dict[str, Any]:
        """Machine-readable form."""
        return {
            "dataset": self.dataset,
            "what": self.what,
            "epsilon": self.epsilon,
            "delta": self.delta,
            "noise_scale": self.scale,
            "items": self.items.to_dicts(),
        }


def gaussian(epsilon: float, delta: float, bound: float) -> tuple[dp.Measurement, float]:
    """OpenDP's Gaussian mechanism over a vector of sums, calibrated so that inputs at L2
    distance ``bound`` cost exactly (epsilon, delta); returns it and its noise scale."""
    space = dp.vector_domain(dp.atom_domain(T=float, nan=False)), dp.l2_distance(T=float)

    def make(scale: float) -> dp.Measurement:
        base = space >> dp.m.then_gaussian(scale=scale)
        return dp.c.make_fix_delta(dp.c.make_zCDP_to_approxDP(base), delta=delta)

    scale = float(dp.binary_search_param(make, d_in=bound, d_out=(epsilon, delta)))
    return make(scale), scale


def spent(store: Store, dataset: str) -> float:
    """Epsilon already spent on the dataset."""
    return float(
        store.scalar(
            "SELECT coalesce(sum(epsilon), 0) FROM privacy_releases WHERE dataset = ?", [dataset]
        )
    )


def bounded_popularity(store: Store, dataset: str, bound: float) -> pl.DataFrame:
    """Per catalog item, the sum over customers of their bounded weight (exact: not private)."""
    where = "" if dataset == ALL else "AND e.source = ?"
    params: list[Any] = [bound] if dataset == ALL else [dataset, bound]
    return store.query(
        f"""
        WITH bought AS (
            SELECT DISTINCT e.user_id, e.item_id FROM events e
            WHERE e.type = 'purchase' AND e.user_id IS NOT NULL {where}),
        weighted AS (
            SELECT item_id, least(1.0, ? / sqrt(count(*) OVER (PARTITION BY user_id))) AS w
            FROM bought)
        SELECT p.item_id, any_value(p.title) AS title, coalesce(sum(w.w), 0) AS exact
        FROM products p LEFT JOIN weighted w USING (item_id)
        GROUP BY p.item_id ORDER BY p.item_id
        """,
        params,
    )


def release_popular(
    store: Store,
    settings: PrivacySettings,
    *,
    epsilon: float,
    top: int = 100,
    dataset: str = ALL,
) -> Release:
    """The ``top`` most popular catalog items by a differentially private popularity score,
    refused when the dataset's budget cannot pay ``epsilon``; the release is recorded in the
    ledger and the audit log."""
    if epsilon <= 0:
        raise PrivacyBudgetError("epsilon must be positive")
    already = spent(store, dataset)
    if already + epsilon > settings.epsilon_budget + 1e-12:
        raise PrivacyBudgetError(
            f"dataset {dataset!r} has spent epsilon {already:g} of its budget "
            f"{settings.epsilon_budget:g}; a release of {epsilon:g} would exceed it"
        )
    sums = bounded_popularity(store, dataset, settings.contribution_bound)
    mechanism, scale = gaussian(epsilon, settings.delta, settings.contribution_bound)
    noisy = np.asarray(mechanism(sums["exact"].cast(pl.Float64).to_list()), dtype=float)
    ranked = (
        sums.select("item_id", "title")
        .with_columns(pl.Series("score", noisy).round(1))
        .sort(["score", "item_id"], descending=[True, False])
        .head(top)
    )
    release = Release(dataset, "popular", epsilon, settings.delta, scale, ranked)
    with store.transaction():
        release_id = int(
            store.scalar("SELECT coalesce(max(release_id), 0) + 1 FROM privacy_releases")
        )
        params = {
            "mechanism": "gaussian (zCDP -> approx DP)",
            "scale": scale,
            "l2_bound": settings.contribution_bound,
            "top": top,
        }
        store.execute(
            "INSERT INTO privacy_releases VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                release_id,
                dataset,
                "popular",
                epsilon,
                settings.delta,
                datetime.now(UTC),
                json.dumps(params),
            ],
        )
        audit.record(store, "release", dataset, {"what": "popular", "epsilon": epsilon, **params})
    return release
