"""Fine-tuning the bi-encoder on clicks: pairs, batches, a short run, its artifact, its encoder."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from aisle.catalog.embeddings import MiniLMEncoder, product_text
from aisle.errors import AisleError, NotFoundError
from aisle.search.click_pairs import click_pairs, normalise_query, pairs_hash, sample_batches
from aisle.search.documents import conform
from aisle.search.finetune import MODEL_NAME, FineTunedEncoder, FineTuneRun, fine_tune

# Nicknames, abbreviations and misspellings shoppers type, and the game they meant.
GAMES = {
    "x1": "Call of Duty: Black Ops - Xbox 360",
    "x2": "Gears of War 3 - Xbox 360",
    "x3": "Batman: Arkham City - Xbox 360",
    "x4": "Battlefield 3 - Xbox 360",
    "x5": "The Elder Scrolls V: Skyrim - Xbox 360",
    "x6": "Madden NFL 12 - Xbox 360",
    "x7": "Forza Motorsport 4 - Xbox 360",
    "x8": "Kinect Sports - Xbox 360",
    "x9": "Dance Central 2 - Xbox 360",
    "x10": "Assassin's Creed: Revelations - Xbox 360",
    "x11": "Just Dance 3 - Xbox 360",
    "x12": "Rage - Xbox 360",
}
QUERIES = [
    ("blops", "x1"), ("cod bo", "x1"), ("treyarch shooter", "x1"),
    ("gow3", "x2"), ("marcus fenix", "x2"), ("locust war", "x2"),
    ("arkam", "x3"), ("dark knight game", "x3"), ("joker asylum sequel", "x3"),
    ("bf3", "x4"), ("battlefeild", "x4"), ("dice war", "x4"),
    ("skyrm", "x5"), ("dragonborn", "x5"), ("tes5", "x5"),
    ("madden", "x6"), ("nfl football", "x6"), ("madden twelve", "x6"),
    ("forza", "x7"), ("car racing sim", "x7"), ("turn10", "x7"),
    ("kinect sport", "x8"), ("motion sports", "x8"),
    ("dance cental", "x9"), ("harmonix dance", "x9"),
    ("asassins creed", "x10"), ("ezio", "x10"),
    ("jd3", "x11"), ("ubisoft dance", "x11"),
    ("id software", "x12"), ("wasteland shooter", "x12"),
]  # fmt: skip


def documents() -> pl.DataFrame:
    return conform(
        pl.DataFrame(
            {
                "item_id": list(GAMES),
                "title": list(GAMES.values()),
                "category_path": [["Video Games", "Xbox 360"]] * len(GAMES),
            }
        )
    )


def shop_pairs() -> pl.DataFrame:
    """Pairs from a log where each (query, product) was clicked by one to three users."""
    rows = [
        {"user": f"u{i}-{n}", "sku": sku, "query": query}
        for i, (query, sku) in enumerate(QUERIES)
        for n in range(1 + i % 3)
    ]
    return click_pairs(pl.DataFrame(rows), documents())


def softmax_loss(queries: np.ndarray, texts: np.ndarray, scale: float = 20.0) -> float:
    """The in-batch ranking loss of unit query rows against their product rows."""
    scores = scale * queries @ texts.T
    scores -= scores.max(axis=1, keepdims=True)
    log_softmax = scores - np.log(np.exp(scores).sum(axis=1, keepdims=True))
    return float(-np.diag(log_softmax).mean())


def pair_loss(encoder: MiniLMEncoder, pairs: pl.DataFrame) -> float:
    """Loss of every query against the shop's distinct products (its clicked one the target)."""
    products = pairs.unique("item_id").sort("item_id")
    vectors = encoder.encode(products["text"].to_list())
    targets = pairs["item_id"].replace_strict(
        products["item_id"], pl.int_range(products.height, eager=True)
    )
    queries = encoder.encode(pairs["query"].to_list())
    scores = 20.0 * queries @ vectors.T
    scores -= scores.max(axis=1, keepdims=True)
    log_softmax = scores - np.log(np.exp(scores).sum(axis=1, keepdims=True))
    return float(-log_softmax[np.arange(pairs.height), targets.to_numpy()].mean())


