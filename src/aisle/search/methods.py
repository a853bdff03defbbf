"""aisle's own search methods for ``aisle evaluate-search``: text-only and click-aware ranking.

Both retrieve with the hybrid engine and order with a learnt ranker (``aisle.search.build``);
text-only ranking has no click-history features, click-aware ranking has them. For judged
pools, grades 1..4 come from the ranker's score through cut points that reproduce the stored
judgements' grade shares on their own scores.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from aisle.config import Settings
from aisle.evaluation.search import Ranked, SearchTask
from aisle.search.build import SearchParts, assemble, gather
from aisle.search.engine import SearchEngine
from aisle.search.training import judgement_groups
from aisle.storage import Store

#: Results returned per case, at least (MRR and recall look ten deep).
DEPTH = 10
#: The last (store, task) and their parts: both methods of one evaluation share them. The
#: objects themselves are held, so a later store or task can never pass for them.
_LAST: list[tuple[Store, SearchTask, SearchParts]] = []


def _parts(store: Store, settings: Settings, task: SearchTask) -> SearchParts:
    """The parts for this store and task, gathered once for both methods."""
    if not (_LAST and _LAST[0][0] is store and _LAST[0][1] is task):
        extra = task.products if task.pools is not None else None
        _LAST[:] = [(store, task, gather(store, settings, extra))]
    return _LAST[0][2]


@dataclass
class EngineMethod:
    """Ranks a task's cases with a search engine."""

    name: str
    engine: SearchEngine
    cuts: np.ndarray | None = None  # score cut points between grades 1|2, 2|3, 3|4

    def rank(self, task: SearchTask, k: int) -> Ranked:
        """Every case: the whole catalog (top max(k, 10)), or its judged pool in full."""
        self.engine.prime(task.cases["query"].unique().to_list())
        pools = _pools(task)
        depth = max(k, DEPTH)
        cache: dict[tuple[str, object], list[str]] = {}
        items: list[list[str]] = []
        scores: dict[tuple[int, str], float] = {}
        for case, query, at in task.cases.select("case", "query", "at").iter_rows():
            text = query or ""
            if pools is None:
                key = (text, at.date() if at is not None else None)  # by day of asking
                if key not in cache:
                    columns, _, _ = self.engine.rank(text, at=at)
                    cache[key] = [self.engine.catalog.item_ids[c] for c in columns[:depth]]
                items.append(cache[key])
                continue
            pool = pools.get(case, [])
            columns, got, _ = self.engine.rank(text, pool=pool, at=at)
            ranked = [self.engine.catalog.item_ids[c] for c in columns]
            for item, score in zip(ranked, got, strict=True):
                scores[(case, item)] = float(score)
            items.append(ranked + sorted(set(pool) - set(ranked)))
        grades = None
        if task.pools is not None and self.cuts is not None:
            keyed = [scores.get((c, i), -np.inf) for c, i in task.pools.iter_rows()]
            grades = np.searchsorted(self.cuts, np.asarray(keyed)) + 1
        return Ranked(items, grades)


def _pools(task: SearchTask) -> dict[int, list[str]] | None:
    if task.pools is None:
        return None
    grouped = task.pools.group_by("case", maintain_order=True).agg(pl.col("item_id"))
    return dict(zip(grouped["case"].to_list(), grouped["item_id"].to_list(), strict=True))


def _grade_cuts(engine: SearchEngine, parts: SearchParts) -> np.ndarray | None:
    """Score cut points that give the stored judgements' grade shares on their own scores."""
    if engine.ranker is None or not parts.judgements.height:
        return None
    rows, grades, _ = judgement_groups(engine, parts.judgements)
    if not len(grades):
        return None
    scores = np.sort(engine.ranker.predict(rows))
    shares = np.cumsum(np.bincount(grades.astype(np.int64), minlength=4)[:3]) / len(grades)
    return np.asarray(scores[np.minimum((shares * len(scores)).astype(np.int64), len(scores) - 1)])


def text_only(store: Store, settings: Settings, task: SearchTask) -> EngineMethod:
    """Hybrid retrieval and a ranker without click-history features."""
    parts = _parts(store, settings, task)
    engine = assemble(parts, clicks=False)
    return EngineMethod("text-only", engine, _grade_cuts(engine, parts))


def click_aware(store: Store, settings: Settings, task: SearchTask) -> EngineMethod:
    """Hybrid retrieval and a ranker that also reads the query-item click history."""
    parts = _parts(store, settings, task)
    engine = assemble(parts, clicks=True)
    return EngineMethod("click-aware", engine, _grade_cuts(engine, parts))
