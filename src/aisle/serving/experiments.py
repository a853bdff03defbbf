"""A/B tests: customers split by hashed pseudonym, exposures logged, online metrics per variant.

A customer's variant is a pure function of the experiment's salt and the customer's pseudonym
(blake2b, never Python's per-process ``hash()``), so every server process, restart and replica
agrees on it without shared state. What each customer was shown is buffered in memory on the
request path and written to ``experiment_exposures`` in one append when the caller flushes.
The report counts, per variant, the customers exposed and the share of them who went on to
click, click a shown item, add to cart and buy after their first exposure, each with a Wilson
interval, and each arm's difference from the control with a normal-approximation interval and
a two-sided p-value.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from statistics import NormalDist
from typing import Any, Final, NamedTuple

import polars as pl
import pyarrow as pa

from aisle.config import ExperimentSettings, Settings
from aisle.domain import EventType
from aisle.errors import ConfigError
from aisle.storage import Store

#: The online metrics, in report order: the share of exposed customers who, after their first
#: exposure, clicked anything, clicked (or viewed) an item they were shown, added to cart, bought.
METRICS: Final = ("click", "click_through", "add_to_cart", "purchase")

EXPOSURE_SCHEMA: Final = pl.Schema(
    {
        "experiment": pl.String(),
        "variant": pl.String(),
        "user_id": pl.String(),
        "surface": pl.String(),
        "items": pl.List(pl.String()),
        "shown_at": pl.Datetime("us", "UTC"),
    }
)

_SPAN: Final = float(2**64)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


class Assignment(NamedTuple):
    """The arm a customer is in: which experiment, which variant, which model serves it."""

    experiment: str
    variant: str
    model: str

    def to_json(self) -> dict[str, str]:
        """How answers name the arm that made them."""
        return {"experiment": self.experiment, "name": self.variant}


@dataclass(frozen=True)
class _Split:
    """One experiment, precomputed for the request path."""

    name: str
    prefix: hashlib.blake2b  # already fed the salt; copied per customer
    bounds: tuple[float, ...]  # cumulative weight shares, the last variant's (1.0) left out
    variants: tuple[str, ...]
    models: tuple[str, ...]

    def pick(self, pseudonym: str) -> Assignment:
        hasher = self.prefix.copy()
        hasher.update(pseudonym.encode())
        draw = int.from_bytes(hasher.digest(), "big") / _SPAN
        index = bisect_right(self.bounds, draw)
        return Assignment(self.name, self.variants[index], self.models[index])


def _split(name: str, settings: ExperimentSettings) -> _Split:
    if not settings.variants:
        raise ConfigError(f"experiment {name!r} has no variants; add [experiments.{name}.variants]")
    salt = settings.salt if settings.salt is not None else name
    # the NUL keeps ("ab", "c") and ("a", "bc") apart
    prefix = hashlib.blake2b(salt.encode() + b"\0", digest_size=8)
    weights = [v.weight for v in settings.variants.values()]
    total = math.fsum(weights)
    running, bounds = 0.0, []
    for weight in weights[:-1]:
        running += weight
        bounds.append(running / total)
    return _Split(
        name,
        prefix,
        tuple(bounds),
        tuple(settings.variants),
        tuple(v.model for v in settings.variants.values()),
    )


def assign(experiment: str, settings: ExperimentSettings, pseudonym: str) -> str:
    """The variant of ``experiment`` that customer ``pseudonym`` is in (same answer everywhere).

    The hash of salt and pseudonym is read as a uniform draw in [0, 1) and mapped onto the
    variants' cumulative weight shares; the salt defaults to the experiment's name."""
    return _split(experiment, settings).pick(pseudonym).variant


class Experiments:
    """The configured experiments, ready to place a customer on each request."""

    def __init__(self, experiments: Mapping[str, ExperimentSettings]) -> None:
        self.settings = dict(experiments)
        self._by_surface: dict[str, _Split] = {}
        for name, experiment in experiments.items():
            split = _split(name, experiment)  # validates disabled ones too
            if experiment.enabled:
                self._by_surface.setdefault(experiment.surface, split)

    @classmethod
    def from_settings(cls, settings: Settings) -> Experiments:
        """The experiments of ``settings.experiments``."""
        return cls(settings.experiments)

    def variant_for(self, surface: str, pseudonym: str) -> Assignment | None:
        """The arm of the first enabled experiment on ``surface`` for this customer, if any."""
        split = self._by_surface.get(surface)
        return split.pick(pseudonym) if split is not None else None

    def active(self, surface: str) -> str | None:
        """The name of the experiment running on ``surface``, if any."""
        split = self._by_surface.get(surface)
        return split.name if split is not None else None


class ExposureLog:
    """What customers in experiments were shown, buffered until the caller flushes it.

    The buffer is kept column by column (items flattened, with offsets) so that a flush builds
    its frame from Arrow arrays rather than from a Python list per exposure."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buffer = _Buffer()

    def record(
        self,
        assignment: Assignment,
        pseudonym: str,
        surface: str,
        items: Sequence[str],
        shown_at: datetime | None = None,
    ) -> None:
        """Note that ``pseudonym`` was shown ``items`` (in order) under ``assignment``; a naive
        ``shown_at`` is read as UTC, none is now."""
        micros = time.time_ns() // 1_000 if shown_at is None else _micros(shown_at)
        with self._lock:
            self._buffer.add(assignment, pseudonym, surface, items, micros)

    def __len__(self) -> int:
        return len(self._buffer.users)

    def flush(self, store: Store) -> int:
        """Write the buffered exposures with one append; returns how many. The caller holds the
        store's lock; requests keep recording meanwhile. If the write fails the exposures go
        back into the buffer, ahead of those recorded since."""
        with self._lock:
            taken, self._buffer = self._buffer, _Buffer()
        if not taken.users:
            return 0
        try:
            store.append("experiment_exposures", taken.frame())
        except BaseException:
            with self._lock:
                taken.extend(self._buffer)
                self._buffer = taken
            raise
        return len(taken.users)


