"""Records, event types, fates and reason codes: the shop's vocabulary, with no I/O."""

from __future__ import annotations

from enum import StrEnum
from typing import Final, Literal

import polars as pl

#: Units of epoch timestamps a source may use.
EpochUnit = Literal["ns", "us", "ms", "s", "d"]


class EventType(StrEnum):
    """What a shopper did."""

    VIEW = "view"
    CLICK = "click"
    ADD_TO_CART = "add_to_cart"
    REMOVE_FROM_CART = "remove_from_cart"
    PURCHASE = "purchase"
    RETURN = "return"
    SEARCH = "search"
    RATING = "rating"


#: Browse-type events: the ones a bot can flood. Purchases and returns are recorded by the
#: shop's order system, so rate rules do not apply to them.
BROWSE_TYPES: Final = frozenset(
    {
        EventType.VIEW,
        EventType.CLICK,
        EventType.ADD_TO_CART,
        EventType.REMOVE_FROM_CART,
        EventType.SEARCH,
    }
)


class RecordKind(StrEnum):
    """The two kinds of record that aisle ingests."""

    EVENTS = "events"
    PRODUCTS = "products"


class Fate(StrEnum):
    """Every input record ends in exactly one of these."""

    ACCEPTED = "accepted"
    QUARANTINED = "quarantined"
    DUPLICATE = "duplicate"


class Reason(StrEnum):
    """Why a record was quarantined. Stable codes: reports and operators key on them."""

    MISSING_FIELD = "missing_field"
    BAD_TYPE = "bad_type"
    BAD_ENCODING = "bad_encoding"
    BAD_EVENT_TYPE = "bad_event_type"
    BAD_TIMESTAMP = "bad_timestamp"
    FUTURE_TIMESTAMP = "future_timestamp"
    ANCIENT_TIMESTAMP = "ancient_timestamp"
    UNKNOWN_ITEM = "unknown_item"
    NONPOSITIVE_PRICE = "nonpositive_price"
    ABSURD_PRICE = "absurd_price"
    BAD_QUANTITY = "bad_quantity"
    OUTLIER_QUANTITY = "outlier_quantity"
    BAD_RATING = "bad_rating"
    NON_PRODUCT = "non_product"
    UNMATCHED_RETURN = "unmatched_return"
    BOT_USER = "bot_user"
    MALFORMED_ROW = "malformed_row"
    ERASED_USER = "erased_user"


class QuarantineStatus(StrEnum):
    """Where a quarantined record stands."""

    HELD = "held"
    RELEASED = "released"
    DROPPED = "dropped"


#: The canonical event record. user_id is always a pseudonym once it leaves ingest.
EVENT_SCHEMA: Final[dict[str, pl.DataType]] = {
    "event_id": pl.String(),
    "user_id": pl.String(),
    "session_id": pl.String(),
    "item_id": pl.String(),
    "type": pl.String(),
    "value": pl.Float64(),
    "price": pl.Float64(),
    "currency": pl.String(),
    "query": pl.String(),
    "timestamp": pl.Datetime("us", "UTC"),
    "source": pl.String(),
    "consent_personalisation": pl.Boolean(),
    "consent_analytics": pl.Boolean(),
    "ref_event_id": pl.String(),
}

#: The canonical product record.
PRODUCT_SCHEMA: Final[dict[str, pl.DataType]] = {
    "item_id": pl.String(),
    "title": pl.String(),
    "description": pl.String(),
    "category_path": pl.List(pl.String()),
    "brand": pl.String(),
    "price": pl.Float64(),
    "currency": pl.String(),
    "attributes": pl.String(),  # JSON object text
    "aliases": pl.List(pl.String()),
    "source": pl.String(),
    "updated_at": pl.Datetime("us", "UTC"),
}

#: Fields without which an event means nothing.
EVENT_REQUIRED: Final = ("user_id", "item_id", "type", "timestamp")
#: Search events carry a query instead of an item.
SEARCH_REQUIRED: Final = ("user_id", "query", "type", "timestamp")
PRODUCT_REQUIRED: Final = ("item_id", "title")

#: Columns every batch carries beside the record: where it came from.
LINEAGE_COLUMNS: Final = ("_line", "_reasons", "_detail")
