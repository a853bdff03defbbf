"""Protocols on tiny handmade data with a fake model whose scores are set by hand."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from aisle.config import RecommendSettings
from aisle.errors import AisleError
from aisle.evaluation.protocols import (
    Task,
    build_truth,
    detect_split,
    interacted,
    make_task,
    rank,
    sample_negatives,
    top_k,
)
from aisle.features.interactions import Interactions, build_interactions

START = datetime(2026, 1, 1, tzinfo=UTC)


def frame(rows: list[tuple[str, str, str]]) -> pl.DataFrame:
    """Events (user, item, type) one hour apart, in the columns load_events returns."""
    return pl.DataFrame(
        {
            "event_id": [f"e{i:03d}" for i in range(len(rows))],
            "user_id": [r[0] for r in rows],
            "item_id": [r[1] for r in rows],
            "type": [r[2] for r in rows],
            "value": 1.0,
            "timestamp": [START + timedelta(hours=i) for i in range(len(rows))],
            "ref_event_id": None,
        },
        schema_overrides={"ref_event_id": pl.String},
    )


class Fixed:
    """A fake model: fixed scores per user row (the rows of an Interactions)."""

    def __init__(self, scores: Sequence[Sequence[float]] | np.ndarray) -> None:
        self.scores = np.asarray(scores, dtype=np.float64)

    def score_users(self, users: np.ndarray) -> np.ndarray:
        return np.asarray(self.scores[users])


def cold_of(data: Interactions) -> np.ndarray:
    return np.asarray(np.asarray(data.matrix.sum(axis=0)).ravel() == 0)


# -- leave-last-out -------------------------------------------------------------------------------
TRAIN = frame([
    ("u1", "a", "purchase"), ("u1", "b", "purchase"),
    ("u2", "b", "purchase"), ("u2", "c", "purchase"), ("u2", "e", "purchase"),
    ("u3", "a", "purchase"), ("u3", "c", "purchase"), ("u3", "d", "purchase"),
])  # fmt: skip
#: u3's item z is in no training event; u9 is unknown to training
TEST = frame([("u1", "c", "purchase"), ("u2", "a", "purchase"), ("u3", "z", "purchase"),
              ("u9", "a", "purchase")])  # fmt: skip
#: columns a b c d e z, rows u1 u2 u3
SCORES = [[5, 9, 3, 4, 3, 7], [2, 0, 0, 2, 0, 1], [0, 1, 0, 0, 1, 5]]


@pytest.fixture
def data() -> Interactions:
    return build_interactions(TRAIN, RecommendSettings(), items=["z"])


def task_of(data: Interactions, test: pl.DataFrame = TEST, protocol: str = "full") -> Task:
    truth = build_truth(test, detect_split(test))
    return make_task(data, truth, protocol, history=interacted(TRAIN, data))


def test_full_ranking_excludes_training_items_with_pessimistic_ties(data: Interactions) -> None:
    assert data.items == ["a", "b", "c", "d", "e", "z"]
    task = task_of(data)
    assert task.split == "leave-last-out"
    assert task.users == ["u1", "u2", "u3", "u9"]
    ranking = rank(Fixed(SCORES), task, k=2)
    # u1: c (3) against d (4), e (3, tied: ahead), z (7): rank 4 of c d e z
    # u2: a (2) against d (2, tied: ahead), z (1): rank 2 of a d z
    # u3: z (5) first of b e z; u9 unknown: a miss
    assert ranking.ranks[:, 0].tolist() == [4, 2, 1, np.inf]
    assert ranking.n_candidates.tolist() == [4, 3, 3, 6]
    assert ranking.top.tolist() == [[5, 3], [0, 3], [5, 1], [-1, -1]]
    assert "minus the user's training items" in task.label


def test_cold_items_rank_last_for_id_only_models(data: Interactions) -> None:
    ranking = rank(Fixed(SCORES), task_of(data), k=2, cold=cold_of(data))
    # z is cold: u1's c now has only d and e ahead; u3's z falls behind b and e
    assert ranking.ranks[:, 0].tolist() == [3, 2, 3, np.inf]
    assert 5 not in ranking.top[:3].ravel().tolist()


def test_a_model_that_scores_everything_alike_ranks_last(data: Interactions) -> None:
    ranking = rank(Fixed(np.zeros((3, 6))), task_of(data), k=3)
    assert ranking.ranks[:3, 0].tolist() == ranking.n_candidates[:3].tolist()
    # top-k ties go to the lowest columns, training items left out
    assert ranking.top[0].tolist() == [2, 3, 4]


def test_a_held_out_item_seen_in_training_stays_a_candidate(data: Interactions) -> None:
    test = frame([("u1", "a", "purchase")])
    task = task_of(data, test)
    assert task.counts["truth_items_seen_in_training"] == 1
    ranking = rank(Fixed(SCORES), task, k=2)
    # a (5) against c d e z: only z (7) ahead
    assert ranking.ranks[0, 0] == 2
    assert ranking.n_candidates[0] == 5


def test_leave_last_out_truth_is_the_latest_event() -> None:
    test = frame([("u1", "c", "view"), ("u1", "d", "purchase"), ("u2", "a", "view")])
    assert detect_split(test) == "time"  # two items for u1: not a leave-last-out file
    truth = build_truth(test, "leave-last-out")
    assert truth.items == [["d"], ["a"]]
    assert truth.touched == [["c", "d"], ["a"]]
    assert truth.not_truth_events == 1


# -- time split ---------------------------------------------------------------------------------
def test_time_split_truth_repeats_and_new_items_only() -> None:
    train = frame([("u1", "a", "purchase"), ("u1", "b", "purchase"), ("u2", "c", "purchase")])
    test = frame([
        ("u1", "a", "purchase"), ("u1", "c", "purchase"), ("u1", "b", "return"),
        ("u2", "c", "return"), ("u2", "d", "purchase"), ("u5", "a", "purchase"),
    ])  # fmt: skip
    assert detect_split(test) == "time"
    truth = build_truth(test, "time")
    assert truth.users == ["u1", "u2", "u5"]
    assert truth.items == [["a", "c"], ["d"], ["a"]]  # returns are not purchases
    assert truth.not_truth_events == 2
    data = build_interactions(train, RecommendSettings(), items=["d"])
    history = interacted(train, data)
    task = make_task(data, truth, "full", history=history)
    assert task.users == ["u1", "u2"]  # u5 bought nothing before the cut
    assert task.counts["unknown_users_left_out"] == 1
    scores = [[3, 9, 3, 1], [0, 0, 0, 0]]  # columns a b c d
    ranking = rank(Fixed(scores), task, k=4)
    # u1: a and c tie at 3 behind b; a (lower column) first: ranks 2 and 3; repeats count
    assert ranking.ranks.tolist() == [[2, 3], [4, np.inf]]
    assert ranking.n_candidates.tolist() == [4, 4]
    new = make_task(data, truth, "full", history=history, new_items_only=True)
    assert new.users == ["u1", "u2"]
    assert new.counts["truth_items_removed_as_earlier"] == 1
    ranking = rank(Fixed(scores), new, k=4)
    # u1: a and b leave candidates and truth; c against d; u2: c leaves, d last of a b d
    assert ranking.ranks[:, 0].tolist() == [1, 3]
    assert ranking.n_candidates.tolist() == [2, 3]
    with pytest.raises(AisleError):
        make_task(data, build_truth(TEST, "leave-last-out"), new_items_only=True)


def test_new_items_only_drops_users_left_without_truth() -> None:
    train = frame([("u1", "a", "purchase"), ("u2", "b", "purchase")])
    test = frame([("u1", "a", "purchase"), ("u2", "a", "purchase"), ("u2", "b", "purchase")])
    data = build_interactions(train, RecommendSettings())
    task = make_task(data, build_truth(test, "time"), new_items_only=True,
                     history=interacted(train, data))  # fmt: skip
    assert task.users == ["u2"]
    assert task.counts["users_left_without_truth"] == 1


def naive_ranks(
    scores: np.ndarray, truth: list[list[int]], excluded: list[set[int]]
) -> list[list[int]]:
    """Pessimistic ranks the slow way: non-relevant candidates >= it, relevant ones ahead by
    (score, column)."""
    out = []
    for row, items in enumerate(truth):
        ranks = []
        for t in items:
            others = [c for c in range(scores.shape[1])
                      if c not in excluded[row] and c not in items and scores[row, c] >= scores[row, t]]  # fmt: skip
            ahead = [c for c in items if (scores[row, c], -c) > (scores[row, t], -t)]
            ranks.append(1 + len(others) + len(ahead))
        out.append(sorted(ranks))
    return out


@pytest.mark.parametrize("chunk_elements", [7, 1 << 20])
def test_vectorised_ranks_match_the_slow_way(chunk_elements: int) -> None:
    rng = np.random.default_rng(3)
    rows = []
    for u in range(30):
        for i in rng.choice(40, size=rng.integers(1, 8), replace=False):
            rows.append((f"u{u:02d}", f"i{i:02d}", "purchase"))
    train = frame(rows)
    test = frame([(f"u{u:02d}", f"i{i:02d}", "purchase")
                  for u in range(30) for i in rng.choice(40, size=rng.integers(1, 6), replace=False)])  # fmt: skip
    data = build_interactions(train, RecommendSettings(), items=test["item_id"].unique().to_list())
    scores = rng.integers(0, 4, size=(data.n_users, data.n_items)).astype(np.float32)
    history = interacted(train, data)
    for new_items_only in (False, True):
        task = make_task(data, build_truth(test, "time"), history=history,
                         new_items_only=new_items_only)  # fmt: skip
        ranking = rank(Fixed(scores), task, k=5, chunk_elements=chunk_elements)
        truth = [list(task.truth[i].indices) for i in range(len(task.users))]
        excluded = [set(task.exclude[i].indices) for i in range(len(task.users))]
        expected = naive_ranks(scores[task.rows], truth, excluded)
        got = [[r for r in row if np.isfinite(r)] for row in ranking.ranks.tolist()]
        assert got == expected
        for i, row in enumerate(ranking.top.tolist()):  # by score, then column
            shown = [c for c in range(data.n_items) if c not in excluded[i]]
            best = sorted(shown, key=lambda c: (-scores[task.rows[i], c], c))[:5]
            assert row == best


# -- sampled ------------------------------------------------------------------------------------
def test_sampled_protocol_draws_100_unseen_items_with_a_fixed_seed(data: Interactions) -> None:
    many = build_interactions(TRAIN, RecommendSettings(), items=[f"x{i:03d}" for i in range(300)] + ["z"])  # fmt: skip
    history = interacted(TRAIN, many)
    truth = build_truth(TEST, "leave-last-out")
    task = make_task(many, truth, "sampled-100", history=history)
    again = make_task(many, truth, "sampled-100", history=history)
    other = make_task(many, truth, "sampled-100", history=history, seed=7)
    assert task.label.startswith("SAMPLED")
    assert task.negatives is not None and again.negatives is not None
    assert other.negatives is not None
    assert (task.negatives != again.negatives).nnz == 0
    assert (task.negatives != other.negatives).nnz > 0
    for i, user in enumerate(task.users):
        negatives = {many.items[c] for c in task.negatives[i].indices}
        if user == "u9":  # unknown: a miss, nothing drawn
            assert not negatives
            continue
        assert len(negatives) == 100
        trained = set(TRAIN.filter(pl.col("user_id") == user)["item_id"])
        tested = set(TEST.filter(pl.col("user_id") == user)["item_id"])
        assert not negatives & (trained | tested)
    scores = np.zeros((many.n_users, many.n_items))
    scores[:, many.item_index["c"]] = 1.0  # u1's held-out item beats every negative
    ranking = rank(Fixed(scores), task, k=10)
    assert ranking.ranks[:, 0].tolist() == [1, 101, 101, np.inf]
    assert ranking.n_candidates.tolist() == [101, 101, 101, 101]


def test_sampling_takes_all_that_remain_when_fewer(data: Interactions) -> None:
    task = task_of(data, protocol="sampled-100")
    assert task.negatives is not None
    # u1 (a b in training, c in test) has d e z left
    assert sorted(task.negatives[0].indices.tolist()) == [3, 4, 5]
    assert task.counts["users_with_fewer_negatives"] == 3
    ranking = rank(Fixed(SCORES), task, k=2)
    assert ranking.ranks[0, 0] == 4  # as in the full ranking: every item was a candidate


def test_sample_negatives_is_uniform_enough() -> None:
    from scipy import sparse

    avoid = sparse.csr_matrix((np.ones(2, dtype=np.int8), ([0, 0], [0, 1])), shape=(400, 1000))
    drawn = sample_negatives(avoid, 100, 0)
    assert (np.diff(drawn.indptr) == 100).all()
    assert not set(drawn[0].indices) & {0, 1}
    counts = np.bincount(drawn.indices, minlength=1000)[2:]
    assert counts.mean() == pytest.approx(40, rel=0.05)
    assert counts.max() < 80


def test_top_k_breaks_ties_by_column() -> None:
    key = np.asarray([[1, 3, 3, 0, 3], [-np.inf, 5, -np.inf, -np.inf, -np.inf]])
    assert top_k(key, 2).tolist() == [[1, 2], [1, -1]]
    assert top_k(key, 7).tolist()[0] == [1, 2, 4, 0, 3, -1, -1]


def test_unknown_protocol_and_bad_shapes_fail(data: Interactions) -> None:
    with pytest.raises(AisleError):
        task_of(data, protocol="sampled-1000")
    with pytest.raises(AisleError):
        rank(Fixed(np.zeros((3, 2))), task_of(data))
