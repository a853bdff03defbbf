"""An import killed (kill -9) or interrupted (Ctrl-C) midway leaves the store consistent, and
running it again completes it with no duplicates and nothing missing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from aisle.config import load_settings
from aisle.pipeline import ingest
from aisle.storage import Store
from tests.conftest import TEST_SECRET

pytestmark = pytest.mark.integration

CHILD = """
import pathlib, sys
from aisle.config import load_settings
from aisle.pipeline import ingest
marker = pathlib.Path(sys.argv[3])
ingest("events", sys.argv[1], "uci-online-retail",
       load_settings(home=sys.argv[2], secret_key=sys.argv[4]),
       progress=lambda stage: marker.write_text(stage))
marker.write_text("done")
"""


@pytest.fixture(scope="module")
def retail_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """200,000 invoice lines in the UCI layout, with duplicates and anomalies."""
    rng = np.random.default_rng(7)
    n = 200_000
    customers = rng.integers(12_000, 18_000, n).astype(str).astype(object)
    customers[rng.random(n) < 0.2] = None
    frame = pl.DataFrame(
        {
            "InvoiceNo": (rng.integers(500_000, 560_000, n)).astype(str),
            "StockCode": rng.choice(["85123A", "71053", "22633", "84029G", "POST"], n),
            "Description": rng.choice(["LANTERN", "HEART HOLDER", "HAND WARMER"], n),
            "Quantity": rng.integers(1, 24, n).astype(str),
            "InvoiceDate": [f"2011-0{1 + i % 9}-1{i % 10} 1{i % 10}:00:00" for i in range(n)],
            "UnitPrice": rng.choice(["1.25", "2.55", "0", "3.39"], n),
            "CustomerID": pl.Series(customers, dtype=pl.String),
            "Country": rng.choice(["United Kingdom", "France"], n),
        }
    )
    frame = pl.concat([frame, frame.head(5_000)])
    path = tmp_path_factory.mktemp("retail") / "retail.csv"
    frame.write_csv(path)
    return path


def _start(source: Path, home: Path, marker: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(source), str(home), str(marker), TEST_SECRET],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stderr=subprocess.PIPE,
    )


def _wait_for(marker: Path, stage: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if marker.exists() and marker.read_text().startswith(stage):
            return
        if process.poll() is not None:
            raise AssertionError(f"child ended early: {process.stderr.read().decode()[-2000:]}")
        time.sleep(0.005)
    raise AssertionError(f"child never reached {stage!r}")


def _consistent(home: Path) -> dict[str, int]:
    """Every committed import reconciles and the tables hold exactly what the ledger says."""
    with Store(home) as store:
        ledger = store.query(
            "SELECT kind, sum(accepted) a, sum(quarantined) q, sum(duplicates) d, "
            "bool_and(input = accepted + quarantined + duplicates) ok "
            "FROM imports WHERE status = 'complete' GROUP BY kind"
        )
        counts = {
            "events": store.scalar("SELECT count(*) FROM events"),
            "distinct_events": store.scalar("SELECT count(DISTINCT event_id) FROM events"),
            "held": store.scalar("SELECT count(*) FROM quarantine WHERE kind = 'events'"),
            "duplicates": store.scalar("SELECT count(*) FROM duplicates WHERE kind = 'events'"),
        }
        statuses = store.query("SELECT status FROM imports ORDER BY import_id")["status"].to_list()
    assert all(ledger["ok"].to_list())
    events = ledger.filter(pl.col("kind") == "events")
    accepted = int(events["a"][0]) if events.height else 0
    assert counts["events"] == counts["distinct_events"] == accepted
    assert "running" not in statuses[:-1]
    return counts


@pytest.mark.parametrize(
    ("stage", "delay"), [("checking events", 0.0), ("checking events", 0.6), ("building", 0.05)]
)
def test_kill_9_then_rerun_completes(
    retail_file: Path, tmp_path: Path, stage: str, delay: float
) -> None:
    home, marker = tmp_path / "home", tmp_path / "stage"
    child = _start(retail_file, home, marker)
    _wait_for(marker, stage, child)
    time.sleep(delay)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    before = _consistent(home)
    killed_midway = marker.read_text() != "done"
    if killed_midway:
        assert before["events"] == before["held"] == 0  # the open transaction left nothing

    settings = load_settings(home=home, secret_key=TEST_SECRET)
    rerun = ingest("events", retail_file, "uci-online-retail", settings)
    after = _consistent(home)
    clean = ingest(
        "events",
        retail_file,
        "uci-online-retail",
        load_settings(home=tmp_path / "clean", secret_key=TEST_SECRET),
    )
    if killed_midway:  # killed before its commit: the rerun did all the work
        assert (rerun.accepted, rerun.quarantined, rerun.duplicates) == (
            clean.accepted,
            clean.quarantined,
            clean.duplicates,
        )
    assert after["events"] == clean.accepted  # nothing missing, nothing twice
    assert after["held"] == clean.quarantined
    with Store(home) as store:
        statuses = set(store.query("SELECT status FROM imports")["status"].to_list())
    assert statuses <= {"complete", "interrupted"}


def test_ctrl_c_rolls_back_and_marks_the_import_failed(retail_file: Path, tmp_path: Path) -> None:
    home, marker = tmp_path / "home", tmp_path / "stage"
    child = _start(retail_file, home, marker)
    _wait_for(marker, "checking events", child)
    child.send_signal(signal.SIGINT)
    child.wait(timeout=60)
    if marker.read_text() == "done":
        pytest.skip("the import finished before the interrupt arrived")
    assert child.returncode != 0
    counts = _consistent(home)
    assert counts["events"] == 0
    with Store(home) as store:
        assert store.query("SELECT status FROM imports")["status"].to_list() == ["failed"]
    rerun = ingest(
        "events", retail_file, "uci-online-retail", load_settings(home=home, secret_key=TEST_SECRET)
    )
    assert rerun.accepted == _consistent(home)["events"] > 0
