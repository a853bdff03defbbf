"""Fine-tuning the product bi-encoder on search clicks: a query pulled towards the product clicked.

``click_pairs`` turns a click log into (query, item_id, text, weight) pairs: the query
normalised, the product's text exactly as ``product_text`` makes it for the stored vectors,
one row per query and product, weighted by the distinct shoppers who made that click.

``fine_tune`` trains all-MiniLM-L6-v2 on them with the multiple-negatives ranking loss: each
query's softmax runs over the batch's product texts (scale ``SCALE``), so every other product
in the batch is a negative. One model serves as both towers (queries and products share the
weights), and pooling stays the base model's (mean over tokens, then unit length), so the
query vectors it makes match product vectors made by the same model. Pairs are drawn in
proportion to their weight; a batch never holds one product or one query twice, because a
second copy would stand as a negative of its own positive. Training stops at a time budget,
checked against a validation loss on held-out queries, and the best checkpoint is saved with
sentence-transformers (safetensors, no pickle) beside a ``manifest.json``.

``FineTunedEncoder`` loads the saved model as a ``TextEncoder`` ("minilm-clicks") for both
product and query vectors.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np
import polars as pl

from aisle.catalog.embeddings import (
    MANIFEST_FILE,
    MAX_TOKENS,
    MiniLMEncoder,
    _write_json,
)
from aisle.errors import AisleError, NotFoundError, StoreError
from aisle.search.click_pairs import pairs_hash, sample_batches

#: The name of the fine-tuned encoder.
MODEL_NAME: Final = "minilm-clicks"
#: Cosines are multiplied by this before the softmax (sentence-transformers' default).
SCALE: Final = 20.0
#: Share of the distinct queries held out to pick the checkpoint.
VALIDATION_SHARE: Final = 0.1
#: Validation pairs drawn (by weight) from the held-out queries, fixed for the whole run.
VALIDATION_PAIRS: Final = 128
#: Steps over which the learning rate rises from 0 to its value, then stays.
WARMUP_STEPS: Final = 5
#: Gradients are clipped to this norm (sentence-transformers' default).
MAX_GRAD_NORM: Final = 1.0
#: Weights left as the base has them (the word-piece embedding table).
FROZEN_PARAMETER: Final = "word_embeddings.weight"
#: Pairs over fewer distinct queries cannot be split into training and validation.
MIN_QUERIES: Final = 4

WEIGHTS_FILE: Final = "model.safetensors"
_PICKLE_SUFFIXES: Final = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


# Torch's OpenMP threads spin while they wait for work by default; on a machine whose cores
# other processes share (the 2-core boxes this runs on) the spinning threads and the other work
# starve each other, and a training step was measured 10x slower with 2 threads than with 1.
# Waiting passively costs little on an idle machine. Set before torch loads, else it is moot.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


# --- pairs ----------------------------------------------------------------------------------


def _split_queries(pairs: pl.DataFrame, seed: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Training and validation pairs: a seeded ``VALIDATION_SHARE`` of the distinct queries
    (two at least) is held out whole, so validation asks about queries never trained on."""
    queries = pairs["query"].unique().sort().to_numpy()
    if queries.size < MIN_QUERIES:
        raise AisleError(
            f"{pairs.height} pairs over {queries.size} queries: fine-tuning needs pairs over "
            f"{MIN_QUERIES} queries at least (some are held out to validate)"
        )
    count = max(2, math.ceil(VALIDATION_SHARE * queries.size))
    held = pl.Series("query", np.random.default_rng([seed, 1]).permutation(queries)[:count])
    validation = pl.col("query").is_in(held.implode())
    return pairs.filter(~validation), pairs.filter(validation)


# --- training -------------------------------------------------------------------------------


@dataclass(frozen=True)
class FineTuneRun:
    """What one fine-tune did, where it saved the model, and the model itself (loaded)."""

    path: Path
    base: str
    data_hash: str
    pairs: int
    train_pairs: int
    validation_pairs: int
    steps: int
    #: Seconds of training and validation (loading the base and saving come on top).
    seconds: float
    validation_before: float
    validation_after: float
    #: The step whose weights were saved (0: the base model's were best).
    kept_step: int
    #: Per block of steps: first and last step, mean training loss, validation loss, seconds.
    blocks: list[dict[str, Any]] = field(repr=False)
    #: The fine-tuned model in memory, as ``FineTunedEncoder(path)`` would load it.
    encoder: FineTunedEncoder = field(repr=False)

    @property
    def steps_per_s(self) -> float:
        """Training steps per second of ``seconds``."""
        return self.steps / self.seconds if self.seconds > 0 else 0.0


