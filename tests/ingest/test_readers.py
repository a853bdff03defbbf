"""Tests for aisle.ingest.readers (file -> raw frame) and aisle.ingest.fetch (URL -> file)."""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import zlib
from pathlib import Path

import httpx
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aisle.errors import ConfigError, InputError
from aisle.ingest.fetch import fetch_url, file_name, is_url
from aisle.ingest.readers import RawBatch, ReadOptions, read_source

UCI = Path("/work/shared/data/uci-online-retail/transactions.csv.gz")
ORDERS = b"order,sku,qty\nA1,S1,2\nA2,S2,1\nA3,S3,5\n"


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def lines(batch: RawBatch) -> list[int]:
    return batch.frame["_line"].to_list()


# --- CSV --------------------------------------------------------------------------------------


def test_csv_with_header_reads_strings_with_line_numbers(tmp_path: Path) -> None:
    path = write(tmp_path, "orders.csv", ORDERS)
    batch = read_source(path)
    assert batch.format == "csv"
    assert batch.source == str(path)
    assert batch.sha256 == hashlib.sha256(ORDERS).hexdigest()
    assert batch.frame.columns == ["order", "sku", "qty", "_line", "_bad_encoding"]
    assert batch.frame.schema["qty"] == pl.String
    assert batch.frame["qty"].to_list() == ["2", "1", "5"]
    assert lines(batch) == [2, 3, 4]
    assert batch.frame["_bad_encoding"].to_list() == [False] * 3
    assert batch.malformed.is_empty()
    assert batch.malformed.schema == pl.Schema(
        {"_line": pl.Int64, "error": pl.String, "text": pl.String}
    )


def test_gzip_reads_like_plain_and_hashes_stored_bytes(tmp_path: Path) -> None:
    stored = gzip.compress(ORDERS)
    batch = read_source(write(tmp_path, "orders.csv.gz", stored))
    plain = read_source(write(tmp_path, "orders.csv", ORDERS))
    assert batch.frame.equals(plain.frame)
    assert batch.sha256 == hashlib.sha256(stored).hexdigest()


def test_gzip_found_by_magic_bytes_and_fake_gz_read_as_plain(tmp_path: Path) -> None:
    hidden = read_source(write(tmp_path, "orders.csv", gzip.compress(ORDERS)))
    fake = read_source(write(tmp_path, "fake.csv.gz", ORDERS))
    assert hidden.frame.height == fake.frame.height == 3


def test_concatenated_gzip_members_are_all_read(tmp_path: Path) -> None:
    data = gzip.compress(b"a,b\n1,2\n") + gzip.compress(b"3,4\n")
    batch = read_source(write(tmp_path, "two.csv.gz", data))
    assert batch.frame["a"].to_list() == ["1", "3"]


def test_semicolon_delimiter_is_sniffed(tmp_path: Path) -> None:
    data = b"id;name;price\n1;Mug, blue;2,50\n2;Cup;3,10\n"
    batch = read_source(write(tmp_path, "eu.csv", data))
    assert batch.frame["name"].to_list() == ["Mug, blue", "Cup"]
    assert batch.frame["price"].to_list() == ["2,50", "3,10"]


def test_tsv_suffix_means_tab(tmp_path: Path) -> None:
    batch = read_source(write(tmp_path, "x.tsv", b"a\tb\n1,5\t2\n"))
    assert batch.format == "tsv"
    assert batch.frame.row(0)[:2] == ("1,5", "2")


def test_embedded_newlines_give_each_record_its_first_line(tmp_path: Path) -> None:
    data = b'id,text\n1,"two\nlines"\n2,plain\n3,"three\n\nlines"\n4,end\n'
    batch = read_source(write(tmp_path, "multi.csv", data))
    assert batch.frame["id"].to_list() == ["1", "2", "3", "4"]
    assert batch.frame["text"][0] == "two\nlines"
    assert lines(batch) == [2, 4, 5, 8]


def test_blank_lines_are_skipped_and_empty_fields_kept(tmp_path: Path) -> None:
    data = b"a,b\r\n1,2\r\n\r\n,\r\n3,4\r\n\r\n"
    batch = read_source(write(tmp_path, "blank.csv", data))
    assert batch.frame.select("a", "b").rows() == [("1", "2"), (None, None), ("3", "4")]
    assert lines(batch) == [2, 4, 5]


