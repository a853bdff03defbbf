"""Category inference from product text: learn from the products that have a category, suggest
one for those that lack it, and fill it only when the classifier is confident.

The label is the first category level below the ones every product shares (for Best Buy: the
first genre under "Video Games > Xbox 360 > Xbox 360 Games"). The classifier is TF-IDF over the
title, description and brand with a multinomial logistic regression; its regularisation is
chosen by cross-validation on the training products alone, and its probabilities are calibrated
by one temperature fitted to out-of-fold scores. A model is saved as arrays plus a JSON manifest.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import polars as pl
from scipy import sparse
from scipy.special import logsumexp
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import StratifiedKFold
from sklearn.preprocessing import normalize
from threadpoolctl import threadpool_limits

FORMAT: Final = "aisle-category-model"
VERSION: Final = 1
MANIFEST: Final = "manifest.json"
ARRAYS: Final = "arrays.npz"

#: A level that at least this share of the catalog's paths has at the same depth names the
#: whole catalog (a root, a department), not a category of some of its products.
SHARED_SHARE: Final = 0.9
#: How product text is cut into terms: analyzer and n-gram range of each TF-IDF block.
ANALYZERS: Final[dict[str, tuple[str, tuple[int, int]]]] = {
    "word": ("word", (1, 2)),
    "char": ("char_wb", (3, 5)),
}
#: Inverse regularisation strengths tried by cross-validation on the training products.
C_GRID: Final = (0.3, 1.0, 3.0)
#: A category needs this many training products to be learnt; rarer ones are left out of
#: training (with one example, class weighting makes it swamp its neighbours).
MIN_EXAMPLES: Final = 2
#: Temperatures tried when calibrating probabilities.
TEMPERATURES: Final = np.geomspace(0.05, 20.0, 121)

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, eq=False)
class TextFeatures:
    """One TF-IDF block: how text is cut into terms, the terms and their idf weights."""

    analyzer: str
    ngram_range: tuple[int, int]
    terms: npt.NDArray[np.str_]
    idf: FloatArray

    def transform(self, texts: Sequence[str]) -> sparse.csr_matrix:
        """Sublinear tf times idf, rows scaled to unit length (as scikit-learn's TF-IDF)."""
        counter = CountVectorizer(
            analyzer=self.analyzer,
            ngram_range=self.ngram_range,
            strip_accents="unicode",
            vocabulary={str(term): i for i, term in enumerate(self.terms)},
            dtype=np.float64,
        )
        counts = sparse.csr_matrix(counter.transform(list(texts)), dtype=np.float64)
        counts.data = 1.0 + np.log(counts.data)
        return sparse.csr_matrix(normalize(counts.multiply(self.idf[np.newaxis, :]).tocsr()))


@dataclass(frozen=True, eq=False)
class CategoryModel:
    """A fitted category classifier: labels, TF-IDF blocks, linear coefficients, intercepts and
    the temperature that calibrates its probabilities."""

    labels: tuple[str, ...]
    features: tuple[TextFeatures, ...]
    coef: FloatArray  # labels x terms of all blocks
    intercept: FloatArray  # labels
    temperature: float
    depth: int  # leading category levels skipped: the ones the whole catalog shared
    c: float  # the inverse regularisation strength cross-validation chose
    trained_on: int

    def matrix(self, texts: Sequence[str]) -> sparse.csr_matrix:
        """The feature matrix of some texts."""
        return sparse.csr_matrix(sparse.hstack([f.transform(texts) for f in self.features]))

    def probabilities(self, texts: Sequence[str]) -> FloatArray:
        """Calibrated probability of each label (columns in the order of ``labels``)."""
        return self._scored(texts)[0]

    def predict(self, texts: Sequence[str]) -> tuple[list[str], FloatArray]:
        """The most probable label of each text and its calibrated probability; a text with
        none of the terms the model learnt gives it nothing to go on, and its confidence is 0."""
        probabilities, known = self._scored(texts)
        best = probabilities.argmax(axis=1)
        confidence = np.where(known, probabilities[np.arange(len(best)), best], 0.0)
        return [self.labels[i] for i in best], confidence

    def _scored(self, texts: Sequence[str]) -> tuple[FloatArray, npt.NDArray[np.bool_]]:
        """Probabilities, and whether each text has any known term."""
        if len(texts) == 0:
            return np.zeros((0, len(self.labels))), np.zeros(0, dtype=bool)
        x = self.matrix(texts)
        with _one_blas_thread():
            scores = np.asarray(x @ self.coef.T, dtype=np.float64) + self.intercept
        return _softmax(scores / self.temperature), np.diff(x.indptr) > 0

    def save(self, folder: Path) -> None:
        """Write the arrays (``arrays.npz``) and then the manifest (``manifest.json``)."""
        folder.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, Any] = {"coef": self.coef, "intercept": self.intercept}
        for i, block in enumerate(self.features):
            arrays[f"terms_{i}"] = block.terms
            arrays[f"idf_{i}"] = block.idf
        with (folder / ARRAYS).open("wb") as handle:
            np.savez_compressed(handle, **arrays)
        manifest = {
            "format": FORMAT,
            "version": VERSION,
            "labels": list(self.labels),
            "features": [
                {"analyzer": f.analyzer, "ngram_range": list(f.ngram_range)} for f in self.features
            ],
            "temperature": self.temperature,
            "depth": self.depth,
            "c": self.c,
            "trained_on": self.trained_on,
        }
        (folder / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False))

    @classmethod
    def load(cls, folder: Path) -> CategoryModel:
        """Read a model written by ``save`` (no pickles)."""
        manifest = json.loads((folder / MANIFEST).read_text())
        if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
            raise ValueError(f"{folder} does not hold a version {VERSION} {FORMAT}")
        with np.load(folder / ARRAYS, allow_pickle=False) as arrays:
            features = tuple(
                TextFeatures(
                    analyzer=str(spec["analyzer"]),
                    ngram_range=(int(spec["ngram_range"][0]), int(spec["ngram_range"][1])),
                    terms=arrays[f"terms_{i}"],
                    idf=arrays[f"idf_{i}"].astype(np.float64),
                )
                for i, spec in enumerate(manifest["features"])
            )
            coef = arrays["coef"].astype(np.float64)
            intercept = arrays["intercept"].astype(np.float64)
        return cls(
            labels=tuple(str(label) for label in manifest["labels"]),
            features=features,
            coef=coef,
            intercept=intercept,
            temperature=float(manifest["temperature"]),
            depth=int(manifest["depth"]),
            c=float(manifest["c"]),
            trained_on=int(manifest["trained_on"]),
        )


