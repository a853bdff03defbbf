"""The ranker: LightGBM lambdarank over candidates pooled from other models.

Fitting holds out each customer's latest basket (or a random item) as labels, fits the
candidate models on the rest, pools each model's top ``per_model`` new items per customer
with the customer's own items (repeat purchases matter in retail),
and learns to order them from features (item facts as known before the labels): every
model's score and rank, the item's popularity, recency and price, and the customer's affinity
to the item's category and brand. The candidate models are then refitted on everything, so
serving sees all behaviour. Items outside the pool score below every candidate (finite,
in the first candidate model's order).
"""

from __future__ import annotations

from typing import Any, ClassVar

import lightgbm as lgb
import numpy as np
import polars as pl

from aisle.features.interactions import Interactions, restrict
from aisle.models import model_class
from aisle.models.base import BaseRecommender, Explanation, SideInfo

FEATURES_PER_MODEL = ("score", "rank")
#: Customers scored at once while pooling candidates.
CHUNK = 256
ITEM_FEATURES = ("popularity", "days_since_seen", "log_price")
USER_FEATURES = ("history", "category_affinity", "brand_affinity", "bought_before")
#: A customer's own items that join the pool, at most (the heaviest).
OWN_ITEMS = 100
History = tuple[np.ndarray, np.ndarray]  # a customer's items and their weights


