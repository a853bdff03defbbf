"""The compliance report reflects what was done: imports, withdrawals, releases, erasures."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from aisle.cli.main import app
from aisle.config import PrivacySettings, Settings
from aisle.pipeline import ingest
from aisle.privacy.consent import Purpose, withdraw
from aisle.privacy.dp import release_popular
from aisle.privacy.erasure import erase
from aisle.privacy.pseudonymise import Pseudonymiser
from aisle.storage import Store
from tests.conftest import TEST_SECRET


def test_the_report_adds_up(settings: Settings, uci_file: Path, tmp_path: Path) -> None:
    ingest("events", uci_file, "uci-online-retail", settings)
    pseudonym = Pseudonymiser(TEST_SECRET.encode()).one
    with Store(settings.home) as store:
        withdraw(store, pseudonym("17851"), Purpose.PERSONALISATION)
        release_popular(store, PrivacySettings(), epsilon=0.5, top=3)
        erase(store, pseudonym("17850"))
    page = tmp_path / "compliance.html"
    out = CliRunner().invoke(
        app,
        ["--home", str(settings.home), "privacy", "report", "--html", str(page), "--json"],
        env={"AISLE_SECRET_KEY": TEST_SECRET},
    )
    assert out.exit_code == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["consent"]["withdrawals"] == {"personalisation": 1}
    assert report["privacy_budget"] == [
        {"dataset": "all", "spent": 0.5, "budget": 10.0, "releases": 1}
    ]
    assert report["erasures"]["count"] == 1
    assert report["audit_log"]["ok"] is True
    with Store(settings.home) as store:
        expected = store.scalar("SELECT avg(consent_personalisation::INT) FROM events")
    assert report["consent"]["personalisation_share"] == expected < 1  # 17851's events lost it
    assert {row["where"] for row in report["inventory"]} >= {"events.user_id", "events.query"}
    text = page.read_text()
    assert "Data inventory" in text and "<script" not in text
    assert pseudonym("17851") not in text and pseudonym("17851") not in out.stdout
