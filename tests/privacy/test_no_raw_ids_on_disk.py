"""Properties over arbitrary inputs: counts always reconcile and no raw customer id reaches disk."""

from __future__ import annotations

import csv
import gzip
import io
import json
import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aisle.config import load_settings
from aisle.pipeline import ImportResult, ingest
from aisle.storage import Store
from aisle.storage.snapshots import snapshot
from tests.conftest import TEST_SECRET, UCI_HEADER

CANARY = "CANARY"
EVENT_HEADER = ["user_id", "item_id", "type", "value", "price", "currency", "timestamp", "query"]

customer = st.text(alphabet="ABCDEFGHJKLMNPQRSTUVWXYZ23456789", min_size=6, max_size=10).map(
    lambda s: CANARY + s
)
junk = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)
number = st.one_of(st.integers(-5, 100_000).map(str), st.floats(allow_nan=False).map(str), junk)
moment = st.one_of(
    st.datetimes().map(lambda d: d.isoformat(sep=" ")),
    st.integers(0, 2_000_000_000).map(str),
    junk,
)
event_row = st.tuples(
    st.one_of(customer, st.just("")),
    st.sampled_from(["A1", "B2", "C3", ""]),
    st.one_of(st.sampled_from(["view", "click", "purchase", "return", "search", "rating"]), junk),
    number,
    number,
    st.sampled_from(["GBP", "EUR", "", "pounds"]),
    moment,
    st.one_of(junk, st.just("")),
)
uci_row = st.tuples(
    st.one_of(
        st.integers(500_000, 599_999).map(str), st.integers(500_000, 599_999).map(lambda n: f"C{n}")
    ),
    st.sampled_from(["85123A", "71053", "POST", "22633", "?"]),
    junk,
    number,
    st.one_of(st.just("2011-03-04 10:00:00"), moment),
    number,
    st.one_of(customer, st.just("")),
    st.sampled_from(["United Kingdom", "France"]),
)


def _write(path: Path, header: list[str], rows: list[tuple[str, ...]], gz: bool) -> Path:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    data = buffer.getvalue().encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def _canaries(rows: list[tuple[str, ...]], column: int) -> set[str]:
    return {r[column] for r in rows if r[column].startswith(CANARY)}


def _assert_no_trace(home: Path, canaries: set[str]) -> None:
    """Byte scan of every file under home, then every value of every table as text
    (DuckDB compresses strings, so a byte scan alone could miss a stored id)."""
    for path in home.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for canary in canaries:
                assert canary.encode() not in data, f"{canary} found in {path}"
    with Store(home, read_only=True) as store:
        tables = store.query("SELECT table_name FROM information_schema.tables")["table_name"]
        for table in tables.to_list():
            text = json.dumps(store.query(f'SELECT * FROM "{table}"').to_dicts(), default=str)
            for canary in canaries:
                assert canary not in text, f"{canary} found in table {table}"


def _reconciles(result: ImportResult) -> None:
    for part in [*result.derived, result]:
        assert part.input == part.accepted + part.quarantined + part.duplicates


hypothesis_settings = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@hypothesis_settings
@given(rows=st.lists(event_row, max_size=30), repeat=st.integers(0, 3), gz=st.booleans())
def test_events_reconcile_and_leave_no_raw_id(
    rows: list[tuple[str, ...]], repeat: int, gz: bool
) -> None:
    rows = rows + rows[:repeat]  # some exact duplicates
    work = Path(tempfile.mkdtemp())
    try:
        home = work / "home"
        source = _write(work / ("events.csv.gz" if gz else "events.csv"), EVENT_HEADER, rows, gz)
        config = load_settings(home=home, secret_key=TEST_SECRET)
        result = ingest("events", source, "canonical", config)
        _reconciles(result)
        assert result.input == len(rows)
        again = ingest("events", source, "canonical", config)
        assert again.accepted == 0 and again.input == again.duplicates  # idempotent
        source.unlink()  # the input itself is the shop's file, not aisle's
        with Store(home) as store:
            snapshot(store)  # Parquet snapshots are scanned too
        _assert_no_trace(home, _canaries(rows, 0))
    finally:
        shutil.rmtree(work)


@hypothesis_settings
@given(rows=st.lists(uci_row, max_size=30))
def test_retail_lines_reconcile_and_leave_no_raw_id(rows: list[tuple[str, ...]]) -> None:
    work = Path(tempfile.mkdtemp())
    try:
        home = work / "home"
        source = _write(work / "retail.csv", UCI_HEADER, rows, gz=False)
        result = ingest(
            "events", source, "uci-online-retail", load_settings(home=home, secret_key=TEST_SECRET)
        )
        _reconciles(result)
        assert result.input == len(rows)
        source.unlink()
        _assert_no_trace(home, _canaries(rows, 6))
    finally:
        shutil.rmtree(work)
