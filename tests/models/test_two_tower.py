"""The two-tower model beyond the conformance suite: cold items by their text, DP-SGD,
artifacts, determinism, and a smoke test on the Best Buy clicks and catalog."""

from __future__ import annotations

import json
import math
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from aisle.config import RecommendSettings, Settings
from aisle.errors import AisleError
from aisle.features.interactions import Interactions, build_interactions, leave_last_out
from aisle.models import model_class
from aisle.models.base import BaseRecommender, SideInfo
from aisle.models.two_tower import TwoTower
from tests.models.purchases import purchases

SMALL = {"dimensions": 16, "hidden": 32}


def tastes(n_users: int = 300, seed: int = 0) -> Interactions:
    """Two tastes: even users buy 2-5 of a0-a9, odd users of b0-b9; "a-new" and "b-new" are in
    the catalog with no interactions."""
    rng = np.random.default_rng(seed)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    rows = []
    for u in range(n_users):
        group = "ab"[u % 2]
        for k in rng.choice(10, size=int(rng.integers(2, 6)), replace=False):
            rows.append((f"u{u:04d}", f"{group}{k}", start + timedelta(minutes=len(rows))))
    events = purchases(rows)
    return build_interactions(events, RecommendSettings(), items=["a-new", "b-new"])


def texts(data: Interactions, seed: int = 1) -> SideInfo:
    """Noisy text vectors: the "a" items lean one way, the "b" items another."""
    rng = np.random.default_rng(seed)
    vectors = rng.normal(0, 0.3, (data.n_items, 8)).astype(np.float32)
    for i, item in enumerate(data.items):
        vectors[i, "ab".index(item[0])] += 1.0
    return SideInfo(item_vectors=vectors)


def taste_accuracy(model: TwoTower, data: Interactions, n: int = 3) -> float:
    """Share of the top ``n`` that come from the user's own taste."""
    hits = total = 0
    for user in data.users:
        group = "ab"[int(user[1:]) % 2]
        top = [r.item_id for r in model.recommend(user, n)]
        hits += sum(item[0] == group for item in top)
        total += len(top)
    return hits / total


@pytest.fixture(scope="module")
def data() -> Interactions:
    return tastes()


@pytest.fixture(scope="module")
def fitted(data: Interactions) -> TwoTower:
    return TwoTower(**SMALL, epochs=15).fit(data, texts(data))


def test_it_is_registered_and_records_losses(fitted: TwoTower) -> None:
    assert model_class("two-tower") is TwoTower
    assert len(fitted.report.losses) == 15 and all(map(math.isfinite, fitted.report.losses))
    assert fitted.report.losses[-1] < fitted.report.losses[0]


def test_a_cold_item_is_placed_by_its_text(fitted: TwoTower, data: Interactions) -> None:
    """Item "a-new" has no interactions: its text puts it above every "b" item for "a" users."""
    cold = data.item_index["a-new"]
    assert data.matrix.getcol(cold).nnz == 0
    for user in ("u0000", "u0002", "u0004"):
        scores = fitted.score_users(np.asarray([data.user_index[user]]))[0]
        others = [data.item_index[f"b{k}"] for k in range(10)] + [data.item_index["b-new"]]
        assert scores[cold] > scores[others].max()
    history = fitted.score_history(np.asarray([data.item_index["a1"], data.item_index["a2"]]))
    assert history[cold] > history[data.item_index["b-new"]]
    similar = [r.item_id for r in fitted.similar_items("a-new", n=5)]
    assert all(item.startswith("a") for item in similar), similar


def test_id_only_learns_the_tastes(data: Interactions) -> None:
    model = TwoTower(**SMALL, epochs=15).fit(data)  # no text: all from interactions
    assert taste_accuracy(model, data) > 0.9
    scores = model.score_users(np.arange(4))
    assert np.isfinite(scores).all()


def test_a_known_user_and_the_same_history_folded_in_agree(
    fitted: TwoTower, data: Interactions
) -> None:
    row = data.user_index["u0003"]
    seen = data.seen(row)
    weights = data.matrix[row, seen].toarray()[0]
    np.testing.assert_allclose(
        fitted.score_history(seen, weights), fitted.score_users(np.asarray([row]))[0], rtol=1e-5
    )


