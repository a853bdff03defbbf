"""Synonyms: phrases a merchandiser declares equivalent, and queries that shoppers' clicks show
to mean the same thing ("cod" and "call of duty"), turned into other phrasings of a query.

Configured synonyms match on word boundaries anywhere in a query ("cod zombies" gives "call of
duty zombies"). Mined ones were learnt from whole queries, so they rewrite only a query that
is exactly one of them: "gears of war" and "gears of war 3" click the same game, yet "gears of
war 2" must not become "gears of war 3 2".
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np
import polars as pl
from scipy import sparse
from sklearn.preprocessing import normalize
from symspellpy.editdistance import DistanceAlgorithm, EditDistance

from aisle.search.tokenize import terms

FORMAT: Final = "aisle-synonyms"
VERSION: Final = 1
#: A configured key ending in this arrow is one-way: {"cod =>": ["call of duty"]}.
ONE_WAY: Final = "=>"
#: Queries that people did not type: campaign tags ("laborday_videogames_20110902") and lists
#: of SKUs or dates (six digits or more in a row).
MACHINE_QUERY: Final = r"_|\d{6,}"
#: The kinds of mined pair that mean the same and may rewrite a query.
REWRITING_KINDS: Final = ("synonym", "spelling")

MINED_SCHEMA: Final = pl.Schema(
    {
        "query": pl.String(),
        "synonym": pl.String(),
        "similarity": pl.Float64(),
        "support": pl.UInt32(),  # shoppers who typed the synonym
        "query_support": pl.UInt32(),  # shoppers who typed the query
        "kind": pl.String(),
    }
)

Phrase = tuple[str, ...]

_DIGITS: Final = re.compile(r"\d+")


def normalise(text: str) -> str:
    """A phrase as queries are compared: the search terms, one space apart."""
    return " ".join(terms(text))


class Synonyms:
    """Other phrasings of queries, from configured and mined synonyms.

    Parameters
    ----------
    configured:
        ``{"tv": ["television", "telly"]}``: the phrases of each entry are equivalent (two-way);
        a key ending in ``=>`` maps one way only (``{"cod =>": ["call of duty"]}``).
    one_way:
        More one-way rules, phrase -> its alternatives.
    mined:
        A frame from ``mine_synonyms``. Its synonym and spelling pairs rewrite a whole query
        into phrasings more shoppers typed ("bf3" -> "battlefield 3"), never into rarer ones:
        those are mostly misspellings and side searches of a popular query.
    max_mined:
        The most mined phrasings per query.
    max_expansions:
        The most phrasings ``expand`` returns.
    """

    def __init__(
        self,
        configured: Mapping[str, Sequence[str]] | None = None,
        *,
        one_way: Mapping[str, Sequence[str]] | None = None,
        mined: pl.DataFrame | None = None,
        max_mined: int = 3,
        max_expansions: int = 8,
    ) -> None:
        self.configured = dict(configured or {})
        self.one_way = dict(one_way or {})
        self.mined = (mined if mined is not None else pl.DataFrame(schema=MINED_SCHEMA)).select(
            MINED_SCHEMA.names()
        )
        self.max_mined = max_mined
        self.max_expansions = max_expansions
        self._rules: dict[Phrase, list[Phrase]] = {}
        for key, values in self.configured.items():
            if key.rstrip().endswith(ONE_WAY):
                self._add_rule(key.rstrip()[: -len(ONE_WAY)], values)
            else:
                group = [key, *values]
                for phrase in group:
                    self._add_rule(phrase, [p for p in group if p != phrase])
        for key, values in self.one_way.items():
            self._add_rule(key, values)
        self._longest = max((len(p) for p in self._rules), default=0)
        rewriting = (
            self.mined.filter(
                pl.col("kind").is_in(REWRITING_KINDS)
                & (pl.col("support") > pl.col("query_support"))
            )
            .sort(["query", "support", "synonym"], descending=[False, True, False])
            .group_by("query", maintain_order=True)
            .head(max_mined)
        )
        self._whole: dict[str, list[str]] = {}
        for query, synonym in rewriting.select("query", "synonym").iter_rows():
            self._whole.setdefault(query, []).append(synonym)

    def _add_rule(self, phrase: str, alternatives: Iterable[str]) -> None:
        key = tuple(terms(phrase))
        if not key:
            return
        known = self._rules.setdefault(key, [])
        for alternative in alternatives:
            words = tuple(terms(alternative))
            if words and words != key and words not in known:
                known.append(words)

    def expand(self, text: str) -> list[str]:
        """Other phrasings of a query, most direct first: each configured phrase replaced by
        its alternatives (one phrase at a time before several), then the mined synonyms of the
        whole query (the most typed first). The query itself is not among them."""
        words = tuple(terms(text))
        if not words:
            return []
        query = " ".join(words)
        found: list[str] = []
        for phrasing in itertools.chain(self._rewrites(words), self._whole.get(query, [])):
            if phrasing != query and phrasing not in found:
                found.append(phrasing)
            if len(found) >= self.max_expansions:
                break
        return found

    def _rewrites(self, words: Phrase) -> Iterable[str]:
        """Phrasings with configured phrases replaced, fewest replacements first."""
        matches = self._matches(words)
        if not matches:
            return []
        options = [[(start, end, words[start:end]), *((start, end, alt) for alt in alts)]
                   for start, end, alts in matches[:4]]  # fmt: skip
        # fewest replacements first; among as many, the earlier phrases replaced first
        combos = sorted(
            itertools.product(*(o[:5] for o in options)),
            key=lambda combo: (
                sum(alt != words[s:e] for s, e, alt in combo),
                tuple(alt == words[s:e] for s, e, alt in combo),
            ),
        )
        out = []
        for combo in combos:
            pieces: list[str] = []
            position = 0
            for start, end, alt in combo:
                pieces.extend(words[position:start])
                pieces.extend(alt)
                position = end
            pieces.extend(words[position:])
            out.append(" ".join(pieces))
        return out

    def _matches(self, words: Phrase) -> list[tuple[int, int, list[Phrase]]]:
        """Configured phrases in the words, longest first at each position, not overlapping."""
        found = []
        i = 0
        while i < len(words):
            for length in range(min(self._longest, len(words) - i), 0, -1):
                alternatives = self._rules.get(words[i : i + length])
                if alternatives:
                    found.append((i, i + length, alternatives))
                    i += length
                    break
            else:
                i += 1
        return found

    def save(self, path: Path) -> None:
        """Write the configured rules and the mined pairs as one JSON file."""
        path.parent.mkdir(parents=True, exist_ok=True)
        document = {
            "format": FORMAT,
            "version": VERSION,
            "configured": self.configured,
            "one_way": self.one_way,
            "max_mined": self.max_mined,
            "max_expansions": self.max_expansions,
            "mined": self.mined.to_dicts(),
        }
        path.write_text(json.dumps(document, ensure_ascii=False))

    @classmethod
    def load(cls, path: Path) -> Synonyms:
        """Read synonyms written by ``save``."""
        document: dict[str, Any] = json.loads(path.read_text())
        if document.get("format") != FORMAT or document.get("version") != VERSION:
            raise ValueError(f"{path} does not hold version {VERSION} {FORMAT}")
        return cls(
            document["configured"],
            one_way=document["one_way"],
            mined=pl.DataFrame(document["mined"], schema=MINED_SCHEMA),
            max_mined=int(document["max_mined"]),
            max_expansions=int(document["max_expansions"]),
        )


def mine_synonyms(
    clicks: pl.DataFrame,
    *,
    min_users: int = 3,
    min_similarity: float = 0.5,
    max_spread_ratio: float = 2.5,
) -> pl.DataFrame:
    """Pairs of queries that shoppers' clicks show to mean the same thing.

    ``clicks`` has query, item_id and user_id. Each normalised query typed by at least
    ``min_users`` distinct shoppers is a vector over items: the distinct shoppers who clicked
    the item after typing it, times the item's inverse query frequency (an item clicked from
    every query, the week's bestseller, says little about what any one meant). Two queries whose
    vectors reach cosine ``min_similarity`` are a pair, unless one query's clicks spread over
    more than ``max_spread_ratio`` times as many products as the other's (effective numbers of
    products, the inverse Simpson index): "xbox 360 games" clicks land mostly on the bestseller,
    but it is a broader search than "gears of war 3", not another name for it. A pair is listed
    both ways, with kind:

    - ``spelling``: at most one edit apart once spaces are ignored, with the same numbers
      ("forza4" and "forza 4", "battlefeild" and "battlefield"; not "fifa 11" and "fifa 12"),
      listed from the less typed to the more only;
    - ``refinement``: one query's words are within the other's ("batman", "batman arkham
      city"): a narrower search, not another name;
    - ``synonym``: the rest ("cod" and "call of duty", "mw3" and "modern warfare 3").

    support and query_support are the numbers of shoppers who typed the synonym and the query.
    Machine-made queries (campaign tags, SKU lists) are left out."""
    typed = clicks.select("query", "item_id", "user_id").drop_nulls()
    distinct = typed.select("query").unique().filter(~pl.col("query").str.contains(MACHINE_QUERY))
    distinct = distinct.with_columns(
        pl.col("query").map_elements(normalise, return_dtype=pl.String).alias("phrase")
    ).filter(pl.col("phrase") != "")
    counted = (
        typed.join(distinct, on="query")
        .group_by("phrase", "item_id")
        .agg(pl.col("user_id").n_unique().alias("shoppers"))
    )
    share = pl.col("shoppers") / pl.col("shoppers").sum()
    spread = counted.group_by("phrase").agg((1.0 / (share**2).sum()).alias("spread"))
    users = (
        typed.join(distinct, on="query")
        .group_by("phrase")
        .agg(pl.col("user_id").n_unique().alias("users"))
        .filter(pl.col("users") >= min_users)
        .join(spread, on="phrase")
        .sort("phrase")
        .with_row_index("row")
    )
    counted = counted.join(users, on="phrase")
    if users.height < 2:
        return pl.DataFrame(schema=MINED_SCHEMA)
    items = counted.select(pl.col("item_id").unique().sort()).with_row_index("column")
    counted = counted.join(items, on="item_id")
    matrix = sparse.csr_matrix(
        (
            counted["shoppers"].to_numpy().astype(np.float64),
            (counted["row"].to_numpy(), counted["column"].to_numpy()),
        ),
        shape=(users.height, items.height),
    )
    queries_per_item = np.diff(matrix.tocsc().indptr)
    idf = np.log(users.height / np.maximum(queries_per_item, 1))
    weighted = normalize(sparse.csr_matrix(matrix.multiply(idf[np.newaxis, :])))
    similar = sparse.triu(weighted @ weighted.T, k=1).tocoo()
    keep = similar.data >= min_similarity - 1e-12
    rows, columns = similar.row[keep], similar.col[keep]
    pairs = pl.DataFrame(
        {
            "a": users["phrase"].gather(rows),
            "b": users["phrase"].gather(columns),
            "users_a": users["users"].gather(rows),
            "users_b": users["users"].gather(columns),
            "spread_a": users["spread"].gather(rows),
            "spread_b": users["spread"].gather(columns),
            "similarity": np.minimum(similar.data[keep], 1.0),
        }
    ).filter(
        pl.max_horizontal("spread_a", "spread_b")
        <= max_spread_ratio * pl.min_horizontal("spread_a", "spread_b")
    )
    if pairs.height == 0:
        return pl.DataFrame(schema=MINED_SCHEMA)
    pairs = pairs.with_columns(_kinds(pairs).alias("kind"))
    forward = pairs.select(
        pl.col("a").alias("query"), pl.col("b").alias("synonym"), "similarity",
        pl.col("users_b").alias("support"), pl.col("users_a").alias("query_support"), "kind",
        (pl.col("users_a") <= pl.col("users_b")).alias("to_popular"),
    )  # fmt: skip
    backward = pairs.select(
        pl.col("b").alias("query"), pl.col("a").alias("synonym"), "similarity",
        pl.col("users_a").alias("support"), pl.col("users_b").alias("query_support"), "kind",
        (pl.col("users_b") < pl.col("users_a")).alias("to_popular"),
    )  # fmt: skip
    both = pl.concat([forward, backward]).filter(
        (pl.col("kind") != "spelling") | pl.col("to_popular")
    )
    return (
        both.select(MINED_SCHEMA.names())
        .cast(MINED_SCHEMA)
        .sort(["query", "support", "synonym"], descending=[False, True, False])
    )


def _kinds(pairs: pl.DataFrame) -> pl.Series:
    """spelling, refinement or synonym for each pair (a, b)."""
    padded_a = pl.lit(" ") + pl.col("a") + pl.lit(" ")
    padded_b = pl.lit(" ") + pl.col("b") + pl.lit(" ")
    within = padded_b.str.contains(padded_a, literal=True) | padded_a.str.contains(
        padded_b, literal=True
    )
    refinement = pairs.select(within).to_series()
    distance = EditDistance(DistanceAlgorithm.DAMERAU_OSA)
    # only the candidate pairs, not all pairs of queries, reach this loop; "fifa 11" is no
    # typo of "fifa 12": the numbers must agree
    squeezed = pairs.select(pl.col("a", "b").str.replace_all(" ", ""))
    spelling = [
        distance.compare(a, b, 1) >= 0 and _DIGITS.findall(a) == _DIGITS.findall(b)
        for a, b in squeezed.iter_rows()
    ]
    kinds = [
        "spelling" if typo else "refinement" if narrower else "synonym"
        for typo, narrower in zip(spelling, refinement, strict=True)
    ]
    return pl.Series("kind", kinds, dtype=pl.String)
