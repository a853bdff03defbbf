"""Autocomplete: past queries and product titles that continue what a shopper has typed.

Every word start of every suggestion is a key in one sorted array ("gears of war 3", "of war
3", "war 3"), so the suggestions for a prefix are one contiguous slice found by bisection and
typing "war" reaches "gears of war 3". Keys are folded (NFKC, lowercase, accents and
punctuation off), so "Pokémon:" and "pokemon" meet. A past query is offered only once
``min_users`` distinct shoppers typed it, and never when the PII scrubber finds anything in it:
such a query is dropped, not offered redacted. When a prefix finds too little, its complete
words go through the spelling corrector and the search runs again.
"""

from __future__ import annotations

import bisect
import json
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import polars as pl

from aisle.privacy.pii import scrub
from aisle.search.documents import conform
from aisle.search.spelling import SpellingCorrector
from aisle.search.synonyms import MACHINE_QUERY
from aisle.search.tokenize import segment, terms

FORMAT: Final = "aisle-suggest"
VERSION: Final = 1
#: Word starts indexed per suggestion: a match deep in a long title is not what anyone types.
MAX_WORD_STARTS: Final = 8
#: Prefixes this short have huge slices; their answers are ranked once, when the index is built.
PRECOMPUTED_CHARS: Final = 2
#: Suggestions kept per precomputed prefix (the most ``suggest`` returns for one).
PRECOMPUTED_TOP: Final = 50
_END: Final = "\U0010ffff"


@dataclass(frozen=True)
class Suggestion:
    """One completion: its text, where it came from ("query" or "title") and its weight."""

    text: str
    source: str
    weight: float


def fold(text: str) -> str:
    """The form keys are compared in: search terms one space apart, without accents."""
    words = " ".join(terms(text))
    if words.isascii():
        return words
    decomposed = unicodedata.normalize("NFKD", words)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


