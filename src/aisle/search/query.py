"""Query understanding: a shopper's raw query read into what to search, price and pack limits,
spelling fixes, other phrasings and the categories it is most likely after.

The steps run in a fixed order: clean (control characters out, length capped), normalise
(``segment``), read intents (``parse_intents``), correct spelling, expand synonyms, predict
categories. Each step sees the output of the one before, so "battlefeild under $20" searches
"battlefield", limits the price to 20 and predicts Shooters from the corrected words.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import polars as pl
from sklearn.feature_extraction.text import CountVectorizer

from aisle.catalog.categories import CategoryModel, _fit, category_labels
from aisle.search.documents import conform
from aisle.search.intents import Span, parse_intents
from aisle.search.spelling import SpellingCorrector
from aisle.search.synonyms import Synonyms, mine_synonyms
from aisle.search.tokenize import segment, terms

FORMAT: Final = "aisle-query-understanding"
VERSION: Final = 1
CATEGORY_FORMAT: Final = "aisle-query-categories"
#: Longer queries are cut: nobody types more, and a pasted page must not cost a second.
MAX_QUERY_CHARS: Final = 256

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class ParsedQuery:
    """A query as understood: what was typed, what to search and what else it asks for."""

    raw: str
    normalized: str
    text: str  # the words to search: intents out, spelling corrected
    corrections: list[tuple[str, str]] = field(default_factory=list)
    expansions: list[str] = field(default_factory=list)
    price_min: float | None = None
    price_max: float | None = None
    pack_size: int | None = None
    cheap: bool = False
    categories: list[tuple[str, float]] = field(default_factory=list)
    intents: tuple[Span, ...] = ()
    truncated: bool = False

    def explain(self) -> list[str]:
        """Human-readable notes on what was read, in the order the steps ran."""
        notes = []
        if self.truncated:
            notes.append(f"query cut to its first {MAX_QUERY_CHARS} characters")
        for span in self.intents:
            notes.append(f"read {span.words!r} as {_intent_note(span)}")
        if self.price_min is not None and self.price_max is not None:
            notes.append(f"price between {self.price_min:g} and {self.price_max:g}")
        elif self.price_max is not None:
            notes.append(f"price at most {self.price_max:g}")
        elif self.price_min is not None:
            notes.append(f"price at least {self.price_min:g}")
        if self.pack_size is not None:
            notes.append(f"packs of {self.pack_size}")
        notes.extend(f"corrected {typed!r} to {fixed!r}" for typed, fixed in self.corrections)
        notes.extend(f"also searching {phrase!r}" for phrase in self.expansions)
        notes.extend(f"likely category {name!r} ({p:.0%})" for name, p in self.categories)
        return notes


def _intent_note(span: Span) -> str:
    if span.kind == "range":
        low, high = span.value.split("-")
        return f"a price from {low} to {high}"
    return {
        "at_most": f"a price of at most {span.value}",
        "at_least": f"a price of at least {span.value}",
        "pack": f"a pack of {span.value}",
        "cheap": "a wish for low prices",
    }.get(span.kind, span.kind)


class QueryCategoryModel:
    """Which categories a query is after, learnt from the categories of what shoppers clicked.

    Each distinct normalised query is one example labelled with the category most of its clicks
    went to. The classifier is the catalog's (``aisle.catalog.categories``: TF-IDF, logistic
    regression, C by cross-validation, temperature-calibrated probabilities), over words and
    character n-grams, which survive misspellings. A single query is scored without building
    sparse matrices, so that it takes microseconds.
    """

    def __init__(
        self,
        *,
        features: Sequence[str] = ("word", "char"),
        top: int = 3,
        min_probability: float = 0.05,
        seed: int = 0,
        folds: int = 3,
    ) -> None:
        self.features = tuple(features)
        self.top = top
        self.min_probability = min_probability
        self.seed = seed
        self.folds = folds
        self.model_: CategoryModel | None = None
        self._blocks: list[tuple[Any, dict[str, int], FloatArray, int]] = []

    def fit(self, queries: Sequence[str], categories: Sequence[str]) -> QueryCategoryModel:
        """Learn from (query, category of the clicked product) pairs, one per click."""
        frame = pl.DataFrame(
            {"query": list(queries), "label": list(categories)},
            schema={"query": pl.String, "label": pl.String},
        ).drop_nulls()
        texts = frame["query"].unique()
        normal = dict(zip(texts, (segment(t) for t in texts), strict=True))
        labelled = (
            frame.with_columns(pl.col("query").replace_strict(normal).alias("text"))
            .filter(pl.col("text") != "")
            .group_by("text", "label")
            .len()
            # (text last: group_by's row order varies between runs, and the classifier's
            # folds follow row order)
            .sort(["len", "label", "text"], descending=[True, False, False])
            .unique("text", keep="first", maintain_order=True)
            .select(pl.col("text").alias("item_id"), "text", "label")
        )
        self.model_ = _fit(labelled, 0, seed=self.seed, features=self.features, folds=self.folds)
        self._prepare()
        return self

    def _prepare(self) -> None:
        """Analyzers and term indexes of each feature block, for scoring one text fast."""
        assert self.model_ is not None
        self._blocks = []
        offset = 0
        for block in self.model_.features:
            analyzer = CountVectorizer(
                analyzer=block.analyzer, ngram_range=block.ngram_range, strip_accents="unicode"
            ).build_analyzer()
            index = {str(term): i for i, term in enumerate(block.terms)}
            self._blocks.append((analyzer, index, block.idf, offset))
            offset += len(block.terms)

    @property
    def labels(self) -> tuple[str, ...]:
        """The categories the model can predict."""
        return () if self.model_ is None else self.model_.labels

    def probabilities(self, text: str) -> FloatArray | None:
        """Calibrated probability of each label for one text (as ``CategoryModel`` computes
        it), or None when the text has no term the model knows."""
        model = self.model_
        if model is None:
            return None
        columns: list[npt.NDArray[np.intp]] = []
        weights: list[FloatArray] = []
        for analyzer, index, idf, offset in self._blocks:
            counts = Counter(i for gram in analyzer(text) if (i := index.get(gram)) is not None)
            if not counts:
                continue
            positions = np.fromiter(counts.keys(), dtype=np.intp, count=len(counts))
            tf = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
            weight = (1.0 + np.log(tf)) * idf[positions]
            columns.append(positions + offset)
            weights.append(weight / np.sqrt(weight @ weight))
        if not columns:
            return None
        scores = model.intercept.copy()
        for cols, weight in zip(columns, weights, strict=True):
            scores += model.coef[:, cols] @ weight
        scores /= model.temperature
        scores = np.exp(scores - scores.max())
        return np.asarray(scores / scores.sum(), dtype=np.float64)

    def predict(self, text: str) -> list[tuple[str, float]]:
        """The ``top`` most likely categories with probability ``min_probability`` or more,
        most likely first; none when the text has no known term."""
        probabilities = self.probabilities(text)
        if probabilities is None:
            return []
        order = np.argsort(-probabilities, kind="stable")[: self.top]
        return [
            (self.labels[i], float(probabilities[i]))
            for i in order
            if probabilities[i] >= self.min_probability
        ]

    def save(self, folder: Path) -> None:
        """The catalog model's arrays and manifest, plus this model's settings."""
        if self.model_ is None:
            raise ValueError("fit the query category model before saving it")
        self.model_.save(folder)
        settings = {
            "format": CATEGORY_FORMAT,
            "version": VERSION,
            "features": list(self.features),
            "top": self.top,
            "min_probability": self.min_probability,
            "seed": self.seed,
            "folds": self.folds,
        }
        (folder / "query.json").write_text(json.dumps(settings, indent=2))

    @classmethod
    def load(cls, folder: Path) -> QueryCategoryModel:
        """Read a model written by ``save`` (no pickles)."""
        settings = json.loads((folder / "query.json").read_text())
        if settings.get("format") != CATEGORY_FORMAT or settings.get("version") != VERSION:
            raise ValueError(f"{folder} does not hold version {VERSION} {CATEGORY_FORMAT}")
        model = cls(
            features=settings["features"],
            top=int(settings["top"]),
            min_probability=float(settings["min_probability"]),
            seed=int(settings["seed"]),
            folds=int(settings["folds"]),
        )
        model.model_ = CategoryModel.load(folder)
        model._prepare()
        return model


def click_categories(documents: pl.DataFrame, clicks: pl.DataFrame) -> pl.DataFrame:
    """The clicks (query, item_id, ...) with the category of the clicked product: its first
    category below the levels the whole catalog shares (for Best Buy, the genre), else its
    deepest one; clicks on unknown products are dropped."""
    labels = category_labels(documents).join(documents.select("item_id", "category"), on="item_id")
    label = pl.coalesce("label", "category").alias("category")
    return clicks.join(labels.select("item_id", label).drop_nulls(), on="item_id")


def evaluate_query_categories(
    documents: pl.DataFrame, clicks: pl.DataFrame, *, train_share: float = 0.8, **params: Any
) -> dict[str, float | int]:
    """Accuracy of the top predicted category on later clicks: fit on the first
    ``train_share`` of the clicks (by timestamp), score every later click whose product has a
    category, against always guessing the training period's most clicked category."""
    labelled = click_categories(documents, clicks).sort("timestamp")
    cut = int(labelled.height * train_share)
    train, test = labelled.head(cut), labelled.slice(cut)
    model = QueryCategoryModel(**params).fit(train["query"].to_list(), train["category"].to_list())
    predicted = [(model.predict(segment(q)) or [("", 0.0)])[0][0] for q in test["query"]]
    truth = test["category"].to_list()
    majority = train["category"].value_counts(sort=True)["category"][0]
    return {
        "train_clicks": train.height,
        "test_clicks": test.height,
        "classes": len(model.labels),
        "accuracy": float(np.mean([p == t for p, t in zip(predicted, truth, strict=True)])),
        "baseline_accuracy": float(np.mean([t == majority for t in truth])),
        "majority_class": majority,
    }


