"""Differentially private releases (OpenDP), with a privacy-budget ledger per dataset.

Popularity: each customer's set of purchased items is scaled to L2 norm at most
``contribution_bound`` (weight min(1, bound / sqrt(items))), summed per catalog item, and
released through OpenDP's Gaussian mechanism. The catalog is public, so ranking the noisy sums
is post-processing.

Item rankings take two rounds that share the budget in zero-concentrated DP (rho adds up under
adaptive composition; the total converts to the (epsilon, delta) claimed). Round one ranks the
whole catalog; its clear leaders are kept and a band around the cut is re-measured in round
two, where each customer spreads the same L2 bound over only the band items they bought. Heavy
buyers are down-weighted less, which is where the bias of one round comes from.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import polars as pl
from opendp import combinators as c
from opendp import domains, metrics, mod
from opendp import measurements as m

from aisle.config import PrivacySettings
from aisle.errors import AisleError, PrivacyBudgetError
from aisle.privacy import audit
from aisle.storage import Store

mod.enable_features("contrib")


def _vector_space() -> tuple[Any, Any]:
    """Float vectors (no NaN) under the L2 distance: the input space of the sum releases."""
    return domains.vector_domain(domains.atom_domain(T=float, nan=False)), metrics.l2_distance(
        T=float
    )


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


def gaussian(epsilon: float, delta: float, bound: float) -> tuple[mod.Measurement, float]:
    """OpenDP's Gaussian mechanism over a vector of sums, calibrated so that inputs at L2
    distance ``bound`` cost exactly (epsilon, delta); returns it and its noise scale."""
    space = _vector_space()

    def make(scale: float) -> mod.Measurement:
        base = space >> m.then_gaussian(scale=scale)
        return c.make_fix_delta(c.make_zCDP_to_approxDP(base), delta=delta)

    scale = float(mod.binary_search_param(make, d_in=bound, d_out=(epsilon, delta)))
    return make(scale), scale


def zcdp_gaussian(rho: float, bound: float) -> tuple[mod.Measurement, float]:
    """OpenDP's Gaussian mechanism over a vector of sums costing ``rho`` (zCDP) for inputs at
    L2 distance ``bound``; returns it and its noise scale."""
    scale = bound / math.sqrt(2 * rho)
    space = _vector_space()
    measurement = space >> m.then_gaussian(scale=scale)
    if measurement.map(bound) > rho * (1 + 1e-9):
        raise AisleError("the Gaussian mechanism costs more than its share of the budget")
    return measurement, scale


def rho_for(epsilon: float, delta: float) -> float:
    """The zCDP budget rho whose conversion to approximate DP costs (epsilon, delta)."""
    _, scale = gaussian(epsilon, delta, 1.0)
    return 1 / (2 * scale * scale)


#: Round one's share of the budget, its leaders kept and its band re-measured (as multiples of
#: ``top``). Chosen on the first five months of UCI Online Retail, not on the figure reported.
FIRST_ROUND_SHARE, KEPT, BAND = 0.5, 0.4, 2.5


def spent(store: Store, dataset: str) -> float:
    """Epsilon already spent on the dataset."""
    return float(
        store.scalar(
            "SELECT coalesce(sum(epsilon), 0) FROM privacy_releases WHERE dataset = ?", [dataset]
        )
    )


def bounded_sums(
    store: Store,
    dataset: str,
    bound: float,
    *,
    by: str = "item",
    since: datetime | None = None,
    within: list[str] | None = None,
) -> pl.DataFrame:
    """Per catalog item (or first-level category), the sum over customers of their bounded
    weight: each customer's set of bought items (categories; only those ``within`` when
    given) scaled to L2 norm ``bound``. Exact, so not private: ``release`` adds the noise.
    The domain is the public catalog."""
    where, params = "", list[Any]()
    if dataset != ALL:
        where += " AND e.source = ?"
        params.append(dataset)
    if since is not None:
        where += " AND e.timestamp >= ?"
        params.append(since)
    key = "p.item_id" if by == "item" else "coalesce(p.category_path[1], '(none)')"
    if within is not None:
        where += f" AND list_contains(?::VARCHAR[], {key})"
        params.append(within)
    label = "any_value(p.title)" if by == "item" else "NULL"
    return store.query(
        f"""
        WITH bought AS (
            SELECT DISTINCT e.user_id, {key} AS key FROM events e
            JOIN products p USING (item_id)
            WHERE e.type = 'purchase' AND e.user_id IS NOT NULL {where}),
        weighted AS (
            SELECT key, least(1.0, ? / sqrt(count(*) OVER (PARTITION BY user_id))) AS w
            FROM bought),
        domain AS (SELECT {key} AS key, {label} AS title FROM products p GROUP BY 1)
        SELECT d.key, d.title, coalesce(sum(w.w), 0) AS exact
        FROM domain d LEFT JOIN weighted w USING (key)
        GROUP BY d.key, d.title ORDER BY d.key
        """,
        [*params, bound],
    )


#: What can be released: the statistic's grouping and whether it looks back only N days.
RELEASES = {
    "popular": "item", "trending": "item", "categories": "category", "suggestions": "query",
}  # fmt: skip
#: Distinct queries one customer may add to the suggestions.
QUERIES_PER_CUSTOMER = 5


def thresholded_gaussian(
    epsilon: float, delta: float, keys_per_customer: int
) -> tuple[mod.Measurement, float, float]:
    """OpenDP's Gaussian mechanism with a threshold, for counts over an unknown domain (search
    queries): each customer adds 1 to at most ``keys_per_customer`` keys. Returns it, its
    noise scale and its threshold, calibrated to (epsilon, delta) in total."""
    domain = domains.map_domain(domains.atom_domain(T=str), domains.atom_domain(T=float, nan=False))
    metric = metrics.l02inf_distance(metrics.absolute_distance(T=float))
    d_in = (keys_per_customer, math.sqrt(keys_per_customer), 1.0)
    # the threshold keeps a key seen by few customers out with probability about 1 - delta / 2
    tail = math.sqrt(2 * math.log(2 * keys_per_customer / delta))

    def make(scale: float) -> mod.Measurement:
        base = m.make_gaussian_threshold(domain, metric, scale=scale, threshold=1 + scale * tail)
        return c.make_fix_delta(c.make_zCDP_to_approxDP(base), delta=delta)

    scale = float(mod.binary_search_param(make, d_in=d_in, d_out=(epsilon, delta)))
    return make(scale), scale, 1 + scale * tail


def query_counts(store: Store, dataset: str, per_customer: int) -> dict[str, float]:
    """Customers per normalised query, each customer counting for at most ``per_customer`` of
    their own most frequent queries (exact: not private)."""
    where, params = "", list[Any]()
    if dataset != ALL:
        where, params = " AND source = ?", [dataset]
    rows = store.query(
        f"""
        WITH asked AS (
            SELECT user_id, lower(trim(regexp_replace(query, '\\s+', ' ', 'g'))) AS q,
                   count(*) AS n
            FROM events WHERE query IS NOT NULL AND user_id IS NOT NULL {where} GROUP BY 1, 2),
        kept AS (
            SELECT q FROM asked WHERE q <> ''
            QUALIFY row_number() OVER (PARTITION BY user_id ORDER BY n DESC, q) <= ?)
        SELECT q, count(*) AS customers FROM kept GROUP BY q
        """,
        [*params, per_customer],
    )
    return {q: float(c) for q, c in rows.iter_rows()}


def release(
    store: Store,
    settings: PrivacySettings,
    what: str,
    *,
    epsilon: float,
    top: int = 100,
    dataset: str = ALL,
    days: int | None = None,
) -> Release:
    """The ``top`` items (``popular``; ``trending``: over the last ``days``) or categories by
    a differentially private score, refused when the dataset's budget cannot pay
    ``epsilon``; recorded in the ledger and the audit log."""
    if what not in RELEASES:
        raise AisleError(f"no release called {what!r}; choose from {', '.join(RELEASES)}")
    if epsilon <= 0:
        raise PrivacyBudgetError("epsilon must be positive")
    already = spent(store, dataset)
    if already + epsilon > settings.epsilon_budget + 1e-12:
        raise PrivacyBudgetError(
            f"dataset {dataset!r} has spent epsilon {already:g} of its budget "
            f"{settings.epsilon_budget:g}; a release of {epsilon:g} would exceed it"
        )
    if what == "suggestions":
        return _release_suggestions(store, settings, epsilon=epsilon, top=top, dataset=dataset)
    since = None
    if what == "trending":
        latest = store.scalar("SELECT max(timestamp) FROM events WHERE type = 'purchase'")
        since = (latest or datetime.now(UTC)) - timedelta(days=days or 30)
    bound, label = settings.contribution_bound, "item_id"
    if RELEASES[what] == "item":
        ranked, scale, rounds = _two_rounds(
            store, dataset, settings, epsilon=epsilon, top=top, since=since
        )
    else:
        label, rounds = "category", 1
        sums = bounded_sums(store, dataset, bound, by="category", since=since)
        mechanism, scale = gaussian(epsilon, settings.delta, bound)
        noisy = np.asarray(mechanism(sums["exact"].cast(pl.Float64).to_list()), dtype=float)
        ranked = (
            sums.select(pl.col("key").alias(label))
            .with_columns(pl.Series("score", noisy).round(1))
            .sort("score", descending=True, maintain_order=True)
            .head(top)
        )
    result = Release(dataset, what, epsilon, settings.delta, scale, ranked)
    params = {
        "mechanism": f"gaussian, {rounds} round(s) (zCDP -> approx DP)",
        "scale": scale,
        "l2_bound": bound,
        "top": top,
        "since": since.isoformat() if since else None,
    }
    _ledger(store, dataset, what, (epsilon, settings.delta), params)
    return result


def _two_rounds(
    store: Store,
    dataset: str,
    settings: PrivacySettings,
    *,
    epsilon: float,
    top: int,
    since: datetime | None,
) -> tuple[pl.DataFrame, float, int]:
    """The ``top`` items by two noisy rounds (see the module's notes): item_id, title, score
    (the noisy bounded count of the round that placed the item) and round."""
    bound, rho = settings.contribution_bound, rho_for(epsilon, settings.delta)
    first, scale = zcdp_gaussian(rho * FIRST_ROUND_SHARE, bound)
    sums = bounded_sums(store, dataset, bound, since=since)
    noisy = np.asarray(first(sums["exact"].cast(pl.Float64).to_list()), dtype=float)
    ranked = (
        sums.select(pl.col("key").alias("item_id"), "title", pl.Series("score", noisy).round(1))
        .sort("score", descending=True, maintain_order=True)
        .with_columns(pl.lit(1).alias("round"))
    )
    kept = round(top * KEPT)
    band = ranked.slice(kept, round(top * BAND) - kept)
    if band.height <= top - kept:  # the band is the rest of the catalog: one round decides
        return ranked.head(top), scale, 1
    second, scale2 = zcdp_gaussian(rho * (1 - FIRST_ROUND_SHARE), bound)
    again = bounded_sums(store, dataset, bound, since=since, within=band["item_id"].to_list())
    again = again.filter(pl.col("key").is_in(band["item_id"].implode()))
    noisy = np.asarray(second(again["exact"].cast(pl.Float64).to_list()), dtype=float)
    chosen = (
        again.select(pl.col("key").alias("item_id"), "title", pl.Series("score", noisy).round(1))
        .sort("score", descending=True, maintain_order=True)
        .head(top - kept)
        .with_columns(pl.lit(2).alias("round"))
    )
    return pl.concat([ranked.head(kept), chosen]), max(scale, scale2), 2


def _release_suggestions(
    store: Store, settings: PrivacySettings, *, epsilon: float, top: int, dataset: str
) -> Release:
    mechanism, scale, threshold = thresholded_gaussian(
        epsilon, settings.delta, QUERIES_PER_CUSTOMER
    )
    noisy = mechanism(query_counts(store, dataset, QUERIES_PER_CUSTOMER))
    ranked = (
        pl.DataFrame(
            {"query": list(noisy), "score": [round(v, 1) for v in noisy.values()]},
            schema={"query": pl.String, "score": pl.Float64},
        )
        .sort(["score", "query"], descending=[True, False])
        .head(top)
    )
    params = {
        "mechanism": "gaussian with threshold (zCDP -> approx DP)",
        "scale": scale,
        "threshold": threshold,
        "queries_per_customer": QUERIES_PER_CUSTOMER,
        "top": top,
    }
    _ledger(store, dataset, "suggestions", (epsilon, settings.delta), params)
    return Release(dataset, "suggestions", epsilon, settings.delta, scale, ranked)


def _ledger(
    store: Store, dataset: str, what: str, cost: tuple[float, float], params: dict[str, Any]
) -> None:
    """Record a release in the budget ledger and the audit log."""
    epsilon, delta = cost
    with store.transaction():
        last = store.scalar("SELECT coalesce(max(release_id), 0) FROM privacy_releases")
        store.execute(
            "INSERT INTO privacy_releases VALUES (?, ?, ?, ?, ?, ?, ?)",
            [int(last) + 1, dataset, what, epsilon, delta, datetime.now(UTC), json.dumps(params)],
        )
        audit.record(store, "release", dataset, {"what": what, "epsilon": epsilon, **params})


def release_popular(
    store: Store,
    settings: PrivacySettings,
    *,
    epsilon: float,
    top: int = 100,
    dataset: str = ALL,
) -> Release:
    """The ``top`` most popular catalog items (see ``release``)."""
    return release(store, settings, "popular", epsilon=epsilon, top=top, dataset=dataset)


def bounded_popularity(store: Store, dataset: str, bound: float) -> pl.DataFrame:
    """Per catalog item, the bounded sums behind ``popular`` (item_id, title, exact)."""
    return bounded_sums(store, dataset, bound).rename({"key": "item_id"})
