"""What the search engine takes from query understanding and what it answers: the protocols
of an understood query, and the hits and pages of a search."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol


class Understood(Protocol):
    """What query understanding hands the engine (``aisle.search.query.ParsedQuery``)."""

    @property
    def text(self) -> str: ...
    @property
    def price_min(self) -> float | None: ...
    @property
    def price_max(self) -> float | None: ...
    @property
    def categories(self) -> Sequence[tuple[str, float]]: ...
    @property
    def expansions(self) -> Sequence[str]: ...
    def explain(self) -> list[str]: ...


class Understanding(Protocol):
    """Query understanding (``aisle.search.query.QueryUnderstanding``)."""

    def understand(self, text: str) -> Understood: ...


@dataclass(frozen=True)
class Hit:
    """One ranked product, with the reasons where asked."""

    item_id: str
    score: float
    why: list[str] | None = None


@dataclass(frozen=True)
class SearchResult:
    """A page of ranked products, the matches in all, facets, and what the engine did."""

    query: str
    searched: str
    hits: list[Hit]
    total: int
    facets: dict[str, dict[str, int]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    relaxed: list[str] = field(default_factory=list)