# --- pairs ----------------------------------------------------------------------------------


def test_normalise_query_folds_case_punctuation_and_blanks() -> None:
    raw = ["Call of Duty: Black Ops", "  call of duty   black ops ", "Assassin's Creed", "//", None]
    got = pl.DataFrame({"q": raw}).select(normalise_query(pl.col("q")))["q"].to_list()
    assert got == [
        "call of duty black ops",
        "call of duty black ops",
        "assassins creed",
        None,
        None,
    ]


def test_click_pairs_dedupes_by_normalised_query_and_weighs_distinct_users() -> None:
    log = pl.DataFrame(
        {
            "user": ["a", "a", "b", "c", "a", "d", "e", "f"],
            "sku": ["x2", "x2", "x2", "x2", "x1", "x1", "nope", "x3"],
            "query": ["Gears of War 3", "gears of war 3", "GEARS OF WAR 3!", "gears of war 3",
                      "cod", "COD", "gears of war 3", None],
            "click_time": ["2011-08-11 04:00:00"] * 8,
        }
    )  # fmt: skip
    pairs = click_pairs(log, documents())
    assert pairs.columns == ["query", "item_id", "text", "weight"]
    assert pairs.select("query", "item_id", "weight").rows() == [
        ("cod", "x1", 2),  # a and d
        ("gears of war 3", "x2", 3),  # a twice, b, c; the click on an unknown sku is left out
    ]
    texts = dict(product_text(documents()).select("item_id", "text").iter_rows())
    assert pairs["text"].to_list() == [texts["x1"], texts["x2"]]
    assert texts["x1"] == "Call of Duty: Black Ops - Xbox 360 | Video Games > Xbox 360"


def test_click_pairs_reads_store_events_clicks_only() -> None:
    events = pl.DataFrame(
        {
            "user_id": ["a", "b", "c"],
            "item_id": ["x4", "x4", "x4"],
            "type": ["click", "click", "purchase"],
            "query": ["bf3", "BF3", "bf3"],
        }
    )
    assert click_pairs(events, documents()).select("query", "weight").rows() == [("bf3", 2)]
    with pytest.raises(AisleError, match="lack column"):
        click_pairs(events.drop("query"), documents())


def test_pairs_hash_ignores_row_order_and_sees_weights() -> None:
    pairs = shop_pairs()
    assert pairs_hash(pairs) == pairs_hash(pairs.reverse())
    assert pairs_hash(pairs) != pairs_hash(pairs.with_columns(pl.col("weight") + 1))


# --- batches --------------------------------------------------------------------------------


def test_batches_never_hold_one_product_or_query_twice() -> None:
    pairs = shop_pairs()
    draw = sample_batches(pairs, batch_size=8, seed=3)
    for _ in range(300):
        rows = next(draw)
        assert rows.size == 8
        assert pairs["item_id"].gather(rows).n_unique() == rows.size
        assert pairs["query"].gather(rows).n_unique() == rows.size
    # at most as many rows as distinct products
    assert next(sample_batches(pairs, batch_size=64, seed=3)).size == len(GAMES)
    again = sample_batches(pairs, batch_size=8, seed=3)
    first = sample_batches(pairs, batch_size=8, seed=3)
    assert all(np.array_equal(next(again), next(first)) for _ in range(20))


def test_batches_draw_pairs_in_proportion_to_weight() -> None:
    weights = np.arange(1, 41)
    pairs = pl.DataFrame(
        {
            "query": [f"q{i}" for i in range(40)],
            "item_id": [f"p{i}" for i in range(40)],
            "text": ["t"] * 40,
            "weight": weights,
        }
    )
    draw = sample_batches(pairs, batch_size=2, seed=0)
    counts = np.bincount(np.concatenate([next(draw) for _ in range(4000)]), minlength=40)
    assert np.corrcoef(counts, weights)[0, 1] > 0.95
    assert counts[-1] > 10 * counts[0]