def test_ragged_row_goes_to_malformed_with_its_line(tmp_path: Path) -> None:
    data = b'a,b,c\n1,2,3\n4,"x\ny",6\n7,8,9,10\n11,12\n13,14,15\n'
    batch = read_source(write(tmp_path, "ragged.csv", data))
    assert batch.frame["a"].to_list() == ["1", "4", "13"]
    assert lines(batch) == [2, 3, 7]
    assert batch.malformed.rows() == [
        (5, "expected 3 fields, found 4", "7,8,9,10"),
        (6, "expected 3 fields, found 2", "11,12"),
    ]


def test_short_row_is_padded_on_the_fast_path(tmp_path: Path) -> None:
    batch = read_source(write(tmp_path, "short.csv", b"a,b,c\n1,2\n4,5,6\n"))
    assert batch.frame.select("a", "b", "c").rows() == [("1", "2", None), ("4", "5", "6")]
    assert batch.malformed.is_empty()


def test_missing_required_column_hints_at_the_delimiter(tmp_path: Path) -> None:
    path = write(tmp_path, "semi.csv", b"user;item;rating\nu-secret-42;i1;5\n")
    options = ReadOptions(delimiter=",", required_columns=("user", "item"))
    with pytest.raises(InputError) as info:
        read_source(path, options)
    message = str(info.value)
    assert "'user', 'item'" in message
    assert "user;item;rating" in message  # the header as found
    assert "set delimiter=';'" in message
    assert "u-secret-42" not in message  # never a data value
    assert info.value.line == 1


def test_missing_required_column_without_delimiter_trouble(tmp_path: Path) -> None:
    options = ReadOptions(required_columns=("price",))
    with pytest.raises(InputError, match="missing required column"):
        read_source(write(tmp_path, "o.csv", ORDERS), options)


