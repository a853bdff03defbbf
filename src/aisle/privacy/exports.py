"""Exports that refuse to single people out: k-anonymity over quasi-identifiers."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from aisle.config import PrivacySettings
from aisle.errors import AisleError
from aisle.privacy import audit
from aisle.storage import Store


class KAnonymityError(AisleError):
    """An export would single people out through a rare quasi-identifier combination."""


@dataclass(frozen=True)
class ExportOutcome:
    """What an export wrote and how anonymous it is."""

    path: str
    rows: int
    quasi_identifiers: list[str]
    smallest_group: int | None
    rows_in_small_groups: int
    forced: bool

    def to_json(self) -> dict[str, Any]:
        """Machine-readable form."""
        return {
            "path": self.path,
            "rows": self.rows,
            "quasi_identifiers": self.quasi_identifiers,
            "smallest_group": self.smallest_group,
            "rows_in_small_groups": self.rows_in_small_groups,
            "forced": self.forced,
        }


def k_anonymity(frame: pl.DataFrame, quasi: list[str], k: int) -> tuple[int | None, int]:
    """The smallest group of rows sharing one quasi-identifier combination, and how many rows
    are in groups smaller than ``k`` (nulls are a value like any other)."""
    if not quasi or frame.height == 0:
        return None, 0
    sizes = frame.group_by(quasi).len()
    small = sizes.filter(pl.col("len") < k)["len"].sum()
    return int(sizes["len"].min()), int(small)  # type: ignore[arg-type]


def _source(store: Store, what: str) -> pl.DataFrame:
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", what):
        return store.query(f'SELECT * FROM "{what}"')
    if not what.lstrip().lower().startswith(("select", "with")):
        raise AisleError(f"export a table name or a SELECT query, not {what[:40]!r}")
    return store.query(what)


def export(
    store: Store,
    what: str,
    path: Path,
    settings: PrivacySettings,
    *,
    quasi: list[str] | None = None,
    force: bool = False,
) -> ExportOutcome:
    """Write a table or query to CSV or Parquet (by suffix) unless some quasi-identifier
    combination is shared by fewer than ``settings.k_anonymity`` rows; ``force`` writes it
    anyway, and the audit log says so."""
    frame = _source(store, what)
    quasi = (
        quasi
        if quasi is not None
        else [c for c in settings.quasi_identifiers if c in frame.columns]
    )
    missing = [c for c in quasi if c not in frame.columns]
    if missing:
        raise AisleError(f"the export has no column(s) {', '.join(missing)}")
    smallest, small_rows = k_anonymity(frame, quasi, settings.k_anonymity)
    if small_rows and not force:
        raise KAnonymityError(
            f"{small_rows:,} row(s) share their {' x '.join(quasi)} with fewer than "
            f"{settings.k_anonymity} rows (smallest group: {smallest}); generalise or drop "
            "those columns, or pass --force (audited)"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        frame.write_parquet(path, compression="zstd")
    else:
        frame.write_csv(path)
    outcome = ExportOutcome(
        str(path), frame.height, quasi, smallest, small_rows, force and bool(small_rows)
    )
    audit.record(store, "export_forced" if outcome.forced else "export", what[:200],
                 outcome.to_json())  # fmt: skip
    return outcome
