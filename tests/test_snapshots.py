"""Parquet snapshots: every table, readable by other tools, as the store holds it."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
from typer.testing import CliRunner

from aisle.cli.main import app
from aisle.config import Settings
from aisle.pipeline import ingest
from aisle.storage import Store
from aisle.storage.snapshots import SNAPSHOT_TABLES
from tests.conftest import TEST_SECRET


def test_snapshot_writes_every_table(settings: Settings, uci_file: Path, tmp_path: Path) -> None:
    result = ingest("events", uci_file, "uci-online-retail", settings)
    out = CliRunner().invoke(
        app,
        ["--home", str(settings.home), "store", "snapshot", "--dir", str(tmp_path / "s"), "--json"],
        env={"AISLE_SECRET_KEY": TEST_SECRET},
    )
    assert out.exit_code == 0, out.stderr
    files = json.loads(out.stdout)["files"]
    assert set(files) == set(SNAPSHOT_TABLES)
    events = pl.read_parquet(files["events"])
    assert events.height == result.accepted
    with Store(settings.home) as store:
        stored = store.query("SELECT * FROM events ORDER BY event_id")
    assert events.sort("event_id").equals(stored)
    assert pl.read_parquet(files["quarantine"]).height == result.quarantined + sum(
        d.quarantined for d in result.derived
    )
