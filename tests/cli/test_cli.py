"""The `aisle` command line in-process: JSON on stdout, typed errors as one line and exit 2."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from aisle import __version__
from aisle.cli.main import app
from aisle.storage import Store
from tests.conftest import TEST_SECRET, UCI_HEADER, write_csv
from tests.conftest import json_result as json_out

RUNNER = CliRunner()
ADAPTERS = ("canonical", "movielens-100k", "uci-online-retail")


def aisle(home: Path, *args: str, secret: str = TEST_SECRET) -> Result:
    """Run `aisle --home HOME ARGS...` with the secret in the environment."""
    return RUNNER.invoke(app, ["--home", str(home), *args], env={"AISLE_SECRET_KEY": secret})


def error_text(result: Result) -> str:
    """The error a failed command printed, with any line wrapping undone (a wrap keeps the
    space it breaks at, a long word is cut without one)."""
    assert result.exit_code == 2, (result.stdout, result.stderr, result.exception)
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    assert result.stdout == ""
    return result.stderr.replace("\n", "").strip()


@pytest.fixture
def imported(home: Path, uci_file: Path) -> dict[str, Any]:
    """The UCI sample imported through the command line."""
    return json_out(
        aisle(home, "ingest", "events", str(uci_file), "-a", "uci-online-retail", "--json")
    )


def held_lines(home: Path) -> dict[int, dict[str, Any]]:
    """`quality quarantine list --json` keyed by line."""
    payload = json_out(aisle(home, "quality", "quarantine", "list", "--json"))
    return {row["line"]: row for row in payload["records"]}


def test_ingest_prints_one_json_object_that_reconciles(imported: dict[str, Any]) -> None:
    for key in (
        "input",
        "accepted",
        "quarantined",
        "quarantined_by_reason",
        "duplicates",
        "seconds",
    ):
        assert key in imported
    assert imported["input"] == 13
    assert imported["input"] == (
        imported["accepted"] + imported["quarantined"] + imported["duplicates"]
    )
    assert imported["quarantined_by_reason"]["non_product"] == 1
    assert imported["duplicates"] == 1
    [catalog] = imported["derived"]
    assert catalog["kind"] == "products"
    assert catalog["input"] == catalog["accepted"] + catalog["quarantined"] + catalog["duplicates"]


def test_quality_report_writes_html_and_prints_json(
    home: Path, imported: dict[str, Any], tmp_path: Path
) -> None:
    page = tmp_path / "out" / "quality.html"
    payload = json_out(aisle(home, "quality", "report", "--html", str(page), "--json"))
    assert page.is_file()
    assert "<html" in page.read_text(encoding="utf-8").lower()
    assert Path(payload["html"]) == page
    assert payload["totals"]["input"] == imported["input"] + imported["derived"][0]["input"]
    assert payload["totals"]["unreconciled"] == 0


def test_quarantine_list_and_show(home: Path, imported: dict[str, Any]) -> None:
    held = held_lines(home)
    assert imported["quarantined"] == len(held)
    assert held[7]["reasons"] == ["non_product"]
    assert held[7]["item_id"] == "POST"

    shown = json_out(aisle(home, "quality", "quarantine", "show", held[7]["record_id"], "--json"))
    assert shown["record_id"] == held[7]["record_id"]
    assert shown["payload"]["StockCode"] == "POST"
    customer = shown["payload"]["CustomerID"]
    assert customer and customer != "12583" and "12583" not in json.dumps(shown)

    only = json_out(
        aisle(home, "quality", "quarantine", "list", "--reason", "non_product", "--json")
    )
    assert [row["line"] for row in only["records"]] == [7]


def test_quarantine_show_unknown_id(home: Path, imported: dict[str, Any]) -> None:
    text = error_text(aisle(home, "quality", "quarantine", "show", "no-such-id", "--json"))
    assert "no-such-id" in text


def test_quarantine_release_by_reason(home: Path, imported: dict[str, Any], tmp_path: Path) -> None:
    late = write_csv(
        tmp_path / "views.csv",
        ["user_id", "item_id", "type", "timestamp"],
        [("17850", "99999Z", "view", "2010-12-09T10:00:00Z")],
    )
    views = json_out(aisle(home, "ingest", "events", str(late), "--json"))
    assert views["quarantined_by_reason"] == {"unknown_item": 1}
    with Store(home) as store:  # the product reaches the catalog outside an import
        store.execute(
            "INSERT INTO products (item_id, title, record_id, import_id) "
            "VALUES ('99999Z', 'LATE LANTERN', 'manual', 0)"
        )
    released = json_out(
        aisle(home, "quality", "quarantine", "release", "--reason", "unknown_item", "--json")
    )
    assert released == {"released": 1, "still_held": 0}
    assert 2 not in {
        row["line"] for row in held_lines(home).values() if row["import_id"] == views["import_id"]
    }


def test_quarantine_drop_by_reason(home: Path, imported: dict[str, Any]) -> None:
    dropped = json_out(
        aisle(home, "quality", "quarantine", "drop", "--reason", "non_product", "--json")
    )
    assert dropped == {"dropped": 1}
    assert 7 not in held_lines(home)
    gone = json_out(aisle(home, "quality", "quarantine", "list", "--status", "dropped", "--json"))
    assert [row["line"] for row in gone["records"]] == [7]


def test_unknown_adapter(home: Path, uci_file: Path) -> None:
    text = error_text(aisle(home, "ingest", "events", str(uci_file), "--adapter", "nope"))
    assert "'nope'" in text
    for name in ADAPTERS:
        assert name in text


def test_missing_required_column(home: Path, tmp_path: Path) -> None:
    broken = write_csv(
        tmp_path / "no-customer.csv",
        UCI_HEADER[:6] + UCI_HEADER[7:],
        [("536365", "85123A", "LANTERN", 6, "2010-12-01 08:26:00", 2.55, "UK")],
    )
    text = error_text(aisle(home, "ingest", "events", str(broken), "-a", "uci-online-retail"))
    assert str(broken) in text
    assert "CustomerID" in text


def test_placeholder_secret_is_refused(home: Path, uci_file: Path) -> None:
    result = aisle(
        home, "ingest", "events", str(uci_file), "-a", "uci-online-retail", secret="changeme"
    )
    text = error_text(result)
    assert "AISLE_SECRET_KEY" in text
    assert "placeholder" in text
    with Store(home) as store:
        assert store.scalar("SELECT count(*) FROM events") == 0


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(("ingest", "events", "{file}", "--adapter", "nope"), id="unknown-adapter"),
        pytest.param(("quality", "quarantine", "show", "no-such-id"), id="unknown-record"),
        pytest.param(("ingest", "events", "{missing}", "-a", "uci-online-retail"), id="no-file"),
    ],
)
def test_typed_errors_are_one_line(
    home: Path, uci_file: Path, tmp_path: Path, args: tuple[str, ...]
) -> None:
    """An error is one line whatever the terminal width: scripts grep it, logs keep it whole."""
    missing = str(tmp_path / "a-file-that-is-not-there-at-all.csv")
    filled = [a.format(file=uci_file, missing=missing) for a in args]
    result = aisle(home, *filled)
    error_text(result)
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_version() -> None:
    result = RUNNER.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"aisle {__version__}"
