"""Where the demo's real data comes from: the shared folder, else the UCI repository."""

from __future__ import annotations

import gzip
import io
import os
import zipfile
from pathlib import Path

import httpx
import polars as pl

from aisle.errors import AisleError
from aisle.ingest.fetch import fetch_url

UCI_ONLINE_RETAIL_URL = "https://archive.ics.uci.edu/static/public/352/online+retail.zip"
UCI_FILE = "transactions.csv.gz"


def shared_data_dir() -> Path:
    """``$AISLE_DATA``, else ../shared/data beside the working directory."""
    return Path(os.environ.get("AISLE_DATA", "../shared/data"))


def uci_online_retail(cache: Path, *, transport: httpx.BaseTransport | None = None) -> Path:
    """The UCI Online Retail file: the shared copy, a cached download, or a fresh download.

    The UCI repository ships a zip holding one Excel sheet; it is converted once to the CSV
    layout of the shared copy (same columns, ``YYYY-MM-DD HH:MM:SS`` times).
    """
    shared = shared_data_dir() / "uci-online-retail" / UCI_FILE
    if shared.exists():
        return shared
    converted = cache / UCI_FILE
    if converted.exists():
        return converted
    archive = fetch_url(UCI_ONLINE_RETAIL_URL, cache, transport=transport)
    with zipfile.ZipFile(archive) as bundle:
        sheets = [n for n in bundle.namelist() if n.lower().endswith(".xlsx")]
        if not sheets:
            raise AisleError(f"{archive}: no .xlsx sheet inside the UCI download")
        workbook = bundle.read(sheets[0])
    try:
        frame = pl.read_excel(io.BytesIO(workbook), engine="calamine")
    except ImportError as error:
        raise AisleError("reading the UCI sheet needs `pip install 'aisle[xlsx]'`") from error
    frame = frame.with_columns(
        pl.col("InvoiceDate").dt.strftime("%Y-%m-%d %H:%M:%S"),
        pl.col("CustomerID").cast(pl.Int64, strict=False).cast(pl.String),
    )
    with io.BytesIO() as buffer:
        frame.write_csv(buffer)
        converted.write_bytes(gzip.compress(buffer.getvalue()))
    return converted
