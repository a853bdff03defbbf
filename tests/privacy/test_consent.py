"""Withdrawn consent: stored events lose the purpose, and later imports never carry it."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
from typer.testing import CliRunner

from aisle.cli.main import app
from aisle.config import Settings
from aisle.pipeline import ingest
from aisle.privacy.pseudonymise import Pseudonymiser
from aisle.privacy.subjects import listed_among, subject_hash
from aisle.storage import Store
from tests.conftest import TEST_SECRET


def _consent(home: Path, pseudonym: str) -> set[tuple[bool, bool]]:
    with Store(home) as store:
        rows = store.query(
            "SELECT DISTINCT consent_personalisation, consent_analytics FROM events "
            "WHERE user_id = ?",
            [pseudonym],
        )
    return set(rows.iter_rows())


def test_withdrawal_applies_now_and_to_later_imports(settings: Settings, uci_file: Path) -> None:
    ingest("events", uci_file, "uci-online-retail", settings)
    pseudonym = Pseudonymiser(TEST_SECRET.encode()).one("17850")
    assert _consent(settings.home, pseudonym) == {(True, True)}
    out = CliRunner().invoke(
        app,
        ["--home", str(settings.home), "privacy", "consent", "withdraw", "--user", "17850",
         "--purpose", "personalisation", "--json"],
        env={"AISLE_SECRET_KEY": TEST_SECRET},
    )  # fmt: skip
    assert out.exit_code == 0, out.stderr
    assert json.loads(out.stdout)["events"] >= 2
    assert _consent(settings.home, pseudonym) == {(False, True)}
    # the same customer in a new file: the source says yes, the withdrawal says no
    later = uci_file.with_name("later.csv")
    later.write_text(
        uci_file.read_text().splitlines()[0]
        + "\n536400,22633,HAND WARMER UNION JACK,2,2010-12-08 10:00:00,1.85,17850,United Kingdom\n"
    )
    ingest("events", later, "uci-online-retail", settings)
    assert _consent(settings.home, pseudonym) == {(False, True)}
    other = Pseudonymiser(TEST_SECRET.encode()).one("17851")
    assert _consent(settings.home, other) == {(True, True)}


def test_a_listed_customer_is_found_by_the_stores_own_hash(tmp_path: Path) -> None:
    """The lists are matched in DuckDB (its sha256), against hashes written in Python."""
    with Store(tmp_path / "home") as store:
        store.execute("INSERT INTO erased_users VALUES (?, now())", [subject_hash("first-ünï")])
        asked = pl.Series(["now-ünï", "other", None, "now-ünï"])
        found = listed_among(store, asked, "erased_users", first_of={"now-ünï": "first-ünï"})
        assert found.to_list() == ["now-ünï"]
        assert listed_among(store, asked, "erased_users").len() == 0
