"""Read one input file (CSV, TSV, JSONL, JSON, XML, Parquet; plain or gzip) into a raw frame."""

from __future__ import annotations

import codecs
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import numpy as np
import polars as pl

from aisle.errors import ConfigError, InputError
from aisle.ingest.delimited import read_delimited, sniff_delimiter
from aisle.ingest.inflate import InflateError, decompressobj
from aisle.ingest.rawframe import (
    BAD_ENCODING,
    LINE,
    Lines,
    check_required,
    empty_frame,
    malformed_frame,
)
from aisle.ingest.structured import read_json_array, read_jsonl, read_parquet
from aisle.ingest.xmlrecords import read_xml

__all__ = ["BAD_ENCODING", "FORMATS", "LINE", "RawBatch", "ReadOptions", "read_source"]

#: Formats read_source understands; "json" is a top-level array of objects, "xml" a document
#: of repeated record elements.
FORMATS = ("csv", "tsv", "jsonl", "json", "xml", "parquet")

_SUFFIX_FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".xml": "xml",
    ".parquet": "parquet",
    ".pq": "parquet",
}
_GZIP_MAGIC = b"\x1f\x8b"
_PARQUET_MAGIC = b"PAR1"
_UTF8_BOM = b"\xef\xbb\xbf"
_XML_ENCODING = re.compile(rb"""<\?xml[^>]*?\bencoding\s*=\s*["']([A-Za-z0-9._:-]+)["']""")
_GUNZIP_CHUNK = 4 << 20
_TRUNCATED_HINT = "the file is truncated; re-download or re-export it"

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
    """The text's encoding; for XML the default gives way to the document's own declaration."""
    required_columns: tuple[str, ...] = ()
    record_element: str | None = None
    """XML: the tag of the record elements, at any depth; None: the root's children."""
    list_elements: tuple[str, ...] = ()
    """XML: tags always read as lists, even where the file never repeats them under a parent."""

    def __post_init__(self) -> None:
        if self.format is not None and self.format not in FORMATS:
            raise ConfigError(f"unknown format {self.format!r}; use one of {', '.join(FORMATS)}")
        if self.delimiter is not None and len(self.delimiter) != 1:
            raise ConfigError(f"delimiter must be one character, not {self.delimiter!r}")
        if self.record_element is not None and not self.record_element.strip():
            raise ConfigError("record_element must name an XML element")
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

    CSV/TSV and XML columns are text (adapters cast; XML's nested elements are lists and
    structs of text); JSONL, JSON and Parquet keep the types they carry. Bad records never fail
    the file: they land in ``malformed``, and rows whose bytes do not decode are kept with
    ``_bad_encoding`` set.
    """
    source = str(path)
    stored = _read_bytes(Path(path), source)
    data = _gunzip(stored, source) if stored.startswith(_GZIP_MAGIC) else stored
    fmt = options.format or _format_from_name(Path(path), data) or _format_from_content(data)
    delimiter = None
    bad_lines = _NO_LINES
    if fmt == "parquet":
        frame, malformed = read_parquet(data, source), malformed_frame([])
    else:
        encoding = options.encoding
        if fmt == "xml" and codecs.lookup(encoding).name == "utf-8":
            encoding = _xml_encoding(data) or encoding
        data, bad_lines = _to_utf8(data, encoding)
        if not data.strip():
            names = options.column_names or options.required_columns
            frame, malformed = empty_frame(names), malformed_frame([])
        elif fmt == "json":
            frame, malformed = read_json_array(data, source)
        elif fmt == "jsonl":
            frame, malformed = read_jsonl(data, source)
        elif fmt == "xml":
            frame, malformed = read_xml(
                data,
                source,
                record_element=options.record_element,
                list_elements=options.list_elements,
            )
            if frame.height == 0:  # a feed of no records: no fields to check either
                frame = empty_frame(options.column_names or options.required_columns)
        else:
            delimiter = options.delimiter or sniff_delimiter(data, fmt)
            frame, malformed = read_delimited(
                data,
                delimiter,
                source,
                has_header=options.has_header,
                column_names=options.column_names,
            )
    header = fmt in ("csv", "tsv") and options.has_header
    if fmt == "json" and len(bad_lines):
        flag = _holds_replacement(frame)  # array items have no line of their own
    else:
        flag = _bad_encoding_flag(frame, malformed, bad_lines, header)
    frame = frame.with_columns(flag.alias(BAD_ENCODING))
    check_required(frame, options.required_columns, source, delimiter, header)
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
        stream = decompressobj(wbits=31)
        try:
            while pos < len(stored) and not stream.eof:
                chunk = view[pos : pos + _GUNZIP_CHUNK]
                pos += len(chunk)
                out.append(stream.decompress(chunk))
        except InflateError:
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
    if head.startswith(b"<"):
        return "xml"
    if head.startswith(b"{"):
        return "jsonl"
    if head.startswith(b"["):
        return "json"
    return "csv"


def _xml_encoding(data: bytes) -> str | None:
    """The encoding an XML declaration names, where Python knows it."""
    match = _XML_ENCODING.match(data.removeprefix(_UTF8_BOM).lstrip(b" \t\r\n"))
    if match is None:
        return None
    name = match.group(1).decode("ascii")
    try:
        codecs.lookup(name)
    except LookupError:
        return None
    return name


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
