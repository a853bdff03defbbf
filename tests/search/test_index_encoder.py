"""`aisle index build --encoder minilm-clicks`: MiniLM fine-tuned on the store's clicks within a
budget, indexed with, named in the manifest and loaded back by ``load_engine``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from aisle.catalog.embeddings import product_text
from aisle.search.finetune import MANIFEST_FILE, FineTunedEncoder
from aisle.search.index import ENCODER_DIR, FINE_TUNED, load_engine
from tests.conftest import best_buy_store
from tests.conftest import json_result as json_out
from tests.conftest import run_aisle as aisle

TRAIN_CLICKS = 2_000

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    home, _ = best_buy_store(tmp_path_factory.mktemp("index-encoder"), TRAIN_CLICKS)
    out = json_out(aisle(home, "index", "build", "--encoder", FINE_TUNED, "--encoder-budget",
                         "8", "--json"))  # fmt: skip
    return {"home": home, "out": out}


def test_the_manifest_names_the_fine_tuned_encoder(built: dict[str, Any]) -> None:
    out = built["out"]
    assert out["encoder"] == FINE_TUNED
    version = Path(out["path"])
    manifest = json.loads((version / "manifest.json").read_text())
    assert manifest["embedding_model"] == FINE_TUNED
    assert manifest["encoder_path"] == ENCODER_DIR
    tuned = json.loads((version / ENCODER_DIR / MANIFEST_FILE).read_text())
    assert tuned["model"] == FINE_TUNED and tuned["pairs"] > 100
    assert tuned["parameters"]["budget_s"] == 8
    assert not list(version.rglob("*.pkl")) and not list(version.rglob("*.bin"))


def test_load_engine_encodes_queries_with_the_model_that_made_the_vectors(
    built: dict[str, Any],
) -> None:
    engine = load_engine(built["home"])
    assert isinstance(engine.encoder, FineTunedEncoder)
    assert engine.encoder.path == Path(built["out"]["path"]) / ENCODER_DIR
    assert engine.vectors is not None
    texts = product_text(engine.documents.head(5))
    again = engine.encoder.encode(texts["text"].to_list())
    rows = [engine.position[i] for i in texts["item_id"].to_list()]
    assert np.allclose(engine.vectors[rows], again, atol=1e-4)
    # past queries' vectors came with the index, made by the same encoder
    manifest = json.loads((Path(built["out"]["path"]) / "manifest.json").read_text())
    assert manifest["past_query_vectors"] == len(engine.query_vectors) > 50
    asked = next(iter(engine.query_vectors))
    assert np.allclose(engine.query_vectors[asked], engine.encoder.encode([asked])[0], atol=1e-4)
    found = engine.search("gears of war 3", limit=3)
    assert (
        found.hits
        and "Gears of War 3"
        in engine.documents.filter(pl.col("item_id") == found.hits[0].item_id)["title"][0]
    )


def test_an_unknown_encoder_is_refused(built: dict[str, Any]) -> None:
    bad = aisle(built["home"], "index", "build", "--encoder", "word2vec")
    assert bad.exit_code == 2 and "minilm-clicks" in bad.output
