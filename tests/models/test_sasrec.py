"""SASRec beyond the conformance suite: it learns order, explains with attention, saves exactly,
and ranks real next items well above chance on Amazon Games."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from aisle.config import RecommendSettings, Settings
from aisle.errors import AisleError, NotFoundError
from aisle.features.interactions import Interactions, build_interactions
from aisle.models import model_class
from aisle.models.sasrec import SASRec
from tests.models.purchases import purchases

SMALL = {"hidden": 32, "max_length": 10, "dropout": 0.1, "threads": 1}


def events_of(sequences: dict[str, list[str]]) -> pl.DataFrame:
    """Purchases in the given order per user, a day apart."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    rows = [
        (user, item, start + timedelta(days=k, seconds=n))
        for n, (user, items) in enumerate(sequences.items())
        for k, item in enumerate(items)
    ]
    return purchases(rows)


def chains(users: int = 150, items: int = 30, seed: int = 0) -> Interactions:
    """Item k is always followed by item k + 1: runs of 3-8 consecutive items."""
    rng = np.random.default_rng(seed)
    sequences = {}
    for u in range(users):
        length = int(rng.integers(3, 9))
        first = int(rng.integers(0, items - length + 1))
        sequences[f"u{u:03d}"] = [f"i{k:02d}" for k in range(first, first + length)]
    return build_interactions(events_of(sequences), RecommendSettings())


@pytest.fixture(scope="module")
def data() -> Interactions:
    return chains()


@pytest.fixture(scope="module")
def model(data: Interactions) -> SASRec:
    return SASRec(**SMALL, epochs=8).fit(data)


def test_it_is_registered_and_rejects_unknown_parameters() -> None:
    assert model_class("sasrec") is SASRec
    with pytest.raises(AisleError):
        SASRec(hidden_units=50)


def test_it_learns_order(model: SASRec) -> None:
    """After a prefix of a chain, the next item in the chain comes first."""
    assert model.report.losses[-1] < model.report.losses[0]
    right = []
    for last in range(29):
        for length in (1, 2, 3):
            prefix = [f"i{k:02d}" for k in range(last - length + 1, last + 1) if k >= 0]
            top = model.recommend("anyone", n=1, history=prefix)[0].item_id
            right.append(top == f"i{last + 1:02d}")
    assert np.mean(right) >= 0.9, np.mean(right)
    for prefix in (["i10", "i11", "i12"], ["i20", "i21"], ["i05", "i06", "i07", "i08"]):
        following = f"i{int(prefix[-1][1:]) + 1:02d}"
        got = model.recommend("anyone", n=3, history=prefix)
        assert got[0].item_id == following, (prefix, got)


def test_the_latest_item_leads_not_the_bag_of_items(model: SASRec) -> None:
    """The same two items in the other order predict what follows the other one: a model of
    co-occurrence alone would rank both histories alike."""
    assert model.recommend("x", n=1, history=["i12", "i20"])[0].item_id == "i21"
    assert model.recommend("x", n=1, history=["i20", "i12"])[0].item_id == "i13"


def test_training_sequences_and_fold_in_agree(model: SASRec, data: Interactions) -> None:
    rows = np.arange(5)
    for row in rows:
        assert list(model.history_of(int(row))) == list(data.sequences()[row])
    batch = model.score_users(rows)
    one_by_one = np.stack([model.score_history(model.history_of(int(r))) for r in rows])
    np.testing.assert_allclose(batch, one_by_one, rtol=1e-4, atol=1e-5)


def test_padding_does_not_change_scores(model: SASRec) -> None:
    short, long = np.asarray([3, 4]), np.arange(0, 9)
    together = model.score_sequences([short, long])
    np.testing.assert_allclose(together[0], model.score_sequences([short])[0], rtol=1e-4, atol=1e-5)
    # beyond max_length only the latest items count
    longer = np.arange(0, 25)
    np.testing.assert_allclose(
        model.score_history(longer), model.score_history(longer[-10:]), rtol=1e-4, atol=1e-5
    )


def test_empty_history_scores_are_finite(model: SASRec) -> None:
    assert np.isfinite(model.score_history(np.asarray([], dtype=np.int64))).all()


def test_explanations_are_attention_over_the_sequence(model: SASRec, data: Interactions) -> None:
    for user in ("u000", "u007", "u042"):
        top = model.recommend(user, n=1)[0]
        why = model.explain(user, top.item_id, n=3)
        history = {data.items[i] for i in model.history_of(model.user_row(user))}
        assert why.kind == "attention" and why.item_id == top.item_id
        assert 0 < len(why.because) <= 3
        assert {name for name, _ in why.because} <= history
        weights = [w for _, w in why.because]
        assert all(w >= 0 for w in weights) and sum(weights) <= 1 + 1e-6
        assert weights == sorted(weights, reverse=True)
    everything = model.explain("u000", top.item_id, n=100)
    assert sum(w for _, w in everything.because) == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(NotFoundError):
        model.explain("u000", "no-such-item")


