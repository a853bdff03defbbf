"""The demo's data source: the shared copy first, else a real download from UCI (mocked here)."""

from __future__ import annotations

import datetime as dt
import io
import zipfile
from pathlib import Path

import httpx
import polars as pl
import pytest

from aisle.config import load_settings
from aisle.datasets import UCI_ONLINE_RETAIL_URL, uci_online_retail
from aisle.pipeline import ingest
from tests.conftest import TEST_SECRET


def _uci_zip() -> bytes:
    sheet = pl.DataFrame(
        {
            "InvoiceNo": ["536365", "C536379"],
            "StockCode": ["85123A", "71053"],
            "Description": ["WHITE HANGING HEART T-LIGHT HOLDER", "WHITE METAL LANTERN"],
            "Quantity": [6, -1],
            "InvoiceDate": [dt.datetime(2010, 12, 1, 8, 26), dt.datetime(2010, 12, 1, 9, 0)],
            "UnitPrice": [2.55, 3.39],
            "CustomerID": [17850.0, None],
            "Country": ["United Kingdom", "France"],
        }
    )
    workbook = io.BytesIO()
    sheet.write_excel(workbook)
    bundle = io.BytesIO()
    with zipfile.ZipFile(bundle, "w") as archive:
        archive.writestr("Online Retail.xlsx", workbook.getvalue())
    return bundle.getvalue()


def test_download_is_converted_to_the_shared_layout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AISLE_DATA", str(tmp_path / "absent"))
    asked: list[str] = []

    def serve(request: httpx.Request) -> httpx.Response:
        asked.append(str(request.url))
        return httpx.Response(200, content=_uci_zip())

    path = uci_online_retail(tmp_path / "cache", transport=httpx.MockTransport(serve))
    assert asked == [UCI_ONLINE_RETAIL_URL]
    frame = pl.read_csv(path, infer_schema=False)
    assert frame.row(0) == (
        "536365",
        "85123A",
        "WHITE HANGING HEART T-LIGHT HOLDER",
        "6",
        "2010-12-01 08:26:00",
        "2.55",
        "17850",
        "United Kingdom",
    )
    assert uci_online_retail(tmp_path / "cache", transport=None) == path  # cached: no request
    result = ingest(
        "events",
        path,
        "uci-online-retail",
        load_settings(home=tmp_path / "home", secret_key=TEST_SECRET),
    )
    assert result.input == 2 and result.input == result.accepted + result.quarantined


def test_the_shared_copy_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "data" / "uci-online-retail"
    folder.mkdir(parents=True)
    (folder / "transactions.csv.gz").write_bytes(b"")
    monkeypatch.setenv("AISLE_DATA", str(tmp_path / "data"))
    assert uci_online_retail(tmp_path / "cache") == folder / "transactions.csv.gz"
