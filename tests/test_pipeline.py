"""The import as a whole: edge cases that cross stages."""

from __future__ import annotations

import gzip
from pathlib import Path

from aisle.config import Settings
from aisle.errors import InputError
from aisle.pipeline import ingest
from aisle.storage import Store
from tests.conftest import write_csv

HEADER = ["user_id", "item_id", "type", "value", "price", "currency", "timestamp", "query"]


def test_a_header_only_file_imports_nothing(settings: Settings, tmp_path: Path) -> None:
    """Regression: an empty batch once failed casting its (empty) timestamps."""
    result = ingest("events", write_csv(tmp_path / "e.csv", HEADER, []), "canonical", settings)
    assert (result.input, result.accepted, result.quarantined, result.duplicates) == (0, 0, 0, 0)
    with Store(settings.home) as store:
        assert store.scalar("SELECT status FROM imports") == "complete"


def test_derived_and_event_quarantine_rows_land_in_one_import(
    settings: Settings, uci_file: Path
) -> None:
    """Both imports of a retail file (its catalog, its events) keep their own ledger rows."""
    result = ingest("events", uci_file, "uci-online-retail", settings)
    with Store(settings.home) as store:
        per_import = dict(
            store.query("SELECT import_id, count(*) FROM quarantine GROUP BY 1").iter_rows()
        )
    assert per_import.get(result.import_id, 0) == result.quarantined
    assert sum(per_import.values()) == result.quarantined + sum(
        d.quarantined for d in result.derived
    )


def test_a_partly_bad_file_imports_its_good_rows(settings: Settings, uci_file: Path) -> None:
    """A ragged row and a row of broken bytes are quarantined with their lines; the rest go in."""
    lines = uci_file.read_bytes().splitlines(keepends=True)
    good = len(lines) - 1
    ragged = b"536380,22633,HAND WARMER,6,2010-12-07 10:00:00,1.85,17853,France,EXTRA\n"
    broken = b"536381,22633,HAND WARMER \xff\xfe,6,2010-12-07 11:00:00,1.85,17853,France\n"
    path = uci_file.with_name("partly-bad.csv")
    path.write_bytes(b"".join([*lines, ragged, broken]))
    result = ingest("events", path, "uci-online-retail", settings)
    assert result.input == good + 2
    assert result.input == result.accepted + result.quarantined + result.duplicates
    assert result.reasons["malformed_row"] == 1 and result.reasons["bad_encoding"] == 1
    with Store(settings.home) as store:
        rows = store.query(
            "SELECT line, reasons, detail, payload FROM quarantine "
            "WHERE list_contains(reasons, 'malformed_row') OR list_contains(reasons, 'bad_encoding')"
            " ORDER BY line"
        ).to_dicts()
    assert [r["line"] for r in rows] == [len(lines) + 1, len(lines) + 2]
    assert "found 9" in rows[0]["detail"]
    assert rows[0]["payload"] is None  # an unparsed line could hold a raw customer id


def test_a_semicolon_file_reads_like_the_comma_one(
    settings: Settings, uci_file: Path, tmp_path: Path
) -> None:
    text = uci_file.read_text().replace(",", ";")
    semicolons = tmp_path / "retail-semicolon.csv"
    semicolons.write_text(text)
    other = ingest(
        "events",
        uci_file,
        "uci-online-retail",
        settings.model_copy(update={"home": tmp_path / "other"}),
    )
    result = ingest("events", semicolons, "uci-online-retail", settings)
    assert (result.accepted, result.quarantined, result.duplicates) == (
        other.accepted,
        other.quarantined,
        other.duplicates,
    )


def test_a_truncated_gzip_names_the_file_and_line_and_writes_nothing(
    settings: Settings, uci_file: Path, tmp_path: Path
) -> None:
    data = gzip.compress(uci_file.read_bytes() * 50)
    path = tmp_path / "cut.csv.gz"
    path.write_bytes(data[: len(data) // 2])
    try:
        ingest("events", path, "uci-online-retail", settings)
    except InputError as error:
        assert str(path) in str(error) and "line" in str(error)
    else:  # pragma: no cover - the assertion below explains
        raise AssertionError("a truncated gzip must not import")
    with Store(settings.home) as store:
        assert store.scalar("SELECT count(*) FROM events") == 0