def test_batches_refuse_what_cannot_make_negatives() -> None:
    with pytest.raises(AisleError, match="at least 2"):
        next(sample_batches(shop_pairs(), batch_size=1, seed=0))


# --- fine-tuning ----------------------------------------------------------------------------


#: A short run: a dozen steps at a high rate, the last weights kept (the held-out nicknames of
#: so small a shop say little about which checkpoint is best).
SHORT: dict[str, Any] = {"batch_size": 8, "learning_rate": 1e-4, "max_steps": 12, "block_steps": 4,
                         "keep": "last", "threads": 1}  # fmt: skip


@pytest.fixture(scope="module")
def short_run(tmp_path_factory: pytest.TempPathFactory) -> FineTuneRun:
    """A dozen steps on the small shop's pairs."""
    out = tmp_path_factory.mktemp("finetune") / "minilm-clicks"
    heard: list[dict[str, Any]] = []
    run = fine_tune(shop_pairs(), out, **SHORT, on_block=heard.append)
    assert heard == run.blocks
    return run


def test_a_short_fine_tune_lowers_the_loss_on_its_pairs(short_run: FineTuneRun) -> None:
    pairs = shop_pairs()
    before = pair_loss(MiniLMEncoder(), pairs)
    after = pair_loss(short_run.encoder, pairs)
    assert after < before - 0.1
    assert short_run.steps == 12
    assert [(b["first_step"], b["last_step"]) for b in short_run.blocks] == [(1, 4), (5, 8),
                                                                             (9, 12)]  # fmt: skip
    assert short_run.kept_step == 12
    assert short_run.validation_after == pytest.approx(short_run.blocks[-1]["validation_loss"])
    assert short_run.train_pairs + short_run.validation_pairs == short_run.pairs == len(QUERIES)


def test_the_model_saves_without_pickle_with_its_manifest(short_run: FineTuneRun) -> None:
    names = {p.name for p in short_run.path.rglob("*") if p.is_file()}
    assert "model.safetensors" in names
    assert not {n for n in names if n.endswith((".bin", ".pt", ".pth", ".pkl", ".pickle"))}
    manifest = json.loads((short_run.path / "manifest.json").read_text())
    assert manifest["model"] == MODEL_NAME
    assert manifest["data_hash"] == pairs_hash(shop_pairs()) == short_run.data_hash
    assert manifest["base"].startswith("sentence-transformers/all-MiniLM-L6-v2")
    assert manifest["parameters"]["batch_size"] == 8
    assert manifest["parameters"]["learning_rate"] == 1e-4
    assert manifest["parameters"]["precision"] in ("float32", "bfloat16")
    assert manifest["steps"] == 12
    assert len(manifest["blocks"]) == 3
    assert manifest["validation_before"] == short_run.validation_before
    assert manifest["validation_after"] == short_run.validation_after
    assert not list(short_run.path.parent.glob(".*tmp"))  # no temporary folder left