def test_training_is_deterministic_for_a_seed(data: Interactions) -> None:
    side = texts(data)
    first = TwoTower(**SMALL, epochs=3, seed=7).fit(data, side)
    again = TwoTower(**SMALL, epochs=3, seed=7).fit(data, side)
    other = TwoTower(**SMALL, epochs=3, seed=8).fit(data, side)
    assert first.report.losses == again.report.losses != other.report.losses
    np.testing.assert_array_equal(first.score_users(np.arange(5)), again.score_users(np.arange(5)))


def test_bpr_and_user_embeddings_and_forgetting(data: Interactions) -> None:
    bpr = TwoTower(**SMALL, epochs=5, loss="bpr", negatives=8).fit(data, texts(data))
    assert taste_accuracy(bpr, data) > 0.9
    with_ids = TwoTower(**SMALL, epochs=5, user_embeddings=True).fit(data, texts(data))
    assert taste_accuracy(with_ids, data) > 0.9
    row, other = data.user_index["u0001"], np.asarray([data.user_index["u0002"]])
    before = with_ids.score_users(other)
    assert with_ids.forget_user("u0001")
    assert with_ids._net.user_ids is not None and not with_ids._net.user_ids.weight[row].any()
    np.testing.assert_array_equal(with_ids.score_users(other), before)


def test_save_and_load_score_cold_items_alike(
    fitted: TwoTower, data: Interactions, tmp_path: Path
) -> None:
    folder = fitted.save(tmp_path / "two-tower")
    with np.load(folder / "arrays.npz", allow_pickle=False) as stored:
        state = [name for name in stored.files if name.startswith("state_")]
        assert all(stored[name].dtype == np.float32 for name in state)
        assert stored["state_text"].shape == (data.n_items, 8)
    loaded = TwoTower.load(folder)
    users = np.arange(data.n_users)
    np.testing.assert_allclose(loaded.score_users(users), fitted.score_users(users), rtol=1e-5)
    cold = np.asarray([data.item_index["a-new"], data.item_index["b-new"]])
    np.testing.assert_allclose(
        loaded.item_vectors[cold], fitted.item_vectors[cold], rtol=1e-6, atol=1e-7
    )
    history = np.asarray([data.item_index["b3"]])
    np.testing.assert_allclose(loaded.score_history(history), fitted.score_history(history))
    assert loaded.recommend("u0000", 3) == fitted.recommend("u0000", 3)


def test_bad_settings_are_clear_errors(data: Interactions) -> None:
    with pytest.raises(AisleError, match="loss"):
        TwoTower(loss="hinge").fit(data)
    with pytest.raises(AisleError, match="user embeddings"):
        TwoTower(dp_epsilon=1.0, user_embeddings=True).fit(data)
    with pytest.raises(AisleError, match="shape"):
        TwoTower().fit(data, SideInfo(item_vectors=np.zeros((3, 4), dtype=np.float32)))
    with pytest.raises(AisleError, match="id embeddings"):
        TwoTower(id_embeddings=False).fit(data)


def test_dp_sgd_spends_its_epsilon_and_still_learns(tmp_path: Path) -> None:
    data = tastes(600, seed=3)
    model = TwoTower(**SMALL, epochs=4, batch_size=64, dp_epsilon=4.0, learning_rate=1e-2)
    model.fit(data)  # id-only: whatever it knows, it learnt under DP-SGD
    extra = model.report.extra
    assert extra["dp_unit"] == "user" and extra["dp_noise_multiplier"] > 0.5
    assert 3.6 < extra["dp_epsilon"] <= 4.0 + 1e-6
    assert len(model.report.losses) == 4 and all(map(math.isfinite, model.report.losses))
    assert taste_accuracy(model, data) > 0.7  # weak: noisy, yet far from the 0.5 of chance
    folder = model.save(tmp_path / "private")
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["extra"]["dp_epsilon"] == extra["dp_epsilon"]


def test_ghost_clipping_trains_like_per_sample_gradients() -> None:
    """Opacus' ghost clipping (no per-user gradient of the id embeddings is materialised,
    for large catalogs) clips the same norms as per-sample gradients: the same run."""
    data = tastes(200, seed=5)
    runs = [
        TwoTower(**SMALL, epochs=2, batch_size=32, dp_epsilon=4.0, dp_accountant="rdp",
                 dp_clipping=clipping).fit(data, texts(data))
        for clipping in ("hooks", "ghost")
    ]  # fmt: skip
    np.testing.assert_allclose(runs[0].report.losses, runs[1].report.losses, rtol=1e-4)
    np.testing.assert_allclose(runs[0].item_vectors, runs[1].item_vectors, atol=1e-4)
    with pytest.raises(AisleError, match="dp_clipping"):
        TwoTower(dp_epsilon=1.0, dp_clipping="fast").fit(data)