def test_truncated_gzip_names_the_line_where_it_breaks_off(tmp_path: Path) -> None:
    data = b"a,b\n" + b"".join(b"%d,row-%d\n" % (i, i) for i in range(20_000))
    stored = gzip.compress(data)
    cut = stored[: len(stored) // 2]
    with pytest.raises(InputError) as info:
        read_source(write(tmp_path, "cut.csv.gz", cut))
    assert info.value.hint == "the file is truncated; re-download or re-export it"
    assert info.value.source.endswith("cut.csv.gz")
    readable = zlib.decompressobj(wbits=31).decompress(cut)
    assert info.value.line == readable.count(b"\n") + 1
    assert 1 < info.value.line < 20_001


def test_missing_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        read_source(tmp_path / "nope.csv")


def test_empty_file_and_header_only_give_empty_frames(tmp_path: Path) -> None:
    empty = read_source(write(tmp_path, "empty.csv", b""))
    assert empty.frame.height == 0
    assert empty.frame.columns == ["_line", "_bad_encoding"]
    header = read_source(
        write(tmp_path, "header.csv", b"a,b\n"), ReadOptions(required_columns=("a",))
    )
    assert header.frame.height == 0
    assert header.frame.columns == ["a", "b", "_line", "_bad_encoding"]
    assert header.frame.schema["_line"] == pl.Int64


def test_empty_file_carries_the_required_columns(tmp_path: Path) -> None:
    batch = read_source(write(tmp_path, "e.jsonl", b"\n"), ReadOptions(required_columns=("sku",)))
    assert batch.frame.columns == ["sku", "_line", "_bad_encoding"]


# --- encodings ---------------------------------------------------------------------------------


def test_bad_utf8_flags_only_its_row(tmp_path: Path) -> None:
    data = (
        b"id,name\n1,caf\xc3\xa9\n2,bad \xff byte\n3,real \xef\xbf\xbd mark\n"
        b'4,"multi\nline \xfe"\n5,ok\n'
    )
    batch = read_source(write(tmp_path, "enc.csv", data))
    frame = batch.frame
    assert frame["id"].to_list() == ["1", "2", "3", "4", "5"]
    assert frame["_bad_encoding"].to_list() == [False, True, False, True, False]
    assert frame["name"][0] == "café"
    assert frame["name"][1] == "bad \ufffd byte"


def test_bad_utf8_in_jsonl_flags_only_its_row(tmp_path: Path) -> None:
    data = b'{"id": 1, "t": "a"}\n{"id": 2, "t": "\xe9"}\n{"id": 3, "t": "c"}\n'
    batch = read_source(write(tmp_path, "enc.jsonl", data))
    assert batch.frame["_bad_encoding"].to_list() == [False, True, False]


def test_bad_utf8_in_a_json_array_flags_its_item(tmp_path: Path) -> None:
    data = b'[{"id": 1, "t": "a"},\n {"id": 2, "t": "\xe9"}]'
    batch = read_source(write(tmp_path, "enc.json", data))
    assert batch.frame["_bad_encoding"].to_list() == [False, True]


def test_latin1_is_transcoded(tmp_path: Path) -> None:
    path = write(tmp_path, "l1.csv", "id|title\n1|Café Crème\n".encode("latin-1"))
    batch = read_source(path, ReadOptions(encoding="latin-1"))
    assert batch.frame["title"].to_list() == ["Café Crème"]
    assert not batch.frame["_bad_encoding"].any()


def test_utf8_bom_is_dropped(tmp_path: Path) -> None:
    batch = read_source(write(tmp_path, "bom.csv", b"\xef\xbb\xbf" + ORDERS))
    assert batch.frame.columns[0] == "order"


# --- whitespace-separated, headerless ------------------------------------------------------------


def test_headerless_whitespace_file_with_column_names(tmp_path: Path) -> None:
    path = write(tmp_path, "pairs.txt", b"1 6393\n2  17\t8\n\n 3 40 \n")
    options = ReadOptions(
        format="csv", delimiter=" ", has_header=False, column_names=("user", "item")
    )
    batch = read_source(path, options)
    assert batch.frame.select("user", "item").rows() == [("1", "6393"), ("3", "40")]
    assert lines(batch) == [1, 4]
    assert batch.malformed.rows() == [(2, "expected 2 fields, found 3", "2 17 8")]


def test_headerless_tab_file_like_movielens_ratings(tmp_path: Path) -> None:
    path = write(tmp_path, "ratings.tsv", b"196\t242\t3\t881250949\n186\t302\t3\t891717742\n")
    names = ("user", "item", "rating", "ts")
    batch = read_source(path, ReadOptions(has_header=False, column_names=names))
    assert batch.frame.columns[:4] == list(names)
    assert lines(batch) == [1, 2]


def test_column_names_of_the_wrong_width_are_an_input_error(tmp_path: Path) -> None:
    path = write(tmp_path, "r.tsv", b"1\t2\t3\n")
    options = ReadOptions(has_header=False, column_names=("user", "item"))
    with pytest.raises(InputError, match="column_names has 2 names"):
        read_source(path, options)


# --- JSON Lines, JSON, Parquet ----------------------------------------------------------------


def test_jsonl_with_a_broken_line(tmp_path: Path) -> None:
    data = b'{"sku": "1", "tags": ["a"]}\n\n{"sku": "2", \n[1, 2]\n{"sku": "3", "tags": []}\n'
    batch = read_source(write(tmp_path, "p.jsonl", data))
    assert batch.frame["sku"].to_list() == ["1", "3"]
    assert batch.frame["tags"].to_list() == [["a"], []]
    assert lines(batch) == [1, 5]
    assert batch.malformed["_line"].to_list() == [3, 4]
    assert batch.malformed["error"][0].startswith("invalid JSON")
    assert batch.malformed["error"][1] == "expected a JSON object, found list"


def test_jsonl_blank_lines_keep_physical_line_numbers(tmp_path: Path) -> None:
    data = b'{"a": 1}\n\n{"a": {"b": 2}}\n'
    batch = read_source(write(tmp_path, "p.ndjson.gz", gzip.compress(data)))
    assert batch.format == "jsonl"
    assert lines(batch) == [1, 3]
    assert batch.frame["a"].to_list() == ["1", '{"b": 2}']  # mixed kinds become JSON text


def test_json_array_file(tmp_path: Path) -> None:
    batch = read_source(write(tmp_path, "p.json", json.dumps([{"a": 1}, {"a": 2}]).encode()))
    assert batch.format == "json"
    assert batch.frame["a"].to_list() == [1, 2]
    assert lines(batch) == [1, 2]


def test_parquet_rows_are_numbered(tmp_path: Path) -> None:
    path = tmp_path / "p.parquet"
    pl.DataFrame({"sku": ["x", "y"], "price": [1.5, 2.0]}).write_parquet(path)
    batch = read_source(path)
    assert batch.format == "parquet"
    assert batch.frame.schema["price"] == pl.Float64
    assert lines(batch) == [1, 2]
    assert batch.frame["_bad_encoding"].to_list() == [False, False]


def test_format_is_sniffed_from_content(tmp_path: Path) -> None:
    parquet = tmp_path / "blob"
    pl.DataFrame({"a": [1]}).write_parquet(parquet)
    assert read_source(parquet).format == "parquet"
    assert read_source(write(tmp_path, "blob2", b'{"a": 1}\n')).format == "jsonl"
    assert read_source(write(tmp_path, "blob3", b"a,b\n1,2\n")).format == "csv"


def test_reserved_column_name_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="reserved"):
        read_source(write(tmp_path, "r.csv", b"_line,a\n1,2\n"))


