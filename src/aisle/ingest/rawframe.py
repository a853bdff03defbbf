"""What every reader's raw frame shares: reserved columns, malformed records, column checks."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import polars as pl

from aisle.errors import InputError

#: 1-based physical line of each record (row number for Parquet and JSON arrays).
LINE = "_line"
#: True for a row whose bytes did not decode in the declared encoding.
BAD_ENCODING = "_bad_encoding"
#: Delimiters a CSV is sniffed for, and suggested when header names still hold one.
SNIFF_DELIMITERS = ",;\t|"
#: Most characters of a malformed record's raw text kept in ``malformed``.
MAX_TEXT = 2000

_RESERVED = (LINE, BAD_ENCODING)
_MALFORMED_SCHEMA = {LINE: pl.Int64, "error": pl.String, "text": pl.String}

Lines = npt.NDArray[np.int64]


def empty_frame(names: Sequence[str]) -> pl.DataFrame:
    """A frame of no rows: ``names`` as text columns, plus ``_line``."""
    return pl.DataFrame(schema={**{n: pl.String for n in names}, LINE: pl.Int64})


def malformed_frame(rows: list[tuple[int, str, str]]) -> pl.DataFrame:
    """The ``malformed`` frame of (``_line``, ``error``, ``text``) rows."""
    return pl.DataFrame(rows, schema=_MALFORMED_SCHEMA, orient="row")


def count_lines(data: bytes) -> int:
    """Physical lines in ``data``; a final line break does not start another."""
    return data.count(b"\n") + (0 if data.endswith(b"\n") else 1)


def check_reserved(names: Sequence[str], source: str) -> None:
    """Raise InputError when the file has a column named like one the readers add."""
    for name in names:
        if name in _RESERVED:
            raise InputError(
                f"the column name {name!r} is reserved",
                source=source,
                field=name,
                hint="rename that column in the source file",
            )


def check_required(
    frame: pl.DataFrame,
    required: Sequence[str],
    source: str,
    delimiter: str | None,
    header: bool,
) -> None:
    """Raise InputError naming the ``required`` columns that ``frame`` lacks."""
    found = [c for c in frame.columns if c not in _RESERVED]
    missing = [c for c in required if c not in found]
    if not missing:
        return
    raise InputError(
        f"missing required column(s) {', '.join(map(repr, missing))}; found {found}",
        source=source,
        line=1 if header else None,
        hint=_header_hint(found, delimiter),
    )


def _header_hint(found: list[str], delimiter: str | None) -> str:
    """Suggest another delimiter when the header names still hold one."""
    joined = "".join(found)
    others = [d for d in SNIFF_DELIMITERS if d != delimiter and joined.count(d) >= len(found)]
    if delimiter is not None and found and others:
        best = max(others, key=joined.count)
        return f"the header looks {best!r}-separated, not {delimiter!r}; set delimiter={best!r}"
    if delimiter is not None:
        return "check the header line, or set column_names for a headerless file"
    return "check the field names in the file"
