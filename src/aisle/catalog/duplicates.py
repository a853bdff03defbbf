"""Near-duplicate products: the same product under two codes or two wordings of its title,
listed for a merchandiser to merge.

Candidates come from MinHash LSH (datasketch) over the word and character shingles of each
normalised title and of each alias that reads like a product name; every candidate pair is then
scored with the exact Jaccard similarity of the shingle sets and, when embeddings are given, the
cosine of the two products' vectors. Titles that differ by swapping a word for an unrelated one
(a colour, a size, a letter) or by a number name variants of one line, not one product, and are
left out unless asked for. Identical normalised text under two ids is always listed.
"""

from __future__ import annotations

from collections.abc import Sequence
from difflib import SequenceMatcher
from typing import Final

import numpy as np
import numpy.typing as npt
import polars as pl
from datasketch import MinHash, MinHashLSH

#: An alias whose text this many products or more carry (as title or alias) is a stock note
#: ("unsaleable, destroyed", "sold as set on dotcom"), not a name of any of them.
NOTE_PRODUCTS: Final = 3
#: Character shingle length (over the text with spaces removed, so "night light" and
#: "nightlight" agree).
CHAR_SHINGLE: Final = 3
#: The least chance that LSH proposes a pair whose Jaccard similarity is at the threshold.
LSH_RECALL: Final = 0.99

#: Numbers, arabic or roman from II ("Force Unleashed II"): texts that differ in one name
#: different sizes, counts or editions.
NUMBERS: Final = r"\d+|\b(?:i{2,3}|iv|vi{1,3}|ix|xi{1,3})\b"

SCHEMA: Final = pl.Schema(
    {
        "item_a": pl.String(),
        "item_b": pl.String(),
        "title_a": pl.String(),
        "title_b": pl.String(),
        "jaccard": pl.Float64(),
        "cosine": pl.Float64(),
        "reason": pl.String(),
    }
)


def near_duplicates(
    products: pl.DataFrame,
    *,
    vectors: npt.NDArray[np.floating] | None = None,
    item_ids: Sequence[str] | None = None,
    jaccard: float = 0.6,
    cosine: float = 0.9,
    num_perm: int = 128,
    variants: bool = False,
) -> pl.DataFrame:
    """Pairs of products that look like one product: item_a < item_b, their titles, the Jaccard
    similarity of the best-matching texts (title or alias), the cosine of their embeddings
    (``vectors``, rows aligned with ``item_ids``; null when not given) and the reason. A pair is
    kept when its texts are identical after normalisation, or when Jaccard reaches ``jaccard``,
    the titles are not variants of each other (unless ``variants``) and the cosine, where both
    vectors exist, reaches ``cosine``."""
    texts = _texts(products)
    empty = pl.DataFrame(schema=SCHEMA)
    if texts.height < 2:
        return empty
    shingles = _shingles(texts)
    candidates = pl.concat([_lsh_candidates(shingles, jaccard, num_perm), _same_text(texts)])
    scored = _score(candidates.unique(), shingles, texts).filter(
        pl.col("same") | (pl.col("jaccard") >= jaccard)
    )
    if not variants:
        scored = scored.filter(pl.col("same") | _not_variant(scored))
    best = scored.sort(["same", "jaccard", "alias"], descending=[True, True, False]).unique(
        ["item_a", "item_b"], keep="first"
    )
    if best.height == 0:
        return empty
    best = best.with_columns(_cosines(best, products, vectors, item_ids))
    veto = pl.col("cosine").is_not_null() & (pl.col("cosine") < cosine) & ~pl.col("same")
    titles = products.select("item_id", "title").unique("item_id", keep="first")
    reason = pl.concat_str(
        pl.when("same").then(pl.lit("same text")).otherwise(pl.lit("near text")),
        pl.when(~pl.col("same") & (pl.col("cosine") >= cosine))
        .then(pl.lit(" + embedding"))
        .otherwise(pl.lit("")),
        pl.when("alias").then(pl.lit(" (alias)")).otherwise(pl.lit("")),
    )
    return (
        best.filter(~veto)
        .join(titles.rename({"item_id": "item_a", "title": "title_a"}), on="item_a", how="left")
        .join(titles.rename({"item_id": "item_b", "title": "title_b"}), on="item_b", how="left")
        .with_columns(reason.alias("reason"))
        .select(list(SCHEMA))
        .cast(SCHEMA)
        .sort(["jaccard", "item_a", "item_b"], descending=[True, False, False])
    )


