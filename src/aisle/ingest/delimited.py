"""Read CSV and TSV text into a raw frame of text columns: polars first, Python's csv on doubt."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator, Sequence

import numpy as np
import polars as pl

from aisle.errors import InputError
from aisle.ingest.rawframe import (
    LINE,
    MAX_TEXT,
    SNIFF_DELIMITERS,
    Lines,
    check_reserved,
    count_lines,
    malformed_frame,
)

_SNIFF_BYTES = 64 * 1024


def sniff_delimiter(data: bytes, fmt: str) -> str:
    """csv.Sniffer on the first 64 KiB, overruled when its pick is absent from the first line."""
    if fmt == "tsv":
        return "\t"
    sample = data[:_SNIFF_BYTES]
    if len(data) > _SNIFF_BYTES and sample.rfind(b"\n") > 0:
        sample = sample[: sample.rfind(b"\n")]
    text = sample.decode("utf-8", errors="replace")
    first = next((line for line in text.split("\n") if line.strip()), "")
    try:
        found = csv.Sniffer().sniff(text, delimiters=SNIFF_DELIMITERS).delimiter
    except csv.Error:
        found = ""
    if found and found in SNIFF_DELIMITERS and found in first:
        return found
    # the Sniffer can be led astray by quoted text; the first record holds the delimiter
    best = max(SNIFF_DELIMITERS, key=first.count)
    return best if best in first else ","


def read_delimited(
    data: bytes,
    delimiter: str,
    source: str,
    *,
    has_header: bool,
    column_names: tuple[str, ...] | None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Polars on the whole file; Python's csv only for line numbers or records it rejects."""
    if delimiter == " ":
        data = _squeeze_blanks(data)
    try:
        frame = pl.read_csv(
            data,
            separator=delimiter,
            has_header=has_header,
            new_columns=list(column_names) if column_names else None,
            infer_schema=False,
            quote_char='"',
            raise_if_empty=False,
            truncate_ragged_lines=False,
        )
    except pl.exceptions.PolarsError:
        return _read_delimited_slow(
            data, delimiter, source, has_header=has_header, column_names=column_names
        )
    if not has_header and not column_names:
        frame.columns = _default_names(frame.width)
    check_reserved(frame.columns, source)
    first = int(has_header) + 1
    if frame.height + first - 1 == count_lines(data):
        # one record per physical line: no quoted line breaks
        lines = pl.int_range(first, frame.height + first, dtype=pl.Int64)
        return _drop_blank_rows(frame.with_columns(lines.alias(LINE)), data), malformed_frame([])
    records = list(_csv_records(data.decode("utf-8"), delimiter))
    if any(error for *_, error in records) or len(records) != frame.height + first - 1:
        return _read_delimited_slow(
            data, delimiter, source, has_header=has_header, column_names=column_names
        )
    records = records[first - 1 :]
    frame = frame.with_columns(pl.Series(LINE, [r[0] for r in records], dtype=pl.Int64))
    return frame.filter(pl.Series([bool(r[2]) for r in records])), malformed_frame([])


def _read_delimited_slow(
    data: bytes,
    delimiter: str,
    source: str,
    *,
    has_header: bool,
    column_names: tuple[str, ...] | None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Python's csv record by record: rows of the wrong width go to ``malformed``."""
    text = data.decode("utf-8")
    physical = text.split("\n")
    names: list[str] | None = None
    rows: list[list[str]] = []
    lines: list[int] = []
    bad: list[tuple[int, str, str]] = []
    for start, end, row, parse_error in _csv_records(text, delimiter):
        if parse_error is None and not row:
            continue  # blank line
        if parse_error is None and names is None:
            names = _first_record_names(row, has_header, column_names, source, start)
            if has_header:
                continue
        error = parse_error or _width_error(row, names)
        if error:
            bad.append((start, error, "\n".join(physical[start - 1 : end])[:MAX_TEXT]))
            continue
        rows.append(row)
        lines.append(start)
    names = names or list(column_names or ())
    check_reserved(names, source)
    frame = pl.DataFrame(rows, schema=[(n, pl.String) for n in names], orient="row")
    # Python's csv reads an empty field as "", polars as null: keep the fast path's null
    frame = frame.with_columns(pl.when(pl.col(n) != "").then(pl.col(n)).alias(n) for n in names)
    frame = frame.with_columns(pl.Series(LINE, lines, dtype=pl.Int64))
    return frame, malformed_frame(bad)


def _width_error(row: list[str], names: list[str] | None) -> str | None:
    if names is None or len(row) == len(names):
        return None
    return f"expected {len(names)} fields, found {len(row)}"


def _csv_records(text: str, delimiter: str) -> Iterator[tuple[int, int, list[str], str | None]]:
    """(first line, last line, fields, error) per record; a blank line is a record of no fields."""
    # strict: a stray quote makes its record malformed instead of silently joining fields
    reader = csv.reader(
        io.StringIO(text, newline="\n"), delimiter=delimiter, quotechar='"', strict=True
    )
    end = 0
    while True:
        start = end + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            end = reader.line_num
            yield start, end, [], f"unparseable record ({exc})"
            continue
        end = reader.line_num
        yield start, end, row, None


def _first_record_names(
    row: list[str], has_header: bool, column_names: tuple[str, ...] | None, source: str, line: int
) -> list[str]:
    """Column names from the header, column_names, or the width of the first record."""
    if column_names:
        if len(column_names) != len(row):
            raise InputError(
                f"column_names has {len(column_names)} names "
                f"but the first record has {len(row)} fields",
                source=source,
                line=line,
                hint="check column_names and the delimiter",
            )
        return _dedupe(column_names)
    return _dedupe(row) if has_header else _default_names(len(row))


def _dedupe(names: Sequence[str]) -> list[str]:
    """Unique names, renamed the way polars renames repeated header names."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        if name in seen:
            out.append(f"{name}_duplicated_{seen[name]}")
            seen[name] += 1
        else:
            out.append(name)
            seen[name] = 0
    return out


def _default_names(width: int) -> list[str]:
    return [f"column_{i}" for i in range(1, width + 1)]


def _squeeze_blanks(data: bytes) -> bytes:
    """Runs of spaces and tabs become one space; blanks around a line go."""
    return re.sub(rb"(?m)^ | (?=\r?$)", b"", re.sub(rb"[ \t]+", b" ", data))


def _drop_blank_rows(frame: pl.DataFrame, data: bytes) -> pl.DataFrame:
    """Remove the all-null rows polars makes of blank lines (``,,`` rows stay)."""
    columns = [c for c in frame.columns if c != LINE]
    if not columns:
        return frame
    candidates = frame.filter(pl.all_horizontal(pl.col(columns).is_null()))[LINE]
    if candidates.is_empty():
        return frame
    blank = _blank_lines(data, candidates.to_numpy().astype(np.int64))
    return frame.filter(~pl.col(LINE).is_in(blank.tolist()))


def _blank_lines(data: bytes, lines: Lines) -> Lines:
    """The subset of ``lines`` (1-based) that are empty or hold only a carriage return."""
    raw = np.frombuffer(data, dtype=np.uint8)
    breaks = np.flatnonzero(raw == ord("\n"))
    starts = np.concatenate(([0], breaks + 1))[lines - 1]
    ends = np.append(breaks, len(raw))[lines - 1]
    length = ends - starts
    first = raw[np.minimum(starts, len(raw) - 1)]  # data is never empty here
    blank = (length == 0) | ((length == 1) & (first == ord("\r")))
    found: Lines = lines[blank]
    return found