def test_the_saved_model_reloads_to_the_same_unit_vectors(short_run: FineTuneRun) -> None:
    texts = [q for q, _ in QUERIES[:6]] + list(GAMES.values())[:4]
    loaded = FineTunedEncoder(short_run.path)
    assert loaded.name == "minilm-clicks"
    assert loaded.dimensions == 384
    assert short_run.data_hash[:16] in loaded.source
    vectors = loaded.encode(texts)
    assert vectors.dtype == np.float32
    assert vectors.shape == (len(texts), 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(vectors, short_run.encoder.encode(texts))
    assert loaded.encode([]).shape == (0, 384)
    # the fine-tuned vectors differ from the base model's
    assert not np.allclose(vectors, MiniLMEncoder().encode(texts), atol=1e-3)


def test_the_encoder_loads_once_under_concurrent_use(short_run: FineTuneRun) -> None:
    encoder = FineTunedEncoder(short_run.path)
    results: list[np.ndarray] = []
    threads = [
        threading.Thread(target=lambda: results.append(encoder.encode(["gow3", "skyrm"])))
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 3
    assert all(np.array_equal(r, results[0]) for r in results)


def test_the_same_seed_gives_the_same_model(tmp_path: Path, short_run: FineTuneRun) -> None:
    again = fine_tune(shop_pairs(), tmp_path / "again", **SHORT)
    texts = ["blops", "Rage - Xbox 360"]
    np.testing.assert_array_equal(again.encoder.encode(texts), short_run.encoder.encode(texts))
    assert again.blocks == [{**b, "seconds": a["seconds"]} for a, b in
                            zip(again.blocks, short_run.blocks, strict=True)]  # fmt: skip


#: Long enough for one step and a validation on a busy 2-core machine, where a 4 s budget
#: left no room for any step (regression: 0 steps under load).
BUDGET_S = 12.0


def test_training_stops_at_the_budget(tmp_path: Path) -> None:
    started = time.perf_counter()
    run = fine_tune(
        shop_pairs(), tmp_path / "budget", batch_size=8, budget_s=BUDGET_S, block_steps=2,
        precision="float32",
    )  # fmt: skip
    wall = time.perf_counter() - started
    assert run.steps >= 1
    # no step starts that the slowest recent one says would overrun; a slack for a busy machine
    assert run.seconds <= BUDGET_S * 1.25
    assert wall <= BUDGET_S * 1.25 + 20  # loading the base model and saving come on top
    assert run.blocks[-1]["last_step"] == run.steps
    manifest = json.loads((run.path / "manifest.json").read_text())
    assert manifest["parameters"]["precision"] == "float32"
    # keep="best": the weights of the lowest validation loss, the base's included
    losses = {0: run.validation_before} | {b["last_step"]: b["validation_loss"] for b in run.blocks}
    assert run.kept_step == min(losses, key=lambda step: losses[step])
    assert run.validation_after == pytest.approx(min(losses.values()), abs=1e-6)


def test_fine_tuning_refuses_too_few_queries(tmp_path: Path) -> None:
    with pytest.raises(AisleError, match="4 queries"):
        fine_tune(shop_pairs().head(3), tmp_path / "tiny", budget_s=1)


def test_the_encoder_needs_a_saved_model(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="fine_tune"):
        FineTunedEncoder(tmp_path)


# --- the real click log ---------------------------------------------------------------------


def bestbuy(shared_data: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The Best Buy click log and its catalog as search documents (the adapter's mapping)."""
    folder = shared_data / "bestbuy-small-xbox"
    clicks = pl.read_csv(folder / "clicks.csv.gz", schema_overrides={"sku": pl.String})
    raw = pl.read_ndjson(folder / "products.jsonl.gz")
    products = raw.select(
        pl.col("sku").alias("item_id"),
        pl.col("name").alias("title"),
        pl.col("longDescription").alias("description"),
        pl.col("manufacturer").alias("brand"),
        pl.col("categoryPath").list.eval(pl.element().struct.field("name")).alias("category_path"),
    )
    return clicks, conform(products)


@pytest.mark.integration
def test_click_pairs_on_the_best_buy_log(shared_data: Path) -> None:
    clicks, docs = bestbuy(shared_data)
    pairs = click_pairs(clicks, docs)
    assert pairs.select(pl.struct("query", "item_id").is_unique().all()).item()
    in_catalog = clicks.filter(pl.col("sku").is_in(docs["item_id"].implode()))
    keyed = in_catalog.with_columns(normalise_query(pl.col("query")).alias("key"))
    expected = keyed.drop_nulls("key").unique(["user", "key", "sku"]).height
    assert pairs["weight"].sum() == expected
    # case, punctuation and spacing variants fold together
    assert 3000 < pairs["query"].n_unique() < clicks["query"].str.to_lowercase().n_unique()
    assert pairs.filter(pl.col("query") == "battlefeild 3").height >= 1


@pytest.mark.slow
@pytest.mark.integration
def test_a_budgeted_fine_tune_on_best_buy_clicks_helps_held_out_queries(
    shared_data: Path, tmp_path: Path
) -> None:
    clicks, docs = bestbuy(shared_data)
    run = fine_tune(click_pairs(clicks, docs), tmp_path / "bb", batch_size=32, budget_s=90)
    assert run.steps > 0
    assert run.validation_after < run.validation_before