def shared_depth(products: pl.DataFrame, *, share: float = SHARED_SHARE) -> int:
    """How many leading category levels the catalog shares: at each depth, the most common
    name must be on at least ``share`` of the products that have a category path."""
    paths = _paths(products).filter(pl.col("path").list.len() > 0)["path"]
    depth = 0
    while paths.len() > 0:
        level = paths.list.get(depth, null_on_oob=True).drop_nulls()
        if level.len() == 0 or level.value_counts(sort=True)["count"][0] < share * paths.len():
            break
        depth += 1
    return depth


def category_labels(products: pl.DataFrame, *, depth: int | None = None) -> pl.DataFrame:
    """item_id and label: the first category level below the ``depth`` levels the catalog shares
    (detected when None), null when a product has none. Spellings that differ only in case are
    one label, written as its most common spelling."""
    skip = shared_depth(products) if depth is None else depth
    raw = _paths(products).select(
        "item_id", pl.col("path").list.get(skip, null_on_oob=True).alias("label")
    )
    key = pl.col("label").str.to_lowercase()
    spelling = (
        raw.drop_nulls("label")
        .group_by("label")
        .len()
        .sort(["len", "label"], descending=[True, False])
        .unique(key.alias("key"), keep="first", maintain_order=True)
        .select(key.alias("key"), pl.col("label").alias("canonical"))
    )
    return (
        raw.with_columns(key.alias("key"))
        .join(spelling, on="key", how="left", maintain_order="left")
        .select("item_id", pl.col("canonical").alias("label"))
    )


def train_categories(
    products: pl.DataFrame,
    *,
    seed: int = 0,
    features: Sequence[str] = ("word",),
    folds: int = 3,
) -> CategoryModel:
    """Fit a classifier on the products that have a label. The regularisation is chosen and the
    temperature calibrated by ``folds``-fold cross-validation within these products."""
    depth = shared_depth(products)
    return _fit(_labelled(products, depth), depth, seed=seed, features=features, folds=folds)


