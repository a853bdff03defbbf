"""The API's shapes, for the OpenAPI document (answers are serialised directly, for speed)."""

from __future__ import annotations

from typing import Any, Final

from pydantic import BaseModel, Field

from aisle.domain import EventType


class Rejected(BaseModel):
    """A record that was not kept, by its 1-based position in the batch."""

    index: int | None
    reasons: list[str]
    detail: str | None


class BatchAnswer(BaseModel):
    """What became of every record: input = accepted + quarantined + duplicates."""

    import_id: int
    input: int
    accepted: int
    quarantined: int
    duplicates: int
    reasons: dict[str, int]
    rejected: list[Rejected] = Field(description="The first 100 records not kept, and why.")


class ItemIds(BaseModel):
    """Products named by id."""

    item_ids: list[str] = Field(min_length=1, max_length=10_000)


class Removed(BaseModel):
    """Products taken off sale, and ids the catalog did not hold."""

    removed: list[str]
    unknown: list[str]


class Because(BaseModel):
    """Why an item is recommended."""

    kind: str
    items: list[dict[str, Any]]
    note: str | None = None


class RecommendedItem(BaseModel):
    """One recommended product."""

    item_id: str
    title: str | None
    price: float | None
    score: float
    because: Because | None = None


class Variant(BaseModel):
    """The A/B test arm that answered."""

    experiment: str
    name: str


class RecommendationAnswer(BaseModel):
    """Recommended products and what made them."""

    model: str
    version: int | None
    source: str = Field(description="model, history, trending or text")
    variant: Variant | None
    items: list[RecommendedItem]


class SearchHit(BaseModel):
    """One product found."""

    item_id: str
    title: str | None
    price: float | None
    score: float
    why: list[str] | None = None


class SearchAnswer(BaseModel):
    """A page of results."""

    query: str
    searched: str
    total: int
    page: int
    per_page: int
    hits: list[SearchHit]
    facets: dict[str, dict[str, int]]
    notes: list[str]
    relaxed: list[str]
    personalised: bool
    variant: Variant | None


class Suggestion(BaseModel):
    """One completion."""

    text: str
    source: str
    weight: float


class Suggestions(BaseModel):
    """Completions, best first."""

    suggestions: list[Suggestion]


class ErasureAnswer(BaseModel):
    """The erasure receipt (also in the audit log)."""

    model_config = {"extra": "allow"}


class Reloaded(BaseModel):
    """Model versions in service after a swap."""

    models: dict[str, int]
    swaps: int


class Retrained(BaseModel):
    """What each retrain decided, and the versions now in service."""

    outcomes: list[dict[str, Any]]
    models: dict[str, int]


_EVENT: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["user_id", "type", "timestamp"],
    "properties": {
        "event_id": {"type": "string", "description": "Your id; replays are duplicates."},
        "user_id": {"type": "string", "description": "The customer (pseudonymised on arrival)."},
        "session_id": {"type": "string"},
        "item_id": {"type": "string"},
        "type": {"type": "string", "enum": [t.value for t in EventType]},
        "value": {"type": "number", "description": "Quantity, or the rating."},
        "price": {"type": "number"},
        "currency": {"type": "string"},
        "query": {"type": "string", "description": "For search events."},
        "timestamp": {"type": "string", "format": "date-time"},
    },
}
_PRODUCT: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["title"],
    "properties": {
        "item_id": {"type": "string"},
        "title": {"type": "string"},
        "description": {"type": "string"},
        "category_path": {"type": "array", "items": {"type": "string"}},
        "brand": {"type": "string"},
        "price": {"type": "number"},
        "currency": {"type": "string"},
        "attributes": {"type": "object"},
        "aliases": {"type": "array", "items": {"type": "string"}},
    },
}


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": schema},
        "application/x-ndjson": {"schema": {"type": "string"}},
    }}}  # fmt: skip


#: Request bodies read by hand (a bad record must not fail the batch), documented here.
EVENTS_BODY: Final = _body({"type": "array", "items": _EVENT})
PRODUCTS_BODY: Final = _body({"type": "array", "items": _PRODUCT})
PRODUCT_BODY: Final = {
    "requestBody": {"required": True, "content": {"application/json": {"schema": _PRODUCT}}}
}
