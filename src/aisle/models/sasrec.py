"""SASRec: self-attentive sequential recommendation (Kang & McAuley, ICDM 2018).

Each customer's items in time order go through causal self-attention blocks; the hidden state
at the last position, dotted with the (shared) item embeddings, scores every item as the next
one. Training follows the paper: at every position the next item is the positive, items the
customer never touched are sampled as negatives, and the loss is binary cross-entropy.

Item ``i`` is embedding row ``i + 1``; row 0 is padding. Sequences are left-padded, so the
latest item always sits at the last position, and padded positions are masked as keys, so a
short sequence scores the same whatever it is padded to. Items nobody interacted with are only
ever sampled as negatives: they score low, but finite.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from torch.nn import functional

from aisle.features.interactions import Interactions
from aisle.models.base import BaseRecommender, Explanation, SideInfo
from aisle.threads import torch_threads

#: Rows scored together by ``score_users``.
SCORE_BATCH = 512
#: Batches per epoch at least: on little data (fewer than ``batch_size`` x this sequences) an
#: epoch draws every sequence several times, so that a few epochs still train.
MIN_BATCHES = 32
#: Training sequences are sorted by length within runs of this many batches (less padding).
BUCKET = 64
#: Masked attention logits get this instead of -inf, so a row with nothing to attend to stays
#: finite (its output is zeroed by the padding mask anyway).
MASKED = -1e9


class _Block(nn.Module):
    """One SASRec block: layer-normed causal self-attention and a point-wise feed-forward
    network, each with a residual connection (as in the authors' implementation)."""

    def __init__(self, hidden: int, heads: int, dropout: float) -> None:
        super().__init__()
        if hidden % heads:
            raise ValueError(f"hidden ({hidden}) must be a multiple of heads ({heads})")
        self.heads = heads
        self.attention_norm = nn.LayerNorm(hidden, eps=1e-8)
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)
        self.output = nn.Linear(hidden, hidden)
        self.attention_dropout = nn.Dropout(dropout)
        self.forward_norm = nn.LayerNorm(hidden, eps=1e-8)
        self.inner = nn.Linear(hidden, hidden)
        self.outer = nn.Linear(hidden, hidden)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self, x: torch.Tensor, blocked: torch.Tensor, keep: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` (batch, length, hidden); ``blocked`` (batch, 1, length, length) True where a
        query may not look; ``keep`` (batch, length, 1) zero at padding. Returns the new states
        and the attention weights (batch, heads, length, length)."""
        batch, length, hidden = x.shape
        per_head = hidden // self.heads
        q = self.attention_norm(x)

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(batch, length, self.heads, per_head).transpose(1, 2)

        logits = split(self.query(q)) @ split(self.key(x)).transpose(-1, -2)
        logits = (logits / math.sqrt(per_head)).masked_fill(blocked, MASKED)
        weights = torch.softmax(logits, dim=-1)
        attended = self.attention_dropout(weights) @ split(self.value(x))
        attended = attended.transpose(1, 2).reshape(batch, length, hidden)
        x = self.forward_norm(q + self.output(attended))
        x = x + self.dropout(self.outer(self.dropout(functional.relu(self.inner(x)))))
        return x * keep, weights


class _Network(nn.Module):
    """Embeddings, the blocks and the final layer norm."""

    def __init__(
        self, n_items: int, *, hidden: int, blocks: int, heads: int, dropout: float, max_length: int
    ) -> None:
        super().__init__()
        self.hidden = hidden
        self.item_embedding = nn.Embedding(n_items + 1, hidden, padding_idx=0)
        self.position_embedding = nn.Embedding(max_length + 1, hidden, padding_idx=0)
        self.embedding_dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(_Block(hidden, heads, dropout) for _ in range(blocks))
        self.last_norm = nn.LayerNorm(hidden, eps=1e-8)

    def initialise(self, generator: torch.Generator) -> None:
        """Xavier-normal weights, zero biases, unit layer norms, a zero padding row."""
        for name, parameter in self.named_parameters():
            if parameter.ndim > 1:
                nn.init.xavier_normal_(parameter, generator=generator)
            elif "norm" in name and name.endswith("weight"):
                nn.init.ones_(parameter)
            else:
                nn.init.zeros_(parameter)
        with torch.no_grad():
            self.item_embedding.weight[0].zero_()
            self.position_embedding.weight[0].zero_()

    def forward(self, items: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``items`` (batch, length): left-padded embedding rows (0 = padding). Returns the
        states (batch, length, hidden) and each block's attention weights."""
        length = items.shape[1]
        present = items != 0
        # the latest item is always at position max_length, however long the padding
        last = self.position_embedding.num_embeddings - 1
        positions = torch.arange(last - length + 1, last + 1, device=items.device) * present
        x = self.item_embedding(items) * math.sqrt(self.hidden)
        x = self.embedding_dropout(x + self.position_embedding(positions))
        keep = present.unsqueeze(-1).to(x.dtype)
        x = x * keep
        causal = torch.ones(length, length, dtype=torch.bool, device=items.device).triu(1)
        blocked = (causal | ~present[:, None, :]).unsqueeze(1)
        attention = []
        for block in self.blocks:
            x, weights = block(x, blocked, keep)
            attention.append(weights)
        return self.last_norm(x), attention

    def last_state(self, items: torch.Tensor) -> torch.Tensor:
        """The state at the last position (the latest item): (batch, hidden)."""
        states: torch.Tensor = self(items)[0]
        return states[:, -1, :]

    def score_all(self, items: torch.Tensor) -> torch.Tensor:
        """Scores of every item (no padding column) as the next one: (batch, n_items)."""
        table: torch.Tensor = self.item_embedding.weight[1:]
        scores: torch.Tensor = self.last_state(items) @ table.T
        return scores


#: Called after every epoch with the model, the epoch (from 1) and its mean loss; returning
#: True stops training (used for time budgets and early stopping).
EpochCallback = Callable[["SASRec", int, float], bool]


class SASRec(BaseRecommender):
    """Self-attentive sequential recommendation: the next item from the order of the past.

    ``negatives`` items are sampled per position for the binary cross-entropy loss; ``l2`` is
    the L2 penalty on the item embeddings; ``threads`` is torch's thread count while fitting
    (1 by default; None leaves torch's). Set ``epoch_callback`` before ``fit`` to watch or
    stop training.
    """

    name: ClassVar[str] = "sasrec"
    defaults: ClassVar[dict[str, Any]] = {
        "hidden": 50,
        "blocks": 2,
        "heads": 1,
        "dropout": 0.2,
        "max_length": 50,
        "epochs": 200,
        "batch_size": 128,
        "learning_rate": 1e-3,
        "l2": 0.0,
        "negatives": 1,
        "seed": 0,
        "threads": 1,
    }

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.epoch_callback: EpochCallback | None = None
        self.sequence_items = np.zeros(0, dtype=np.int32)
        self.sequence_offsets = np.zeros(1, dtype=np.int64)
        self.network = self._network(0)

    # -- the network ----------------------------------------------------------------------
    def _network(self, n_items: int) -> _Network:
        p = self.params
        network = _Network(
            n_items, hidden=int(p["hidden"]), blocks=int(p["blocks"]), heads=int(p["heads"]),
            dropout=float(p["dropout"]), max_length=int(p["max_length"]),
        )  # fmt: skip
        network.eval()
        return network

    def _batch(self, sequences: Sequence[np.ndarray]) -> torch.Tensor:
        """Left-padded embedding rows of the last ``max_length`` items of each sequence, as
        long as the longest of them (at least 1)."""
        cut = [np.asarray(s[-int(self.params["max_length"]) :], dtype=np.int64) for s in sequences]
        length = max([1, *(len(s) for s in cut)])
        rows = np.zeros((len(cut), length), dtype=np.int64)
        for row, items in zip(rows, cut, strict=True):
            if len(items):
                row[-len(items) :] = items + 1
        return torch.from_numpy(rows)

    def score_sequences(self, sequences: Sequence[np.ndarray]) -> np.ndarray:
        """Scores of every item as the next one after each sequence (item columns in time
        order): shape (len(sequences), n_items), float32."""
        out = np.empty((len(sequences), len(self.items)), dtype=np.float32)
        self.network.eval()
        with torch.no_grad():
            for start in range(0, len(sequences), SCORE_BATCH):
                chunk = sequences[start : start + SCORE_BATCH]
                out[start : start + len(chunk)] = self.network.score_all(self._batch(chunk)).numpy()
        return out

    # -- what BaseRecommender asks for ----------------------------------------------------
    def _fit(self, data: Interactions, side: SideInfo | None) -> None:
        sequences = data.sequences()
        lengths = np.asarray([len(s) for s in sequences], dtype=np.int64)
        self.sequence_offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        self.sequence_items = (
            np.concatenate(sequences).astype(np.int32) if sequences else np.zeros(0, np.int32)
        )
        with torch_threads(self.params["threads"]), torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(self.params["seed"]))
            self.network = self._network(data.n_items)
            generator = torch.Generator().manual_seed(int(self.params["seed"]))
            self.network.initialise(generator)
            self._train(sequences, data.n_items)
        self.network.eval()

    def _train(self, sequences: list[np.ndarray], n_items: int) -> None:
        p = self.params
        length, count = int(p["max_length"]), int(p["negatives"])
        users = np.flatnonzero([len(s) >= 2 for s in sequences])
        # inputs: the items before each target, left-padded to max_length (0 = padding)
        inputs = np.zeros((len(users), length), dtype=np.int64)
        targets = np.zeros((len(users), length), dtype=np.int64)
        for row, user in enumerate(users):
            s = sequences[user][-(length + 1) :].astype(np.int64) + 1
            inputs[row, -(len(s) - 1) :] = s[:-1]
            targets[row, -(len(s) - 1) :] = s[1:]
        spans = (targets != 0).sum(1)
        # a user's own items (as row * (n_items + 1) + embedding row, sorted) are never negatives
        owned = np.unique(
            np.concatenate(
                [np.zeros(0, np.int64)]
                + [
                    r * (n_items + 1) + sequences[u].astype(np.int64) + 1
                    for r, u in enumerate(users)
                ]
            )
        )
        rng = np.random.default_rng(int(p["seed"]))
        optimiser = torch.optim.Adam(
            self.network.parameters(), lr=float(p["learning_rate"]), betas=(0.9, 0.98), fused=True
        )
        l2, size = float(p["l2"]), int(p["batch_size"])
        repeats = max(1, math.ceil(MIN_BATCHES * size / max(len(users), 1)))
        self.report.extra |= {"training_sequences": len(users), "draws_per_epoch": repeats}
        # every position weighs the same whatever its batch (as in random batches on average)
        per_sequence = float(spans.mean()) if len(users) else 1.0
        for epoch in range(1, int(p["epochs"]) + 1):
            if not len(users):
                break
            self.network.train()
            total = 0.0
            for rows in self._batches(spans, repeats, size, rng):
                width = int(spans[rows].max())
                negatives = self._negatives(
                    rows, targets[rows, -width:], owned, n_items=n_items, count=count, rng=rng
                )
                normaliser = len(rows) * per_sequence
                loss = self._loss(
                    torch.from_numpy(inputs[rows, -width:]),
                    torch.from_numpy(targets[rows, -width:]),
                    torch.from_numpy(negatives),
                    normaliser,
                    l2,
                )
                optimiser.zero_grad()
                loss.backward()  # type: ignore[no-untyped-call]
                optimiser.step()
                total += float(loss.detach()) * normaliser
            self.network.eval()
            self.report.losses.append(total / (repeats * float(spans.sum())))
            if self.epoch_callback is not None and self.epoch_callback(
                self, epoch, self.report.losses[-1]
            ):
                break

    @staticmethod
    def _batches(
        spans: np.ndarray, repeats: int, size: int, rng: np.random.Generator
    ) -> list[np.ndarray]:
        """One epoch's batches of training rows: every row ``repeats`` times, shuffled, then
        sorted by length within runs of ``BUCKET`` batches so that a batch is padded only as
        far as its longest sequence; the batches come in random order."""
        order = np.concatenate([rng.permutation(len(spans)) for _ in range(repeats)])
        batches = []
        for start in range(0, len(order), size * BUCKET):
            run = order[start : start + size * BUCKET]
            run = run[np.argsort(spans[run], kind="stable")]
            batches += [run[i : i + size] for i in range(0, len(run), size)]
        return [batches[i] for i in rng.permutation(len(batches))]

    @staticmethod
    def _negatives(
        rows: np.ndarray,
        targets: np.ndarray,
        owned: np.ndarray,
        *,
        n_items: int,
        count: int,
        rng: np.random.Generator,
    ) -> np.ndarray:
        """``count`` embedding rows per position, drawn uniformly from the items the user
        (training row) never interacted with: (batch, length, count); 0 where no target."""
        shape = (*targets.shape, count)
        users = np.broadcast_to(rows[:, None, None], shape)
        drawn = rng.integers(1, n_items + 1, size=shape)
        for _ in range(100):
            keys = users * (n_items + 1) + drawn
            at = np.minimum(np.searchsorted(owned, keys), len(owned) - 1)
            clash = owned[at] == keys
            if not clash.any():
                break
            drawn[clash] = rng.integers(1, n_items + 1, size=int(clash.sum()))
        return np.where(targets[..., None] != 0, drawn, 0)

    def _loss(
        self,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        negatives: torch.Tensor,
        normaliser: float,
        l2: float,
    ) -> torch.Tensor:
        """Binary cross-entropy summed over the positions with a target (the next item
        positive, the sampled ones negative) over ``normaliser``; plus the L2 penalty on the
        item embeddings."""
        states, _ = self.network(inputs)
        table = self.network.item_embedding.weight
        positive = (states * table[targets]).sum(-1)
        negative = torch.einsum("bld,blkd->blk", states, table[negatives])
        per_position = functional.softplus(-positive) + functional.softplus(negative).sum(-1)
        present = (targets != 0).to(states.dtype)
        loss = (per_position * present).sum() / normaliser
        if l2:
            loss = loss + 0.5 * l2 * table.pow(2).sum()
        return loss

    def score_users(self, users: np.ndarray) -> np.ndarray:
        """Scores of every item after each user's training sequence."""
        return self.score_sequences([self.history_of(int(u)) for u in users])

    def score_history(self, items: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        """Scores of every item after this sequence (in time order; weights are ignored)."""
        scores: np.ndarray = self.score_sequences([np.asarray(items, dtype=np.int64)])[0]
        return scores

    def history_of(self, user: int) -> np.ndarray:
        """The user's training items in time order (repeats kept)."""
        start, end = int(self.sequence_offsets[user]), int(self.sequence_offsets[user + 1])
        history: np.ndarray = self.sequence_items[start:end]
        return history

    def _item_similarities(self, item: int) -> np.ndarray:
        """Cosine similarity of the item embeddings; items in no training sequence (only
        ever negatives: no learnt position) get -1, the least."""
        table = self.network.item_embedding.weight.detach()[1:].numpy().astype(np.float64)
        norms = np.linalg.norm(table, axis=1)
        norms[norms == 0] = 1.0
        similarity: np.ndarray = table @ table[item] / (norms * norms[item])
        similarity[np.bincount(self.sequence_items, minlength=len(table)) == 0] = -1.0
        return similarity.astype(np.float32)

    def explain(self, user_id: str, item_id: str, n: int = 3) -> Explanation:
        """The user's items the last position attended to most in the last block (averaged
        over heads): what the next-item prediction rests on. Repeated items add up."""
        self.item_column(item_id)
        history = self.history_of(self.user_row(user_id))[-int(self.params["max_length"]) :]
        if not len(history) or not self.params["blocks"]:
            return Explanation(item_id, "attention", [])
        self.network.eval()
        with torch.no_grad():
            _, attention = self.network(self._batch([history]))
        weights = attention[-1][0, :, -1, :].mean(0).numpy().astype(np.float64)
        summed = np.zeros(len(self.items), dtype=np.float64)
        np.add.at(summed, history, weights[-len(history) :])
        items = np.unique(history)
        order = items[np.lexsort((items, -summed[items]))][:n]
        return Explanation(item_id, "attention", [(self.items[i], float(summed[i])) for i in order])

    def _forget(self, row: int) -> None:
        """Drop the user's training sequence (the network's weights are item-side)."""
        start, end = int(self.sequence_offsets[row]), int(self.sequence_offsets[row + 1])
        self.sequence_items = np.delete(self.sequence_items, np.s_[start:end])
        self.sequence_offsets[row + 1 :] -= end - start

    # -- artifacts ------------------------------------------------------------------------
    def _arrays(self) -> dict[str, np.ndarray]:
        arrays = {
            f"network.{k}": v.detach().numpy().astype(np.float32)
            for k, v in self.network.state_dict().items()
        }
        arrays["sequence_items"] = self.sequence_items
        arrays["sequence_offsets"] = self.sequence_offsets
        return arrays

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        self.sequence_items = arrays["sequence_items"].astype(np.int32)
        self.sequence_offsets = arrays["sequence_offsets"].astype(np.int64)
        self.network = self._network(len(self.items))
        state = {
            k.removeprefix("network."): torch.from_numpy(np.array(v, dtype=np.float32))
            for k, v in arrays.items()
            if k.startswith("network.")
        }
        self.network.load_state_dict(state)
        self.network.eval()
