"""The learning-to-rank re-ranker: LightGBM lambdarank over ``aisle.search.features``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np

from aisle.errors import StoreError

#: Screening (``predict_screened``): the first trees score every candidate, the full model
#: the best ``SCREEN_KEEP`` of them. Scoring costs about 4.5 us per row through 300 trees,
#: most of a millisecond for a pool of 200.
SCREEN_TREES = 60
SCREEN_KEEP = 60
MODEL_FILE = "ranker.txt"
MANIFEST_FILE = "ranker.json"


class SearchRanker:
    """Orders a query's candidates from their feature rows; learnt from graded groups."""

    def __init__(
        self,
        names: tuple[str, ...],
        *,
        trees: int = 300,
        learning_rate: float = 0.05,
        leaves: int = 31,
        min_rows: int = 20,
        seed: int = 0,
        rising: tuple[str, ...] = (),
    ) -> None:
        self.names = names
        #: Features whose growth may never lower the score (monotone constraints).
        self.rising = tuple(name for name in rising if name in names)
        self.params: dict[str, Any] = {
            "trees": trees,
            "learning_rate": learning_rate,
            "leaves": leaves,
            "min_rows": min_rows,
            "seed": seed,
        }
        self.booster: lgb.Booster | None = None
        self._splits: tuple[lgb.Booster, np.ndarray] | None = None  # (of which booster, counts)
        self.report: dict[str, Any] = {}

    def fit(self, features: np.ndarray, labels: np.ndarray, groups: np.ndarray) -> SearchRanker:
        """Learn from rows grouped by query (``groups``: rows per group, in order); labels are
        grades (0 = not relevant). Groups without a relevant row teach nothing and are dropped."""
        if features.shape[1] != len(self.names):
            raise ValueError(f"expected {len(self.names)} features, got {features.shape[1]}")
        ends = np.cumsum(groups)
        starts = ends - groups
        keep = np.asarray(
            [labels[s:e].max() > 0 for s, e in zip(starts, ends, strict=True)], dtype=bool
        )
        rows = np.concatenate(
            [np.arange(s, e) for s, e, k in zip(starts, ends, keep, strict=True) if k]
            or [np.zeros(0, dtype=np.int64)]
        )
        p = self.params
        model = lgb.LGBMRanker(
            objective="lambdarank",
            n_estimators=p["trees"],
            learning_rate=p["learning_rate"],
            num_leaves=p["leaves"],
            min_child_samples=p["min_rows"],
            random_state=p["seed"],
            monotone_constraints=[int(name in self.rising) for name in self.names],
            n_jobs=1,
            verbose=-1,
        )
        model.fit(features[rows], labels[rows], group=groups[keep])
        self.booster = model.booster_
        gain = self.booster.feature_importance(importance_type="gain")
        self.report = {
            "groups": int(keep.sum()),
            "rows": len(rows),
            "importance": dict(zip(self.names, map(float, gain), strict=True)),
        }
        return self

    def reads(self, names: tuple[str, ...]) -> bool:
        """Whether any tree splits on any of these features (if none does, their values
        cannot change a score)."""
        if self.booster is None:
            raise StoreError("the search ranker is not trained")
        if self._splits is None or self._splits[0] is not self.booster:
            self._splits = (self.booster, self.booster.feature_importance(importance_type="split"))
        splits = self._splits[1]
        return any(splits[self.names.index(n)] > 0 for n in names if n in self.names)

    def predict(self, features: np.ndarray) -> np.ndarray:
        """A score per row (higher ranks first)."""
        if self.booster is None:
            raise StoreError("the search ranker is not trained")
        return np.asarray(self.booster.predict(features, num_threads=1), dtype=np.float64)

    def predict_screened(
        self, features: np.ndarray, *, trees: int = SCREEN_TREES, keep: int = SCREEN_KEEP
    ) -> np.ndarray:
        """``predict`` where it decides the order: the first ``trees`` trees score every row,
        the full model only the ``keep`` best of them; the others keep their screening order,
        below every fully scored row. The kept rows' scores are exactly ``predict``'s."""
        if self.booster is None:
            raise StoreError("the search ranker is not trained")
        total = self.booster.num_trees()
        if len(features) <= keep or total <= trees:
            return self.predict(features)
        first = np.asarray(self.booster.predict(features, num_iteration=trees, num_threads=1))
        top = np.argpartition(-first, keep - 1)[:keep]
        rest = self.booster.predict(features[top], start_iteration=trees, num_threads=1)
        full = first[top] + np.asarray(rest)
        out = first - (first.max() - full.min()) - 1.0  # every screened-out row below the kept
        out[top] = full
        return np.asarray(out, dtype=np.float64)

    def contributions(self, features: np.ndarray) -> np.ndarray:
        """Per row, each feature's additive part of the score (SHAP values), then the bias."""
        if self.booster is None:
            raise StoreError("the search ranker is not trained")
        return np.asarray(self.booster.predict(features, pred_contrib=True, num_threads=1))

    def save(self, folder: Path) -> None:
        """The booster as LightGBM's text model and a JSON manifest (no pickle)."""
        if self.booster is None:
            raise StoreError("the search ranker is not trained")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / MODEL_FILE).write_text(self.booster.model_to_string(), encoding="utf-8")
        manifest = {"names": list(self.names), "params": self.params, "report": self.report,
                    "rising": list(self.rising)}  # fmt: skip
        (folder / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2), encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> SearchRanker:
        """The ranker saved in ``folder``."""
        manifest = json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8"))
        ranker = cls(tuple(manifest["names"]), **manifest["params"],
                     rising=tuple(manifest.get("rising", ())))  # fmt: skip
        ranker.report = manifest["report"]
        text = (folder / MODEL_FILE).read_text(encoding="utf-8")
        ranker.booster = lgb.Booster(model_str=text)
        return ranker
