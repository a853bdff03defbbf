"""Event batches from several requests as one import, and each request's answer from it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from aisle.domain import Fate
from aisle.ingest.readers import RawBatch
from aisle.storage.ledger import ImportResult

#: Rejected records an answer names by position (the counts cover them all).
MAX_NAMED_REJECTS = 100


@dataclass(frozen=True)
class Span:
    """Where one request's records lie in a merged batch: lines ``offset + 1 ..
    offset + size``."""

    offset: int
    size: int


def batch_size(raw: RawBatch) -> int:
    """Records in a request's batch, parsed or not: the highest position among them."""
    highest = 0
    for frame in (raw.frame, raw.malformed):
        if frame.height and "_line" in frame.columns:
            highest = max(highest, int(frame["_line"].max()))  # type: ignore[arg-type]
    return max(highest, raw.frame.height + raw.malformed.height)


def merge(raws: Sequence[RawBatch]) -> tuple[RawBatch, list[Span]]:
    """One batch of all the requests' records, positions moved past those before them.

    Columns one request lacks are null in its rows; a column whose types differ between
    requests takes the wider type (or the merge raises, and each request goes alone).
    """
    if len(raws) == 1:
        return raws[0], [Span(0, batch_size(raws[0]))]
    frames, malformed, spans, offset = [], [], [], 0
    for raw in raws:
        size = batch_size(raw)
        shift = pl.col("_line") + offset
        frames.append(raw.frame.with_columns(shift) if "_line" in raw.frame.columns else raw.frame)
        if raw.malformed.height:
            malformed.append(raw.malformed.with_columns(shift))
        spans.append(Span(offset, size))
        offset += size
    first = raws[0]
    merged = RawBatch(
        pl.concat(frames, how="diagonal_relaxed"),
        first.source,
        first.sha256,
        first.format,
        pl.concat(malformed, how="diagonal_relaxed") if malformed else first.malformed.clear(),
    )
    return merged, spans


@dataclass
class BatchOutcome:
    """What became of a batch of records, as the API answers it."""

    kind: str
    import_id: int
    input: int
    accepted: int
    quarantined: int
    duplicates: int
    reasons: dict[str, int] = field(default_factory=dict)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    accepted_items: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The API's answer (accepted item ids are for the service, not the caller)."""
        return {
            "import_id": self.import_id,
            "input": self.input,
            "accepted": self.accepted,
            "quarantined": self.quarantined,
            "duplicates": self.duplicates,
            "reasons": self.reasons,
            "rejected": self.rejected,
        }


def answer_for(result: ImportResult, span: Span) -> BatchOutcome:
    """One request's counts, quarantine reasons and first rejected records (by their
    1-based position in its own body) from the merged import's per-record fates."""
    records = result.records
    if records is None or records.height == 0:
        return BatchOutcome(result.kind, result.import_id, 0, 0, 0, 0)
    mine = records.filter(pl.col("line").is_between(span.offset + 1, span.offset + span.size))
    fates = dict(mine.group_by("fate").len().iter_rows())
    held = mine.filter(pl.col("fate") == Fate.QUARANTINED.value)
    reasons: dict[str, int] = {}
    if held.height:
        counted = held.select(pl.col("reasons").explode().value_counts()).unnest("reasons")
        reasons = dict(zip(counted[:, 0].to_list(), counted[:, 1].to_list(), strict=True))
    rejected = [
        {"index": line - span.offset, "reasons": list(found or []), "detail": detail}
        for line, found, detail in held.sort("line")
        .head(MAX_NAMED_REJECTS)
        .select("line", "reasons", "detail")
        .iter_rows()
    ]
    return BatchOutcome(
        kind=result.kind,
        import_id=result.import_id,
        input=mine.height,
        accepted=fates.get(Fate.ACCEPTED.value, 0),
        quarantined=fates.get(Fate.QUARANTINED.value, 0),
        duplicates=fates.get(Fate.DUPLICATE.value, 0),
        reasons=reasons,
        rejected=rejected,
    )