def evaluate_categories(
    products: pl.DataFrame,
    *,
    folds: int = 5,
    seed: int = 0,
    min_confidence: float = 0.5,
    features: Sequence[str] = ("word",),
) -> dict[str, float | int]:
    """Stratified ``folds``-fold accuracy and macro-F1 on held-out labelled products, each fold
    trained (and tuned) on the others alone; the majority-class baseline computed the same way;
    and how many held-out predictions reach ``min_confidence`` and how often those are right."""
    depth = shared_depth(products)
    labelled = _labelled(products, depth)
    y = labelled["label"].to_numpy().astype(str)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    predicted = np.empty(len(y), dtype=object)
    baseline = np.empty(len(y), dtype=object)
    confidence = np.zeros(len(y))
    fold_accuracy = []
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        splits = list(splitter.split(np.zeros(len(y)), y))
    for train, held in splits:
        model = _fit(labelled[train], depth, seed=seed, features=features, folds=3)
        guess, sure = model.predict(labelled["text"][held].to_list())
        predicted[held] = guess
        confidence[held] = sure
        values, counts = np.unique(y[train], return_counts=True)
        baseline[held] = values[counts.argmax()]
        fold_accuracy.append(float(accuracy_score(y[held], predicted[held])))
    predicted = predicted.astype(str)
    baseline = baseline.astype(str)
    confident = confidence >= min_confidence
    return {
        "labelled": len(y),
        "unlabelled": products.height - len(y),
        "classes": int(np.unique(y).size),
        "folds": folds,
        "accuracy": float(accuracy_score(y, predicted)),
        "accuracy_std": float(np.std(fold_accuracy)),
        "macro_f1": float(f1_score(y, predicted, average="macro", zero_division=0)),
        "baseline_accuracy": float(accuracy_score(y, baseline)),
        "baseline_macro_f1": float(f1_score(y, baseline, average="macro", zero_division=0)),
        "min_confidence": min_confidence,
        "confident_share": float(confident.mean()),
        "confident_accuracy": float((predicted == y)[confident].mean()) if confident.any() else 0.0,
        "calibration_error": _calibration_error(confidence, predicted == y),
    }


def infer_categories(
    products: pl.DataFrame, model: CategoryModel, *, min_confidence: float = 0.5
) -> pl.DataFrame:
    """For products without a label: item_id, category, confidence and filled. The category is
    given only when the calibrated confidence reaches ``min_confidence``; below it (or with no
    known word at all: confidence 0) it is null and filled is false: flagged, not invented."""
    missing = (
        _with_text(products)
        .join(category_labels(products, depth=model.depth), on="item_id", maintain_order="left")
        .filter(pl.col("label").is_null())
    )
    guess, confidence = model.predict(missing["text"].to_list())
    return pl.DataFrame(
        {
            "item_id": missing["item_id"],
            "guess": pl.Series(guess, dtype=pl.String),
            "confidence": pl.Series(confidence, dtype=pl.Float64),
        }
    ).select(
        "item_id",
        pl.when(pl.col("confidence") >= min_confidence).then("guess").alias("category"),
        "confidence",
        (pl.col("confidence") >= min_confidence).alias("filled"),
    )


def _paths(products: pl.DataFrame) -> pl.DataFrame:
    """item_id and the category path with blank levels removed."""
    path = (
        pl.col("category_path")
        .list.eval(pl.element().str.strip_chars().filter(pl.element().str.strip_chars() != ""))
        .fill_null(pl.lit([], dtype=pl.List(pl.String)))
    )
    return products.select("item_id", path.alias("path"))


def _with_text(products: pl.DataFrame) -> pl.DataFrame:
    """item_id and text: title, description and brand, one space apart ("" when all are null)."""
    parts = [c for c in ("title", "description", "brand") if c in products.columns]
    text = pl.concat_str([pl.col(c) for c in parts], separator=" ", ignore_nulls=True)
    return products.select("item_id", text.fill_null("").str.strip_chars().alias("text"))


def _labelled(products: pl.DataFrame, depth: int) -> pl.DataFrame:
    """item_id, text and label of the products that have a label."""
    return (
        _with_text(products)
        .join(category_labels(products, depth=depth), on="item_id", maintain_order="left")
        .drop_nulls("label")
    )


def _fit(
    labelled: pl.DataFrame, depth: int, *, seed: int, features: Sequence[str], folds: int
) -> CategoryModel:
    """Fit on labelled products (item_id, text, label) of the categories with enough of them."""
    labelled = labelled.filter(pl.len().over("label") >= MIN_EXAMPLES)
    if labelled["label"].n_unique() < 2:
        raise ValueError("category inference needs products of at least two categories")
    texts = labelled["text"].to_list()
    y = labelled["label"].to_numpy().astype(str)
    labels = tuple(sorted(set(y.tolist())))
    blocks = tuple(_fit_block(texts, name) for name in features)
    x = sparse.csr_matrix(sparse.hstack([b.transform(texts) for b in blocks]))
    c, temperature = _tune(x, y, labels, seed=seed, folds=folds)
    with _one_blas_thread():
        classifier = _classifier(c).fit(x, y)
    coef, intercept = _full_coefficients(classifier, labels)
    return CategoryModel(
        labels=labels,
        features=blocks,
        coef=coef,
        intercept=intercept,
        temperature=temperature,
        depth=depth,
        c=c,
        trained_on=len(y),
    )