def lsh_params(jaccard: float, num_perm: int) -> tuple[int, int]:
    """Bands and rows per band: the most rows per band (fewest false candidates) for which a
    pair at the Jaccard threshold still becomes a candidate with probability ``LSH_RECALL``."""
    for rows in range(num_perm // 2, 0, -1):
        bands = num_perm // rows
        if 1.0 - (1.0 - jaccard**rows) ** bands >= LSH_RECALL:
            return bands, rows
    return num_perm, 1


def _normalised(expr: pl.Expr) -> pl.Expr:
    """Lower case, NFKC, every run of non-letters-or-digits one space."""
    return (
        expr.str.normalize("NFKC")
        .str.to_lowercase()
        .str.replace_all(r"[^\p{L}\p{N}]+", " ")
        .str.strip_chars()
    )


def _texts(products: pl.DataFrame) -> pl.DataFrame:
    """tid, item_id, alias (bool) and norm: each product's normalised title and the aliases that
    read like another name of it: two words of letters or more, a word in common with its title,
    and not a note that many products carry."""
    titles = products.select("item_id", pl.lit(False).alias("alias"), _normalised(pl.col("title")))
    columns = [titles.rename({"title": "norm"})]
    if "aliases" in products.columns:
        own = pl.col("norm").str.split(" ").list.set_intersection(pl.col("title").str.split(" "))
        aliases = (
            products.select("item_id", _normalised(pl.col("title")), "aliases")
            .explode("aliases")
            .select("item_id", "title", pl.lit(True).alias("alias"), _normalised(pl.col("aliases")))
            .rename({"aliases": "norm"})
            .filter(pl.col("norm").str.count_matches(r"\p{L}{2,}") >= 2, own.list.len() > 0)
            .drop("title")
        )
        columns.append(aliases)
    notes = pl.col("item_id").n_unique().over("norm") >= NOTE_PRODUCTS
    return (
        pl.concat(columns)
        .filter(pl.col("norm").is_not_null() & (pl.col("norm") != ""))
        .filter(~(pl.col("alias") & notes))
        .sort(["item_id", "alias"])
        .unique(["item_id", "norm"], keep="first", maintain_order=True)
        .with_row_index("tid")
        .with_columns(pl.col("tid").cast(pl.Int64))
    )


def _shingles(texts: pl.DataFrame) -> pl.DataFrame:
    """tid and h: the 32-bit hashes of each text's distinct word and character shingles."""
    words = (
        texts.select("tid", pl.col("norm").str.split(" ").alias("word"))
        .explode("word")
        .select("tid", pl.format("w:{}", "word").alias("s"))
    )
    joined = pl.col("norm").str.replace_all(" ", "", literal=True)
    starts = pl.int_ranges(
        0, pl.max_horizontal(joined.str.len_chars().cast(pl.Int64) - CHAR_SHINGLE + 1, 1)
    )
    chars = (
        texts.select("tid", joined.alias("joined"), starts.alias("start"))
        .explode("start")
        .select(
            "tid", pl.format("c:{}", pl.col("joined").str.slice("start", CHAR_SHINGLE)).alias("s")
        )
    )
    return (
        pl.concat([words, chars])
        .select("tid", (pl.col("s").hash(seed=0) & 0xFFFFFFFF).alias("h"))
        .unique()
    )


def _lsh_candidates(shingles: pl.DataFrame, jaccard: float, num_perm: int) -> pl.DataFrame:
    """tid_a < tid_b pairs that share an LSH bucket."""
    sets = shingles.group_by("tid").agg("h").sort("tid")
    keys = sets["tid"].to_list()
    minhashes = MinHash.bulk(sets["h"].to_list(), num_perm=num_perm, hashfunc=int)
    index = MinHashLSH(num_perm=num_perm, params=lsh_params(jaccard, num_perm))
    with index.insertion_session() as session:
        for key, minhash in zip(keys, minhashes, strict=True):
            session.insert(key, minhash, check_duplication=False)
    first: list[int] = []
    second: list[int] = []
    for key, minhash in zip(keys, minhashes, strict=True):
        found = [other for other in index.query(minhash) if other > key]
        first.extend([key] * len(found))
        second.extend(found)
    return pl.DataFrame(
        {"tid_a": first, "tid_b": second}, schema={"tid_a": pl.Int64, "tid_b": pl.Int64}
    )


def _same_text(texts: pl.DataFrame) -> pl.DataFrame:
    """tid_a < tid_b pairs of identical normalised text (listed whatever LSH does)."""
    ids = texts.select("tid", "norm")
    return (
        ids.join(ids, on="norm", suffix="_b")
        .filter(pl.col("tid") < pl.col("tid_b"))
        .select(pl.col("tid").alias("tid_a"), "tid_b")
    )


def _score(pairs: pl.DataFrame, shingles: pl.DataFrame, texts: pl.DataFrame) -> pl.DataFrame:
    """Text pairs of different products, as item pairs item_a < item_b with their normalised
    texts, exact Jaccard similarity, whether the texts are the same and whether either is an
    alias."""
    sizes = shingles.group_by("tid").len("n")
    shared = (
        pairs.join(shingles.rename({"tid": "tid_a"}), on="tid_a")
        .join(shingles.rename({"tid": "tid_b"}), on=["tid_b", "h"])
        .group_by("tid_a", "tid_b")
        .len("shared")
    )
    side = texts.select("tid", "item_id", "alias", "norm")
    scored = (
        pairs.join(shared, on=["tid_a", "tid_b"], how="left")
        .join(sizes.rename({"tid": "tid_a", "n": "n_a"}), on="tid_a")
        .join(sizes.rename({"tid": "tid_b", "n": "n_b"}), on="tid_b")
        .join(side.rename(lambda c: f"{c}_a"), on="tid_a")
        .join(side.rename(lambda c: f"{c}_b"), on="tid_b")
        .filter(pl.col("item_id_a") != pl.col("item_id_b"))
    )
    shared_n = pl.col("shared").fill_null(0)
    swap = pl.col("item_id_a") > pl.col("item_id_b")
    return scored.select(
        pl.when(swap).then("item_id_b").otherwise("item_id_a").alias("item_a"),
        pl.when(swap).then("item_id_a").otherwise("item_id_b").alias("item_b"),
        "norm_a",
        "norm_b",
        (shared_n / (pl.col("n_a") + pl.col("n_b") - shared_n)).alias("jaccard"),
        (pl.col("norm_a") == pl.col("norm_b")).alias("same"),
        (pl.col("alias_a") | pl.col("alias_b")).alias("alias"),
    )


def _not_variant(pairs: pl.DataFrame) -> pl.Series:
    """True where two normalised texts could name one product: the same numbers and no word
    swapped for an unrelated one (see ``_swapped``)."""
    numbers_a = pl.col("norm_a").str.extract_all(NUMBERS).list.sort()
    numbers_b = pl.col("norm_b").str.extract_all(NUMBERS).list.sort()
    same_numbers = pairs.select(numbers_a == numbers_b).to_series()
    swaps = [
        not _swapped(a.split(" "), b.split(" "))
        for a, b in zip(pairs["norm_a"], pairs["norm_b"], strict=True)
    ]
    return same_numbers & pl.Series(swaps, dtype=pl.Boolean)


def _swapped(words_a: list[str], words_b: list[str]) -> bool:
    """Whether one text has a word the other lacks while the other also has one of its own
    ("red" against "blue", "small" against "large", "w" against "n"), once words that only moved
    and words respelt in place ("night light"/"nightlight", "pencil"/"pencils") are set aside.
    Words only added on one side ("large", "zinc") are no swap."""
    common = set(words_a) & set(words_b)
    left_over: list[str] = []
    right_over: list[str] = []
    matcher = SequenceMatcher(None, words_a, words_b, autojunk=False)
    for op, a0, a1, b0, b1 in matcher.get_opcodes():
        if op == "equal":
            continue
        left = [w for w in words_a[a0:a1] if w not in common]
        right = [w for w in words_b[b0:b1] if w not in common]
        if len(left) == len(right):
            kept = [(x, y) for x, y in zip(left, right, strict=True) if not _respelt(x, y)]
            left = [x for x, _ in kept]
            right = [y for _, y in kept]
        elif left and right and _respelt("".join(left), "".join(right)):
            continue
        left_over.extend(left)
        right_over.extend(right)
    return bool(left_over) and bool(right_over)


def _respelt(a: str, b: str) -> bool:
    """Two spellings of one word: with their common start and end removed, what differs is less
    than a third of the shorter one, or is an ending of at most two letters ("cup"/"cups")."""
    start = 0
    while start < min(len(a), len(b)) and a[start] == b[start]:
        start += 1
    end = 0
    while end < min(len(a), len(b)) - start and a[-1 - end] == b[-1 - end]:
        end += 1
    differ = max(len(a), len(b)) - start - end
    extended = start + end == min(len(a), len(b)) and min(len(a), len(b)) >= 3
    return differ * 3 < min(len(a), len(b)) or (extended and differ <= 2)


def _cosines(
    pairs: pl.DataFrame,
    products: pl.DataFrame,
    vectors: npt.NDArray[np.floating] | None,
    item_ids: Sequence[str] | None,
) -> pl.Series:
    """Cosine of the two products' vectors per pair; null without vectors for either."""
    if vectors is None:
        return pl.Series("cosine", [None] * pairs.height, dtype=pl.Float64)
    matrix = np.asarray(vectors, dtype=np.float64)
    ids = list(item_ids) if item_ids is not None else products["item_id"].to_list()
    if matrix.ndim != 2 or matrix.shape[0] != len(ids):
        raise ValueError(f"vectors have {matrix.shape[0]} rows for {len(ids)} item ids")
    norms = np.linalg.norm(matrix, axis=1)
    unit = np.divide(
        matrix, norms[:, np.newaxis], out=np.zeros_like(matrix), where=norms[:, np.newaxis] > 0
    )
    rows = pl.DataFrame({"item_id": ids, "row": np.arange(len(ids))}).unique(
        "item_id", keep="first"
    )
    aligned = (
        pairs.select("item_a", "item_b")
        .join(rows.rename({"item_id": "item_a", "row": "row_a"}), on="item_a", how="left",
              maintain_order="left")
        .join(rows.rename({"item_id": "item_b", "row": "row_b"}), on="item_b", how="left",
              maintain_order="left")
    )  # fmt: skip
    known = (aligned["row_a"].is_not_null() & aligned["row_b"].is_not_null()).to_numpy()
    a = aligned["row_a"].fill_null(0).to_numpy()
    b = aligned["row_b"].fill_null(0).to_numpy()
    dots = np.einsum("ij,ij->i", unit[a], unit[b])
    usable = known & (norms[a] > 0) & (norms[b] > 0)
    return pl.Series("cosine", np.where(usable, dots, np.nan)).fill_nan(None)
