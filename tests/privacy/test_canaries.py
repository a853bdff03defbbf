"""Canaries: raw customer ids, e-mails, phone numbers and card numbers planted in every input
format; after the whole pipeline not one byte of them is left under home."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from aisle.config import Settings
from aisle.pipeline import ingest
from aisle.storage import Store
from aisle.storage.snapshots import snapshot

CANARIES = {
    "customer": "CUSTCANARY7781",
    "email": "canary.bird@example.com",
    "phone": "+44 20 7946 0321",
    "card": "4111 1111 1111 1111",
}
ROWS = [
    {"user_id": CANARIES["customer"], "item_id": "A", "type": "search",
     "query": f"mail me at {CANARIES['email']}", "timestamp": "2024-01-01T10:00:00Z"},
    {"user_id": CANARIES["customer"], "item_id": None, "type": "search",
     "query": f"call {CANARIES['phone']} re order", "timestamp": "2024-01-01T10:01:00Z"},
    {"user_id": CANARIES["customer"], "item_id": "A", "type": "teleport",  # quarantined
     "query": f"card {CANARIES['card']}", "timestamp": "2024-01-01T10:02:00Z"},
]  # fmt: skip


def _write(path: Path, fmt: str) -> Path:
    frame = pl.DataFrame(ROWS, schema={k: pl.String for k in ROWS[0]})
    if fmt == "csv":
        frame.write_csv(path)
    elif fmt == "jsonl":
        path.write_text("\n".join(json.dumps(r) for r in ROWS) + "\n")
    else:
        frame.write_parquet(path)
    return path


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_no_canary_reaches_disk(settings: Settings, tmp_path: Path, fmt: str) -> None:
    source = _write(tmp_path / f"events.{fmt}", fmt)
    result = ingest("events", source, "canonical", settings)
    assert result.input == 3 and result.quarantined >= 1
    assert result.pii_scrubbed == {"CREDIT_CARD": 1, "EMAIL": 1, "PHONE": 1}
    with Store(settings.home) as store:
        snapshot(store)
        tables = store.query("SELECT table_name FROM information_schema.tables")["table_name"]
        dumps = [
            json.dumps(store.query(f'SELECT * FROM "{t}"').to_dicts(), default=str)
            for t in tables.to_list()
        ]
        queries = store.query("SELECT query FROM events ORDER BY timestamp")["query"].to_list()
    assert queries == ["mail me at <EMAIL>", "call <PHONE> re order"]
    for name, canary in CANARIES.items():
        for path in settings.home.rglob("*"):
            if path.is_file():
                assert canary.encode() not in path.read_bytes(), (name, path)
                assert canary.replace(" ", "").encode() not in path.read_bytes(), (name, path)
        assert not any(canary in dump for dump in dumps), name
