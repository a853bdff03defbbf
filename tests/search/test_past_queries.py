"""Vectors of past queries kept with an index: which queries, and loaded without encoding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from aisle.search.documents import conform
from aisle.search.engine import SearchEngine
from aisle.search.lexical import LexicalIndex
from aisle.search.past_queries import load_query_vectors, past_queries, save_query_vectors


class Counting:
    """A toy encoder that counts the texts it encodes."""

    name, dimensions, source = "toy", 3, "toy"

    def __init__(self) -> None:
        self.encoded: list[str] = []

    def encode(self, texts: list[str]) -> np.ndarray:
        self.encoded.extend(texts)
        rows = np.asarray([[len(t), t.count("a") + 1.0, 1.0] for t in texts], np.float32)
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def _engine(encoder: Counting) -> SearchEngine:
    documents = conform(pl.DataFrame({"item_id": ["a", "b"], "title": ["Halo", "Gears of War"]}))
    vectors = encoder.encode(["Halo", "Gears of War"])
    encoder.encoded.clear()
    return SearchEngine(documents, LexicalIndex.create(documents), vectors=vectors,
                        encoder=encoder)  # fmt: skip


def test_queries_enough_shoppers_typed_are_kept_without_pii(tmp_path: Path) -> None:
    rows = [("halo", "u1"), ("halo", "u2"), ("halo", "u2"), ("gears", "u3"), ("gears", "u4"),
            ("gears", "u5"), ("secret thing", "u1"), ("bob@example.com", "u6"),
            ("bob@example.com", "u7"), (None, "u8")]  # fmt: skip
    clicks = pl.DataFrame(rows, schema=["query", "user_id"], orient="row")
    encoder = Counting()
    engine = _engine(encoder)
    assert past_queries(engine, clicks) == ["gears", "halo"]  # most shoppers first
    assert past_queries(engine, clicks, limit=1) == ["gears"]

    assert save_query_vectors(engine, ["gears", "halo"], tmp_path / "queries") == 2
    assert encoder.encoded == ["gears", "halo"]
    served = Counting()
    fresh = _engine(served)
    assert load_query_vectors(fresh, tmp_path / "queries") == 2
    fresh.search("halo")
    fresh.search("gears")
    assert served.encoded == []  # asked before: no encoding
    assert np.array_equal(fresh.query_vectors["halo"], engine.query_vectors["halo"])
    fresh.search("lantern")
    assert served.encoded == ["lantern"]
    assert load_query_vectors(fresh, tmp_path / "nothing") == 0
