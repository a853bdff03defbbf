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


def download_cache() -> Path:
    """Where downloaded datasets are kept: outside every aisle home, since they hold raw
    customer ids (``$XDG_CACHE_HOME/aisle``, else ``~/.cache/aisle``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "aisle"


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
    sheet = pl.read_excel(io.BytesIO(workbook), engine="calamine")
    frame = sheet.select(_as_text(sheet, name) for name in sheet.columns)
    with io.BytesIO() as buffer:
        frame.write_csv(buffer)
        converted.parent.mkdir(parents=True, exist_ok=True)
        converted.write_bytes(gzip.compress(buffer.getvalue()))
    return converted


def _as_text(sheet: pl.DataFrame, name: str) -> pl.Expr:
    """One sheet column in the text form of the shared CSV copy."""
    column, dtype = pl.col(name), sheet.schema[name]
    if isinstance(dtype, pl.Datetime):
        return column.dt.strftime("%Y-%m-%d %H:%M:%S")
    if name == "CustomerID" and dtype.is_float():  # 17850.0 in the sheet, 17850 in the CSV
        return column.cast(pl.Int64).cast(pl.String)
    return column.cast(pl.String)
