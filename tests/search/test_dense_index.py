"""The dense index: neighbours against numpy brute force, live updates, save and load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from aisle.errors import StoreError
from aisle.search.dense import (
    EXACT_BELOW,
    INDEX_FILE,
    ITEMS_FILE,
    MANIFEST_FILE,
    VECTORS_FILE,
    DenseIndex,
)


def unit_vectors(count: int, dimensions: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((count, dimensions)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def brute_force(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-(queries @ vectors.T), axis=1, kind="stable")[:, :k]


@pytest.fixture(scope="module")
def large() -> tuple[list[str], np.ndarray, DenseIndex]:
    """10k random unit vectors of 32 dimensions (harder for a graph than real embeddings,
    whose intrinsic dimension is lower) in one index."""
    vectors = unit_vectors(10_000, 32, seed=1)
    ids = [f"p{i}" for i in range(len(vectors))]
    return ids, vectors, DenseIndex.create(ids, vectors)


def test_graph_search_recalls_the_exact_neighbours(
    large: tuple[list[str], np.ndarray, DenseIndex],
) -> None:
    ids, vectors, index = large
    queries = unit_vectors(300, 32, seed=2)
    exact = brute_force(vectors, queries, 10)
    found = index.search_many(queries, 10, exact=False)
    recall = np.mean(
        [
            len({ids[j] for j in row} & set(got)) / 10
            for row, (got, _) in zip(exact, found, strict=True)
        ]
    )
    assert recall >= 0.99
    for query, (got, cosines) in zip(queries, found, strict=True):
        assert len(got) == 10
        assert np.all(np.diff(cosines) <= 1e-6)  # best first
        assert np.allclose(cosines, vectors[[int(i[1:]) for i in got]] @ query, atol=1e-5)


def test_cosines_are_exact(large: tuple[list[str], np.ndarray, DenseIndex]) -> None:
    _, vectors, index = large
    query = unit_vectors(1, 32, seed=3)[0]
    got, cosines = index.search(query, 5)
    assert np.allclose(cosines, vectors[[int(i[1:]) for i in got]] @ query, atol=1e-5)
    chosen = ["p7", "nope", "p9999"]
    expected = np.asarray([vectors[7] @ query, 0.0, vectors[9999] @ query], np.float32)
    assert np.allclose(index.cosines(query, chosen), expected, atol=1e-6)
    assert index.cosines(query, []).shape == (0,)


def test_exact_search_is_numpy_brute_force() -> None:
    vectors = unit_vectors(2_000, 24, seed=4)
    ids = [f"p{i}" for i in range(len(vectors))]
    index = DenseIndex.create(ids, vectors)
    queries = unit_vectors(20, 24, seed=5)
    for query, row in zip(queries, brute_force(vectors, queries, 10), strict=True):
        got, cosines = index.search(query, 10)  # below EXACT_BELOW: exact by default
        assert len(index) < EXACT_BELOW
        assert got == [ids[j] for j in row]
        assert np.allclose(cosines, vectors[row] @ query, atol=1e-6)


def test_upsert_and_remove_are_visible_at_once() -> None:
    vectors = unit_vectors(500, 16, seed=6)
    ids = [f"p{i}" for i in range(len(vectors))]
    index = DenseIndex.create(ids, vectors)
    target = unit_vectors(1, 16, seed=7)[0]
    for exact in (True, False):
        index.upsert(["p3", "new"], np.stack([target, -target]))
        assert index.search(target, 1, exact=exact)[0] == ["p3"]
        assert index.search(-target, 1, exact=exact)[0] == ["new"]
        assert index.remove(["p3", "p3", "unknown"]) == 1
        assert "p3" not in index.search(target, 10, exact=exact)[0]
        assert index.cosines(target, ["p3"]).tolist() == [0.0]
        assert index.remove(["new"]) == 1
    assert len(index) == 499
    assert index.remove(["unknown"]) == 0
    # the remaining vectors are intact after rows were moved to fill the holes
    rest = [i for i in ids if i != "p3"]
    assert np.allclose(index.cosines(vectors[499], rest), vectors[[int(i[1:]) for i in rest]]
                       @ vectors[499], atol=1e-6)  # fmt: skip


def test_keys_are_stable_and_never_reused() -> None:
    index = DenseIndex.create(["a", "b"], unit_vectors(2, 8, seed=8))
    key_of_b = index._keys["b"]
    index.upsert(["b"], unit_vectors(1, 8, seed=9))
    assert index._keys["b"] == key_of_b
    index.remove(["a"])
    index.upsert(["c"], unit_vectors(1, 8, seed=10))
    assert index._keys["c"] not in {key_of_b, 0}


def test_a_repeated_id_keeps_its_last_vector() -> None:
    vectors = unit_vectors(3, 8, seed=11)
    index = DenseIndex.create(["a", "a", "b"], vectors)
    assert len(index) == 2
    assert index.cosines(vectors[1], ["a"])[0] == pytest.approx(1.0)


def test_save_and_load_give_identical_results(tmp_path: Path) -> None:
    vectors = unit_vectors(12_000, 16, seed=12)
    ids = [f"p{i}" for i in range(len(vectors))]
    index = DenseIndex.create(ids, vectors)
    index.remove(ids[:100])
    index.upsert(["p200", "late"], unit_vectors(2, 16, seed=13))
    index.save(tmp_path / "dense")
    assert {f.name for f in (tmp_path / "dense").iterdir()} == {
        INDEX_FILE, ITEMS_FILE, MANIFEST_FILE, VECTORS_FILE  # the graph's are 8-bit: a copy
    }  # fmt: skip
    loaded = DenseIndex.load(tmp_path / "dense")
    assert len(loaded) == len(index)
    assert sorted(loaded.item_ids) == sorted(index.item_ids)
    assert loaded._keys == index._keys
    queries = unit_vectors(30, 16, seed=14)
    for exact in (True, False):
        for before, after in zip(index.search_many(queries, 10, exact=exact),
                                 loaded.search_many(queries, 10, exact=exact), strict=True):  # fmt: skip
            assert before[0] == after[0]
            assert np.allclose(before[1], after[1], atol=1e-6)
    assert np.array_equal(loaded.cosines(queries[0], ids), index.cosines(queries[0], ids))
    # keys go on from where they stopped: a new item never takes a removed item's key
    loaded.upsert(["later"], unit_vectors(1, 16, seed=15))
    assert loaded._keys["later"] == max(index._keys.values()) + 1


def test_small_and_empty_indexes(tmp_path: Path) -> None:
    index = DenseIndex.create(["a", "b"], unit_vectors(2, 8, seed=16))
    assert len(index.search(unit_vectors(1, 8, seed=17)[0], 10)[0]) == 2
    assert index.search(unit_vectors(1, 8, seed=17)[0], 0)[0] == []
    empty = DenseIndex.create([], np.zeros((0, 8), np.float32))
    assert empty.search(np.ones(8), 5)[0] == []
    empty.save(tmp_path / "empty")
    assert len(DenseIndex.load(tmp_path / "empty")) == 0
    with pytest.raises(ValueError, match="dimensions"):
        index.search(np.ones(9), 3)
    with pytest.raises(ValueError, match="item ids"):
        index.upsert(["a"], unit_vectors(2, 8, seed=18))
    with pytest.raises(StoreError, match="not a saved dense index"):
        DenseIndex.load(tmp_path / "nothing")


def test_a_float32_graph_saved_before_quantisation_still_loads(tmp_path: Path) -> None:
    vectors = unit_vectors(3_000, 16, seed=21)
    ids = [f"p{i}" for i in range(len(vectors))]
    old = DenseIndex(16, dtype="f32")
    old.upsert(ids, vectors)
    old.save(tmp_path / "old")
    assert not (tmp_path / "old" / VECTORS_FILE).exists()
    loaded = DenseIndex.load(tmp_path / "old")
    assert loaded.dtype == "f32"
    query = unit_vectors(1, 16, seed=22)[0]
    assert loaded.search(query, 5, exact=False)[0] == old.search(query, 5, exact=False)[0]
    assert np.allclose(loaded.cosines(query, ids[:50]), vectors[:50] @ query, atol=1e-6)


def test_search_by_keys_answers_as_search_does() -> None:
    vectors = unit_vectors(25_000, 16, seed=31)
    ids = [f"p{i}" for i in range(len(vectors))]
    index = DenseIndex.create(ids, vectors)
    index.remove(ids[:50])
    index.upsert(["p60", "late"], unit_vectors(2, 16, seed=32))
    names = {key: item for item, key in index.keys_in_use().items()}
    assert index.next_key == len(ids) + 1
    for query in unit_vectors(20, 16, seed=33):
        keys, cosines = index.search_keys(query, 10)
        found, expected = index.search(query, 10, exact=False)
        assert [names[int(k)] for k in keys] == found
        assert np.allclose(cosines, expected, atol=1e-6)
        assert not {names[int(k)] for k in keys} & set(ids[:50])
    assert index.search_keys(vectors[0], 0)[0].shape == (0,)