@dataclass
class _Buffer:
    """Exposures column by column; ``items`` of exposure i are items[offsets[i]:offsets[i+1]]."""

    experiments: list[str] = field(default_factory=list)
    variants: list[str] = field(default_factory=list)
    users: list[str] = field(default_factory=list)
    surfaces: list[str] = field(default_factory=list)
    micros: list[int] = field(default_factory=list)
    items: list[str] = field(default_factory=list)
    offsets: list[int] = field(default_factory=lambda: [0])

    def add(self, arm: Assignment, user: str, surface: str, items: Sequence[str], at: int) -> None:
        self.experiments.append(arm.experiment)
        self.variants.append(arm.variant)
        self.users.append(user)
        self.surfaces.append(surface)
        self.micros.append(at)
        self.items.extend(items)
        self.offsets.append(len(self.items))

    def extend(self, later: _Buffer) -> None:
        base = len(self.items)
        self.experiments += later.experiments
        self.variants += later.variants
        self.users += later.users
        self.surfaces += later.surfaces
        self.micros += later.micros
        self.items += later.items
        self.offsets += [base + offset for offset in later.offsets[1:]]

    def frame(self) -> pl.DataFrame:
        items = pa.LargeListArray.from_arrays(
            pa.array(self.offsets, pa.int64()), pa.array(self.items, pa.string())
        )
        return pl.DataFrame(
            {
                "experiment": self.experiments,
                "variant": self.variants,
                "user_id": self.users,
                "surface": self.surfaces,
                "items": pl.Series(items),
                "shown_at": pl.Series(self.micros, dtype=pl.Int64()).cast(
                    EXPOSURE_SCHEMA["shown_at"]
                ),
            },
            schema=EXPOSURE_SCHEMA,
        )


def _aware(moment: datetime | None) -> datetime:
    """``moment`` with a time zone (naive is read as UTC); none is now."""
    if moment is None:
        return datetime.now(UTC)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _micros(moment: datetime) -> int:
    """Microseconds since the epoch, exactly (a float timestamp would round them)."""
    return (_aware(moment) - _EPOCH) // timedelta(microseconds=1)


@dataclass(frozen=True)
class Rate:
    """A share of customers with its confidence interval (Wilson score)."""

    successes: int
    trials: int
    rate: float | None  # None when no customer was exposed
    low: float | None
    high: float | None

    def to_json(self) -> dict[str, Any]:
        return {"rate": self.rate, "low": self.low, "high": self.high,
                "successes": self.successes, "trials": self.trials}  # fmt: skip


@dataclass(frozen=True)
class Difference:
    """A variant's rate minus the control's: interval (unpooled normal) and pooled z-test."""

    diff: float | None
    low: float | None
    high: float | None
    p_value: float | None

    def to_json(self) -> dict[str, Any]:
        return {"diff": self.diff, "low": self.low, "high": self.high, "p_value": self.p_value}


@dataclass(frozen=True)
class VariantReport:
    """One arm's online metrics."""

    variant: str
    model: str | None  # None for an arm seen in exposures but no longer configured
    exposed: int
    rates: dict[str, Rate]
    vs_control: dict[str, Difference] | None  # None for the control itself

    def to_json(self) -> dict[str, Any]:
        return {
            "variant": self.variant,
            "model": self.model,
            "exposed": self.exposed,
            "rates": {name: rate.to_json() for name, rate in self.rates.items()},
            "vs_control": None
            if self.vs_control is None
            else {name: d.to_json() for name, d in self.vs_control.items()},
        }


@dataclass(frozen=True)
class ExperimentReport:
    """Every arm of one experiment, control first."""

    name: str
    surface: str
    enabled: bool
    control: str
    as_of: datetime
    confidence: float
    variants: list[VariantReport] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "surface": self.surface, "enabled": self.enabled,
                "control": self.control, "as_of": self.as_of.isoformat(),
                "confidence": self.confidence,
                "variants": [v.to_json() for v in self.variants]}  # fmt: skip