def test_same_seed_same_model_other_seed_other_model(data: Interactions) -> None:
    one = SASRec(**SMALL, epochs=2, seed=3).fit(data)
    two = SASRec(**SMALL, epochs=2, seed=3).fit(data)
    other = SASRec(**SMALL, epochs=2, seed=4).fit(data)
    assert one.report.losses == two.report.losses
    np.testing.assert_array_equal(one.score_users(np.arange(4)), two.score_users(np.arange(4)))
    assert one.report.losses != other.report.losses


def test_save_and_load_are_identical_without_pickles(model: SASRec, tmp_path: Path) -> None:
    folder = model.save(tmp_path / "sasrec")
    with np.load(folder / "arrays.npz", allow_pickle=False) as stored:
        assert all(stored[name].dtype != object for name in stored.files)
        assert any(name.startswith("state_network.") for name in stored.files)
    loaded = SASRec.load(folder)
    users = np.arange(len(model.users))
    np.testing.assert_array_equal(loaded.score_users(users), model.score_users(users))
    history = np.asarray([4, 5, 6])
    np.testing.assert_array_equal(loaded.score_history(history), model.score_history(history))
    top = model.recommend("u001", n=1)[0].item_id
    assert loaded.explain("u001", top) == model.explain("u001", top)
    assert loaded.similar_items("i10") == model.similar_items("i10")
    assert loaded.report.losses == model.report.losses


def test_forgetting_a_user_drops_their_sequence(data: Interactions) -> None:
    fitted = SASRec(**SMALL, epochs=1).fit(data)
    row, other = fitted.user_row("u004"), fitted.user_row("u005")
    before = fitted.history_of(other).copy()
    assert fitted.forget_user("u004")
    assert len(fitted.history_of(row)) == 0
    np.testing.assert_array_equal(fitted.history_of(other), before)
    assert np.isfinite(fitted.score_users(np.asarray([row]))).all()
    with pytest.raises(NotFoundError):
        fitted.recommend("u004")


def test_items_without_interactions_score_finite_and_are_nobody_s_neighbour() -> None:
    data = build_interactions(
        events_of({"a": ["x", "y", "z"], "b": ["y", "z", "x"], "c": ["z", "x"]}),
        RecommendSettings(),
        items=["cold"],
    )
    fitted = SASRec(**SMALL, epochs=3).fit(data)
    assert np.isfinite(fitted.score_users(np.arange(3))).all()
    cold = data.item_index["cold"]
    assert fitted._item_similarities(data.item_index["x"])[cold] == -1.0
    assert "cold" not in {r.item_id for r in fitted.similar_items("x", n=3)}
    # only ever a negative: it comes after the items that followed something
    scores = fitted.score_history(np.asarray([data.item_index["x"]]))
    assert scores[cold] < scores[data.item_index["y"]]


# -- real data ----------------------------------------------------------------------------------


def sampled_hit_rate(
    fitted: SASRec, data: Interactions, test: pl.DataFrame, seed: int = 0
) -> float:
    """HR@10 of the test item against 100 random items the user never interacted with."""
    rng = np.random.default_rng(seed)
    test = test.filter(pl.col("item_id").is_in(data.items) & pl.col("user_id").is_in(data.users))
    rows = np.asarray([data.user_index[u] for u in test["user_id"]])
    targets = np.asarray([data.item_index[i] for i in test["item_id"]])
    scores = fitted.score_users(rows)
    hits = 0
    for scored, row, target in zip(scores, rows, targets, strict=True):
        seen = set(data.seen(int(row)).tolist()) | {int(target)}
        negatives: list[int] = []
        while len(negatives) < 100:
            item = int(rng.integers(data.n_items))
            if item not in seen and item not in negatives:
                negatives.append(item)
        hits += int((scored[negatives] > scored[target]).sum() < 10)
    return hits / len(rows)


@pytest.mark.integration
def test_amazon_games_next_item_is_ranked_far_above_chance(
    settings: Settings, shared_data: Path
) -> None:
    from aisle.features.interactions import leave_last_out, load_events
    from aisle.pipeline import ingest
    from aisle.storage import Store

    ingest("events", shared_data / "amazon-games-sasrec", "amazon-games-sasrec", settings)
    with Store(settings.home) as store:
        events = load_events(store)
    users = events["user_id"].unique().sort().sample(3000, seed=0)
    events = events.join(users.to_frame(), on="user_id")
    train, test = leave_last_out(events)
    data = build_interactions(train, settings.recommend, items=events["item_id"].unique().to_list())
    fitted = SASRec(hidden=32, max_length=20, dropout=0.5, epochs=6, threads=1).fit(data)
    assert fitted.report.losses[-1] < fitted.report.losses[0]
    hit_rate = sampled_hit_rate(fitted, data, test)
    assert hit_rate > 2.5 * 10 / 101, hit_rate
