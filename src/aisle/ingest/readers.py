"""Read one input file (CSV, TSV, JSONL, JSON, Parquet; plain or gzip) into a raw Polars frame."""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import re
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import numpy.typing as npt
import polars as pl

from aisle.errors import ConfigError, InputError

__all__ = ["BAD_ENCODING", "FORMATS", "LINE", "RawBatch", "ReadOptions", "read_source"]

#: Formats read_source understands; "json" is a top-level array of objects.
FORMATS = ("csv", "tsv", "jsonl", "json", "parquet")
#: 1-based physical line of each record (row number for Parquet and JSON arrays).
LINE = "_line"
#: True for a row whose bytes did not decode in the declared encoding.
BAD_ENCODING = "_bad_encoding"

_RESERVED = (LINE, BAD_ENCODING)
_SUFFIX_FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".parquet": "parquet",
    ".pq": "parquet",
}
_GZIP_MAGIC = b"\x1f\x8b"
_PARQUET_MAGIC = b"PAR1"
_UTF8_BOM = b"\xef\xbb\xbf"
_GUNZIP_CHUNK = 4 << 20
_SNIFF_BYTES = 64 * 1024
_SNIFF_DELIMITERS = ",;\t|"
_MAX_TEXT = 2000
_MALFORMED_SCHEMA = {LINE: pl.Int64, "error": pl.String, "text": pl.String}
_TRUNCATED_HINT = "the file is truncated; re-download or re-export it"
#: JSON value kinds that polars can hold in one column (ints and floats mix, nothing else).
_JSON_KINDS: dict[type, type] = {int: float, float: float, bool: bool, dict: dict, list: list}

Lines = npt.NDArray[np.int64]
_NO_LINES: Lines = np.empty(0, dtype=np.int64)


@dataclass(frozen=True)
class ReadOptions:
    """How to read a file; every field has a default that suits a well-formed export."""

    format: str | None = None
    """One of FORMATS; None: from the suffix (after ``.gz``), else sniffed from the content."""
    delimiter: str | None = None
    """One character; None: sniffed among ``, ; \\t |``. ``" "`` splits on runs of blanks."""
    has_header: bool = True
    column_names: tuple[str, ...] | None = None
    """Names for a headerless file, or replacements for the header's names."""
    encoding: str = "utf-8"
    required_columns: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.format is not None and self.format not in FORMATS:
            raise ConfigError(f"unknown format {self.format!r}; use one of {', '.join(FORMATS)}")
        if self.delimiter is not None and len(self.delimiter) != 1:
            raise ConfigError(f"delimiter must be one character, not {self.delimiter!r}")
        try:
            codecs.lookup(self.encoding)
        except LookupError:
            raise ConfigError(f"unknown encoding {self.encoding!r}") from None


@dataclass(frozen=True, eq=False)
class RawBatch:
    """One file as read: source columns plus ``_line`` and ``_bad_encoding``, and what failed."""

    frame: pl.DataFrame
    source: str
    sha256: str
    format: str
    malformed: pl.DataFrame
    """Records that could not be parsed at all: ``_line``, ``error``, ``text`` (raw, cut)."""


def read_source(path: Path | str, options: ReadOptions = ReadOptions()) -> RawBatch:
    """Read ``path`` into a RawBatch; raise InputError when the file as a whole is unusable.

    CSV/TSV columns are all ``pl.String`` (adapters cast); JSONL, JSON and Parquet keep the
    types they carry. Bad records never fail the file: they land in ``malformed``, and rows
    whose bytes do not decode are kept with ``_bad_encoding`` set.
    """
    source = str(path)
    stored = _read_bytes(Path(path), source)
    data = _gunzip(stored, source) if stored.startswith(_GZIP_MAGIC) else stored
    fmt = options.format or _format_from_name(Path(path), data) or _format_from_content(data)
    delimiter = None
    bad_lines = _NO_LINES
    if fmt == "parquet":
        frame, malformed = _read_parquet(data, source), _malformed([])
    else:
        data, bad_lines = _to_utf8(data, options.encoding)
        if not data.strip():
            names = options.column_names or options.required_columns
            frame, malformed = _empty_frame(names), _malformed([])
        elif fmt == "json":
            frame, malformed = _read_json_array(data, source)
        elif fmt == "jsonl":
            frame, malformed = _read_jsonl(data, source)
        else:
            delimiter = options.delimiter or _sniff_delimiter(data, fmt)
            frame, malformed = _read_delimited(data, delimiter, options, source)
    header = fmt in ("csv", "tsv") and options.has_header
    if fmt == "json" and len(bad_lines):
        flag = _holds_replacement(frame)  # array items have no line of their own
    else:
        flag = _bad_encoding_flag(frame, malformed, bad_lines, header)
    frame = frame.with_columns(flag.alias(BAD_ENCODING))
    _check_required(frame, options, source, delimiter, header)
    return RawBatch(
        frame=frame,
        source=source,
        sha256=hashlib.sha256(stored).hexdigest(),
        format=fmt,
        malformed=malformed,
    )