# --- real data --------------------------------------------------------------------------------


def hashed_vectors(catalog: pl.DataFrame, dimensions: int = 256) -> tuple[list[str], np.ndarray]:
    """Cheap stand-ins for text embeddings: each product's words hashed into a unit vector."""
    from aisle.catalog.embeddings import product_text

    text = product_text(catalog)
    vectors = np.zeros((text.height, dimensions), dtype=np.float32)
    for row, words in enumerate(text["text"].str.to_lowercase().str.extract_all(r"[a-z0-9]+")):
        for word in words:
            vectors[row, zlib.crc32(word.encode()) % dimensions] += 1.0
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-9)
    return text["item_id"].to_list(), vectors


def bestbuy(
    settings: Settings, shared_data: Path, *, embeddings: str | None = None
) -> tuple[Interactions, SideInfo, pl.DataFrame]:
    """Best Buy clicks minus each customer's last (held out), with every catalog product and
    its text vector: hashed words, or the named embedding model's (``static``: distilled
    once, from seconds to minutes on a busy machine)."""
    from aisle.catalog.embeddings import embed_products, load_vectors
    from aisle.features.interactions import load_events
    from aisle.pipeline import ingest
    from aisle.storage import Store

    folder = shared_data / "bestbuy-small-xbox"
    ingest("products", folder, "bestbuy-products", settings)
    ingest("events", folder, "bestbuy-clicks", settings)
    with Store(settings.home) as store:
        events, catalog = load_events(store), store.query("SELECT * FROM products")
    if embeddings is None:
        ids, vectors = hashed_vectors(catalog)
    else:
        embed_products(catalog, settings.home, embeddings)
        ids, vectors = load_vectors(settings.home, embeddings)
    train, test = leave_last_out(events)
    data = build_interactions(train, settings.recommend, items=ids)
    row = {item: i for i, item in enumerate(ids)}
    aligned = np.zeros((data.n_items, vectors.shape[1]), dtype=np.float32)
    for i, item in enumerate(data.items):
        if item in row:
            aligned[i] = vectors[row[item]]
    return data, SideInfo(item_vectors=aligned), test


def hit_rate(model: BaseRecommender, test: pl.DataFrame, n: int = 10) -> float:
    got = model.recommend_batch(test["user_id"].to_list(), n)
    truth = test["item_id"].to_list()
    return float(np.mean([t in {r.item_id for r in g} for t, g in zip(truth, got, strict=True)]))


@pytest.mark.integration
def test_bestbuy_clicks_beat_popularity(settings: Settings, shared_data: Path) -> None:
    data, side, test = bestbuy(settings, shared_data)
    unclicked = np.flatnonzero(data.matrix.getnnz(axis=0) == 0)
    assert data.n_users > 30_000 and data.n_items == 437 and len(unclicked) > 10
    model = TwoTower(epochs=4, batch_size=512).fit(data, side)
    popular = model_class("popularity")().fit(data)
    ours, baseline = hit_rate(model, test), hit_rate(popular, test)
    assert ours > baseline + 0.03, (ours, baseline)  # about 0.46 against 0.37
    scores = model.score_users(np.arange(100))
    assert np.isfinite(scores[:, unclicked]).all()


@pytest.mark.slow
@pytest.mark.integration
def test_bestbuy_under_dp_sgd(settings: Settings, shared_data: Path) -> None:
    """User-level DP at epsilon 8 on 30k customers keeps most of the gain over popularity."""
    data, side, test = bestbuy(settings, shared_data, embeddings="static")
    private = TwoTower(epochs=3, batch_size=1024, learning_rate=1e-2, negatives=16, dp_epsilon=8.0)
    private.fit(data, side)
    assert private.report.extra["dp_epsilon"] <= 8.0 + 1e-6
    baseline = hit_rate(model_class("popularity")().fit(data), test)
    assert hit_rate(private, test) > baseline
