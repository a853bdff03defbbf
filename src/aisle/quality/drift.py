"""Drift between an import's column profiles and the previous import's: PSI and KS distance."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Final, Literal

import numpy as np
import polars as pl

from aisle.config import QualitySettings
from aisle.quality.profile import OTHER, load_profile
from aisle.storage.store import Store

#: Share given to an empty bin so that PSI stays finite.
EPSILON: Final = 1e-4
#: PSI also compares how many values are missing, in this bin.
NULLS: Final = "__null__"


@dataclass(frozen=True)
class Drift:
    """One column's distance from its baseline, and whether it crosses the threshold."""

    column: str
    metric: str  # psi | ks
    value: float
    threshold: float
    flagged: bool


def psi(expected_counts: dict[str, int], actual_counts: dict[str, int]) -> float:
    """Population stability index over the union of categories.

    Empty bins get a share of ``EPSILON``; 0 when either side has no observations.
    """
    categories = sorted(set(expected_counts) | set(actual_counts))
    expected = np.array([expected_counts.get(c, 0) for c in categories], dtype=np.float64)
    actual = np.array([actual_counts.get(c, 0) for c in categories], dtype=np.float64)
    if expected.sum() <= 0 or actual.sum() <= 0:
        return 0.0
    e = np.maximum(expected / expected.sum(), EPSILON)
    a = np.maximum(actual / actual.sum(), EPSILON)
    return float(np.sum((a - e) * np.log(a / e)))


def _sketch_cdf(sketch: np.ndarray, points: np.ndarray, *, left: bool) -> np.ndarray:
    """The CDF interpolated from a 101-quantile sketch: right-continuous, or its left limit."""
    steps = len(sketch) - 1
    side: Literal["left", "right"] = "left" if left else "right"
    # k: index of the last knot below (left limit) or at (right-continuous) each point.
    k = np.searchsorted(sketch, points, side=side) - 1
    inside = (k >= 0) & (k < steps)
    kc = np.clip(k, 0, steps - 1)
    low, high = sketch[kc], sketch[kc + 1]
    width = np.where(high > low, high - low, 1.0)
    fraction = np.clip((points - low) / width, 0.0, 1.0)
    cdf = np.where(k >= steps, 1.0, 0.0)
    return np.where(inside, (kc + fraction) / steps, cdf)


def ks_from_quantiles(q_a: list[float], q_b: list[float]) -> float:
    """Kolmogorov-Smirnov distance between two distributions given by quantile sketches.

    Both CDFs are interpolated linearly between sketch points and compared on the union of
    the points (at each point and just left of it, so that point masses count).
    """
    if not q_a or not q_b:
        return 0.0
    a = np.sort(np.asarray(q_a, dtype=np.float64))
    b = np.sort(np.asarray(q_b, dtype=np.float64))
    points = np.union1d(a, b)
    gaps = [
        np.abs(_sketch_cdf(a, points, left=left) - _sketch_cdf(b, points, left=left))
        for left in (False, True)
    ]
    return float(max(gap.max() for gap in gaps))


def _category_counts(stats: dict[str, Any], shared: set[str]) -> dict[str, int]:
    """Top-value counts where values outside ``shared`` fold into ``__other__``; plus nulls."""
    counts = {value: n for value, n in stats["top"].items() if value in shared}
    counts[OTHER] = sum(n for value, n in stats["top"].items() if value not in shared)
    counts[NULLS] = stats.get("nulls", 0)
    return counts


def compare_profiles(
    baseline: dict[str, dict[str, Any]],
    current: dict[str, dict[str, Any]],
    psi_threshold: float,
    ks_threshold: float,
) -> list[Drift]:
    """Compare the columns both profiles share: KS on quantile sketches, PSI on top values.

    Only values in both top lists are compared one by one; the others fold into
    ``__other__`` on both sides, so a value slipping just out of a top 20 is not drift,
    while a new value that takes a large share still moves ``__other__``.
    """
    drifts: list[Drift] = []
    for column in (c for c in current if c in baseline):
        base, cur = baseline[column], current[column]
        if base.get("quantiles") and cur.get("quantiles"):
            value = ks_from_quantiles(base["quantiles"], cur["quantiles"])
            drifts.append(Drift(column, "ks", value, ks_threshold, value > ks_threshold))
        elif "top" in base and "top" in cur:
            shared = (set(base["top"]) & set(cur["top"])) - {OTHER}
            value = psi(_category_counts(base, shared), _category_counts(cur, shared))
            drifts.append(Drift(column, "psi", value, psi_threshold, value > psi_threshold))
    return drifts


def find_baseline(store: Store, import_id: int, kind: str) -> int | None:
    """The latest earlier complete, profiled import of the same kind through the same adapter
    that accepted something. Another feed is no baseline: its columns differ by design."""
    found = store.scalar(
        """
        SELECT i.import_id FROM imports i
        WHERE i.kind = ? AND i.status = 'complete' AND i.import_id < ? AND i.accepted > 0
          AND i.adapter = (SELECT adapter FROM imports WHERE import_id = ?)
          AND EXISTS (SELECT 1 FROM profiles p WHERE p.import_id = i.import_id)
        ORDER BY i.import_id DESC
        LIMIT 1
        """,
        [kind, import_id, import_id],
    )
    return None if found is None else int(found)


def detect_drift(store: Store, import_id: int, kind: str, settings: QualitySettings) -> list[Drift]:
    """Compare an import's stored profile with its baseline's and record the result.

    Call after ``save_profile`` for the import. Rows replace any earlier drift rows of the
    import in the ``drift`` table. Returns [] when there is no baseline to compare with.
    """
    baseline_id = find_baseline(store, import_id, kind)
    if baseline_id is None:
        return []
    drifts = compare_profiles(
        load_profile(store, baseline_id),
        load_profile(store, import_id),
        settings.drift_psi,
        settings.drift_ks,
    )
    rows = pl.DataFrame(
        [asdict(d) for d in drifts],
        schema={
            "column": pl.String,
            "metric": pl.String,
            "value": pl.Float64,
            "threshold": pl.Float64,
            "flagged": pl.Boolean,
        },
    )
    rows = rows.rename({"column": "column_name"}).with_columns(
        import_id=pl.lit(import_id, pl.Int32),
        baseline_import_id=pl.lit(baseline_id, pl.Int32),
        kind=pl.lit(kind),
    )
    with store.transaction():
        store.execute("DELETE FROM drift WHERE import_id = ?", [import_id])
        store.append("drift", rows)
    return drifts
