"""Two-tower: a neural retrieval model with an item tower and a user tower, in torch.

* **Item tower.** An item's id embedding plus an MLP projection of its text embedding
  (``SideInfo.item_vectors``), through a nonlinearity and a linear layer to ``dimensions``,
  L2-normalised. Items without interactions in training get no id embedding (it is masked to
  zero, and ``id_dropout`` drops it during training so the text path learns to stand alone):
  a new product is placed by its text alone and can be recommended straight away (cold start).
  Without text the tower is id-only and such items score what the tower makes of a zero id.
* **User tower.** The weighted mean (by interaction weight) of the item-tower vectors of the
  user's items, through a residual MLP, L2-normalised; optionally plus a user id embedding
  (``user_embeddings``, off by default so that a known user and the same history folded in
  score alike). ``score_history`` runs the same tower over any list of items: fold-in of a new
  customer needs no retraining. In training a user's history leaves out the item being
  predicted, so an empty history is possible (most customers of a click log have one item):
  the tower then learns a popularity-like prior from its bias alone.
* **Training.** ``loss="softmax"``: in-batch sampled softmax over (user, item) pairs (the
  distinct pairs of the interaction matrix), the other positives of the batch as negatives,
  with the logQ correction for their popularity (without it, in-batch negatives bury popular
  items) and the same item or the same user's other items masked; ``loss="bpr"``: BPR against
  ``negatives`` uniformly sampled items. Adam; ``epochs``, ``batch_size``, ``learning_rate``,
  ``weight_decay``, ``temperature``; mean loss per epoch in ``report.losses``. Deterministic
  for a ``seed`` at a given ``threads`` (torch threads while fitting, 1 by default: these
  layers are small, and more threads only contend on a busy machine; None leaves torch's).
* **DP-SGD** (``dp_epsilon`` set): opacus ``make_private_with_epsilon`` (accountant
  ``dp_accountant``, PRV by default) with Poisson sampling over *users*. One training example
  is one user's whole contribution: their items (the heaviest ``max_history``; the rest are
  not used at all) each predicted from the others against ``negatives`` items sampled
  uniformly (public randomness, never other users' data), so the clipped per-example gradient
  (``max_grad_norm``) bounds all a user changes. The privacy unit is therefore the **user**:
  ``(epsilon, dp_delta)``-DP for the learnt weights against adding or removing one customer
  with all their events (an event-level guarantee follows). The epsilon spent is in
  ``report.extra["dp_epsilon"]``. Not covered: what the artifact holds beyond the weights (the
  item list, and the base class's matrix of what each user saw). Under DP every item keeps its
  id embedding (whether an item had interactions is itself data) and user id embeddings are
  refused. ``dp_clipping="hooks"`` materialises per-user gradients (the id embedding's are
  batch x items x hidden: fine for thousands of items); ``"ghost"`` (ghost clipping, two
  backward passes) only their norms, for large catalogs.

Artifacts are float32 arrays: every weight under ``net.<name>``, and the item text vectors
under ``text`` so that a loaded model still scores items nobody interacted with.
"""

from __future__ import annotations

import warnings
from typing import Any, ClassVar

import numpy as np
import torch
from scipy import sparse
from torch import nn
from torch.nn import functional

from aisle.errors import AisleError
from aisle.features.interactions import Interactions
from aisle.models.base import BaseRecommender, SideInfo
from aisle.threads import torch_threads

_LOSSES = ("softmax", "bpr")
_CLIPPINGS = ("hooks", "ghost")
#: Per-sample gradients of an id embedding are dense; refuse DP runs that would need more.
_DP_MEMORY_LIMIT = 4 * 1024**3
_CHUNK = 1024
#: Opacus warnings that say nothing to aisle's users (the noise generator is seeded on purpose,
#: for reproducible runs; no input of the towers needs a gradient).
_OPACUS_NOISE = ("Secure RNG turned off", "Full backward hook is firing", "Optimal order is")