# --- bytes: file, gzip, encoding, format ----------------------------------------------------


def _read_bytes(path: Path, source: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise InputError("no such file", source=source, hint="check the path") from None
    except IsADirectoryError:
        raise InputError("is a directory, not a file", source=source) from None
    except OSError as exc:
        raise InputError(f"cannot read the file ({exc.strerror})", source=source) from None


def _gunzip(stored: bytes, source: str) -> bytes:
    """Decompress every gzip member; a stream that breaks off names the line where it does."""
    out: list[bytes] = []
    view = memoryview(stored)
    pos = 0
    while True:
        stream = zlib.decompressobj(wbits=31)
        try:
            while pos < len(stored) and not stream.eof:
                chunk = view[pos : pos + _GUNZIP_CHUNK]
                pos += len(chunk)
                out.append(stream.decompress(chunk))
        except zlib.error:
            _raise_broken_gzip(out, source, "the gzip data is corrupt")
        if not stream.eof:
            _raise_broken_gzip(out, source, "the gzip stream ends early")
        pos -= len(stream.unused_data)
        # another member may follow (concatenated .gz files); anything else is padding
        if not stored.startswith(_GZIP_MAGIC, pos):
            return b"".join(out)


def _raise_broken_gzip(out: list[bytes], source: str, message: str) -> NoReturn:
    line = sum(chunk.count(b"\n") for chunk in out) + 1
    raise InputError(message, source=source, line=line, hint=_TRUNCATED_HINT)


def _format_from_name(path: Path, data: bytes) -> str | None:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in (".gz", ".gzip"):
        suffixes.pop()
    fmt = _SUFFIX_FORMATS.get(suffixes[-1]) if suffixes else None
    if fmt == "json" and data.lstrip(b" \t\r\n" + _UTF8_BOM).startswith(b"{"):
        return "jsonl"  # many ".json" exports hold one object per line
    return fmt


def _format_from_content(data: bytes) -> str:
    if data.startswith(_PARQUET_MAGIC):
        return "parquet"
    head = data[:1024].lstrip(b" \t\r\n" + _UTF8_BOM)
    if head.startswith(b"{"):
        return "jsonl"
    if head.startswith(b"["):
        return "json"
    return "csv"


def _to_utf8(data: bytes, encoding: str) -> tuple[bytes, Lines]:
    """UTF-8 bytes without BOM, and the 1-based lines holding bytes that did not decode."""
    codec = codecs.lookup(encoding).name
    try:
        if codec == "utf-8":
            data = data.removeprefix(_UTF8_BOM)
            data.decode("utf-8")
            return data, _NO_LINES
        return data.decode(codec).removeprefix("\ufeff").encode("utf-8"), _NO_LINES
    except UnicodeDecodeError:
        pass
    replaced = data.decode(codec, errors="replace").removeprefix("\ufeff")
    # a U+FFFD that survives errors="ignore" was in the file itself (bytes EF BF BD)
    genuine = data.decode(codec, errors="ignore").removeprefix("\ufeff")
    return replaced.encode("utf-8"), _lines_with_more_replacements(replaced, genuine)


def _lines_with_more_replacements(replaced: str, genuine: str) -> Lines:
    counts = [
        pl.Series(text.split("\n")).str.count_matches("\ufffd", literal=True)
        for text in (replaced, genuine)
    ]
    flagged = counts[0] > counts[1] if len(counts[0]) == len(counts[1]) else counts[0] > 0
    return (flagged.arg_true().to_numpy() + 1).astype(np.int64)


def _bad_encoding_flag(
    frame: pl.DataFrame, malformed: pl.DataFrame, bad_lines: Lines, header: bool
) -> pl.Expr:
    """True for the rows whose record spans one of ``bad_lines``."""
    if not len(bad_lines):
        return pl.lit(False)
    starts = np.unique(
        np.concatenate(
            [
                frame[LINE].to_numpy().astype(np.int64),
                malformed[LINE].to_numpy().astype(np.int64),
                np.array([1] if header else [], dtype=np.int64),
            ]
        )
    )
    owner = np.searchsorted(starts, bad_lines, side="right") - 1
    return pl.col(LINE).is_in(starts[owner[owner >= 0]].tolist())


def _holds_replacement(frame: pl.DataFrame) -> pl.Expr:
    """True for rows with a U+FFFD anywhere in their values (genuine ones included)."""
    if frame.width == 1:
        return pl.lit(False)
    text = pl.struct(pl.all().exclude(LINE)).struct.json_encode()
    return text.str.contains("\ufffd", literal=True)


# --- CSV / TSV --------------------------------------------------------------------------------


def _sniff_delimiter(data: bytes, fmt: str) -> str:
    """csv.Sniffer on the first 64 KiB, overruled when its pick is absent from the first line."""
    if fmt == "tsv":
        return "\t"
    sample = data[:_SNIFF_BYTES]
    if len(data) > _SNIFF_BYTES and sample.rfind(b"\n") > 0:
        sample = sample[: sample.rfind(b"\n")]
    text = sample.decode("utf-8", errors="replace")
    first = next((line for line in text.split("\n") if line.strip()), "")
    try:
        found = csv.Sniffer().sniff(text, delimiters=_SNIFF_DELIMITERS).delimiter
    except csv.Error:
        found = ""
    if found and found in _SNIFF_DELIMITERS and found in first:
        return found
    # the Sniffer can be led astray by quoted text; the first record holds the delimiter
    best = max(_SNIFF_DELIMITERS, key=first.count)
    return best if best in first else ","


def _read_delimited(
    data: bytes, delimiter: str, options: ReadOptions, source: str
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Polars on the whole file; Python's csv only for line numbers or records it rejects."""
    if delimiter == " ":
        data = _squeeze_blanks(data)
    try:
        frame = pl.read_csv(
            data,
            separator=delimiter,
            has_header=options.has_header,
            new_columns=list(options.column_names) if options.column_names else None,
            infer_schema=False,
            quote_char='"',
            raise_if_empty=False,
            truncate_ragged_lines=False,
        )
    except pl.exceptions.PolarsError:
        return _read_delimited_slow(data, delimiter, options, source)
    if not options.has_header and not options.column_names:
        frame.columns = _default_names(frame.width)
    _check_reserved(frame.columns, source)
    first = int(options.has_header) + 1
    if frame.height + first - 1 == _count_lines(data):
        # one record per physical line: no quoted line breaks
        lines = pl.int_range(first, frame.height + first, dtype=pl.Int64)
        return _drop_blank_rows(frame.with_columns(lines.alias(LINE)), data), _malformed([])
    records = list(_csv_records(data.decode("utf-8"), delimiter))
    if any(error for *_, error in records) or len(records) != frame.height + first - 1:
        return _read_delimited_slow(data, delimiter, options, source)
    records = records[first - 1 :]
    frame = frame.with_columns(pl.Series(LINE, [r[0] for r in records], dtype=pl.Int64))
    return frame.filter(pl.Series([bool(r[2]) for r in records])), _malformed([])


def _read_delimited_slow(
    data: bytes, delimiter: str, options: ReadOptions, source: str
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
            names = _first_record_names(row, options, source, start)
            if options.has_header:
                continue
        error = parse_error or _width_error(row, names)
        if error:
            bad.append((start, error, "\n".join(physical[start - 1 : end])[:_MAX_TEXT]))
            continue
        rows.append(row)
        lines.append(start)
    names = names or list(options.column_names or ())
    _check_reserved(names, source)
    frame = pl.DataFrame(rows, schema=[(n, pl.String) for n in names], orient="row")
    # Python's csv reads an empty field as "", polars as null: keep the fast path's null
    frame = frame.with_columns(pl.when(pl.col(n) != "").then(pl.col(n)).alias(n) for n in names)
    frame = frame.with_columns(pl.Series(LINE, lines, dtype=pl.Int64))
    return frame, _malformed(bad)


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


def _first_record_names(row: list[str], options: ReadOptions, source: str, line: int) -> list[str]:
    """Column names from the header, column_names, or the width of the first record."""
    if options.column_names:
        if len(options.column_names) != len(row):
            raise InputError(
                f"column_names has {len(options.column_names)} names "
                f"but the first record has {len(row)} fields",
                source=source,
                line=line,
                hint="check column_names and the delimiter",
            )
        return _dedupe(options.column_names)
    return _dedupe(row) if options.has_header else _default_names(len(row))


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


def _count_lines(data: bytes) -> int:
    return data.count(b"\n") + (0 if data.endswith(b"\n") else 1)


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


# --- JSON Lines, JSON, Parquet ---------------------------------------------------------------


def _read_jsonl(data: bytes, source: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """One JSON object per line; blank lines are skipped, broken ones go to ``malformed``."""
    try:
        frame = pl.read_ndjson(data, infer_schema_length=None)
    except pl.exceptions.PolarsError:
        return _read_jsonl_by_line(data, source)
    _check_reserved(frame.columns, source)
    if frame.height == _count_lines(data):
        lines = pl.int_range(1, frame.height + 1, dtype=pl.Int64).alias(LINE)
        return frame.with_columns(lines), _malformed([])
    text = pl.Series(data.decode("utf-8").split("\n"))
    filled = (text.str.strip_chars().str.len_bytes() > 0).arg_true() + 1
    if len(filled) != frame.height:
        return _read_jsonl_by_line(data, source)
    return frame.with_columns(filled.cast(pl.Int64).alias(LINE)), _malformed([])


def _read_jsonl_by_line(data: bytes, source: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    lines = enumerate(data.decode("utf-8").split("\n"), start=1)
    return _objects_or_malformed(
        ((number, line, _parse_json(line)) for number, line in lines if line.strip()), source
    )


def _read_json_array(data: bytes, source: str) -> tuple[pl.DataFrame, pl.DataFrame]:
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
        _check_reserved(frame.columns, source)
        lines = pl.int_range(1, frame.height + 1, dtype=pl.Int64).alias(LINE)
        return frame.with_columns(lines), _malformed([])
    values = _parse_json(data.decode("utf-8"))
    if isinstance(values, ValueError):
        line = values.lineno if isinstance(values, json.JSONDecodeError) else None
        raise InputError(_json_error(values), source=source, line=line)
    return _objects_or_malformed(
        ((number, None, value) for number, value in enumerate(values, start=1)), source
    )


def _objects_or_malformed(
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
        bad.append((number, error, raw[:_MAX_TEXT]))
    return _frame_of_objects(good, lines, source), _malformed(bad)


def _frame_of_objects(objects: list[dict[str, Any]], lines: list[int], source: str) -> pl.DataFrame:
    """Read parsed objects with the fast path's type rules; a field of mixed kinds becomes text."""
    if not objects:
        return _empty_frame(())
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
    _check_reserved(frame.columns, source)
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


def _read_parquet(data: bytes, source: str) -> pl.DataFrame:
    try:
        frame = pl.read_parquet(io.BytesIO(data))
    except (pl.exceptions.PolarsError, OSError, ValueError):
        raise InputError(
            "not a readable Parquet file",
            source=source,
            hint="the file may be truncated, or not Parquet; set format explicitly",
        ) from None
    _check_reserved(frame.columns, source)
    return frame.with_columns(pl.int_range(1, frame.height + 1, dtype=pl.Int64).alias(LINE))


# --- shared -----------------------------------------------------------------------------------


def _empty_frame(names: Sequence[str]) -> pl.DataFrame:
    return pl.DataFrame(schema={**{n: pl.String for n in names}, LINE: pl.Int64})


def _malformed(rows: list[tuple[int, str, str]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=_MALFORMED_SCHEMA, orient="row")


def _check_reserved(names: Sequence[str], source: str) -> None:
    for name in names:
        if name in _RESERVED:
            raise InputError(
                f"the column name {name!r} is reserved",
                source=source,
                field=name,
                hint="rename that column in the source file",
            )


def _check_required(
    frame: pl.DataFrame, options: ReadOptions, source: str, delimiter: str | None, header: bool
) -> None:
    found = [c for c in frame.columns if c not in _RESERVED]
    missing = [c for c in options.required_columns if c not in found]
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
    others = [d for d in _SNIFF_DELIMITERS if d != delimiter and joined.count(d) >= len(found)]
    if delimiter is not None and found and others:
        best = max(others, key=joined.count)
        return f"the header looks {best!r}-separated, not {delimiter!r}; set delimiter={best!r}"
    if delimiter is not None:
        return "check the header line, or set column_names for a headerless file"
    return "check the field names in the file"