def wilson(successes: int, trials: int, confidence: float = 0.95) -> Rate:
    """The share ``successes / trials`` with its Wilson score interval."""
    if trials == 0:
        return Rate(0, 0, None, None, None)
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    # at 0% (100%) the bound is exactly 0 (1); the formula leaves rounding dust
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == trials else min(1.0, centre + half)
    return Rate(successes, trials, p, low, high)


def difference(variant: Rate, control: Rate, confidence: float = 0.95) -> Difference:
    """``variant`` minus ``control``: the interval from the unpooled standard error, the
    two-sided p-value from the pooled two-proportion z-test."""
    if variant.rate is None or control.rate is None:
        return Difference(None, None, None, None)
    n1, n0 = variant.trials, control.trials
    diff = variant.rate - control.rate
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    se = math.sqrt(variant.rate * (1 - variant.rate) / n1 + control.rate * (1 - control.rate) / n0)
    pooled = (variant.successes + control.successes) / (n1 + n0)
    se_pooled = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n0))
    # both arms at 0% (or both at 100%): no evidence of any difference
    p_value = 1.0 if se_pooled == 0 else 2 * (1 - NormalDist().cdf(abs(diff) / se_pooled))
    return Difference(diff, diff - z * se, diff + z * se, p_value)


# One pass over the experiment's exposures and the exposed customers' later events. A customer
# counts in the variant of their first exposure only (if a salt or weight change moved them,
# the later arm neither counts them nor what it showed them).
_REPORT_SQL: Final = f"""
WITH exposures AS (
    SELECT user_id, variant, items, shown_at FROM experiment_exposures
    WHERE experiment = $1 AND shown_at <= $2),
customers AS (
    SELECT user_id, arg_min(variant, shown_at) AS variant, min(shown_at) AS first_at
    FROM exposures GROUP BY user_id),
shown AS (
    SELECT user_id, item_id, min(shown_at) AS first_shown
    FROM (SELECT x.user_id, unnest(x.items) AS item_id, x.shown_at
          FROM exposures x JOIN customers c ON c.user_id = x.user_id AND c.variant = x.variant)
    GROUP BY user_id, item_id),
acted AS (
    SELECT c.user_id,
           bool_or(e.type = '{EventType.CLICK}') AS click,
           bool_or(e.type = '{EventType.ADD_TO_CART}') AS add_to_cart,
           bool_or(e.type = '{EventType.PURCHASE}') AS purchase
    FROM customers c JOIN events e ON e.user_id = c.user_id
    WHERE e.type IN ('{EventType.CLICK}', '{EventType.ADD_TO_CART}', '{EventType.PURCHASE}')
      AND e.timestamp >= c.first_at AND e.timestamp <= $2
    GROUP BY c.user_id),
clicked_shown AS (
    SELECT DISTINCT s.user_id
    FROM shown s JOIN events e ON e.user_id = s.user_id AND e.item_id = s.item_id
    WHERE e.type IN ('{EventType.CLICK}', '{EventType.VIEW}')
      AND e.timestamp >= s.first_shown AND e.timestamp <= $2)
SELECT c.variant,
       count(*) AS exposed,
       count(*) FILTER (WHERE a.click) AS click,
       count(t.user_id) AS click_through,
       count(*) FILTER (WHERE a.add_to_cart) AS add_to_cart,
       count(*) FILTER (WHERE a.purchase) AS purchase
FROM customers c
LEFT JOIN acted a USING (user_id)
LEFT JOIN clicked_shown t USING (user_id)
GROUP BY c.variant
"""


def experiment_counts(store: Store, name: str, *, now: datetime | None = None) -> pl.DataFrame:
    """Per variant seen in the exposures: customers exposed and how many of them did each of
    :data:`METRICS` after their first exposure (up to ``now``)."""
    return store.query(_REPORT_SQL, [name, _aware(now)])


def experiment_report(
    store: Store,
    name: str,
    settings: ExperimentSettings,
    *,
    now: datetime | None = None,
    confidence: float = 0.95,
) -> ExperimentReport:
    """Online metrics of experiment ``name`` per variant, control (the first variant) first,
    then arms seen in exposures that are no longer configured."""
    if not settings.variants:
        raise ConfigError(f"experiment {name!r} has no variants")
    now = _aware(now)
    counts = {row["variant"]: row for row in experiment_counts(store, name, now=now).to_dicts()}
    arms = list(settings.variants) + sorted(set(counts) - set(settings.variants))
    control = arms[0]
    rates: dict[str, dict[str, Rate]] = {}
    for arm in arms:
        row = counts.get(arm, {})
        exposed = int(row.get("exposed", 0))
        rates[arm] = {m: wilson(int(row.get(m, 0)), exposed, confidence) for m in METRICS}
    variants = [
        VariantReport(
            variant=arm,
            model=settings.variants[arm].model if arm in settings.variants else None,
            exposed=rates[arm][METRICS[0]].trials,
            rates=rates[arm],
            vs_control=None
            if arm == control
            else {m: difference(rates[arm][m], rates[control][m], confidence) for m in METRICS},
        )
        for arm in arms
    ]
    return ExperimentReport(
        name, settings.surface, settings.enabled, control, now, confidence, variants
    )
