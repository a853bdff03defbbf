"""The import as a whole: edge cases that cross stages."""

from __future__ import annotations

from pathlib import Path

from aisle.config import Settings
from aisle.pipeline import ingest
from aisle.storage import Store
from tests.conftest import write_csv

HEADER = ["user_id", "item_id", "type", "value", "price", "currency", "timestamp", "query"]


def test_a_header_only_file_imports_nothing(settings: Settings, tmp_path: Path) -> None:
    """Regression: an empty batch once failed casting its (empty) timestamps."""
    result = ingest("events", write_csv(tmp_path / "e.csv", HEADER, []), "canonical", settings)
    assert (result.input, result.accepted, result.quarantined, result.duplicates) == (0, 0, 0, 0)
    with Store(settings.home) as store:
        assert store.scalar("SELECT status FROM imports") == "complete"


def test_derived_and_event_quarantine_rows_land_in_one_import(
    settings: Settings, uci_file: Path
) -> None:
    """Both imports of a retail file (its catalog, its events) keep their own ledger rows."""
    result = ingest("events", uci_file, "uci-online-retail", settings)
    with Store(settings.home) as store:
        per_import = dict(
            store.query("SELECT import_id, count(*) FROM quarantine GROUP BY 1").iter_rows()
        )
    assert per_import.get(result.import_id, 0) == result.quarantined
    assert sum(per_import.values()) == result.quarantined + sum(
        d.quarantined for d in result.derived
    )
