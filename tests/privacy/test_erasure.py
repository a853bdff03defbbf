"""Erasure end to end: a customer's records removed everywhere, proved gone, kept out."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
from typer.testing import CliRunner

from aisle.cli.main import app
from aisle.config import Settings
from aisle.pipeline import ingest
from aisle.privacy import audit
from aisle.privacy.erasure import erase, find_traces
from aisle.privacy.pseudonymise import Pseudonymiser
from aisle.storage import Store
from aisle.storage.snapshots import snapshot
from tests.conftest import TEST_SECRET

CUSTOMER = "17850"  # bought, bought twice (an exact duplicate) and returned in uci_file


def _cli(home: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        app, ["--home", str(home), *args], env={"AISLE_SECRET_KEY": TEST_SECRET}
    )
    return result.exit_code, result.stdout


def test_erase_removes_every_record_and_verify_proves_it(
    settings: Settings, uci_file: Path
) -> None:
    ingest("events", uci_file, "uci-online-retail", settings)
    pseudonym = Pseudonymiser(TEST_SECRET.encode()).one(CUSTOMER)
    with Store(settings.home) as store:
        snapshot(store)
        before = find_traces(store, pseudonym)
    assert not before.clean and before.tables["events.user_id"] >= 3
    assert any(p.endswith("events.parquet") for p in before.files)

    code, out = _cli(settings.home, "erase", "--user", CUSTOMER, "--json")
    assert code == 0
    receipt = json.loads(out)
    assert receipt["pseudonym"] == pseudonym and CUSTOMER not in out
    assert receipt["removed"]["events"] == before.tables["events.user_id"]
    assert receipt["removed"]["duplicates"] == 1  # the repeated lantern line
    assert receipt["snapshots_rewritten"] >= 1

    code, out = _cli(settings.home, "privacy", "verify", "--user", CUSTOMER, "--json")
    assert code == 0, out
    assert json.loads(out) == {
        "pseudonym": pseudonym,
        "clean": True,
        "tables": {},
        "files": [],
        "erasure_receipts": 1,
    }
    with Store(settings.home) as store:
        others = store.scalar("SELECT count(*) FROM events")
        receipts = audit.entries(store, action="erasure")
        assert audit.verify(store).ok
    assert others > 0  # other customers keep their records
    assert receipts[0]["details"]["removed"] == receipt["removed"]


def test_an_erased_customer_stays_out_of_later_imports(settings: Settings, uci_file: Path) -> None:
    ingest("events", uci_file, "uci-online-retail", settings)
    pseudonym = Pseudonymiser(TEST_SECRET.encode()).one(CUSTOMER)
    with Store(settings.home) as store:
        erase(store, pseudonym)
    again = ingest("events", uci_file, "uci-online-retail", settings)
    assert again.reasons.get("erased_user", 0) >= 3
    assert again.input == again.accepted + again.quarantined + again.duplicates
    with Store(settings.home) as store:
        assert find_traces(store, pseudonym).clean
        refused = store.query(
            "SELECT payload, user_id FROM quarantine WHERE list_contains(reasons, 'erased_user')"
        )
    assert refused.height >= 3
    assert refused["payload"].null_count() == refused.height  # nothing of theirs is kept
    assert refused["user_id"].null_count() == refused.height


def test_verify_fails_while_a_trace_remains(settings: Settings, uci_file: Path) -> None:
    ingest("events", uci_file, "uci-online-retail", settings)
    code, out = _cli(settings.home, "privacy", "verify", "--user", CUSTOMER, "--json")
    assert code == 1 and not json.loads(out)["clean"]


def test_erasure_rewrites_snapshots_without_the_customer(
    settings: Settings, uci_file: Path
) -> None:
    ingest("events", uci_file, "uci-online-retail", settings)
    pseudonym = Pseudonymiser(TEST_SECRET.encode()).one(CUSTOMER)
    with Store(settings.home) as store:
        folder = snapshot(store)
        kept_before = pl.read_parquet(folder / "events.parquet").height
        erase(store, pseudonym)
    events = pl.read_parquet(folder / "events.parquet")
    assert pseudonym not in events["user_id"].to_list()
    assert 0 < events.height < kept_before