class _Towers(nn.Module):
    """The item and user towers; ``forward`` is the per-user loss DP-SGD trains on."""

    text: torch.Tensor  # (n_items, d) item text vectors; d = 0 without text
    id_mask: torch.Tensor  # (n_items,) 1 where the id embedding counts

    def __init__(
        self,
        n_items: int,
        n_users: int,
        text: torch.Tensor | None,
        *,
        dimensions: int,
        hidden: int,
        id_embeddings: bool,
        user_embeddings: bool,
        temperature: float,
    ) -> None:
        super().__init__()
        if text is None and not id_embeddings:
            raise AisleError("two-tower: without item text vectors the id embeddings are needed")
        self.temperature = temperature
        self.register_buffer("text", text if text is not None else torch.zeros(n_items, 0))
        self.register_buffer("id_mask", torch.ones(n_items))
        self.item_ids = nn.Embedding(n_items, hidden) if id_embeddings else None
        if self.item_ids is not None:
            nn.init.normal_(self.item_ids.weight, std=0.1)
        self.item_text = (
            nn.Sequential(nn.Linear(text.shape[1], hidden), nn.GELU(), nn.Linear(hidden, hidden))
            if text is not None
            else None
        )
        self.item_out = nn.Linear(hidden, dimensions)
        self.user_mlp = nn.Sequential(
            nn.Linear(dimensions, hidden), nn.GELU(), nn.Linear(hidden, dimensions)
        )
        self.user_ids = nn.Embedding(n_users, dimensions) if user_embeddings else None
        if self.user_ids is not None:
            nn.init.zeros_(self.user_ids.weight)

    @property
    def has_text(self) -> bool:
        return self.item_text is not None

    def items(self, index: torch.Tensor, keep_id: torch.Tensor | None = None) -> torch.Tensor:
        """Unit item vectors of these items (any shape of indexes); ``keep_id`` (same shape,
        0/1) drops id embeddings on top of the mask of items without interactions."""
        hidden: torch.Tensor | int = 0
        if self.item_ids is not None:
            mask = self.id_mask[index]
            if keep_id is not None:
                mask = mask * keep_id
            hidden = self.item_ids(index) * mask.unsqueeze(-1)
        if self.item_text is not None:
            hidden = hidden + self.item_text(self.text[index])
        assert isinstance(hidden, torch.Tensor)
        return functional.normalize(self.item_out(functional.gelu(hidden)), dim=-1)

    def users(self, pooled: torch.Tensor, users: torch.Tensor | None = None) -> torch.Tensor:
        """Unit user vectors from pooled item vectors (and user ids where embedded)."""
        vector = pooled + self.user_mlp(pooled)
        if self.user_ids is not None and users is not None:
            vector = vector + self.user_ids(users)
        return functional.normalize(vector, dim=-1)

    def forward(
        self, items: torch.Tensor, weights: torch.Tensor, negatives: torch.Tensor,
        keep_id: torch.Tensor,
    ) -> torch.Tensor:  # fmt: skip
        """Per-user loss (shape (B,)): each of the user's items (B, L; weight 0 = padding)
        predicted from the rest of them against the user's own sampled negatives (B, N)."""
        length = items.shape[1]
        vectors = self.items(torch.cat([items, negatives], dim=1), keep_id)
        history, negative = vectors[:, :length], vectors[:, length:]
        weighted = history * weights.unsqueeze(-1)
        rest = weights.sum(1, keepdim=True) - weights  # (B, L): weight of the others
        pooled = (weighted.sum(1, keepdim=True) - weighted) / rest.clamp_min(1e-6).unsqueeze(-1)
        pooled = pooled * (rest > 1e-6).unsqueeze(-1)
        user = self.users(pooled)  # (B, L, d)
        positive = (user * history).sum(-1, keepdim=True)
        against = torch.einsum("bld,bnd->bln", user, negative)
        had = (negatives.unsqueeze(2) == items.unsqueeze(1)) & (weights > 0).unsqueeze(1)
        against = against.masked_fill(had.any(2).unsqueeze(1), -1e4 * self.temperature)
        logits = torch.cat([positive, against], dim=-1) / self.temperature
        loss = -functional.log_softmax(logits, dim=-1)[..., 0]
        present = (weights > 0).float()
        return (loss * present).sum(1) / present.sum(1).clamp_min(1.0)


