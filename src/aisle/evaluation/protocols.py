"""The evaluation protocols of docs/EVALUATION.md: who is tested on what, against which items.

Truth comes from a frame of test events (``load_events``' columns):

- **leave-last-out** (MovieLens, Amazon Games): each test user's latest test event is the one
  relevant item. Candidates are all items minus the user's training items (the relevant item
  itself always stays a candidate, even when the user had it in training too: such cases are
  counted). Test users unknown to training stay in every average as misses.
- **time** (UCI Online Retail, weeks after a cut): the truth is the set of distinct items a
  test user bought (purchase events; returns excluded). Candidates are all items, repeat
  purchases included. Test users are those with training interactions; the others are
  counted and left out, as the protocol defines. The variant ``new_items_only`` removes the
  user's training items from candidates and truth and drops users left without truth.

Protocols: ``full`` ranks each relevant item against every candidate; ``sampled-100`` ranks it
against 100 distinct items drawn uniformly (fixed seed) from the items the user never
interacted with in training or test: for comparison with papers only, and labelled so.

**Ties are pessimistic and deterministic.** A relevant item ranks after every non-relevant
candidate with an equal score; relevant items tied with each other are ordered by column
(item id). So rank = 1 + #non-relevant candidates scoring >= it + #relevant items ahead of
it, and a model that scores everything alike earns the worst ranks, not the average. NaN
scores count as -inf. Top-k lists (coverage, novelty, popularity bias) are ordered by score,
then column.

**Cold items** (no training interaction) are ranked last (-inf) for models fitted without
side information: an id-only model cannot know them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final, Literal, Protocol

import numpy as np
import polars as pl
from scipy import sparse

from aisle.errors import AisleError
from aisle.features.interactions import Interactions

Split = Literal["leave-last-out", "time"]
SPLITS: Final = ("leave-last-out", "time")
PROTOCOLS: Final = ("full", "sampled-100")
SAMPLED_NEGATIVES: Final = 100
SAMPLED_SEED: Final = 42
#: Largest number of float scores held at once while ranking (about 64 MB as float64).
CHUNK_ELEMENTS: Final = 1 << 23


class Scorer(Protocol):
    """What ranking needs of a model: scores of every item for users (rows)."""

    def score_users(self, users: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class Truth:
    """Per test user (ids, sorted): the relevant items and every item of its test events."""

    split: Split
    users: list[str]
    items: list[list[str]]
    touched: list[list[str]]
    events: int
    #: test events that are not truth: earlier events of a leave-last-out user, returns or
    #: non-purchases of a time split
    not_truth_events: int
    #: time split: users whose test events hold no purchase (so no truth)
    users_without_truth: int = 0


@dataclass(frozen=True)
class Task:
    """One protocol applied to one truth over one Interactions' items: what ``rank`` needs."""

    protocol: str
    split: Split
    label: str
    users: list[str]
    #: row of each test user in the Interactions, -1 where training does not know the user
    rows: np.ndarray
    #: relevant item columns per test user (rows aligned with ``users``)
    truth: sparse.csr_matrix
    #: |truth| per user, relevant items without a column included
    n_truth: np.ndarray
    #: columns removed from the full-ranking candidates (training items where the protocol
    #: says so); relevant items are never removed
    exclude: sparse.csr_matrix
    #: sampled protocol: the sampled non-relevant candidates per user
    negatives: sparse.csr_matrix | None = None
    #: what was counted on the way: users left out, relevant items seen in training, ...
    counts: dict[str, int] = field(default_factory=dict)
    #: sampled protocol: negatives drawn per user (an unknown user's nominal candidates)
    n_negatives: int = 0

    @property
    def n_items(self) -> int:
        """Number of item columns."""
        return int(self.truth.shape[1])


@dataclass(frozen=True)
class Ranking:
    """Where a model put each user's relevant items (see ``aisle.evaluation.metrics``)."""

    ranks: np.ndarray
    n_truth: np.ndarray
    n_candidates: np.ndarray
    #: top-k item columns per user over the full candidates, -1 padded (unknown users: all -1)
    top: np.ndarray