def test_unknown_format_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        ReadOptions(format="xlsx")


# --- invariant ---------------------------------------------------------------------------------

cell = st.one_of(st.just(""), st.text(alphabet='ab,;"\n x', min_size=1, max_size=6))


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=st.lists(st.lists(cell, min_size=3, max_size=3), min_size=1, max_size=8))
def test_csv_round_trip_values_and_first_lines(tmp_path: Path, rows: list[list[str]]) -> None:
    rows = [r for r in rows if any(r)]  # an all-empty row is a blank line when alone
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["c1", "c2", "c3"])
    starts = []
    for row in rows:
        starts.append(buffer.getvalue().count("\n") + 1)
        writer.writerow(row)
    batch = read_source(write(tmp_path, "rt.csv", buffer.getvalue().encode()))
    expected = [tuple(v or None for v in row) for row in rows]
    assert batch.frame.select("c1", "c2", "c3").rows() == expected
    assert lines(batch) == starts


# --- the real file -----------------------------------------------------------------------------


@pytest.mark.skipif(not UCI.exists(), reason=f"shared dataset {UCI} is not present here")
def test_uci_online_retail_reads_on_the_fast_path() -> None:
    batch = read_source(UCI, ReadOptions(required_columns=("InvoiceNo", "CustomerID")))
    assert batch.frame.height == 499_619
    assert batch.frame.width == 8 + 2
    assert batch.malformed.is_empty()
    assert batch.frame["_line"][-1] == 499_620


# --- fetch --------------------------------------------------------------------------------------


def test_is_url() -> None:
    assert is_url("https://example.org/data/orders.csv.gz")
    assert not is_url("/data/orders.csv")
    assert not is_url("ftp://example.org/x.csv")


def test_fetch_url_streams_to_a_named_file(tmp_path: Path) -> None:
    body = gzip.compress(ORDERS)

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/exports/orders.csv.gz"
        return httpx.Response(200, content=body)

    transport = httpx.MockTransport(handler)
    path = fetch_url(
        "https://shop.example/exports/orders.csv.gz?token=s3cret", tmp_path, transport=transport
    )
    assert path == tmp_path / "orders.csv.gz"
    assert path.read_bytes() == body
    assert [p.name for p in tmp_path.iterdir()] == ["orders.csv.gz"]  # no temp file left
    assert read_source(path).frame.height == 3


def test_fetch_url_http_error_is_an_input_error(tmp_path: Path) -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(404))
    url = "https://shop.example/missing.csv?token=s3cret"
    with pytest.raises(InputError, match="HTTP 404") as info:
        fetch_url(url, tmp_path, transport=transport)
    assert info.value.source == "https://shop.example/missing.csv"
    assert "s3cret" not in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_fetch_url_connection_failure_is_an_input_error(tmp_path: Path) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(InputError, match="download failed"):
        fetch_url("http://shop.example/x.csv", tmp_path, transport=httpx.MockTransport(refuse))
    assert list(tmp_path.iterdir()) == []


def test_file_name_is_safe() -> None:
    assert file_name("https://h/a/b/orders%202024.csv.gz") == "orders_2024.csv.gz"
    assert file_name("https://h/") == "download"
    assert file_name("https://h/../..") == "download"