class Suggester:
    """Prefix completion over past queries and product titles.

    Parameters
    ----------
    title_weight:
        A title's weight is its product's popularity times this: titles are longer than what
        people type ("Gears of War 3 - Xbox 360"), so at equal popularity the query shoppers
        typed comes first.
    inner_word_weight:
        Weight kept by a match that starts at a later word ("war" in "gears of war 3").
    """

    def __init__(self, *, title_weight: float = 0.5, inner_word_weight: float = 0.5) -> None:
        self.title_weight = title_weight
        self.inner_word_weight = inner_word_weight
        self.texts_: list[str] = []
        self.sources_: list[str] = []
        self.weights_: npt.NDArray[np.float64] = np.zeros(0)
        self.corrector_: SpellingCorrector | None = None
        self._keys: list[str] = []
        self._owners: npt.NDArray[np.int64] = np.zeros(0, dtype=np.int64)
        self._entry_weights: npt.NDArray[np.float64] = np.zeros(0)
        self._folded: list[str] = []
        self._short: dict[str, list[int]] = {}

    def get_params(self) -> dict[str, float]:
        """The hyperparameters, as given to ``__init__``."""
        return {"title_weight": self.title_weight, "inner_word_weight": self.inner_word_weight}

    def fit(
        self,
        documents: pl.DataFrame,
        queries: pl.DataFrame | None = None,
        *,
        min_users: int = 5,
        corrector: SpellingCorrector | None = None,
    ) -> Suggester:
        """Index product titles (weighted by popularity) and the past queries (query,
        user_id) that at least ``min_users`` distinct shoppers typed and that hold no PII.
        Queries are counted as the corrector spells them, so "battlefeild 3" adds its
        shoppers to "battlefield 3" and is never offered itself. Without a ``corrector``, one
        is learnt from the same documents and queries."""
        titles = (
            conform(documents)
            .select(
                pl.col("title").str.strip_chars().alias("text"),
                (pl.col("popularity").fill_null(0.0) * self.title_weight).alias("weight"),
            )
            .drop_nulls("text")
            .filter(pl.col("text") != "")
            .group_by("text")
            .agg(pl.col("weight").max())
            .with_columns(pl.lit("title").alias("source"))
        )
        if corrector is None:
            corrector = SpellingCorrector.from_texts(documents, queries)
        self.corrector_ = corrector
        frames = [titles]
        if queries is not None and queries.height:
            frames.append(_popular_queries(queries, min_users, corrector))
        candidates = pl.concat(frames, how="diagonal_relaxed").with_columns(
            pl.col("text").map_elements(fold, return_dtype=pl.String).alias("key")
        )
        # the same words as a title and as a query: one suggestion, the heavier
        candidates = (
            candidates.filter(pl.col("key") != "")
            .sort(["weight", "source", "text"], descending=[True, False, False])
            .unique("key", keep="first", maintain_order=True)
        )
        self.texts_ = candidates["text"].to_list()
        self.sources_ = candidates["source"].to_list()
        self.weights_ = candidates["weight"].cast(pl.Float64).to_numpy().copy()
        self._index(candidates["key"].to_list())
        return self

    def _index(self, folded: list[str]) -> None:
        """Sorted keys (every word start of every suggestion), their owners and weights, and
        the ranked answers of the shortest prefixes."""
        self._folded = folded
        keys: list[str] = []
        owners: list[int] = []
        firsts: list[bool] = []
        for owner, text in enumerate(folded):
            words = text.split(" ")
            for start in range(min(len(words), MAX_WORD_STARTS)):
                keys.append(" ".join(words[start:]))
                owners.append(owner)
                firsts.append(start == 0)
        order = sorted(range(len(keys)), key=keys.__getitem__)
        self._keys = [keys[i] for i in order]
        self._owners = np.asarray(owners, dtype=np.int64)[order]
        first = np.asarray(firsts, dtype=bool)[order]
        weights = self.weights_[self._owners] if order else np.zeros(0)
        self._entry_weights = np.where(first, weights, weights * self.inner_word_weight)
        self._short = {}
        shorts = sorted({k[:length] for k in self._keys for length in range(1, 3)})
        for prefix in (p for p in shorts if len(p) <= PRECOMPUTED_CHARS):
            self._short[prefix] = self._ranked(prefix, PRECOMPUTED_TOP, precomputed=False)

    def suggest(self, prefix: str, n: int = 10) -> list[Suggestion]:
        """Up to ``n`` completions of what was typed, best first; case, accents and
        punctuation do not matter, and a word may be completed anywhere in a suggestion."""
        if not isinstance(prefix, str) or n <= 0 or not self._keys:
            return []
        key = fold(prefix[:256])
        if not key:
            return []
        complete = prefix[-1:].isspace() or not prefix[-1:].isalnum()
        if complete:
            key += " "
        found = self._ranked(key, n)
        if len(found) < n and self.corrector_ is not None:
            for other in self._corrected(key, complete):
                found += [o for o in self._ranked(other, n) if o not in found]
        return [self._suggestion(owner) for owner in self._non_redundant(found)[:n]]

    def _corrected(self, key: str, complete: bool) -> list[str]:
        """The prefix with its complete words corrected; when that changes nothing, with its
        last word corrected too (the shopper may have typed all of it: "battlefeild")."""
        assert self.corrector_ is not None
        words = key.split()
        done, partial = (words, "") if complete else (words[:-1], words[-1])
        tries = []
        if done:
            fixed = self.corrector_.correct(" ".join(done)).text
            if fixed != " ".join(done):
                tries.append(f"{fixed} {partial}" if partial else f"{fixed} ")
        if not tries and partial:
            fixed = self.corrector_.correct(" ".join(words)).text
            if fixed != " ".join(words):
                tries.append(fixed)
        return tries

    def _ranked(self, key: str, n: int, *, precomputed: bool = True) -> list[int]:
        """Owners of the keys starting with ``key``, heaviest match first, each once."""
        if precomputed and key in self._short and n <= PRECOMPUTED_TOP:
            return self._short[key][: n * 2]
        low = bisect.bisect_left(self._keys, key)
        high = bisect.bisect_left(self._keys, key + _END, lo=low)
        if low == high:
            return []
        weights = self._entry_weights[low:high]
        owners = self._owners[low:high]
        wanted = n * 2 + MAX_WORD_STARTS  # room for owners matched twice and redundant titles
        if len(weights) > wanted * 4:
            keep = np.argpartition(-weights, wanted)[:wanted]
            weights, owners = weights[keep], owners[keep]
        order = np.lexsort((owners, -weights))
        ranked = owners[order]
        _, first = np.unique(ranked, return_index=True)
        return [int(o) for o in ranked[np.sort(first)][: n * 2]]

    def _non_redundant(self, owners: list[int]) -> list[int]:
        """Drop a title that a query ranked above it already begins ("gears of war 3"
        covers "Gears of War 3 - Xbox 360")."""
        kept: list[int] = []
        typed: list[str] = []
        for owner in owners:
            text = self._folded[owner]
            if self.sources_[owner] == "title" and any(
                text == q or text.startswith(q + " ") for q in typed
            ):
                continue
            kept.append(owner)
            if self.sources_[owner] == "query":
                typed.append(text)
        return kept

    def _suggestion(self, owner: int) -> Suggestion:
        return Suggestion(self.texts_[owner], self.sources_[owner], float(self.weights_[owner]))

    def save(self, path: Path) -> None:
        """Write the suggestions as JSON (and the corrector beside them); the index is rebuilt
        on load."""
        path.mkdir(parents=True, exist_ok=True)
        if self.corrector_ is not None:
            self.corrector_.save(path / "spelling.json")
        document = {
            "format": FORMAT,
            "version": VERSION,
            "params": self.get_params(),
            "texts": self.texts_,
            "sources": self.sources_,
            "weights": self.weights_.tolist(),
            "corrector": self.corrector_ is not None,
        }
        (path / "suggestions.json").write_text(json.dumps(document, ensure_ascii=False))

    @classmethod
    def load(cls, path: Path) -> Suggester:
        """Read a suggester written by ``save``."""
        document: dict[str, Any] = json.loads((path / "suggestions.json").read_text())
        if document.get("format") != FORMAT or document.get("version") != VERSION:
            raise ValueError(f"{path} does not hold version {VERSION} {FORMAT}")
        suggester = cls(**{k: float(v) for k, v in document["params"].items()})
        suggester.texts_ = [str(t) for t in document["texts"]]
        suggester.sources_ = [str(s) for s in document["sources"]]
        suggester.weights_ = np.asarray(document["weights"], dtype=np.float64)
        if document["corrector"]:
            suggester.corrector_ = SpellingCorrector.load(path / "spelling.json")
        suggester._index([fold(t) for t in suggester.texts_])
        return suggester


