"""Drift between two real imports: UCI Online Retail before and after the summer of 2011."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from aisle.config import load_settings
from aisle.pipeline import ingest
from aisle.storage import Store
from tests.conftest import TEST_SECRET

pytestmark = pytest.mark.integration


def test_a_later_period_is_compared_with_the_earlier_one(shared_data: Path, tmp_path: Path) -> None:
    raw = pl.read_csv(shared_data / "uci-online-retail" / "transactions.csv.gz", infer_schema=False)
    early = raw.filter(pl.col("InvoiceDate") < "2011-06-01")
    late = raw.filter(pl.col("InvoiceDate") >= "2011-06-01")
    early.write_csv(tmp_path / "early.csv")
    late.write_csv(tmp_path / "late.csv")
    settings = load_settings(home=tmp_path / "home", secret_key=TEST_SECRET)

    first = ingest("events", tmp_path / "early.csv", "uci-online-retail", settings)
    second = ingest("events", tmp_path / "late.csv", "uci-online-retail", settings)

    assert first.drift == []  # nothing to compare the first import with
    by_column = {d["column"]: d for d in second.drift}
    # the clock moved on: timestamps are a different distribution, flagged by KS
    assert by_column["timestamp"]["metric"] == "ks" and by_column["timestamp"]["flagged"]
    # the shop's catalogue turns over, but prices and quantities keep their shape
    assert not by_column["price"]["flagged"] and not by_column["value"]["flagged"]
    assert by_column["type"]["metric"] == "psi"
    with Store(settings.home) as store:
        stored = store.query(
            "SELECT column_name, flagged FROM drift WHERE import_id = ?", [second.import_id]
        )
        baseline = store.scalar(
            "SELECT DISTINCT baseline_import_id FROM drift WHERE import_id = ?",
            [second.import_id],
        )
    assert dict(stored.iter_rows()) == {c: d["flagged"] for c, d in by_column.items()}
    assert baseline == first.import_id
