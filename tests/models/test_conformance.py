"""The conformance suite: every recommender passes the same tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from aisle.config import RecommendSettings
from aisle.errors import NotFoundError
from aisle.features.interactions import Interactions, build_interactions
from aisle.models import available_models, model_class
from aisle.models.base import BaseRecommender, Recommender, SideInfo
from tests.models.purchases import purchases

#: Small settings per model so the suite stays fast; the defaults are for real data.
FAST: dict[str, dict[str, object]] = {
    "als": {"factors": 8, "iterations": 10},
    "bpr": {"factors": 8, "iterations": 50},
    "two-tower": {"dimensions": 16, "epochs": 5},
    "sasrec": {"hidden": 16, "epochs": 5, "max_length": 10},
    "ranker": {"candidates": ["itemknn", "popularity"], "trees": 20},
}


def shop() -> Interactions:
    """Two tastes: users 0-19 buy from items a0-a4 in order, users 20-39 from b0-b4; item z is
    in the catalog with no interactions; user "solo" bought a single item, a0."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    rows = []
    for u in range(40):
        group = "a" if u < 20 else "b"
        for k in range(5):
            if (u + k) % 5 == 4 and u % 2:
                continue  # not everyone bought everything
            rows.append((f"u{u}", f"{group}{k}", start + timedelta(days=k, hours=u)))
    rows.append(("solo", "a0", start))
    events = purchases(rows)
    return build_interactions(events, RecommendSettings(), items=["z"])


def side(data: Interactions) -> SideInfo:
    """Item vectors that tell the two tastes apart (as text embeddings would)."""
    vectors = np.zeros((data.n_items, 4), dtype=np.float32)
    for i, item in enumerate(data.items):
        vectors[i, {"a": 0, "b": 1, "z": 2}[item[0]]] = 1.0
    return SideInfo(item_vectors=vectors)


@pytest.fixture(scope="module")
def data() -> Interactions:
    return shop()


@pytest.fixture(scope="module", params=available_models())
def fitted(request: pytest.FixtureRequest, data: Interactions) -> BaseRecommender:
    name = request.param
    return model_class(name)(**FAST.get(name, {})).fit(data, side(data))


def test_it_is_a_recommender(fitted: BaseRecommender) -> None:
    assert isinstance(fitted, Recommender)
    assert fitted.report.users == 41 and fitted.report.data_hash


def test_scores_have_one_row_per_user_and_one_column_per_item(
    fitted: BaseRecommender, data: Interactions
) -> None:
    scores = fitted.score_users(np.arange(3))
    assert scores.shape == (3, data.n_items) and np.isfinite(scores).all()
    assert fitted.score_history(np.asarray([0])).shape == (data.n_items,)


def test_seen_items_are_never_recommended(fitted: BaseRecommender, data: Interactions) -> None:
    for user in ("u0", "u25", "solo"):
        seen = {data.items[i] for i in data.seen(data.user_index[user])}
        got = [r.item_id for r in fitted.recommend(user, n=5)]
        assert got and not seen & set(got)
        assert [r.score for r in fitted.recommend(user, n=5)] == sorted(
            (r.score for r in fitted.recommend(user, n=5)), reverse=True
        )


def test_a_user_with_one_item_gets_its_neighbours(fitted: BaseRecommender) -> None:
    """The solo customer bought a0 only: the a-items come first (popularity cannot know)."""
    if fitted.name == "popularity":
        pytest.skip("popularity is the same for everyone by design")
    top = [r.item_id for r in fitted.recommend("solo", n=4)]
    assert all(item.startswith("a") for item in top), top


def test_history_scores_anyone_without_retraining(fitted: BaseRecommender) -> None:
    if fitted.name == "popularity":
        pytest.skip("popularity ignores history")
    top = [r.item_id for r in fitted.recommend("new-customer", n=3, history=["b0", "b1"])]
    assert top and all(item.startswith("b") for item in top), top
    assert not {"b0", "b1"} & set(top)


def test_batch_equals_one_by_one(fitted: BaseRecommender) -> None:
    users = ["u1", "u22", "solo"]
    batch = fitted.recommend_batch(users, n=3)
    for user, got in zip(users, batch, strict=True):
        assert [r.item_id for r in got] == [r.item_id for r in fitted.recommend(user, n=3)]


def test_similar_items_and_explanations(fitted: BaseRecommender) -> None:
    similar = fitted.similar_items("a1", n=3)
    assert similar and "a1" not in {r.item_id for r in similar}
    if fitted.name != "popularity":
        assert all(r.item_id.startswith("a") for r in similar), similar
    top = fitted.recommend("u0", n=1)[0]
    why = fitted.explain("u0", top.item_id)
    assert why.item_id == top.item_id and why.because and why.kind
    if why.kind in ("items", "attention"):
        seen = set(fitted.items[i] for i in fitted.seen(fitted.user_row("u0")))
        assert {name for name, _ in why.because} <= seen


def test_unknown_users_and_items_are_clear_errors(fitted: BaseRecommender) -> None:
    with pytest.raises(NotFoundError):
        fitted.recommend("nobody")
    with pytest.raises(NotFoundError):
        fitted.similar_items("no-such-item")


def test_save_and_load_give_identical_scores_without_pickles(
    fitted: BaseRecommender, tmp_path: Path
) -> None:
    folder = fitted.save(tmp_path / fitted.name)
    with np.load(folder / "arrays.npz", allow_pickle=False) as stored:
        assert all(stored[name].dtype != object for name in stored.files)  # loads: no pickles
    assert {p.suffix for p in folder.iterdir()} <= {".npz", ".json", ".parquet"}
    loaded = type(fitted).load(folder)
    users = np.arange(5)
    np.testing.assert_allclose(loaded.score_users(users), fitted.score_users(users), rtol=1e-5)
    assert [r.item_id for r in loaded.recommend("u3")] == [
        r.item_id for r in fitted.recommend("u3")
    ]
    assert loaded.params == fitted.params


def test_an_item_without_interactions_is_ranked_but_last_for_id_models(
    fitted: BaseRecommender, data: Interactions
) -> None:
    scores = fitted.score_users(np.asarray([data.user_index["u0"]]))[0]
    assert np.isfinite(scores[data.item_index["z"]])


def test_forgetting_a_user_removes_them_at_once(data: Interactions, tmp_path: Path) -> None:
    """Every model: after ``forget_user`` the customer is unknown, their id is in no artifact,
    and everyone else is scored as before."""
    for name in available_models():
        model = model_class(name)(**FAST.get(name, {})).fit(data, side(data))
        before = model.score_users(np.asarray([data.user_index["u30"]]))
        assert model.forget_user("u3") and not model.forget_user("u3")
        with pytest.raises(NotFoundError):
            model.recommend("u3")
        np.testing.assert_allclose(
            model.score_users(np.asarray([data.user_index["u30"]])), before, rtol=1e-5
        )
        folder = model.save(tmp_path / name)
        ids = pl.read_parquet(folder / "ids.parquet")["id"].to_list()
        assert "u3" not in ids
        assert type(model).load(folder).seen(data.user_index["u3"]).size == 0