class Ranker(BaseRecommender):
    """Learning to rank over pooled candidates (see the module's notes)."""

    name: ClassVar[str] = "ranker"
    defaults: ClassVar[dict[str, Any]] = {
        "candidates": ["itemknn", "als", "popularity"],
        "model_params": {},
        "per_model": 50,
        "max_users": 5000,
        "trees": 200,
        "learning_rate": 0.05,
        "leaves": 31,
        "seed": 0,
        "holdout": "last",  # labels: each customer's latest basket, or one random item
        "min_users": 200,  # with fewer labelled customers the first model's order stands
    }

    # -- fitting --------------------------------------------------------------------------
    def _fit(self, data: Interactions, side: SideInfo | None) -> None:
        rng = np.random.default_rng(self.params["seed"])
        if self.params["holdout"] == "random":
            pick = pl.Series(rng.random(data.log.height))
            chosen = pl.col("_pick") == pl.col("_pick").max().over("user")
            frame = data.log.with_columns(pick.alias("_pick"))
        else:  # the latest basket: everything at the customer's latest moment
            chosen = pl.col("timestamp") == pl.col("timestamp").max().over("user")
            frame = data.log
        several = pl.col("timestamp").n_unique().over("user") > 1
        held = frame.select((chosen & several).alias("held"))["held"]
        inner = restrict(data, ~held)
        self._item_facts(inner, side)  # what was known before the labels: no leak
        labels = data.log.filter(held).select("user", "item").unique()
        users = labels["user"].unique().sort().to_numpy()
        if len(users) > self.params["max_users"]:
            users = np.sort(rng.choice(users, self.params["max_users"], replace=False))
        self.models = self._fit_models(inner, side)
        inner_seen = [_history(inner.matrix, int(u)) for u in users]
        features, pairs = self._candidates(users, inner_seen, self.models)
        positive = pairs.join(labels.with_columns(pl.lit(1).alias("label")),
                              on=["user", "item"], how="left")["label"].fill_null(0)  # fmt: skip
        useful = (
            pairs.with_columns(positive.alias("label"))
            .with_row_index("row")
            .filter(pl.col("label").max().over("user") > 0)
        )
        rows = useful["row"].to_numpy()
        groups = useful.group_by("user", maintain_order=True).len()["len"].to_numpy()
        self.booster: lgb.Booster | None = None
        if len(groups) >= self.params["min_users"]:
            # a higher score (lower rank) from a candidate model never pushes an item down
            monotone = [1, -1] * len(self.models)
            monotone += [0] * (len(ITEM_FEATURES) + len(USER_FEATURES))
            self.booster = (
                lgb.LGBMRanker(
                    objective="lambdarank",
                    n_estimators=self.params["trees"],
                    learning_rate=self.params["learning_rate"],
                    num_leaves=self.params["leaves"],
                    random_state=self.params["seed"],
                    monotone_constraints=monotone,
                    n_jobs=1,
                    verbose=-1,
                )
                .fit(features[rows], useful["label"].to_numpy(), group=groups)
                .booster_
            )
        recall = float(positive.sum() / max(len(labels), 1))
        self.report.extra = {"training_users": int(useful["user"].n_unique()),
                             "candidate_recall": recall}  # fmt: skip
        self.models = self._fit_models(data, side)
        self._item_facts(data, side)

    def _fit_models(self, data: Interactions, side: SideInfo | None) -> list[BaseRecommender]:
        settings = self.params["model_params"]
        return [
            model_class(name)(**settings.get(name, {})).fit(data, side)
            for name in self.params["candidates"]
        ]

    def _item_facts(self, data: Interactions, side: SideInfo | None) -> None:
        """Per item: popularity, days since last seen, log price, category and brand codes."""
        log = data.log
        counts = log.group_by("item").agg(
            pl.col("user").n_unique().alias("n"), pl.col("timestamp").max().alias("last")
        )
        newest = log["timestamp"].max() if log.height else None
        self.popularity = np.zeros(data.n_items, dtype=np.float32)
        self.popularity[counts["item"].to_numpy()] = np.log1p(counts["n"].to_numpy())
        self.days_since = np.full(data.n_items, 3650.0, dtype=np.float32)
        if newest is not None:
            age = pl.lit(newest) - pl.col("last")
            days = counts.select(age.dt.total_seconds() / 86_400).to_series().to_numpy()
            self.days_since[counts["item"].to_numpy()] = days
        self.log_price = np.zeros(data.n_items, dtype=np.float32)
        self.category = np.full(data.n_items, -1, dtype=np.int32)
        self.brand = np.full(data.n_items, -1, dtype=np.int32)
        meta = side.item_meta if side is not None else None
        if meta is not None and meta.height:
            aligned = pl.DataFrame({"item_id": data.items}).join(meta, on="item_id", how="left")
            self.log_price = np.log1p(aligned["price"].fill_null(0).clip(0).to_numpy()).astype(
                np.float32
            )
            for name in ("category", "brand"):
                codes = aligned[name].cast(pl.Categorical).to_physical().fill_null(-1)
                setattr(self, name, codes.to_numpy().astype(np.int32))

    # -- scoring --------------------------------------------------------------------------
    def _candidates(
        self, users: np.ndarray, seen: list[History], models: list[BaseRecommender]
    ) -> tuple[np.ndarray, pl.DataFrame]:
        """Feature rows and (user, item) pairs for the pooled candidates of these users, in
        chunks so that score matrices stay small."""
        blocks, pairs = [], []
        for start in range(0, len(users), CHUNK):
            chunk = users[start : start + CHUNK]
            scores = [m.score_users(chunk) for m in models]
            features, found = self._features(chunk, seen[start : start + CHUNK], scores)
            blocks.append(features)
            pairs.append(found)
        return np.vstack(blocks), pl.concat(pairs)

    def _features(
        self, users: np.ndarray, seen: list[History], scores: list[np.ndarray]
    ) -> tuple[np.ndarray, pl.DataFrame]:
        k = self.params["per_model"]
        per_user: list[np.ndarray] = []
        ranks = []
        for matrix in scores:
            masked = matrix.astype(np.float64, copy=True)
            for i, (items, _) in enumerate(seen):
                masked[i, items] = -np.inf
            order = np.argsort(-masked, axis=1, kind="stable")
            rank = np.empty_like(order)
            np.put_along_axis(rank, order, np.arange(order.shape[1])[None, :], axis=1)
            ranks.append(rank)
            per_user.append(order[:, :k])
        blocks, pairs = [], []
        for i, user in enumerate(users):
            history, weights = seen[i]
            own = history[np.argsort(-weights, kind="stable")[:OWN_ITEMS]]
            pool = np.unique(np.concatenate([own, *(top[i] for top in per_user)]))
            if not len(pool):
                continue
            before = np.zeros(len(pool), dtype=np.float32)
            mine = np.searchsorted(pool, history)
            inside = (mine < len(pool)) & (pool[np.minimum(mine, len(pool) - 1)] == history)
            before[mine[inside]] = np.log1p(weights[inside])
            columns = []
            for matrix, rank in zip(scores, ranks, strict=True):
                columns += [matrix[i, pool], np.minimum(rank[i, pool], 10 * k)]
            columns += [self.popularity[pool], self.days_since[pool], self.log_price[pool]]
            columns += [np.full(len(pool), len(history)),
                        _affinity(self.category, history, pool),
                        _affinity(self.brand, history, pool), before]  # fmt: skip
            blocks.append(np.column_stack(columns).astype(np.float32))
            pairs.append(pl.DataFrame({"user": np.full(len(pool), user, dtype=np.int32),
                                       "item": pool.astype(np.int32)}))  # fmt: skip
        width = 2 * len(scores) + len(ITEM_FEATURES) + len(USER_FEATURES)
        if not blocks:
            empty = pl.DataFrame(schema={"user": pl.Int32, "item": pl.Int32})
            return np.empty((0, width), dtype=np.float32), empty
        return np.vstack(blocks), pl.concat(pairs)

    def _scores_from(
        self, users: np.ndarray, seen: list[History], scores: list[np.ndarray]
    ) -> np.ndarray:
        first = np.asarray(scores[0], dtype=np.float64)
        if self.booster is None:  # too little to learn from: the first model decides
            return first
        features, pairs = self._features(users, seen, scores)
        # outside the pool, the first model's order, squeezed into [-1, 0)
        order = np.argsort(-first, axis=1, kind="stable")
        out = np.empty_like(first)
        np.put_along_axis(out, order, -(np.arange(1, first.shape[1] + 1) / first.shape[1]), 1)
        if pairs.height:
            predicted = np.asarray(self.booster.predict(features), dtype=np.float64)
            floor = float(predicted.min()) - 1.0
            out += floor
            position = {int(u): i for i, u in enumerate(users)}
            rows = np.asarray([position[int(u)] for u in pairs["user"].to_numpy()])
            out[rows, pairs["item"].to_numpy()] = predicted
        return out

    def score_users(self, users: np.ndarray) -> np.ndarray:
        """Ranker scores for every item: candidates by the booster, the rest below them."""
        users = np.asarray(users, dtype=np.int64)
        seen = [_history(self.seen_matrix, int(u)) for u in users]
        return self._scores_from(users, seen, [m.score_users(users) for m in self.models])

    def score_history(self, items: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        """The same from a history, each candidate model folding it in."""
        scores = [m.score_history(items, weights)[None, :] for m in self.models]
        items = np.asarray(items, dtype=np.int64)
        given = np.ones(len(items)) if weights is None else np.asarray(weights, dtype=np.float64)
        out: np.ndarray = self._scores_from(np.asarray([-1]), [(items, given)], scores)[0]
        return out

    def _item_similarities(self, item: int) -> np.ndarray:
        personal = [m for m in self.models if m.name != "popularity"] or self.models
        return personal[0]._item_similarities(item)

    def explain(self, user_id: str, item_id: str, n: int = 3) -> Explanation:
        """The features that pushed this item up most (LightGBM's SHAP contributions)."""
        row, column = self.user_row(user_id), self.item_column(item_id)
        users = np.asarray([row])
        features, pairs = self._features(
            users, [_history(self.seen_matrix, row)], [m.score_users(users) for m in self.models]
        )
        match = np.flatnonzero(pairs["item"].to_numpy() == column)
        if self.booster is None:
            return self.models[0].explain(user_id, item_id, n)
        if not len(match):
            return Explanation(item_id, "features", [("outside the candidate pool", 0.0)])
        contributions = self.booster.predict(features[match], pred_contrib=True)[0][:-1]
        names = [f"{m.name} {f}" for m in self.models for f in FEATURES_PER_MODEL]
        names += [*ITEM_FEATURES, *USER_FEATURES]
        order = np.argsort(-contributions)[:n]
        return Explanation(
            item_id, "features", [(names[i], float(contributions[i])) for i in order]
        )

    # -- artifacts and erasure --------------------------------------------------------------
    def _arrays(self) -> dict[str, np.ndarray]:
        text = self.booster.model_to_string().encode() if self.booster is not None else b""
        arrays: dict[str, np.ndarray] = {
            "booster": np.frombuffer(text, dtype=np.uint8), "popularity": self.popularity,
                  "days_since": self.days_since, "log_price": self.log_price,
            "category": self.category, "brand": self.brand,
        }  # fmt: skip
        for i, model in enumerate(self.models):
            arrays |= {f"m{i}__{key}": value for key, value in model._arrays().items()}
        return arrays

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        text = arrays["booster"].tobytes().decode()
        self.booster = lgb.Booster(model_str=text) if text else None
        for name in ("popularity", "days_since", "log_price", "category", "brand"):
            setattr(self, name, arrays[name])
        settings = self.params["model_params"]
        self.models = []
        for i, name in enumerate(self.params["candidates"]):
            model = model_class(name)(**settings.get(name, {}))
            self._share(model)
            prefix = f"m{i}__"
            model._restore({k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)})
            self.models.append(model)

    def _share(self, model: BaseRecommender) -> None:
        model.users, model.items, model.seen_matrix = self.users, self.items, self.seen_matrix
        model._user_index, model._item_index = self._user_index, self._item_index

    def _forget(self, row: int) -> None:
        for model in self.models:
            self._share(model)
            model._forget(row)


def _history(matrix: Any, row: int) -> History:
    """A customer's items and weights from a users x items matrix."""
    start, end = matrix.indptr[row], matrix.indptr[row + 1]
    return np.asarray(matrix.indices[start:end]), np.asarray(matrix.data[start:end], dtype=float)


def _affinity(codes: np.ndarray, history: np.ndarray, pool: np.ndarray) -> np.ndarray:
    """Share of the history in each candidate's category (or brand); 0 when unknown."""
    if not len(history):
        return np.zeros(len(pool), dtype=np.float32)
    mine = codes[history]
    mine = mine[mine >= 0]
    if not len(mine):
        return np.zeros(len(pool), dtype=np.float32)
    counts = np.bincount(mine, minlength=int(codes.max()) + 1) / len(history)
    theirs = codes[pool]
    return np.where(theirs >= 0, counts[np.maximum(theirs, 0)], 0.0).astype(np.float32)