class QueryUnderstanding:
    """Reads raw queries: normalisation, intents, spelling, synonyms and categories.

    Parameters
    ----------
    min_query_users:
        Shoppers who must type a word before the corrector takes it as correct.
    synonym_min_users, synonym_min_similarity:
        Passed to ``mine_synonyms``.
    """

    def __init__(
        self,
        *,
        min_query_users: int = 3,
        synonym_min_users: int = 3,
        synonym_min_similarity: float = 0.5,
    ) -> None:
        self.min_query_users = min_query_users
        self.synonym_min_users = synonym_min_users
        self.synonym_min_similarity = synonym_min_similarity
        self.corrector_ = SpellingCorrector()
        self.synonyms_ = Synonyms()
        self.categories_: QueryCategoryModel | None = None
        self.data_hash_ = ""

    def get_params(self) -> dict[str, float]:
        """The hyperparameters, as given to ``__init__``."""
        return {
            "min_query_users": self.min_query_users,
            "synonym_min_users": self.synonym_min_users,
            "synonym_min_similarity": self.synonym_min_similarity,
        }

    def fit(
        self,
        documents: pl.DataFrame,
        clicks: pl.DataFrame | None = None,
        configured_synonyms: Mapping[str, Sequence[str]] | None = None,
    ) -> QueryUnderstanding:
        """Learn from the search documents and, when given, the click log (query, item_id,
        user_id, timestamp): spelling from both, mined synonyms and query categories from the
        clicks; configured synonyms are used as given."""
        documents = conform(documents)
        clicks = None if clicks is None or clicks.height == 0 else clicks.drop_nulls("query")
        self.corrector_ = SpellingCorrector.from_texts(
            documents, clicks, min_query_users=self.min_query_users
        )
        mined = None
        self.categories_ = None
        if clicks is not None:
            mined = mine_synonyms(
                clicks,
                min_users=self.synonym_min_users,
                min_similarity=self.synonym_min_similarity,
            )
            labelled = click_categories(documents, clicks)
            try:
                self.categories_ = QueryCategoryModel().fit(
                    labelled["query"].to_list(), labelled["category"].to_list()
                )
            except ValueError:
                self.categories_ = None  # fewer than two categories with two queries each
        self.synonyms_ = Synonyms(configured_synonyms, mined=mined)
        self.data_hash_ = _data_hash(documents, clicks)
        return self

    def understand(self, text: str) -> ParsedQuery:
        """What a raw query asks for. Any input is read: empty, huge, binary junk or emoji
        give a query with nothing (or less) to search, never an error."""
        raw = text if isinstance(text, str) else ""
        cleaned, truncated = _cleaned(raw)
        normalized = segment(cleaned)
        intents = parse_intents(normalized)
        words = " ".join(terms(intents.text))
        correction = self.corrector_.correct(words)
        query = correction.text
        return ParsedQuery(
            raw=raw,
            normalized=normalized,
            text=query,
            corrections=correction.changes,
            expansions=self.synonyms_.expand(query) if query else [],
            price_min=intents.price_min,
            price_max=intents.price_max,
            pack_size=intents.pack_size,
            cheap=intents.cheap,
            categories=self.categories_.predict(query) if self.categories_ and query else [],
            intents=intents.spans,
            truncated=truncated,
        )

    def save(self, path: Path) -> None:
        """Write the parts (spelling.json, synonyms.json, categories/) and then manifest.json."""
        path.mkdir(parents=True, exist_ok=True)
        self.corrector_.save(path / "spelling.json")
        self.synonyms_.save(path / "synonyms.json")
        if self.categories_ is not None:
            self.categories_.save(path / "categories")
        manifest = {
            "format": FORMAT,
            "version": VERSION,
            "params": self.get_params(),
            "data_hash": self.data_hash_,
            "categories": self.categories_ is not None,
        }
        (path / "manifest.json").write_text(json.dumps(manifest, indent=2))

    @classmethod
    def load(cls, path: Path) -> QueryUnderstanding:
        """Read what ``save`` wrote (JSON and arrays, no pickles)."""
        manifest = json.loads((path / "manifest.json").read_text())
        if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
            raise ValueError(f"{path} does not hold version {VERSION} {FORMAT}")
        params = manifest["params"]
        understanding = cls(
            min_query_users=int(params["min_query_users"]),
            synonym_min_users=int(params["synonym_min_users"]),
            synonym_min_similarity=float(params["synonym_min_similarity"]),
        )
        understanding.corrector_ = SpellingCorrector.load(path / "spelling.json")
        understanding.synonyms_ = Synonyms.load(path / "synonyms.json")
        if manifest["categories"]:
            understanding.categories_ = QueryCategoryModel.load(path / "categories")
        understanding.data_hash_ = str(manifest["data_hash"])
        return understanding


def _cleaned(text: str) -> tuple[str, bool]:
    """Control, format and unassigned characters as spaces; at most ``MAX_QUERY_CHARS``."""
    truncated = len(text) > MAX_QUERY_CHARS
    text = text[:MAX_QUERY_CHARS]
    if text.isprintable():
        return text, truncated
    kept = "".join(" " if unicodedata.category(c)[0] == "C" else c for c in text)
    return kept, truncated


def _data_hash(documents: pl.DataFrame, clicks: pl.DataFrame | None) -> str:
    """A digest of what the model learnt from: the documents' ids and titles, the clicks."""
    digest = hashlib.sha256()
    digest.update(documents.select("item_id", "title").sort("item_id").write_csv().encode())
    if clicks is not None:
        columns = [c for c in ("query", "item_id", "user_id") if c in clicks.columns]
        digest.update(clicks.select(columns).sort(columns).write_csv().encode())
    return digest.hexdigest()
