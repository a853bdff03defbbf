"""The audit log: every import, export, read of the quarantine and erasure, hash-chained."""

from __future__ import annotations

from pathlib import Path

import pytest

from aisle.config import Settings
from aisle.errors import InputError
from aisle.pipeline import ingest
from aisle.privacy import audit
from aisle.storage import Store


def test_imports_are_logged_and_the_chain_verifies(settings: Settings, uci_file: Path) -> None:
    result = ingest("events", uci_file, "uci-online-retail", settings)
    with Store(settings.home) as store:
        logged = audit.entries(store, action="import")
        check = audit.verify(store)
    assert check.ok and check.entries == 2  # the derived catalog and the events
    assert {e["subject"] for e in logged} == {
        str(result.import_id),
        *(str(d.import_id) for d in result.derived),
    }
    events = next(e for e in logged if e["subject"] == str(result.import_id))
    assert events["details"]["input"] == result.input
    assert events["details"]["quarantined"] == result.quarantined


def test_an_edited_entry_breaks_the_chain(settings: Settings, uci_file: Path) -> None:
    ingest("events", uci_file, "uci-online-retail", settings)
    with Store(settings.home) as store:
        audit.record(store, "export", "x", {"tables": 1})
        store.execute("UPDATE audit_log SET details = '{\"input\": 0}' WHERE seq = 2")
        check = audit.verify(store)
    assert not check.ok and check.broken_at == 2


def test_removing_the_newest_entries_is_noticed(settings: Settings, uci_file: Path) -> None:
    ingest("events", uci_file, "uci-online-retail", settings)
    with Store(settings.home) as store:
        store.execute("DELETE FROM audit_log WHERE seq = (SELECT max(seq) FROM audit_log)")
        check = audit.verify(store)
    assert not check.ok and "head" in (check.problem or "")


def test_a_failed_import_leaves_no_entry(settings: Settings, tmp_path: Path) -> None:
    """The entry is written in the import's transaction: no import, no entry."""
    bad = tmp_path / "bad.csv"
    bad.write_text("no,such,columns\n1,2,3\n")
    with pytest.raises(InputError):
        ingest("events", bad, "uci-online-retail", settings)
    with Store(settings.home) as store:
        assert audit.entries(store) == [] and audit.verify(store).ok