def detect_split(test_events: pl.DataFrame) -> Split:
    """leave-last-out when every test user has one test item, else time."""
    if test_events.height == 0:
        return "leave-last-out"
    per_user = test_events.group_by("user_id").agg(pl.col("item_id").n_unique().alias("n"))
    return "leave-last-out" if (per_user["n"] <= 1).all() else "time"


def _listed(frame: pl.DataFrame, users: list[str], column: str) -> list[list[str]]:
    found = dict(zip(frame["user_id"].to_list(), frame[column].to_list(), strict=True))
    return [sorted(found.get(u) or []) for u in users]


def build_truth(test_events: pl.DataFrame, split: Split) -> Truth:
    """The truth of a test events frame under a split (see the module's docstring)."""
    if split not in SPLITS:
        raise AisleError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")
    events = test_events.filter(pl.col("user_id").is_not_null() & pl.col("item_id").is_not_null())
    touched = events.group_by("user_id").agg(pl.col("item_id").unique().alias("touched"))
    if split == "leave-last-out":
        latest = (
            events.sort(["user_id", "timestamp", "event_id"])
            .group_by("user_id", maintain_order=True)
            .agg(pl.col("item_id").last().alias("truth"))
        )
        users = sorted(latest["user_id"].to_list())
        found = dict(zip(latest["user_id"].to_list(), latest["truth"].to_list(), strict=True))
        return Truth(
            split, users, [[found[u]] for u in users], _listed(touched, users, "touched"),
            events.height, events.height - len(users),
        )  # fmt: skip
    kinds = events["type"]
    is_truth = (
        pl.col("type") == "purchase"
        if (kinds == "purchase").any()
        else pl.col("type") != "return"  # a log without purchases: any event but a return
    )
    bought = events.filter(is_truth).group_by("user_id").agg(pl.col("item_id").unique())
    users = sorted(bought["user_id"].to_list())
    n_truth_events = int(events.select(is_truth.sum()).item())
    return Truth(
        split, users, _listed(bought, users, "item_id"), _listed(touched, users, "touched"),
        events.height, events.height - n_truth_events,
        touched.height - len(users),
    )  # fmt: skip


def interacted(events: pl.DataFrame, data: Interactions) -> sparse.csr_matrix:
    """Users x items of every training event (any type) of users and items ``data`` knows:
    the items a user "interacted with in training"."""
    users = pl.DataFrame({"user_id": data.users, "row": np.arange(data.n_users, dtype=np.int64)})
    items = pl.DataFrame({"item_id": data.items, "col": np.arange(data.n_items, dtype=np.int64)})
    pairs = events.select("user_id", "item_id").unique().join(users, on="user_id")
    pairs = pairs.join(items, on="item_id")
    return _pattern(pairs["row"].to_numpy(), pairs["col"].to_numpy(), data.n_users, data.n_items)


