"""Amazon Games (SASRec preprocessing): review sequences become ordered purchase events."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import polars as pl

from aisle.domain import EVENT_SCHEMA, EventType, RecordKind
from aisle.ingest.adapters.base import AdaptContext, BaseAdapter, Parsing, consent_columns
from aisle.ingest.readers import ReadOptions

COLUMNS = ("user", "item")
#: The synthetic clock starts here; line n of the file happens n seconds later.
SYNTHETIC_START = datetime(2014, 7, 1, tzinfo=UTC)


@dataclass
class AmazonGamesSasrec(BaseAdapter):
    """``Video.shared.txt``: one "user item" pair per line, each user's items in review order.

    The file has no timestamps, only order. **Times are synthetic**: line n gets
    2014-07-01T00:00:00Z + n seconds. They preserve the file order (and so each user's review
    order) and nothing else: gaps between events, times of day and overlaps between users are
    meaningless. Time-based splits, recency weights or rate rules must not read anything more
    into them. Another file in this format (a hold-out copy) restarts at the same origin.

    Each review implies that the user owned the game, so a line becomes a ``purchase`` of one
    unit (value 1.0) with no price. Purchases are exempt from the bot and near-duplicate rules,
    which the one-second spacing would otherwise trip.
    """

    name: str = "amazon-games-sasrec"
    kinds: frozenset[RecordKind] = frozenset({RecordKind.EVENTS})
    user_columns: tuple[str, ...] = ("user",)
    parsing: Parsing = field(default_factory=Parsing)
    # the SASRec preprocessing dropped the product data: there is no catalog to check against
    checks_catalog: bool = False
    file_names: dict[RecordKind, str] = field(
        default_factory=lambda: {RecordKind.EVENTS: "Video.shared.txt"}
    )

    def read_options(self, kind: RecordKind) -> ReadOptions:
        """Whitespace-separated, no header: user id, item id."""
        return ReadOptions(
            format="csv",
            delimiter=" ",
            has_header=False,
            column_names=COLUMNS,
            required_columns=COLUMNS,
        )

    def events(self, raw: pl.DataFrame, ctx: AdaptContext) -> pl.DataFrame:
        """One purchase per line, stamped with its synthetic, order-preserving time."""
        start = pl.lit(SYNTHETIC_START, dtype=EVENT_SCHEMA["timestamp"])
        return raw.select(
            pl.col("_line"),
            pl.col("user").alias("user_id"),
            pl.col("item").alias("item_id"),
            pl.lit(EventType.PURCHASE.value).alias("type"),
            pl.lit(1.0).alias("value"),
            pl.lit(None, dtype=pl.Float64()).alias("price"),
            (start + pl.duration(seconds=pl.col("_line"))).alias("timestamp"),
            pl.lit(self.name).alias("source"),
            *consent_columns(ctx),
        )