class _PerUser(nn.Module):
    """The criterion opacus wraps: per-user losses in, their mean (or, as asked, them) out."""

    reduction = "mean"

    def forward(self, losses: torch.Tensor) -> torch.Tensor:
        return losses if self.reduction == "none" else losses.mean()


class TwoTower(BaseRecommender):
    """A two-tower neural recommender: item tower over ids and text, user tower over the
    user's items; in-batch softmax (or BPR) training, optionally DP-SGD at user level."""

    name: ClassVar[str] = "two-tower"
    #: Unit item-tower vectors of every item, (n_items, dimensions), refreshed after fitting.
    item_vectors: np.ndarray
    defaults: ClassVar[dict[str, Any]] = {
        "dimensions": 64,
        "hidden": 128,
        "epochs": 20,
        "batch_size": 256,
        "learning_rate": 3e-3,
        "weight_decay": 0.0,
        "temperature": 0.1,
        "loss": "softmax",
        "negatives": 64,
        "logq": True,
        "max_history": 50,
        "id_embeddings": True,
        "id_dropout": 0.25,
        "user_embeddings": False,
        "seed": 0,
        "threads": 1,
        "dp_epsilon": None,
        "dp_delta": 1e-5,
        "max_grad_norm": 1.0,
        "dp_accountant": "prv",
        "dp_clipping": "hooks",
    }

    # -- training ---------------------------------------------------------------------------
    def _fit(self, data: Interactions, side: SideInfo | None) -> None:
        p = self.params
        if p["loss"] not in _LOSSES:
            raise AisleError(f"two-tower: loss must be one of {', '.join(_LOSSES)}")
        if p["dp_clipping"] not in _CLIPPINGS:
            raise AisleError(f"two-tower: dp_clipping must be one of {', '.join(_CLIPPINGS)}")
        private = p["dp_epsilon"] is not None
        if private and p["user_embeddings"]:
            raise AisleError("two-tower: user embeddings cannot be trained under DP-SGD")
        text = None
        if side is not None and side.item_vectors is not None:
            vectors = np.asarray(side.item_vectors, dtype=np.float32)
            if vectors.ndim != 2 or vectors.shape[0] != data.n_items:
                raise AisleError(
                    f"two-tower: item vectors have shape {vectors.shape}, "
                    f"expected ({data.n_items}, d)"
                )
            text = torch.from_numpy(np.nan_to_num(vectors).copy())
        with torch_threads(p["threads"]):
            with torch.random.fork_rng():
                torch.manual_seed(p["seed"])
                self._net = self._build(data.n_items, data.n_users, text)
            matrix = data.matrix.tocsr()
            if not private:  # whether an item had interactions is data: DP keeps every id
                self._net.id_mask.copy_(torch.from_numpy((matrix.getnnz(axis=0) > 0)
                                                         .astype(np.float32)))  # fmt: skip
            if matrix.nnz:
                (self._train_private if private else self._train)(matrix)
            self._net.eval()
        self._refresh()

    def _build(self, n_items: int, n_users: int, text: torch.Tensor | None) -> _Towers:
        p = self.params
        return _Towers(
            n_items, n_users, text,
            dimensions=int(p["dimensions"]), hidden=int(p["hidden"]),
            id_embeddings=bool(p["id_embeddings"]), user_embeddings=bool(p["user_embeddings"]),
            temperature=float(p["temperature"]),
        )  # fmt: skip

    def _histories(self, matrix: sparse.csr_matrix) -> tuple[torch.Tensor, torch.Tensor]:
        """Per user, up to ``max_history`` items (heaviest first) and their weights, padded
        with weight 0: shapes (n_users, L)."""
        counts = np.diff(matrix.indptr)
        length = max(1, min(int(self.params["max_history"]), int(counts.max(initial=1))))
        items = np.zeros((matrix.shape[0], length), dtype=np.int64)
        weights = np.zeros((matrix.shape[0], length), dtype=np.float32)
        rows = np.repeat(np.arange(matrix.shape[0]), counts)
        position = np.arange(matrix.nnz) - matrix.indptr[rows]
        short = (counts <= length)[rows]
        items[rows[short], position[short]] = matrix.indices[short]
        weights[rows[short], position[short]] = matrix.data[short]
        for user in np.flatnonzero(counts > length):  # the heaviest ``length`` of the rest
            start, end = matrix.indptr[user], matrix.indptr[user + 1]
            columns, values = matrix.indices[start:end], matrix.data[start:end]
            keep = np.lexsort((columns, -values))[:length]
            items[user], weights[user] = columns[keep], values[keep]
        return torch.from_numpy(items), torch.from_numpy(weights)

    def _keep_id(self, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
        """Id-dropout mask (1 = keep): only with text, which must then stand alone."""
        rate = float(self.params["id_dropout"])
        if not self._net.has_text or rate <= 0:
            return torch.ones(shape)
        return torch.bernoulli(torch.full(shape, 1.0 - rate), generator=generator)

    def _optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(
            self._net.parameters(),
            lr=float(self.params["learning_rate"]),
            weight_decay=float(self.params["weight_decay"]),
        )

    def _train(self, matrix: sparse.csr_matrix) -> None:
        """Over the distinct (user, item) pairs: in-batch softmax with logQ, or BPR."""
        p = self.params
        generator = torch.Generator().manual_seed(int(p["seed"]))
        history = self._histories(matrix)
        coo = matrix.tocoo()
        pair_users = torch.from_numpy(coo.row.astype(np.int64))
        pair_items = torch.from_numpy(coo.col.astype(np.int64))
        frequency = np.bincount(coo.col, minlength=matrix.shape[1]) / coo.nnz
        log_q = torch.from_numpy(np.log(np.maximum(frequency, 1e-12)).astype(np.float32))
        optimizer = self._optimizer()
        batch = int(p["batch_size"])
        self._net.train()
        for _ in range(int(p["epochs"])):
            order = torch.randperm(len(pair_users), generator=generator)
            total = 0.0
            for start in range(0, len(order), batch):
                chosen = order[start : start + batch]
                loss = self._pair_loss(
                    pair_users[chosen], pair_items[chosen], history, log_q, generator
                )
                optimizer.zero_grad()
                loss.backward()  # type: ignore[no-untyped-call]
                optimizer.step()
                total += float(loss.detach()) * len(chosen)
            self.report.losses.append(total / len(order))

    def _pair_loss(
        self,
        users: torch.Tensor,
        positives: torch.Tensor,
        history: tuple[torch.Tensor, torch.Tensor],
        log_q: torch.Tensor,
        generator: torch.Generator,
    ) -> torch.Tensor:
        """Mean loss of a batch of (user, item) pairs, each user's history without the item."""
        p, net = self.params, self._net
        temperature, size = float(p["temperature"]), len(users)
        items = history[0][users]
        weights = history[1][users] * (items != positives.unsqueeze(1))
        negatives = (
            torch.randint(len(log_q), (size, int(p["negatives"])), generator=generator)
            if p["loss"] == "bpr"
            else torch.empty(size, 0, dtype=torch.int64)
        )
        # One pass of the item tower over the distinct items of the batch.
        every = torch.cat([items.flatten(), positives, negatives.flatten()])
        unique, inverse = torch.unique(every, return_inverse=True)
        vectors = net.items(unique, self._keep_id(unique.shape, generator))[inverse]
        n_history = items.numel()
        hist = vectors[:n_history].view(*items.shape, -1)
        positive = vectors[n_history : n_history + size]
        pooled = (hist * weights.unsqueeze(-1)).sum(1)
        user = net.users(pooled / weights.sum(1, keepdim=True).clamp_min(1e-6), users)
        if p["loss"] == "bpr":
            negative = vectors[n_history + size :].view(*negatives.shape, -1)
            gap = (user * positive).sum(-1, keepdim=True) - torch.einsum(
                "bd,bnd->bn", user, negative
            )
            return -functional.logsigmoid(gap / temperature).mean()
        logits = user @ positive.T / temperature
        if p["logq"]:
            logits = logits - log_q[positives].unsqueeze(0)
        # Not a negative: the same item again, or another item of the same user.
        same = positives.unsqueeze(0) == positives.unsqueeze(1)
        same |= users.unsqueeze(0) == users.unsqueeze(1)
        same.fill_diagonal_(False)
        return functional.cross_entropy(logits.masked_fill(same, -1e9), torch.arange(size))

    def _train_private(self, matrix: sparse.csr_matrix) -> None:
        """DP-SGD with opacus: Poisson-sampled users, each one example (see module doc)."""
        from opacus import PrivacyEngine  # noqa: PLC0415 (lazy: only for DP-SGD)

        p, net = self.params, self._net
        n_users, n_items = matrix.shape
        batch = max(1, min(int(p["batch_size"]), n_users))
        ghost = p["dp_clipping"] == "ghost"
        if not ghost and net.item_ids is not None:
            need = 2 * batch * n_items * net.item_ids.embedding_dim * 4
            if need > _DP_MEMORY_LIMIT:
                raise AisleError(
                    f"two-tower: per-user gradients of the id embeddings need "
                    f"~{need / 1024**3:.1f} GiB: use dp_clipping='ghost' or lower batch_size"
                )
        seed = int(p["seed"])
        generator = torch.Generator().manual_seed(seed)
        dataset = torch.utils.data.TensorDataset(*self._histories(matrix))
        loader = torch.utils.data.DataLoader(
            dataset, batch_size=batch, shuffle=True,
            generator=torch.Generator().manual_seed(seed + 1),
        )  # fmt: skip
        delta = float(p["dp_delta"])
        with warnings.catch_warnings():
            for message in _OPACUS_NOISE:
                warnings.filterwarnings("ignore", message=message)
            engine = PrivacyEngine(accountant=str(p["dp_accountant"]))
            made = engine.make_private_with_epsilon(
                module=net,
                criterion=_PerUser(),
                grad_sample_mode="ghost" if ghost else "hooks",
                optimizer=self._optimizer(),
                data_loader=loader,
                target_epsilon=float(p["dp_epsilon"]),
                target_delta=delta,
                epochs=int(p["epochs"]),
                max_grad_norm=float(p["max_grad_norm"]),
                noise_generator=torch.Generator().manual_seed(seed + 2),
            )
            model, optimizer, loader = made[0], made[1], made[-1]
            criterion = made[2] if ghost else _PerUser()
            model.train()
            try:
                for _ in range(int(p["epochs"])):
                    total, count = 0.0, 0
                    for items, weights in loader:
                        negatives = torch.randint(
                            n_items, (len(items), int(p["negatives"])), generator=generator
                        )
                        keep = self._keep_id(
                            (len(items), items.shape[1] + negatives.shape[1]), generator
                        )
                        losses = model(items, weights, negatives, keep)
                        loss = criterion(losses) if len(items) else losses.sum()
                        optimizer.zero_grad()
                        loss.backward()
                        optimizer.step()
                        total, count = total + float(losses.detach().sum()), count + len(items)
                    self.report.losses.append(total / max(count, 1))
                spent = float(engine.get_epsilon(delta))
            finally:
                model.cleanup()  # hooks and per-sample attributes off: ``net`` is plain again
        self.report.extra |= {
            "dp_epsilon": spent,
            "dp_delta": delta,
            "dp_noise_multiplier": float(optimizer.noise_multiplier),
            "dp_sample_rate": 1 / len(loader),
            "dp_steps": len(loader) * int(p["epochs"]),
            "dp_unit": "user",
        }

    # -- scoring ----------------------------------------------------------------------------
    @torch.no_grad()
    def _refresh(self) -> None:
        """Item vectors of every item, from the towers in evaluation mode."""
        n = len(self.items)
        parts = [
            self._net.items(torch.arange(start, min(start + _CHUNK * 8, n)))
            for start in range(0, n, _CHUNK * 8)
        ]
        self.item_vectors = (
            torch.cat(parts).numpy() if parts
            else np.zeros((0, int(self.params["dimensions"])), dtype=np.float32)
        )  # fmt: skip

    @torch.no_grad()
    def _user_vectors(self, pooled: np.ndarray, users: np.ndarray | None) -> np.ndarray:
        index = None if users is None else torch.from_numpy(np.asarray(users, dtype=np.int64))
        return self._net.users(torch.from_numpy(pooled), index).numpy()

    def score_users(self, users: np.ndarray) -> np.ndarray:
        """Cosine of each user's vector (from their training items) with every item."""
        users = np.asarray(users, dtype=np.int64)
        out = np.empty((len(users), len(self.items)), dtype=np.float32)
        for start in range(0, len(users), _CHUNK):
            chunk = users[start : start + _CHUNK]
            rows = self.seen_matrix[chunk]
            total = np.asarray(rows.sum(axis=1), dtype=np.float32)
            pooled = np.asarray(rows @ self.item_vectors, dtype=np.float32)
            pooled /= np.where(total > 0, total, 1.0)
            vectors = self._user_vectors(pooled, chunk)
            out[start : start + len(chunk)] = vectors @ self.item_vectors.T
        return out

    def score_history(self, items: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        """The user tower over these items (weighted mean of their vectors): no retraining."""
        items = np.asarray(items, dtype=np.int64)
        w = np.ones(len(items), np.float32) if weights is None else np.asarray(weights, np.float32)
        pooled = np.zeros((1, self.item_vectors.shape[1]), dtype=np.float32)
        if len(items) and w.sum() > 0:
            pooled[0] = (self.item_vectors[items] * w[:, None]).sum(0) / w.sum()
        scores: np.ndarray = (self._user_vectors(pooled, None) @ self.item_vectors.T)[0]
        return scores

    def _item_similarities(self, item: int) -> np.ndarray:
        """Cosine of the item tower's (unit) vectors."""
        similarity: np.ndarray = self.item_vectors @ self.item_vectors[item]
        return similarity

    def _forget(self, row: int) -> None:
        """The user tower reads the (now empty) seen row; only a user id embedding, when on,
        holds a per-user row of its own."""
        if self._net.user_ids is not None:
            with torch.no_grad():
                self._net.user_ids.weight[row] = 0.0

    # -- artifacts --------------------------------------------------------------------------
    def _arrays(self) -> dict[str, np.ndarray]:
        arrays = {
            f"net.{name}": value.detach().numpy().astype(np.float32)
            for name, value in self._net.state_dict().items()
            if name != "text"
        }
        arrays["text"] = self._net.text.numpy().astype(np.float32)
        return arrays

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        text = torch.from_numpy(arrays["text"].copy()) if arrays["text"].shape[1] else None
        self._net = self._build(len(self.items), len(self.users), text)
        state = {k[4:]: torch.from_numpy(v.copy()) for k, v in arrays.items() if k[:4] == "net."}
        state["text"] = self._net.text
        self._net.load_state_dict(state)
        self._net.eval()
        self._refresh()

    @property
    def dp_epsilon_spent(self) -> float | None:
        """The epsilon DP-SGD spent (None when trained without it)."""
        spent = self.report.extra.get("dp_epsilon")
        return None if spent is None else float(spent)
