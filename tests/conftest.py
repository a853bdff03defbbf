"""Shared fixtures: an isolated home per test, the shared datasets, small CSV writers."""

from __future__ import annotations

import csv
import gzip
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from aisle.config import Settings, load_settings
from aisle.ingest.adapters.uci_online_retail import COLUMNS as UCI_COLUMNS

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("AISLE_DATA", REPO.parent / "shared" / "data"))
TEST_SECRET = "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6"
_RUNNER = CliRunner()


def run_aisle(home: Path, *args: str) -> Result:
    """`aisle --home HOME ARGS...` in-process, with the test secret and no aisle.toml."""
    from aisle.cli.main import app

    env = {"AISLE_SECRET_KEY": TEST_SECRET, "AISLE_CONFIG": str(home / "no-such.toml")}
    return _RUNNER.invoke(app, ["--home", str(home), *args], env=env)


def json_result(result: Result) -> dict[str, Any]:
    """The one JSON object a successful `--json` command printed."""
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, result.stdout
    out = json.loads(lines[0])
    assert isinstance(out, dict)
    return out


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads the developer's aisle.toml or AISLE_* variables."""
    for name in list(os.environ):
        if name.startswith("AISLE_") and name != "AISLE_DATA":
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AISLE_CONFIG", str(tmp_path / "no-such-aisle.toml"))


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """An empty aisle home."""
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.fixture
def settings(home: Path) -> Settings:
    """Settings on the test home with a fixed secret."""
    return load_settings(home=home, secret_key=TEST_SECRET)


@pytest.fixture
def shared_data() -> Path:
    """The real datasets; tests that need them skip where the folder is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real datasets not found at {SHARED_DATA} (set AISLE_DATA)")
    return SHARED_DATA


def best_buy_store(folder: Path, train_clicks: int) -> tuple[Path, Any]:
    """A home under ``folder`` holding the Best Buy catalog and its first ``train_clicks``
    clicks by time (imported through the CLI), and every click in that order (a polars frame
    of the raw log); skips where the shared data is absent."""
    import polars as pl

    clicks = SHARED_DATA / "bestbuy-small-xbox" / "clicks.csv.gz"
    products = SHARED_DATA / "bestbuy-small-xbox" / "products.jsonl.gz"
    if not clicks.is_file():
        pytest.skip(f"Best Buy data not found at {clicks.parent} (set AISLE_DATA)")
    rows = pl.read_csv(clicks, infer_schema=False).with_row_index("_i").sort("click_time", "_i")
    rows = rows.drop("_i")
    rows.head(train_clicks).write_csv(folder / "train.csv")
    home = folder / "home"
    json_result(run_aisle(home, "ingest", "products", str(products), "-a", "bestbuy-products",
                          "--json"))  # fmt: skip
    json_result(run_aisle(home, "ingest", "events", str(folder / "train.csv"), "-a",
                          "bestbuy-clicks", "--json"))  # fmt: skip
    return home, rows


def write_csv(path: Path, header: list[str], rows: Iterable[Iterable[object]]) -> Path:
    """Write a CSV (gzip when the name ends in .gz); None becomes an empty field."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt", newline="", encoding="utf-8") as handle:  # type: ignore[operator]
        writer = csv.writer(handle)
        writer.writerow(header)
        for row in rows:
            writer.writerow(["" if v is None else v for v in row])
    return path


UCI_HEADER = list(UCI_COLUMNS)


@pytest.fixture
def uci_file(tmp_path: Path) -> Path:
    """A small file in the UCI layout with one of each anomaly."""
    rows = [
        # invoice, code, description, qty, date, price, customer, country
        (
            "536365",
            "85123A",
            "WHITE HANGING HEART T-LIGHT HOLDER",
            6,
            "2010-12-01 08:26:00",
            2.55,
            17850,
            "United Kingdom",
        ),
        (
            "536365",
            "71053",
            "WHITE METAL LANTERN",
            6,
            "2010-12-01 08:26:00",
            3.39,
            17850,
            "United Kingdom",
        ),
        (
            "536365",
            "71053",
            "WHITE METAL LANTERN",
            6,
            "2010-12-01 08:26:00",
            3.39,
            17850,
            "United Kingdom",
        ),  # exact duplicate
        (
            "536366",
            "22633",
            "HAND WARMER UNION JACK",
            6,
            "2010-12-01 08:28:00",
            1.85,
            17851,
            "United Kingdom",
        ),
        (
            "536367",
            "22633",
            "HAND WARMER  UNION JACK ",
            12,
            "2010-12-02 09:00:00",
            1.85,
            None,
            "France",
        ),  # no customer
        (
            "536368",
            "POST",
            "POSTAGE",
            1,
            "2010-12-02 10:00:00",
            18.0,
            12583,
            "France",
        ),  # non-product
        (
            "536369",
            "84029G",
            "KNITTED UNION FLAG HOT WATER BOTTLE",
            6,
            "2010-12-03 10:00:00",
            0.0,
            17852,
            "United Kingdom",
        ),  # zero price
        (
            "C536370",
            "71053",
            "WHITE METAL LANTERN",
            -2,
            "2010-12-04 10:00:00",
            3.39,
            17850,
            "United Kingdom",
        ),  # matched return
        (
            "C536371",
            "22633",
            "HAND WARMER UNION JACK",
            -1,
            "2010-12-04 11:00:00",
            1.85,
            99999,
            "United Kingdom",
        ),  # unmatched
        (
            "536372",
            "22633",
            "HAND WARMER UNION JACK",
            "six",
            "2010-12-05 10:00:00",
            1.85,
            17851,
            "United Kingdom",
        ),  # bad type
        (
            "536373",
            "22633",
            "HAND WARMER UNION JACK",
            3,
            "not a date",
            1.85,
            17851,
            "United Kingdom",
        ),  # bad timestamp
        (
            "536374",
            "22633",
            "HAND WARMER UNION JACK",
            3,
            "2099-01-01 10:00:00",
            1.85,
            17851,
            "United Kingdom",
        ),  # future
        (
            "536375",
            "22960",
            "JAM MAKING SET WITH JARS",
            -5,
            "2010-12-06 10:00:00",
            0.0,
            None,
            "United Kingdom",
        ),  # adjustment
    ]
    return write_csv(tmp_path / "retail.csv", UCI_HEADER, rows)
