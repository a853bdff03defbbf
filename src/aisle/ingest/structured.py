"""Read JSON Lines, JSON arrays and Parquet into a raw frame that keeps the types they carry."""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from typing import Any

import polars as pl

from aisle.errors import InputError
from aisle.ingest.rawframe import (
    LINE,
    MAX_TEXT,
    check_reserved,
    count_lines,
    empty_frame,
    malformed_frame,
)

#: JSON value kinds that polars can hold in one column (ints and floats mix, nothing else).
_JSON_KINDS: dict[type, type] = {int: float, float: float, bool: bool, dict: dict, list: list}


def read_jsonl(data: bytes, source: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """One JSON object per line; blank lines are skipped, broken ones go to ``malformed``."""
    try:
        frame = pl.read_ndjson(data, infer_schema_length=None)
    except pl.exceptions.PolarsError:
        return _read_jsonl_by_line(data, source)
    check_reserved(frame.columns, source)
    if frame.height == count_lines(data):
        lines = pl.int_range(1, frame.height + 1, dtype=pl.Int64).alias(LINE)
        return frame.with_columns(lines), malformed_frame([])
    text = pl.Series(data.decode("utf-8").split("\n"))
    filled = (text.str.strip_chars().str.len_bytes() > 0).arg_true() + 1
    if len(filled) != frame.height:
        return _read_jsonl_by_line(data, source)
    return frame.with_columns(filled.cast(pl.Int64).alias(LINE)), malformed_frame([])


def _read_jsonl_by_line(data: bytes, source: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    lines = enumerate(data.decode("utf-8").split("\n"), start=1)
    return _objects_ormalformed_frame(
        ((number, line, _parse_json(line)) for number, line in lines if line.strip()), source
    )


def read_json_array(data: bytes, source: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """A top-level array of objects; ``_line`` is the 1-based position in the array."""
    if not data.lstrip().startswith(b"["):
        raise InputError(
            "expected a JSON array of objects",
            source=source,
            hint="for one object per line use format='jsonl'",
        )
    try:
        frame = pl.read_json(data)
    except pl.exceptions.PolarsError:
        pass
    else:
        check_reserved(frame.columns, source)
        lines = pl.int_range(1, frame.height + 1, dtype=pl.Int64).alias(LINE)
        return frame.with_columns(lines), malformed_frame([])
    values = _parse_json(data.decode("utf-8"))
    if isinstance(values, ValueError):
        line = values.lineno if isinstance(values, json.JSONDecodeError) else None
        raise InputError(_json_error(values), source=source, line=line)
    return _objects_ormalformed_frame(
        ((number, None, value) for number, value in enumerate(values, start=1)), source
    )


def _objects_ormalformed_frame(
    items: Iterable[tuple[int, str | None, Any]], source: str
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(line, raw text or None, parsed value or its error): objects to the frame, the rest out."""
    good: list[dict[str, Any]] = []
    lines: list[int] = []
    bad: list[tuple[int, str, str]] = []
    for number, text, value in items:
        if isinstance(value, dict):
            good.append(value)
            lines.append(number)
            continue
        if isinstance(value, ValueError):
            error = _json_error(value)
        else:
            error = f"expected a JSON object, found {type(value).__name__}"
        raw = json.dumps(value, ensure_ascii=False) if text is None else text
        bad.append((number, error, raw[:MAX_TEXT]))
    return frame_of_objects(good, lines, source), malformed_frame(bad)


def frame_of_objects(objects: list[dict[str, Any]], lines: list[int], source: str) -> pl.DataFrame:
    """Read parsed objects with the fast path's type rules; a field of mixed kinds becomes text."""
    if not objects:
        return empty_frame(())
    kinds: dict[str, set[type]] = {}
    for obj in objects:
        for key, value in obj.items():
            if value is not None:
                kinds.setdefault(key, set()).add(_JSON_KINDS.get(type(value), str))
    mixed = {key for key, seen in kinds.items() if len(seen) > 1}
    texts = (
        json.dumps(
            {k: _as_text(v) if k in mixed else v for k, v in obj.items()}, ensure_ascii=False
        )
        for obj in objects
    )
    try:
        frame = pl.read_ndjson("\n".join(texts).encode("utf-8"), infer_schema_length=None)
    except pl.exceptions.PolarsError:
        raise InputError(
            "the records give a nested field incompatible JSON types",
            source=source,
            hint="give each field one JSON type (e.g. always an object, or always a list)",
        ) from None
    check_reserved(frame.columns, source)
    return frame.with_columns(pl.Series(LINE, lines, dtype=pl.Int64))


def _as_text(value: Any) -> Any:
    """A value of a mixed-kind field as polars would coerce it: JSON text, strings unchanged."""
    return value if value is None or isinstance(value, str) else json.dumps(value)


def _parse_json(text: str) -> Any:
    """The parsed value, or the ValueError saying why ``text`` is not JSON."""
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except ValueError as exc:  # JSONDecodeError is a ValueError
        return exc


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _json_error(exc: ValueError) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"invalid JSON: {exc.msg} (column {exc.colno})"
    return f"invalid JSON: {exc}"


def read_parquet(data: bytes, source: str) -> pl.DataFrame:
    try:
        frame = pl.read_parquet(io.BytesIO(data))
    except (pl.exceptions.PolarsError, OSError, ValueError):
        raise InputError(
            "not a readable Parquet file",
            source=source,
            hint="the file may be truncated, or not Parquet; set format explicitly",
        ) from None
    check_reserved(frame.columns, source)
    return frame.with_columns(pl.int_range(1, frame.height + 1, dtype=pl.Int64).alias(LINE))