def _pattern(rows: np.ndarray, cols: np.ndarray, n_rows: int, n_cols: int) -> sparse.csr_matrix:
    """A boolean CSR pattern with sorted, distinct columns per row."""
    matrix = sparse.csr_matrix(
        (np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(n_rows, n_cols)
    )
    matrix.sum_duplicates()
    matrix.data[:] = 1
    matrix.sort_indices()
    return matrix


def _columns(items: Sequence[str], index: dict[str, int]) -> list[int]:
    return [index[i] for i in items if i in index]


def label_of(protocol: str, split: Split, n_items: int, *, new_items_only: bool = False,
             seed: int = SAMPLED_SEED) -> str:  # fmt: skip
    """The human-readable protocol label every result carries."""
    if protocol == "sampled-100":
        return (
            f"SAMPLED (for comparison with papers only; not comparable with full ranking): "
            f"each test item against {SAMPLED_NEGATIVES} items the user never interacted with, "
            f"drawn uniformly with seed {seed}" + ("; new items only" if new_items_only else "")
        )
    if split == "leave-last-out":
        return (
            f"full ranking: the held-out item against all {n_items:,} items minus the user's "
            "training items"
        )
    if new_items_only:
        return (
            f"full ranking, new items only: all {n_items:,} items minus the user's earlier "
            "items, which leave the truth too"
        )
    return f"full ranking: all {n_items:,} items, repeat purchases included"


def make_task(
    data: Interactions,
    truth: Truth,
    protocol: str = "full",
    *,
    history: sparse.csr_matrix | None = None,
    new_items_only: bool = False,
    seed: int = SAMPLED_SEED,
    n_negatives: int = SAMPLED_NEGATIVES,
) -> Task:
    """The task of ``protocol`` for this truth; ``history`` (users x items, rows of ``data``) is
    what each user interacted with in training, by default ``data.matrix``'s pattern."""
    if protocol not in PROTOCOLS:
        raise AisleError(f"unknown protocol {protocol!r}; choose from {', '.join(PROTOCOLS)}")
    if new_items_only and truth.split != "time":
        raise AisleError("the new-items-only variant belongs to the time split")
    seen = history if history is not None else _pattern(*data.matrix.nonzero(), *data.matrix.shape)
    seen = seen.tocsr()
    n_items = data.n_items
    counts: dict[str, int] = {}
    users, items, touched = truth.users, truth.items, truth.touched
    rows = np.asarray([data.user_index.get(u, -1) for u in users], dtype=np.int64)
    if truth.split == "time":  # test users are those with a purchase before the cut
        keep = rows >= 0
        counts["unknown_users_left_out"] = int((~keep).sum())
        users = [u for u, k in zip(users, keep, strict=True) if k]
        items = [i for i, k in zip(items, keep, strict=True) if k]
        touched = [t for t, k in zip(touched, keep, strict=True) if k]
        rows = rows[keep]
    user_seen = seen[np.maximum(rows, 0)].tocsr()
    user_seen = sparse.csr_matrix(user_seen.multiply((rows >= 0)[:, None].astype(np.int8)))
    user_seen.eliminate_zeros()
    index = data.item_index
    if new_items_only:
        names = np.asarray(data.items, dtype=object)
        earlier = [set(names[user_seen[i].indices]) for i in range(len(users))]
        before = sum(len(i) for i in items)
        items = [[i for i in its if i not in e] for its, e in zip(items, earlier, strict=True)]
        counts["truth_items_removed_as_earlier"] = before - sum(len(i) for i in items)
        keep = np.asarray([len(i) > 0 for i in items], dtype=bool)
        counts["users_left_without_truth"] = int((~keep).sum())
        users = [u for u, k in zip(users, keep, strict=True) if k]
        items = [i for i, k in zip(items, keep, strict=True) if k]
        touched = [t for t, k in zip(touched, keep, strict=True) if k]
        rows, user_seen = rows[keep], user_seen[keep]
    truth_rows = [_columns(its, index) for its in items]
    r = np.repeat(np.arange(len(users)), [len(c) for c in truth_rows])
    c = np.asarray([x for cols in truth_rows for x in cols], dtype=np.int64)
    truth_matrix = _pattern(r, c, len(users), n_items)
    n_truth = np.asarray([len(i) for i in items], dtype=np.int64)
    counts["truth_items_without_column"] = int(n_truth.sum() - truth_matrix.nnz)
    exclude = (
        user_seen
        if truth.split == "leave-last-out" or new_items_only
        else sparse.csr_matrix((len(users), n_items), dtype=np.int8)
    )
    if truth.split == "leave-last-out":
        counts["truth_items_seen_in_training"] = int(truth_matrix.multiply(user_seen).nnz)
    negatives = None
    if protocol == "sampled-100":
        t_rows = [_columns(t, index) for t in touched]
        tr = np.repeat(np.arange(len(users)), [len(x) for x in t_rows])
        tc = np.asarray([x for cols in t_rows for x in cols], dtype=np.int64)
        avoid = (user_seen + truth_matrix + _pattern(tr, tc, len(users), n_items)).tocsr()
        known = rows >= 0
        negatives = sample_negatives(avoid, n_negatives, seed, only=known)
        counts["users_with_fewer_negatives"] = int(
            (np.diff(negatives.indptr)[known] < n_negatives).sum()
        )
    label = label_of(protocol, truth.split, n_items, new_items_only=new_items_only, seed=seed)
    return Task(protocol, truth.split, label, users, rows, truth_matrix, n_truth, exclude,
                negatives, counts, n_negatives if negatives is not None else 0)  # fmt: skip


def sample_negatives(
    avoid: sparse.csr_matrix, n: int, seed: int, *, only: np.ndarray | None = None
) -> sparse.csr_matrix:
    """Per row, ``n`` distinct columns drawn uniformly from those not in ``avoid`` (all of them
    where fewer remain), with one generator seeded once and rows drawn in order, so every model
    of a run meets the same negatives. Rows not in ``only`` get none."""
    rng = np.random.default_rng(seed)
    n_rows, n_items = avoid.shape
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    chosen_rows: list[np.ndarray] = []
    for row in range(n_rows):
        if only is not None and not only[row]:
            chosen = np.empty(0, dtype=np.int64)
        else:
            ex = avoid.indices[avoid.indptr[row] : avoid.indptr[row + 1]]
            allowed = n_items - len(ex)
            if allowed <= 4 * n:  # few left: draw from the list of what remains
                rest = np.setdiff1d(np.arange(n_items), ex)
                chosen = rest if len(rest) <= n else rng.choice(rest, n, replace=False)
            else:  # rejection sampling, distinct and in draw order: uniform over subsets
                chosen = np.empty(0, dtype=np.int64)
                while len(chosen) < n:
                    draw = rng.integers(0, n_items, size=2 * (n - len(chosen)) + 8)
                    pool = np.concatenate([chosen, draw[~np.isin(draw, ex)]])
                    _, first = np.unique(pool, return_index=True)
                    chosen = pool[np.sort(first)][:n]
        chosen_rows.append(np.sort(chosen).astype(np.int64))
        indptr[row + 1] = indptr[row] + len(chosen)
    indices = np.concatenate(chosen_rows) if chosen_rows else np.empty(0, dtype=np.int64)
    data = np.ones(len(indices), dtype=np.int8)
    return sparse.csr_matrix((data, indices, indptr), shape=(n_rows, n_items))


def _exact_top(key: np.ndarray, kk: int) -> np.ndarray:
    """The ``kk`` columns of highest key per row, ties at the boundary to the lowest columns
    (unordered)."""
    kth = -np.partition(-key, kk - 1, axis=1)[:, kk - 1]
    above = key > kth[:, None]
    tied = key == kth[:, None]
    need = kk - above.sum(axis=1)
    chosen = above | (tied & (np.cumsum(tied, axis=1) <= need[:, None]))
    return np.nonzero(chosen)[1].reshape(len(key), kk)  # exactly kk per row, rows in order


def top_k(key: np.ndarray, k: int) -> np.ndarray:
    """Per row, the ``k`` columns of highest key, by key then column; -1 for -inf keys."""
    n_rows, n_cols = key.shape
    out = np.full((n_rows, k), -1, dtype=np.int64)
    kk = min(k, n_cols)
    if kk == 0 or n_rows == 0:
        return out
    # the kk largest, arbitrary among ties at the boundary: rows where that matters are redone
    part = np.argpartition(key, n_cols - kk, axis=1)[:, n_cols - kk :]
    values = np.take_along_axis(key, part, axis=1)
    kth = values.min(axis=1)
    redo = np.flatnonzero((key == kth[:, None]).sum(axis=1) > (values == kth[:, None]).sum(axis=1))
    if redo.size:
        part[redo] = _exact_top(key[redo], kk)
        values[redo] = np.take_along_axis(key[redo], part[redo], axis=1)
    order = np.lexsort((part, -values))  # per row: key descending, then column
    part = np.take_along_axis(part, order, axis=1)
    values = np.take_along_axis(values, order, axis=1)
    out[:, :kk] = np.where(np.isneginf(values), -1, part)
    return out


def _pairs(pattern: sparse.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of a CSR pattern's entries, row-major."""
    rows = np.repeat(np.arange(pattern.shape[0]), np.diff(pattern.indptr))
    return rows, np.asarray(pattern.indices, dtype=np.int64)


def _at_least(
    scores: np.ndarray, pr: np.ndarray, s: np.ndarray, pattern: sparse.csr_matrix
) -> np.ndarray:
    """Per pair (row ``pr``, score ``s``): how many columns of its row in ``pattern`` score at
    least ``s``."""
    lengths = np.diff(pattern.indptr)[pr]
    if lengths.sum() == 0:
        return np.zeros(len(pr), dtype=np.int64)
    pair = np.repeat(np.arange(len(pr)), lengths)
    offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    cols = pattern.indices[np.repeat(pattern.indptr[pr], lengths) + offsets]
    hits = scores[pr[pair], cols] >= s[pair]
    return np.bincount(pair, weights=hits, minlength=len(pr)).astype(np.int64)


def _dense_at_least(
    scores: np.ndarray, pr: np.ndarray, s: np.ndarray, chunk_elements: int
) -> np.ndarray:
    """Per pair: how many columns of its row score at least ``s``."""
    if len(pr) and np.all(np.diff(pr) > 0):  # one pair per row at most: no copy of the rows
        threshold = np.zeros(len(scores), dtype=scores.dtype)
        threshold[pr] = s
        return np.asarray((scores >= threshold[:, None]).sum(axis=1)[pr], dtype=np.int64)
    out = np.empty(len(pr), dtype=np.int64)
    block = max(1, chunk_elements // max(scores.shape[1], 1))
    for b in range(0, len(pr), block):
        part = slice(b, b + block)
        out[part] = (scores[pr[part]] >= s[part, None]).sum(axis=1)
    return out


def rank(
    model: Scorer,
    task: Task,
    *,
    k: int = 10,
    cold: np.ndarray | None = None,
    chunk_elements: int = CHUNK_ELEMENTS,
) -> Ranking:
    """Rank every test user's relevant items under the task, scoring users in chunks.

    ``cold``: a boolean mask of item columns scored -inf (items a model fitted without side
    information cannot know). Unknown users (row -1) are misses: no ranks, no top-k list.
    """
    n_users, n_items = len(task.users), task.n_items
    width = max(1, int(task.n_truth.max(initial=0)))
    ranks = np.full((n_users, width), np.inf)
    top = np.full((n_users, k), -1, dtype=np.int64)
    # unknown users keep their nominal candidates: a miss is a miss for AUC too
    n_candidates = (
        np.full(n_users, n_items, dtype=np.float64)
        if task.negatives is None
        else (task.n_truth + task.n_negatives).astype(np.float64)
    )
    cold_columns = np.flatnonzero(cold) if cold is not None else np.empty(0, dtype=np.int64)
    known = np.flatnonzero(task.rows >= 0)
    per_chunk = max(1, min(1024, chunk_elements // max(n_items, 1)))
    for start in range(0, len(known), per_chunk):
        idx = known[start : start + per_chunk]
        raw = np.asarray(model.score_users(task.rows[idx]))
        if raw.shape != (len(idx), n_items):
            raise AisleError(
                f"score_users returned shape {raw.shape}, expected {(len(idx), n_items)}"
            )
        dtype = raw.dtype if raw.dtype in (np.float32, np.float64) else np.float64
        scores = np.array(raw, dtype=dtype)  # a copy: the model's own arrays stay untouched
        missing = np.isnan(scores)
        if missing.any():
            scores[missing] = -np.inf
        scores[:, cold_columns] = -np.inf
        truth, excluded = task.truth[idx], task.exclude[idx]
        pr, pi = _pairs(truth)
        s = scores[pr, pi]
        # position among the row's relevant items, by score (descending) then column
        order = np.lexsort((pi, -s, pr))
        position = np.empty(len(pr), dtype=np.int64)
        position[order] = np.arange(len(pr)) - np.searchsorted(pr, pr, side="left")
        if task.negatives is None:
            # every column, less the excluded and the relevant ones
            blocked = (excluded + truth).tocsr()
            blocked.data[:] = 1
            ahead = _dense_at_least(scores, pr, s, chunk_elements) - _at_least(
                scores, pr, s, blocked
            )
            n_candidates[idx] = n_items - (np.diff(blocked.indptr) - np.diff(truth.indptr))
        else:
            negatives = task.negatives[idx]
            ahead = _at_least(scores, pr, s, negatives)
            n_candidates[idx] = np.diff(truth.indptr) + np.diff(negatives.indptr)
        n_candidates[idx] += task.n_truth[idx] - np.diff(truth.indptr)  # relevant, no column
        ranks[idx[pr], position] = 1 + ahead + position
        # top-k lists: what would be shown, every full candidate; a candidate scored -inf
        # still comes before an excluded item
        np.maximum(scores, np.finfo(scores.dtype).min, out=scores)
        er, ec = _pairs(excluded)
        scores[er, ec] = -np.inf
        top[idx] = top_k(scores, k)
    return Ranking(ranks, task.n_truth.copy(), n_candidates, top)
