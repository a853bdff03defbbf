"""The ranker on real data: it learns a LightGBM ranking, explains with feature
contributions, and survives a save/load round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from aisle.config import RecommendSettings, Settings
from aisle.evaluation.metrics import hit_rate_at_k
from aisle.features.interactions import build_interactions, leave_last_out, load_events
from aisle.models.ranker import Ranker
from aisle.models.tuning import held_out_ranks
from aisle.pipeline import ingest
from aisle.storage import Store


@pytest.mark.integration
def test_ranker_on_movielens(settings: Settings, shared_data: Path, tmp_path: Path) -> None:
    ingest("events", shared_data / "movielens-100k", "movielens-100k", settings)
    with Store(settings.home) as store:
        events = load_events(store)
    train, test = leave_last_out(events)
    data = build_interactions(
        train, RecommendSettings(), items=events["item_id"].unique().to_list()
    )
    model = Ranker(candidates=["itemknn", "als", "popularity"], trees=100).fit(data)
    assert model.booster is not None and model.report.extra["training_users"] >= 200
    assert model.report.extra["candidate_recall"] > 0.3
    users = np.asarray([data.user_index[u] for u in test["user_id"]])
    items = np.asarray([data.item_index[i] for i in test["item_id"]])
    hr = float(hit_rate_at_k(held_out_ranks(model, data, users, items), 10).mean())
    assert hr > 0.12  # popularity: 0.10, random: 0.006
    user = data.users[0]
    top = model.recommend(user, n=3)
    why = model.explain(user, top[0].item_id)
    assert why.kind == "features" and len(why.because) == 3
    loaded = Ranker.load(model.save(tmp_path / "ranker"))
    assert [r.item_id for r in loaded.recommend(user, n=3)] == [r.item_id for r in top]
