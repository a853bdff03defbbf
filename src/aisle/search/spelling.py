"""Spelling correction of queries against the catalog's words and what shoppers type.

Words come from the catalog (document frequency) and from past queries (distinct users). A word
seen only in queries becomes "correct" once ``min_query_users`` shoppers typed it and no catalog
word (or more popular query word) lies within correcting distance of it: "minecraft" is learnt,
"warefare" (63 users, one edit from the catalog's "warfare") stays a misspelling. Lookup is
symspellpy's symmetric delete; a word is changed only when it is unknown, alphabetic and long
enough, and a catalog word wins over a query word at the same distance.

Besides edits, three repairs of spacing: a word glued to a number ("warfare3" -> "warfare 3",
"nba2k12" -> "nba 2k12"), two catalog words run together ("deadisland" -> "dead island"), and a
catalog word typed in two pieces ("battle field" -> "battlefield") when the catalog writes it
joined more often than apart. symspellpy's ``lookup_compound`` does the same in one pass, but it
also rewrites known words and numbers by its bigram model, so these repairs are explicit.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Final

import numpy as np
import polars as pl
from symspellpy import SymSpell, Verbosity

from aisle.search.tokenize import terms

FORMAT: Final = "aisle-spelling"
VERSION: Final = 1
#: Symspell's prefix length: longer words are indexed by their first 7 letters.
PREFIX_LENGTH: Final = 7

#: The English word list bundled with symspellpy, most frequent first ("word count" lines).
ENGLISH_WORDS: Final = "frequency_dictionary_en_82_765.txt"
#: The document fields whose words the corrector learns.
TEXT_FIELDS: Final = ("title", "brand", "category", "aliases", "description")
#: Word pairs kept for splitting and joining words: the most common, to bound the artifact.
MAX_PAIRS: Final = 200_000
#: Catalog texts cut into words at a time: the words of a million descriptions at once took
#: over 20 GB; counts are kept per word id and per pair of ids between chunks. On 200k
#: recombined products 10,000 at a time peaked at 0.34 GB over the documents, 50,000 at
#: 1.2 GB, in the same time.
CHUNK: Final = 10_000

_WORD: Final = re.compile(r"[a-z]+")
#: Letters glued to a number or a number glued to letters: "warfare3", "nba2k12", "360elite".
_LETTERS_NUMBER: Final = re.compile(r"([a-z]+)(\d[a-z0-9]*)")
_NUMBER_LETTERS: Final = re.compile(r"(\d+)([a-z]+)")


@dataclass(frozen=True)
class Correction:
    """A query as corrected, and each change made: (what was typed, what it became)."""

    text: str
    changes: list[tuple[str, str]] = field(default_factory=list)


class SpellingCorrector:
    """Corrects unknown words of a query to catalog words (symspellpy underneath).

    Parameters
    ----------
    min_length:
        Shorter words are never changed ("cod", "gta", "wii").
    distance_two_from:
        Words at least this long may be two edits from their correction; shorter ones one.
    min_query_users:
        Distinct shoppers who must have typed a word seen only in queries for it to be correct.
    common_words:
        The most frequent English words (symspellpy's bundled frequency list) are never
        changed, though never suggested either: a shop's catalog lacks "printer" or "smith",
        which are not typos of "prince" or "sith".
    """

    def __init__(
        self,
        *,
        min_length: int = 4,
        distance_two_from: int = 6,
        min_query_users: int = 3,
        common_words: int = 30_000,
    ) -> None:
        self.min_length = min_length
        self.distance_two_from = distance_two_from
        self.min_query_users = min_query_users
        self.common_words = common_words
        self.words_: dict[str, int] = {}
        self.catalog_: frozenset[str] = frozenset()
        self.pairs_: dict[str, int] = {}  # "dead island" -> catalog texts with the two in a row
        self._symspell = SymSpell(2, PREFIX_LENGTH)

    def get_params(self) -> dict[str, int]:
        """The hyperparameters, as given to ``__init__``."""
        return {
            "min_length": self.min_length,
            "distance_two_from": self.distance_two_from,
            "min_query_users": self.min_query_users,
            "common_words": self.common_words,
        }

    # ---------------------------------------------------------------- fitting

    def fit(self, vocabulary: Iterable[tuple[str, int]]) -> SpellingCorrector:
        """Learn catalog words and their frequencies (all taken as correct)."""
        counts: dict[str, int] = {}
        for word, count in vocabulary:
            key = word.lower()
            counts[key] = counts.get(key, 0) + int(count)
        return self._learn(counts, {}, {})

    @classmethod
    def from_texts(
        cls,
        catalog_texts: Sequence[str] | pl.Series | pl.DataFrame,
        queries: pl.DataFrame | None = None,
        **params: int,
    ) -> SpellingCorrector:
        """Learn from catalog texts (titles, descriptions, brands; or the search documents
        themselves) and past queries (a frame with ``query`` and ``user_id``): catalog words
        count the texts they appear in, query words the distinct users who typed them. Texts
        are read ``CHUNK`` at a time."""
        corrector = cls(**params)
        if not isinstance(catalog_texts, pl.DataFrame):
            catalog_texts = pl.Series("text", catalog_texts, dtype=pl.String)
        catalog, pairs = catalog_counts(catalog_texts)
        users: dict[str, int] = {}
        if queries is not None and queries.height:
            typed = _term_positions(queries.select("query", "user_id"), "query", "user_id")
            users = dict(typed.group_by("term").agg(pl.col("user_id").n_unique()).iter_rows())
        return corrector._learn(catalog, users, pairs)

    def _learn(
        self, catalog: dict[str, int], users: dict[str, int], pairs: dict[str, int]
    ) -> SpellingCorrector:
        """Build the dictionary: catalog words, weighted by texts and typing shoppers, then the
        query-only words with enough shoppers that are not misspellings of a known word."""
        self.catalog_ = frozenset(catalog)
        self.pairs_ = dict(pairs)
        self.words_ = {}
        self._symspell = SymSpell(2, PREFIX_LENGTH)
        for word, count in sorted(catalog.items(), key=lambda kv: (-kv[1], kv[0])):
            self._add(word, count + users.get(word, 0))
        typed_only = sorted(
            ((w, n) for w, n in users.items() if w not in catalog and n >= self.min_query_users),
            key=lambda kv: (-kv[1], kv[0]),
        )
        for word, count in typed_only:  # most typed first: a rarer neighbour is its typo
            if self._changeable(word) and self._repair(word, widest=True) is not None:
                continue
            if _glued(word) and self._repair(word) is not None:
                continue  # "warfare3", "nba2k12": the catalog's spacing is what to search
            self._add(word, count)
        return self

    def _add(self, word: str, count: int) -> None:
        self.words_[word] = count
        if _WORD.fullmatch(word):  # only letters are ever suggested
            self._symspell.create_dictionary_entry(word, max(count, 1))

    # ------------------------------------------------------------- correcting

    def correct(self, text: str) -> Correction:
        """The query with unknown words corrected; words that are known, numbers, short words,
        and words in other scripts are left as typed."""
        tokens = text.split()
        if not tokens or not self.words_:
            return Correction(text)
        out: list[str] = []
        changes: list[tuple[str, str]] = []
        i = 0
        while i < len(tokens):
            token = tokens[i]
            if i + 1 < len(tokens):
                joined = self._joined(token.lower(), tokens[i + 1].lower())
                if joined is not None:
                    changes.append((f"{token} {tokens[i + 1]}", joined))
                    out.append(joined)
                    i += 2
                    continue
            fixed = self._fixed(token.lower())
            if fixed is None:
                out.append(token)
            else:
                changes.append((token, fixed))
                out.append(fixed)
            i += 1
        if not changes:
            return Correction(text)
        return Correction(" ".join(out), changes)

    def is_known(self, word: str) -> bool:
        """Whether a word is in the dictionary (a catalog word or a learnt query word)."""
        return word.lower() in self.words_

    def _fixed(self, token: str) -> str | None:
        """What one typed word should read, or None to leave it."""
        if token in self.words_ or token in common_english(self.common_words):
            return None
        return self._repair(token)

    def _repair(self, token: str, *, widest: bool = False) -> str | None:
        """A word glued to a number unglued; else the nearest word one edit away; else two
        catalog words run together split; else the nearest two edits away where the length
        allows (always, when ``widest``: a query word that near a known one is its typo)."""
        glued = _glued(token)
        if glued is not None:
            return self._unglued(glued.group(1), glued.group(2))
        if not self._changeable(token):
            return None
        near = self._nearest(token, 1)
        if near is not None:
            return near
        split = self._split(token)
        if split is not None:
            return split
        if widest or len(token) >= self.distance_two_from:
            return self._nearest(token, 2)
        return None

    def _changeable(self, token: str) -> bool:
        return len(token) >= self.min_length and _WORD.fullmatch(token) is not None

    def _nearest(self, token: str, distance: int) -> str | None:
        """The closest known word within ``distance`` edits that starts with the same letter
        (a first letter is rarely the mistyped one: "xmen" is not "men", "kinetic" not
        "genetic"); a catalog word before a query word at the same distance, then the more
        frequent."""
        found = [
            s
            for s in self._symspell.lookup(token, Verbosity.ALL, distance)
            if s.term != token and s.term[0] == token[0]
        ]
        if not found:
            return None
        best = min(found, key=lambda s: (s.distance, s.term not in self.catalog_, -s.count, s.term))
        return str(best.term)

    def _unglued(self, first: str, second: str) -> str | None:
        """ "warfare3" -> "warfare 3" when the letters are (or correct to) a catalog word of
        three letters or more and the rest is a number or a catalog word; "mw3" stays."""
        letters, rest = (first, second) if first[0].isalpha() else (second, first)
        if len(letters) < 3:
            return None
        word = letters if letters in self.catalog_ else self._repair(letters)
        if word is None or " " in word or word not in self.catalog_:
            return None
        if not (rest.isdigit() or rest in self.catalog_):
            return None
        return f"{word} {rest}" if first[0].isalpha() else f"{rest} {word}"

    def _split(self, token: str) -> str | None:
        """Two words that the catalog writes in a row, run together ("deadisland"); the pair
        in the most catalog texts wins. "minecraft" is not "mine craft": no text says that."""
        best: tuple[int, str] | None = None
        for cut in range(1, len(token)):
            pair = f"{token[:cut]} {token[cut:]}"
            seen = self.pairs_.get(pair, 0)
            if seen > 0 and (best is None or seen > best[0]):
                best = (seen, pair)
        return None if best is None else best[1]

    def _joined(self, left: str, right: str) -> str | None:
        """ "battle field" -> "battlefield" when the catalog has the joined word in more texts
        than it has the two words in a row."""
        if not (_WORD.fullmatch(left) and _WORD.fullmatch(right)):
            return None
        joined = left + right
        if len(joined) < 4 or joined not in self.catalog_:
            return None
        return joined if self.words_[joined] > self.pairs_.get(f"{left} {right}", 0) else None

    # ------------------------------------------------------------- artifacts

    def save(self, path: Path) -> None:
        """Write the dictionary as one JSON file."""
        path.parent.mkdir(parents=True, exist_ok=True)
        document = {
            "format": FORMAT,
            "version": VERSION,
            "params": self.get_params(),
            "words": self.words_,
            "catalog": sorted(self.catalog_),
            "pairs": self.pairs_,
        }
        path.write_text(json.dumps(document, ensure_ascii=False))

    @classmethod
    def load(cls, path: Path) -> SpellingCorrector:
        """Read a corrector written by ``save``."""
        document: dict[str, Any] = json.loads(path.read_text())
        if document.get("format") != FORMAT or document.get("version") != VERSION:
            raise ValueError(f"{path} does not hold a version {VERSION} {FORMAT}")
        corrector = cls(**{k: int(v) for k, v in document["params"].items()})
        corrector.catalog_ = frozenset(document["catalog"])
        corrector.pairs_ = {str(k): int(v) for k, v in document["pairs"].items()}
        for word, count in document["words"].items():
            corrector._add(str(word), int(count))
        return corrector


@functools.lru_cache(maxsize=4)
def common_english(top: int) -> frozenset[str]:
    """The ``top`` most frequent words of symspellpy's English frequency list."""
    if top <= 0:
        return frozenset()
    listing = resources.files("symspellpy").joinpath(ENGLISH_WORDS).read_text(encoding="utf-8")
    return frozenset(line.split(" ", 1)[0] for line in listing.splitlines()[:top])


def document_texts(documents: pl.DataFrame) -> list[str]:
    """One text per search document: its title, brand, category, aliases and description."""
    return document_text_column(documents).to_list()


def document_text_column(documents: pl.DataFrame) -> pl.Series:
    """``document_texts`` as a column (no Python string per document)."""
    present = [c for c in TEXT_FIELDS if c in documents.columns]
    text = pl.concat_str([pl.col(c) for c in present], separator=" ", ignore_nulls=True)
    return documents.select(text.fill_null("").alias("text")).to_series()


def catalog_counts(texts: pl.Series | pl.DataFrame) -> tuple[dict[str, int], dict[str, int]]:
    """Every word of the texts with the number of texts holding it, and the ``MAX_PAIRS``
    most common pairs of letter words in a row ("dead island") with theirs, counted
    ``CHUNK`` texts at a time: words get integer ids as they first appear, and a pair is the
    two ids in one 64-bit key, so what is kept between chunks is numbers, not strings.
    ``texts`` may be search documents, whose ``document_texts`` are then made a chunk at a
    time too."""
    words = pl.DataFrame(schema={"term": pl.String, "id": pl.Int64, "letters": pl.Boolean})
    texts_with = np.zeros(0, dtype=np.int64)  # by word id
    pairs = pl.DataFrame(schema={"key": pl.Int64, "texts": pl.UInt32})
    for start in range(0, len(texts), CHUNK):
        part = texts.slice(start, CHUNK)
        column = document_text_column(part) if isinstance(part, pl.DataFrame) else part
        chunk = pl.DataFrame({"text": column}).with_row_index("doc")
        positions = _term_positions(chunk, "text", "doc")
        fresh = positions.select("term").unique().join(words, on="term", how="anti")
        fresh = fresh.sort("term").with_columns(
            pl.int_range(words.height, words.height + fresh.height, dtype=pl.Int64).alias("id"),
            pl.col("term").str.contains(r"^[a-z]+$").alias("letters"),
        )
        words = pl.concat([words, fresh])
        ids = positions.join(words, on="term").select("doc", "pos", "id", "letters")
        held = ids.unique(["doc", "id"]).group_by("id").len()
        texts_with = np.concatenate([texts_with, np.zeros(fresh.height, np.int64)])
        np.add.at(texts_with, held["id"].to_numpy(), held["len"].to_numpy().astype(np.int64))
        letters = ids.filter(pl.col("letters"))
        nexts = letters.select("doc", (pl.col("pos") - 1).alias("pos"), pl.col("id").alias("next"))
        counted = (
            letters.join(nexts, on=["doc", "pos"])
            .select("doc", (pl.col("id") * (1 << 32) + pl.col("next")).alias("key"))
            .unique()
            .group_by("key")
            .agg(pl.len().alias("texts"))
        )
        pairs = pl.concat([pairs, counted]).group_by("key").agg(pl.col("texts").sum())
    counts = texts_with[words["id"].to_numpy()].tolist()
    catalog = dict(zip(words["term"].to_list(), counts, strict=True))
    return catalog, _top_pairs(pairs, words)


def _top_pairs(pairs: pl.DataFrame, words: pl.DataFrame) -> dict[str, int]:
    """The ``MAX_PAIRS`` most common pairs as "first second" -> texts (ties by the pair)."""
    if pairs.height > MAX_PAIRS:  # only pairs that can make the cut are spelt out
        least = np.partition(pairs["texts"].to_numpy(), pairs.height - MAX_PAIRS)
        pairs = pairs.filter(pl.col("texts") >= int(least[pairs.height - MAX_PAIRS]))
    names = words.select("id", "term")
    spelt = (
        pairs.with_columns(
            (pl.col("key") // (1 << 32)).alias("id"), (pl.col("key") % (1 << 32)).alias("next")
        )
        .join(names, on="id")
        .join(names.rename({"id": "next", "term": "after"}), on="next")
        .select(
            pl.concat_str(["term", "after"], separator=" ").alias("pair"),
            pl.col("texts").cast(pl.Int64),
        )
        .sort(["texts", "pair"], descending=[True, False])
        .head(MAX_PAIRS)
    )
    return dict(spelt.iter_rows())


def click_misspellings(clicks: pl.DataFrame, documents: pl.DataFrame) -> pl.DataFrame:
    """Misspellings that shoppers made and then showed what they meant by clicking: token,
    intended and users. A token is a query word of four characters or more, not a number, that
    no catalog text has; what it meant is the closest word, or two words in a row written
    without the space ("dead island" for "deadisland"), of the clicked product's title: one edit
    away for up to five characters, two from six. Over all its clicks, the most common
    intended wins; users counts the distinct shoppers who typed it.

    ``clicks`` has query, item_id and user_id; ``documents`` the search documents."""
    catalog = set(_term_positions(_texts_frame(documents), "text", "doc")["term"].to_list())
    typed = (
        _term_positions(clicks, "query", "user_id", "item_id")
        .unique(["user_id", "item_id", "term"])
        .filter(
            (pl.col("term").str.len_chars() >= 4)
            & ~pl.col("term").str.contains(r"^\d+$")
            & ~pl.col("term").is_in(list(catalog))
        )
    )
    titles = _title_keys(documents)
    keyring = SymSpell(2, PREFIX_LENGTH)
    for key in titles["key"].unique().to_list():
        keyring.create_dictionary_entry(key, 1)
    tokens = typed["term"].unique().to_list()
    near = pl.DataFrame(
        [
            (token, s.term, s.distance)
            for token in tokens
            for s in keyring.lookup(token, Verbosity.ALL, 2 if len(token) >= 6 else 1)
        ],
        schema={"term": pl.String, "key": pl.String, "distance": pl.Int64},
        orient="row",
    )
    meant = (
        typed.join(near, on="term")
        .join(titles, on=["item_id", "key"])
        .sort(["distance", "words"])
        .unique(["term", "user_id", "item_id"], keep="first")  # the closest in that title
    )
    intended = (
        meant.group_by("term", "words")
        .agg(pl.col("user_id").n_unique().alias("votes"))
        .sort(["votes", "words"], descending=[True, False])
        .unique("term", keep="first")
    )
    users = typed.group_by("term").agg(pl.col("user_id").n_unique().alias("users"))
    return (
        intended.join(users, on="term")
        .select(pl.col("term").alias("token"), pl.col("words").alias("intended"), "users")
        .sort(["users", "token"], descending=[True, False])
    )


def evaluate_spelling(
    documents: pl.DataFrame, clicks: pl.DataFrame, *, train_share: float = 0.8, **params: int
) -> dict[str, float | int]:
    """Precision and recall of the corrector on misspellings shoppers made later.

    The corrector learns from the catalog and the first ``train_share`` of the clicks (by
    ``timestamp``); the misspellings of the rest (``click_misspellings``) are what it should
    fix. Every distinct word of those later queries is corrected alone: precision is the share
    of the words it changed that became the intended word (a change to a word with no known
    intended one counts against it, though many are right: "consel" -> "console" when the
    shopper clicked a game), labelled precision the same among words with a known intended
    one, recall the share of misspellings it fixed."""
    ordered = clicks.sort("timestamp")
    cut = int(ordered.height * train_share)
    train, test = ordered.head(cut), ordered.slice(cut)
    corrector = SpellingCorrector.from_texts(document_texts(documents), train, **params)
    pairs = click_misspellings(test, documents)
    words = _term_positions(test.select("query", "user_id"), "query", "user_id")
    distinct = words["term"].unique().sort().to_list()
    fixed = {word: corrector.correct(word).text for word in distinct}
    intended = dict(zip(pairs["token"], pairs["intended"], strict=True))
    changed = [w for w in distinct if fixed[w] != w]
    right = [w for w in changed if intended.get(w) == fixed[w]]
    labelled = [w for w in changed if w in intended]
    return {
        "train_clicks": train.height,
        "test_clicks": test.height,
        "test_words": len(distinct),
        "misspellings": len(intended),
        "changed": len(changed),
        "fixed": len(right),
        "precision": len(right) / len(changed) if changed else 0.0,
        "labelled_precision": len(right) / len(labelled) if labelled else 0.0,
        "recall": len(right) / len(intended) if intended else 0.0,
    }


def _glued(token: str) -> re.Match[str] | None:
    return _LETTERS_NUMBER.fullmatch(token) or _NUMBER_LETTERS.fullmatch(token)


def _term_positions(frame: pl.DataFrame, text: str, *owners: str) -> pl.DataFrame:
    """The owner columns, pos and term of every term of every row's text, as ``terms`` cuts
    them (each distinct text cut once)."""
    distinct = frame.select(text).drop_nulls().unique()
    cut = distinct.with_columns(
        pl.col(text).map_elements(terms, return_dtype=pl.List(pl.String)).alias("term")
    )
    return (
        frame.join(cut, on=text)
        .select(*owners, pl.col("term"))
        .with_columns(pl.int_ranges(pl.col("term").list.len()).alias("pos"))
        .explode(["term", "pos"])
        .drop_nulls("term")
    )


def _texts_frame(documents: pl.DataFrame) -> pl.DataFrame:
    return document_text_column(documents).to_frame().with_row_index("doc")


def _title_keys(documents: pl.DataFrame) -> pl.DataFrame:
    """item_id, key and words: every title word; every two words in a row, joined (key) and
    as written (words), unless the second is one letter ("collector's" gives "collector s",
    a possessive, not a word run together); and every word followed by any number of the title
    ("forza4" meant "forza 4" in "Forza Motorsport 4")."""
    titled = documents.select("item_id", pl.col("title").fill_null("").alias("title"))
    words = _term_positions(titled, "title", "item_id")
    nexts = words.select("item_id", (pl.col("pos") - 1).alias("pos"), pl.col("term").alias("next"))
    numbers = words.filter(pl.col("term").str.contains(r"^\d+$")).select(
        "item_id", pl.col("term").alias("next")
    )
    letters = words.filter(pl.col("term").str.contains(r"^[a-z]+$"))
    pairs = pl.concat(
        [
            words.join(nexts, on=["item_id", "pos"]).filter(
                (pl.col("next").str.len_chars() > 1) | pl.col("next").str.contains(r"^\d$")
            ),
            letters.join(numbers, on="item_id"),
        ],
        how="diagonal",
    ).select(
        "item_id",
        (pl.col("term") + pl.col("next")).alias("key"),
        pl.concat_str(["term", "next"], separator=" ").alias("words"),
    )
    singles = words.select("item_id", pl.col("term").alias("key"), pl.col("term").alias("words"))
    return pl.concat([singles, pairs]).unique()