def _base_encoder(base: str) -> MiniLMEncoder:
    """A fresh (uncached) encoder of the model to start from: "minilm" or a fine-tune's folder."""
    if base == "minilm":
        return MiniLMEncoder()
    if (Path(base) / MANIFEST_FILE).is_file():
        return FineTunedEncoder(Path(base))
    raise AisleError(f"unknown base model {base!r}: give 'minilm' or the folder of a fine-tune")


def _precision(torch: Any, asked: str) -> str:
    """The precision of the training's matrix products: bfloat16 for "auto" where native."""
    if asked != "auto":
        return asked
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    native = any(getattr(torch.cpu, check, lambda: False)() for check in checks)
    return "bfloat16" if native else "float32"


def _usable_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


class _Trainer:
    """One model as both towers under the multiple-negatives ranking loss."""

    def __init__(
        self,
        model: Any,
        learning_rate: float,
        validation: list[tuple[list[str], list[str]]],
        precision: str,
    ) -> None:
        import torch  # noqa: PLC0415 (lazy: heavy)

        self.torch = torch
        self.model = model
        self.validation = validation
        self.bfloat16 = precision == "bfloat16"
        # The word-piece table stays as the base has it: clicks name a few thousand words, and
        # training the rest would only let weight decay wear down words the log never shows
        # (general product text would match worse). It is half the weights, so half the work.
        trained = []
        for name, parameter in model.named_parameters():
            frozen = name.endswith(FROZEN_PARAMETER)
            parameter.requires_grad_(not frozen)
            if not frozen:
                trained.append(parameter)
        self.trained = trained
        self.optimizer = torch.optim.AdamW(trained, lr=learning_rate, fused=True)
        self.schedule = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: min(1.0, (step + 1) / WARMUP_STEPS)
        )

    def _embed(self, texts: list[str]) -> Any:
        # the model's own modules (mean pooling, normalise) make the vectors, as in encode()
        features = self.model.preprocess(texts)
        with self.torch.autocast("cpu", dtype=self.torch.bfloat16, enabled=self.bfloat16):
            vectors = self.model(features)["sentence_embedding"]
        # cosines and the softmax in float32 whatever the matrix products ran in
        return self.torch.nn.functional.normalize(vectors.float(), dim=1)

    def loss(self, queries: list[str], texts: list[str]) -> Any:
        """Mean cross-entropy of each query's softmax over the batch's product texts."""
        scores = SCALE * self._embed(queries) @ self._embed(texts).T
        target = self.torch.arange(len(queries))
        return self.torch.nn.functional.cross_entropy(scores, target)

    def step(self, queries: list[str], texts: list[str]) -> float:
        """One optimiser step on one batch; its loss."""
        self.model.train()
        loss = self.loss(queries, texts)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.torch.nn.utils.clip_grad_norm_(self.trained, MAX_GRAD_NORM)
        self.optimizer.step()
        self.schedule.step()
        return float(loss.detach())

    def validation_loss(self) -> float:
        """Loss over the fixed validation batches, each query weighing the same."""
        self.model.eval()
        total = 0.0
        with self.torch.inference_mode():
            for queries, texts in self.validation:
                total += float(self.loss(queries, texts)) * len(queries)
        return total / sum(len(queries) for queries, _ in self.validation)

    def snapshot(self) -> dict[str, Any]:
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}


def _texts(pairs: pl.DataFrame, rows: np.ndarray) -> tuple[list[str], list[str]]:
    """The queries and product texts of some rows of the pairs."""
    return pairs["query"].gather(rows).to_list(), pairs["text"].gather(rows).to_list()


def _validation_batches(
    validation: pl.DataFrame, batch_size: int, seed: int
) -> list[tuple[list[str], list[str]]]:
    """About ``VALIDATION_PAIRS`` held-out pairs as fixed batches, drawn as training draws."""
    draw = sample_batches(validation, batch_size, seed + 1)
    batches: list[tuple[list[str], list[str]]] = []
    drawn = 0
    while drawn < min(VALIDATION_PAIRS, validation.height):
        rows = next(draw)
        if rows.size < 2:
            raise AisleError(
                "the held-out queries cannot make a batch of two distinct products: "
                "give pairs over more queries and products"
            )
        batches.append(_texts(validation, rows))
        drawn += rows.size
    return batches