def _popular_queries(
    queries: pl.DataFrame, min_users: int, corrector: SpellingCorrector
) -> pl.DataFrame:
    """text, weight (distinct users) and source of the queries typed by ``min_users`` distinct
    shoppers or more, counted as normalised and spelling-corrected; people's words only (no
    campaign tags or SKU lists), none with PII in any way it was typed."""
    typed = queries.select("query", "user_id").drop_nulls()
    normal = (
        typed.select("query")
        .unique()
        .filter(~pl.col("query").str.contains(MACHINE_QUERY))
        .with_columns(
            pl.col("query")
            .map_elements(lambda q: corrector.correct(segment(q)).text, return_dtype=pl.String)
            .alias("text")
        )
        .filter(pl.col("text") != "")
    )
    popular = (
        typed.join(normal, on="query")
        .group_by("text")
        .agg(
            pl.col("user_id").n_unique().cast(pl.Float64).alias("weight"),
            pl.col("query").unique().alias("typed"),
        )
        .filter(pl.col("weight") >= min_users)
    )
    # only the popular few reach the scrubber; PII in any spelling drops the query
    clean = [
        not any(scrub(t)[1] for t in [text, *typed])
        for text, typed in popular.select("text", "typed").iter_rows()
    ]
    return popular.filter(pl.Series(clean, dtype=pl.Boolean)).select(
        "text", "weight", pl.lit("query").alias("source")
    )