def _fit_block(texts: Sequence[str], name: str) -> TextFeatures:
    """Learn one block's terms and idf from the training texts."""
    if name not in ANALYZERS:
        raise ValueError(f"unknown text features {name!r}: one of {sorted(ANALYZERS)}")
    analyzer, ngram_range = ANALYZERS[name]
    vectorizer = TfidfVectorizer(
        analyzer=analyzer,
        ngram_range=ngram_range,
        strip_accents="unicode",
        min_df=2 if len(texts) >= 50 else 1,
        sublinear_tf=True,
        dtype=np.float64,
    ).fit(texts)
    return TextFeatures(
        analyzer=analyzer,
        ngram_range=ngram_range,
        terms=np.asarray(vectorizer.get_feature_names_out(), dtype=np.str_),
        idf=np.asarray(vectorizer.idf_, dtype=np.float64),
    )


def _classifier(c: float) -> LogisticRegression:
    """Multinomial logistic regression; classes weighted inversely to their size, so that small
    genres are not drowned by the large ones."""
    return LogisticRegression(C=c, class_weight="balanced", max_iter=2000, warm_start=True)


def _full_coefficients(
    classifier: LogisticRegression, labels: Sequence[str]
) -> tuple[FloatArray, FloatArray]:
    """Coefficients and intercepts with one row per label in ``labels``: a label the classifier
    never saw gets a score that no softmax picks, and two-class models get a zero row for the
    first class (their one row scores the second)."""
    seen = [str(c) for c in classifier.classes_]
    coef = np.asarray(classifier.coef_, dtype=np.float64)
    intercept = np.asarray(classifier.intercept_, dtype=np.float64)
    if len(seen) == 2:
        coef = np.vstack([np.zeros_like(coef), coef])
        intercept = np.concatenate([np.zeros(1), intercept])
    rows = np.array([labels.index(c) for c in seen])
    full_coef = np.zeros((len(labels), coef.shape[1]))
    full_intercept = np.full(len(labels), -1e9)
    full_coef[rows] = coef
    full_intercept[rows] = intercept
    return full_coef, full_intercept


def _tune(
    x: sparse.csr_matrix, y: npt.NDArray[np.str_], labels: tuple[str, ...], *, seed: int, folds: int
) -> tuple[float, float]:
    """The C of ``C_GRID`` with the best out-of-fold accuracy (the smaller on ties), and the
    temperature that minimises the out-of-fold log loss at that C."""
    _, counts = np.unique(y, return_counts=True)
    splits = min(folds, int(counts.max()))
    if splits < 2:
        return 1.0, 1.0
    scores = {c: np.full((len(y), len(labels)), -np.inf) for c in C_GRID}
    splitter = StratifiedKFold(n_splits=splits, shuffle=True, random_state=seed)
    with warnings.catch_warnings(), _one_blas_thread():
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        for train, held in splitter.split(np.zeros(len(y)), y):
            if np.unique(y[train]).size < 2:
                continue
            classifier = _classifier(C_GRID[0])
            for c in sorted(C_GRID):  # warm start: each fit begins at the previous solution
                classifier.set_params(C=c).fit(x[train], y[train])
                coef, intercept = _full_coefficients(classifier, labels)
                scores[c][held] = np.asarray(x[held] @ coef.T) + intercept
    truth = np.searchsorted(np.asarray(labels), y)
    accuracy = {c: float((s.argmax(axis=1) == truth).mean()) for c, s in scores.items()}
    best = max(sorted(C_GRID), key=lambda c: accuracy[c])
    return best, _temperature(scores[best], truth)


def _temperature(scores: FloatArray, truth: npt.NDArray[np.intp]) -> float:
    """The temperature minimising the log loss of out-of-fold scores; rows whose true label was
    missing from their training folds (or never scored) are left out."""
    rows = np.arange(len(truth))
    true_score = scores[rows, truth]
    usable = true_score > -1e8
    if not usable.any():
        return 1.0
    s = scores[usable]
    t = true_score[usable]
    losses = [float(np.mean(logsumexp(s / temp, axis=1) - t / temp)) for temp in TEMPERATURES]
    return float(TEMPERATURES[int(np.argmin(losses))])


def _calibration_error(confidence: FloatArray, correct: npt.NDArray[np.bool_]) -> float:
    """Expected calibration error: the gap between confidence and accuracy over ten equal-width
    bins of confidence, weighted by the share of predictions in each."""
    bins = np.minimum((confidence * 10).astype(int), 9)
    gap = 0.0
    for b in np.unique(bins):
        inside = bins == b
        gap += inside.mean() * abs(confidence[inside].mean() - correct[inside].mean())
    return float(gap)


def _softmax(scores: FloatArray) -> FloatArray:
    shifted = scores - scores.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return np.asarray(exp / exp.sum(axis=1, keepdims=True), dtype=np.float64)


@contextmanager
def _one_blas_thread() -> Iterator[None]:
    """Small linear models fit many times faster without BLAS threads fighting for the cores."""
    with threadpool_limits(limits=1, user_api="blas"):
        yield
