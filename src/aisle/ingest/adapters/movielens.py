"""MovieLens 100K: ratings become rating events; movies become products with genres."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from aisle.domain import EventType, RecordKind
from aisle.ingest.adapters.base import AdaptContext, BaseAdapter, Parsing, consent_columns
from aisle.ingest.adapters.canonical import blank_to_null
from aisle.ingest.readers import ReadOptions

RATING_COLUMNS = ("user_id", "item_id", "rating", "timestamp")
MOVIE_COLUMNS = ("movie_id", "title", "release_date", "video_release_date", "imdb_url")
#: The genres of u.item's 19 flag columns, in order: used when no u.genre lies beside u.item.
DEFAULT_GENRES = (
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)
ENCODING = "latin-1"


def read_genres(path: Path) -> tuple[str, ...]:
    """Genre names of a u.genre file ("name|index" lines), in index order."""
    pairs = [
        line.rsplit("|", 1)
        for line in path.read_text(encoding=ENCODING).splitlines()
        if "|" in line
    ]
    ordered = sorted(pairs, key=lambda pair: int(pair[1]))
    return tuple(name for name, _ in ordered)


@dataclass
class MovieLens100k(BaseAdapter):
    """The ml-100k folder: ``ratings.tsv`` (or u.data) and ``u.item``.

    The genre flags of u.item are read into columns named after the genres, so ``products`` needs
    nothing but the frame. The names come from the ``u.genre`` beside u.item, which ``locate``
    reads; without one, the standard 19 names apply.
    """

    name: str = "movielens-100k"
    kinds: frozenset[RecordKind] = frozenset({RecordKind.EVENTS, RecordKind.PRODUCTS})
    user_columns: tuple[str, ...] = ("user_id",)
    # ratings carry unix epoch seconds
    parsing: Parsing = field(default_factory=lambda: Parsing(epoch_unit="s"))
    file_names: dict[RecordKind, str] = field(
        default_factory=lambda: {RecordKind.EVENTS: "ratings.tsv", RecordKind.PRODUCTS: "u.item"}
    )
    genres: tuple[str, ...] = DEFAULT_GENRES

    def locate(self, path: Path, kind: RecordKind) -> Path:
        """A folder means ratings.tsv (else the original u.data) or u.item.

        For movies, also learn the genre names from the u.genre beside the file.
        """
        located = super().locate(path, kind)
        original = path / "u.data"
        if kind is RecordKind.EVENTS and not located.exists() and original.is_file():
            located = original
        genre_file = located.parent / "u.genre"
        if kind is RecordKind.PRODUCTS and genre_file.is_file():
            self.genres = read_genres(genre_file) or DEFAULT_GENRES
        return located

    def read_options(self, kind: RecordKind) -> ReadOptions:
        """Ratings: tab-separated, no header. Movies: pipe-separated latin-1, no header."""
        if kind is RecordKind.PRODUCTS:
            return ReadOptions(
                format="csv",
                delimiter="|",
                has_header=False,
                column_names=(*MOVIE_COLUMNS, *self.genres),
                encoding=ENCODING,
                required_columns=MOVIE_COLUMNS[:2],
            )
        return ReadOptions(
            format="tsv",
            delimiter="\t",
            has_header=False,
            column_names=RATING_COLUMNS,
            required_columns=RATING_COLUMNS,
        )

    def events(self, raw: pl.DataFrame, ctx: AdaptContext) -> pl.DataFrame:
        """One rating event per line; the value is the 1-5 star rating."""
        return raw.select(
            pl.col("_line"),
            pl.col("user_id"),
            pl.col("item_id"),
            pl.lit(EventType.RATING.value).alias("type"),
            pl.col("rating").alias("value"),
            pl.col("timestamp"),
            pl.lit(self.name).alias("source"),
            *consent_columns(ctx),
        )

    def products(self, raw: pl.DataFrame, ctx: AdaptContext) -> pl.DataFrame:
        """One product per movie: genres flagged 1 form the category path."""
        genres = [c for c in raw.columns if c not in MOVIE_COLUMNS and not c.startswith("_")]
        flagged = (
            pl.concat_list(
                pl.when(pl.col(g).str.strip_chars() == "1").then(pl.lit(g)) for g in genres
            ).list.drop_nulls()
            if genres
            else pl.lit([], dtype=pl.List(pl.String()))
        )
        attributes = pl.struct(
            blank_to_null(pl.col("release_date")).alias("release_date"),
            blank_to_null(pl.col("imdb_url")).alias("imdb_url"),
        ).struct.json_encode()
        return raw.select(
            pl.col("_line"),
            pl.col("movie_id").alias("item_id"),
            pl.col("title"),
            flagged.alias("category_path"),
            pl.lit(None, dtype=pl.Float64()).alias("price"),
            pl.lit(None, dtype=pl.String()).alias("currency"),
            attributes.alias("attributes"),
            pl.lit(self.name).alias("source"),
        )