def fine_tune(
    pairs: pl.DataFrame,
    out: Path,
    *,
    base: str = "minilm",
    budget_s: float = 300,
    batch_size: int = 64,
    learning_rate: float = 2e-5,
    seed: int = 0,
    threads: int | None = None,
    block_steps: int = 10,
    max_steps: int | None = None,
    keep: Literal["best", "last"] = "best",
    precision: Literal["auto", "float32", "bfloat16"] = "auto",
    on_block: Callable[[dict[str, Any]], None] | None = None,
) -> FineTuneRun:
    """Fine-tune ``base`` on click ``pairs`` (from ``click_pairs``) and save it under ``out``.

    Trains until ``budget_s`` seconds have passed (validation included: no step starts that
    the slowest recent step, or before the first one a guess from the validation's speed,
    says would not end in time) or ``max_steps`` steps. Every ``block_steps`` steps, and after
    the last, the validation loss is measured on held-out queries; ``keep="best"`` saves the
    weights with the lowest one (the base's included), ``keep="last"`` the last. Torch uses
    ``threads`` threads while training (default: every usable core). The matrix products of
    training run in ``precision``: "auto" is bfloat16 where the CPU computes it natively (AMX
    or AVX-512 BF16, about twice as fast there), else float32; the weights stay float32, and
    the saved model encodes in float32. ``on_block`` hears of each block as it closes (for
    progress). The same pairs, seed and steps give the same model on the same machine.
    """
    started_all = time.perf_counter()
    if budget_s <= 0 or block_steps < 1 or (max_steps is not None and max_steps < 0):
        raise AisleError("budget_s must be positive, block_steps at least 1, max_steps >= 0")
    if keep not in ("best", "last"):
        raise AisleError(f"keep must be 'best' or 'last', not {keep!r}")
    if precision not in ("auto", "float32", "bfloat16"):
        raise AisleError(f"precision must be auto, float32 or bfloat16, not {precision!r}")
    train, validation = _split_queries(pairs, seed)
    batches = sample_batches(train, batch_size, seed)
    validation_batches = _validation_batches(validation, batch_size, seed)
    base_encoder = _base_encoder(base)
    import torch  # noqa: PLC0415 (lazy: heavy)

    model = base_encoder._loaded()  # a fresh model, loaded as the base encoder loads it
    threads = threads or _usable_cores()
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # dropout's draws
            used = _precision(torch, precision)
            trainer = _Trainer(model, learning_rate, validation_batches, used)
            load_seconds = time.perf_counter() - started_all
            progress = _Progress(trainer, time.perf_counter() + budget_s, keep, on_block)
            # before the first step, guess: a step (forward and backward of queries and
            # products) costs about three validation forwards of a batch
            validated = sum(len(queries) for queries, _ in validation_batches)
            guess = 3 * progress.validation_seconds * batch_size / validated
            recent: deque[float] = deque([guess], maxlen=5)
            while max_steps is None or progress.step < max_steps:
                now = time.perf_counter()
                if now + max(recent) + progress.validation_seconds > progress.deadline:
                    break
                progress.losses.append(trainer.step(*_texts(train, next(batches))))
                progress.step += 1
                if progress.step == 1:
                    recent.clear()  # the guess, now that a step was timed
                recent.append(time.perf_counter() - now)
                if progress.step % block_steps == 0:
                    progress.close_block()
            if progress.losses:
                progress.close_block()
            seconds = time.perf_counter() - progress.started
            if progress.kept_step != progress.step:
                model.load_state_dict(progress.kept_state)
            model.eval()
    finally:
        torch.set_num_threads(previous_threads)

    data_hash = pairs_hash(pairs)
    parameters = {
        "budget_s": budget_s,
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "seed": seed,
        "threads": threads,
        "precision": used,
        "block_steps": block_steps,
        "max_steps": max_steps,
        "scale": SCALE,
        "max_tokens": MAX_TOKENS,
        "warmup_steps": WARMUP_STEPS,
        "max_grad_norm": MAX_GRAD_NORM,
        "validation_share": VALIDATION_SHARE,
        "validation_pairs": VALIDATION_PAIRS,
    }
    manifest = {
        "model": MODEL_NAME,
        "base": base_encoder.source,
        "dimensions": base_encoder.dimensions,
        "data_hash": data_hash,
        "pairs": pairs.height,
        "train_pairs": train.height,
        "validation_pairs": validation.height,
        "parameters": parameters,
        "steps": progress.step,
        "seconds": round(seconds, 3),
        "load_seconds": round(load_seconds, 3),
        "steps_per_s": round(progress.step / seconds, 4),
        "validation_before": progress.before,
        "validation_after": progress.kept,
        "keep": keep,
        "kept_step": progress.kept_step,
        "blocks": progress.blocks,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    _save(model, Path(out), manifest)
    encoder_ = FineTunedEncoder(Path(out))
    encoder_.hold(model)
    return FineTuneRun(
        path=Path(out),
        base=base_encoder.source,
        data_hash=data_hash,
        pairs=pairs.height,
        train_pairs=train.height,
        validation_pairs=validation.height,
        steps=progress.step,
        seconds=seconds,
        validation_before=progress.before,
        validation_after=progress.kept,
        kept_step=progress.kept_step,
        blocks=progress.blocks,
        encoder=encoder_,
    )


class _Progress:
    """The run so far: steps, the open block's losses, closed blocks, the weights to keep."""

    def __init__(
        self,
        trainer: _Trainer,
        deadline: float,
        keep: str,
        on_block: Callable[[dict[str, Any]], None] | None,
    ) -> None:
        self.trainer = trainer
        self.keep = keep
        self.on_block = on_block
        self.started = time.perf_counter()
        self.deadline = deadline
        self.before = trainer.validation_loss()
        self.validation_seconds = time.perf_counter() - self.started
        self.kept, self.kept_step = self.before, 0
        # the base's weights, to come back to should no block beat them
        self.kept_state = trainer.snapshot() if keep == "best" else {}
        self.step = 0
        self.losses: list[float] = []
        self.blocks: list[dict[str, Any]] = []

    def close_block(self) -> None:
        """Validate after a block of steps, record it, and keep the weights if they are best."""
        began = time.perf_counter()
        loss = self.trainer.validation_loss()
        now = time.perf_counter()
        self.validation_seconds = now - began
        self.blocks.append(
            {
                "first_step": self.step - len(self.losses) + 1,
                "last_step": self.step,
                "train_loss": round(float(np.mean(self.losses)), 6),
                "validation_loss": round(loss, 6),
                "seconds": round(now - self.started, 3),
            }
        )
        self.losses = []
        if self.on_block is not None:
            self.on_block(self.blocks[-1])
        if self.keep == "last":
            self.kept, self.kept_step = loss, self.step
        elif loss < self.kept:
            self.kept, self.kept_step, self.kept_state = loss, self.step, self.trainer.snapshot()


def _save(model: Any, out: Path, manifest: dict[str, Any]) -> None:
    """The model as safetensors with its manifest, written to a temporary folder and renamed
    into place: a save cut short never leaves a folder that loads."""
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    shutil.rmtree(temporary, ignore_errors=True)
    model.save(str(temporary), safe_serialization=True, create_model_card=False)
    pickled = [p.name for p in temporary.rglob("*") if p.suffix in _PICKLE_SUFFIXES]
    if pickled or not (temporary / WEIGHTS_FILE).is_file():
        shutil.rmtree(temporary, ignore_errors=True)
        raise StoreError(f"saving the fine-tuned model wrote pickle files {pickled} or no weights")
    digest = hashlib.sha256()
    with (temporary / WEIGHTS_FILE).open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    _write_json(temporary / MANIFEST_FILE, {**manifest, "weights_hash": digest.hexdigest()})
    shutil.rmtree(out, ignore_errors=True)
    os.replace(temporary, out)


# --- the encoder ----------------------------------------------------------------------------


def read_manifest(path: Path) -> dict[str, Any]:
    """The manifest of the fine-tuned model at ``path``; NotFoundError or StoreError."""
    manifest_path = Path(path) / MANIFEST_FILE
    if not manifest_path.is_file() or not (Path(path) / WEIGHTS_FILE).is_file():
        raise NotFoundError(f"no fine-tuned model at {path}: make one with fine_tune first")
    try:
        manifest: dict[str, Any] = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise StoreError(f"{manifest_path} cannot be read ({error}): fine-tune again") from error
    missing = [k for k in ("model", "dimensions", "data_hash", "weights_hash") if k not in manifest]
    if missing or manifest["model"] != MODEL_NAME:
        raise StoreError(f"{manifest_path} is not a {MODEL_NAME} manifest: fine-tune again")
    return manifest


class FineTunedEncoder(MiniLMEncoder):
    """The fine-tuned MiniLM saved by ``fine_tune``; the weights load on first use.

    Loading and encoding are MiniLM's (offline, ``MAX_TOKENS`` word pieces, unit rows, one
    load under a lock), so queries and products are encoded exactly as in training.
    """

    name = MODEL_NAME

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.manifest = read_manifest(self.path)
        self.dimensions = int(self.manifest["dimensions"])
        # the data hash names the clicks, the weights hash the run (seed, budget, steps)
        self.source = (
            f"{MODEL_NAME} pairs {self.manifest['data_hash'][:16]} "
            f"weights {self.manifest['weights_hash'][:16]} from {self.manifest.get('base')}"
        )
        self._model = None
        self._single = False
        self._lock = threading.Lock()

    def hold(self, model: Any) -> None:
        """Use ``model`` (already in memory, the one saved at ``path``) instead of loading it."""
        with self._lock:
            model.max_seq_length = MAX_TOKENS
            self._model = model
            self._single = False  # made again from this model when first asked
