"""`aisle ingest judgments`: every row accepted, quarantined with a reason, or a duplicate."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from aisle.config import Settings
from aisle.ingest.adapters.crowdflower import product_ids
from aisle.search.judgments import read_judgments, stored_judgments
from aisle.storage import Store
from tests.conftest import json_result as json_out
from tests.conftest import run_aisle as aisle
from tests.conftest import write_csv

HEADER = ["id", "query", "product_title", "product_description", "median_relevance",
          "relevance_variance"]  # fmt: skip
EMAIL = "john.smith@example.com"
# line numbers: the header is line 1
ROWS: list[tuple[object, ...]] = [
    (1, "led christmas lights", "Set of 10 LED lights", "battery operated", 4, 0),  # 2 accepted
    (2, "", "Lamp", "a lamp", 3, 0),  # 3 missing query
    (3, "projector", "ViewSonic Pro", None, 5, 0.4),  # 4 relevance out of range
    (4, "projector", "", "no title here", 2, 0),  # 5 missing title
    (5, "projector", "Epson", None, "x", 0),  # 6 relevance not a number
    (6, "projector", "Epson 2", None, None, 0),  # 7 relevance missing
    (7, "led christmas lights", "Set of 10 LED lights", "battery operated", 3, 0.5),  # 8 dup
    (8, f"gift for {EMAIL}", "Mug", None, 2, None),  # 9 accepted, query scrubbed
    (9, "projector", "ViewSonic Pro", None, 4, 0.471),  # 10 accepted
    (10, "bad", "row", "with", 1, 0, "too", "many"),  # 11 malformed
]


#: What a re-import must leave as it was. (The products import of the same file quarantines
#: its malformed line again on every import: the pipeline's behaviour, not the judgements'.)
TABLES = ("judgments", "products", "(SELECT * FROM quarantine WHERE kind = 'judgments')")


@pytest.fixture
def judged_file(tmp_path: Path) -> Path:
    return write_csv(tmp_path / "judged.csv", HEADER, ROWS)


def test_every_row_gets_one_fate_and_the_counts_reconcile(home: Path, judged_file: Path) -> None:
    out = json_out(aisle(home, "ingest", "judgments", str(judged_file), "--json"))
    assert out["kind"] == "judgments"
    assert out["input"] == len(ROWS)
    assert (out["accepted"], out["quarantined"], out["duplicates"]) == (3, 6, 1)
    assert out["input"] == out["accepted"] + out["quarantined"] + out["duplicates"]
    assert out["quarantined_by_reason"] == {"missing_field": 3, "bad_rating": 2,
                                            "malformed_row": 1}  # fmt: skip
    assert out["duplicates_by_rule"] == {"same_judgment": 1}
    assert out["pii_scrubbed"] == {"EMAIL": 1}
    products = out["derived"][0]
    assert products["kind"] == "products"
    assert (
        products["input"] == products["accepted"] + products["quarantined"] + products["duplicates"]
    )
    with Store(home, read_only=True) as store:
        stored = stored_judgments(store)
        held = store.query(
            "SELECT line, reasons, detail, payload FROM quarantine WHERE kind = 'judgments' "
            "ORDER BY line"
        )
        duplicate = store.query("SELECT * FROM duplicates WHERE kind = 'judgments'")
        catalog = set(store.query("SELECT item_id FROM products")["item_id"].to_list())
        ledger = store.query("SELECT kind, status, input, accepted FROM imports ORDER BY 1")
    assert sorted(stored["relevance"].to_list()) == [2, 4, 4]
    assert "gift for <EMAIL>" in stored["query"].to_list()
    mug = stored.filter(pl.col("query") == "gift for <EMAIL>").row(0, named=True)
    assert mug["variance"] is None
    # the judged products entered the catalog, keyed as the crowdflower adapter keys them
    assert set(stored["item_id"].to_list()) <= catalog
    by_line = {row["line"]: row for row in held.iter_rows(named=True)}
    assert sorted(by_line) == [3, 4, 5, 6, 7, 11]
    assert by_line[3]["reasons"] == ["missing_field"]
    assert f"{judged_file}, line 3: field 'query': missing" == by_line[3]["detail"]
    assert by_line[4]["reasons"] == ["bad_rating"]
    assert "line 4: field 'median_relevance': 5 is not a grade 1..4" in by_line[4]["detail"]
    assert "field 'product_title': missing" in by_line[5]["detail"]
    assert "'x' is not a grade" not in by_line[6]["detail"]
    assert "field 'median_relevance': x is not a grade 1..4" in by_line[6]["detail"]
    assert "field 'median_relevance': missing" in by_line[7]["detail"]
    assert by_line[11]["reasons"] == ["malformed_row"]
    # no payload, so that a forced release of held rows passes judgements over
    assert {row["payload"] for row in by_line.values()} == {None}
    assert duplicate["line"].to_list() == [8]
    assert duplicate["rule"].to_list() == ["same_judgment"]
    first = stored.filter(pl.col("query") == "led christmas lights")
    assert first["relevance"].to_list() == [4]  # the first judgement stands
    assert ledger.filter(pl.col("kind") == "judgments")["status"].to_list() == ["complete"]
    # the raw e-mail address reached no file under home
    for path in home.rglob("*"):
        if path.is_file():
            assert EMAIL.encode() not in path.read_bytes(), path


def test_reimporting_the_same_file_adds_nothing(home: Path, judged_file: Path) -> None:
    json_out(aisle(home, "ingest", "judgments", str(judged_file), "--json"))
    with Store(home, read_only=True) as store:
        before = {t: store.scalar(f"SELECT count(*) FROM {t}") for t in TABLES}
    again = json_out(aisle(home, "ingest", "judgments", str(judged_file), "--json"))
    assert again["accepted"] == 0
    assert again["duplicates"] == again["input"] == len(ROWS)
    assert again["duplicates_by_rule"] == {"exact": len(ROWS)}
    assert again["derived"][0]["accepted"] == 0
    with Store(home, read_only=True) as store:
        after = {t: store.scalar(f"SELECT count(*) FROM {t}") for t in TABLES}
    assert after == before


def test_a_forced_release_passes_held_judgements_over(home: Path, judged_file: Path) -> None:
    json_out(aisle(home, "ingest", "judgments", str(judged_file), "--json"))
    out = json_out(aisle(home, "quality", "quarantine", "release", "--reason", "missing_field",
                         "--force", "--json"))  # fmt: skip
    assert out["still_held"] == 3  # the judgements (the products import's row was released)
    with Store(home, read_only=True) as store:
        assert store.scalar("SELECT count(*) FROM judgments") == 3


def test_the_terminal_shows_both_imports(home: Path, judged_file: Path) -> None:
    result = aisle(home, "ingest", "judgments", str(judged_file))
    assert result.exit_code == 0, result.output
    assert "judgments via crowdflower" in result.stderr
    assert "products via crowdflower" in result.stderr


def test_an_adapter_without_judgements_fails_before_writing(home: Path, judged_file: Path) -> None:
    result = aisle(home, "ingest", "judgments", str(judged_file), "-a", "bestbuy-clicks")
    assert result.exit_code == 2
    assert "carries no judgements" in result.stderr
    assert not (home / "aisle.duckdb").exists()


def test_the_real_file_reads_whole(shared_data: Path, settings: Settings) -> None:
    path = shared_data / "crowdflower-relevance" / "train_shared.csv.gz"
    judged = read_judgments(path, "crowdflower", settings)
    rows = judged.rows
    assert rows.height == 7_081
    assert judged.malformed.height == 0
    assert rows.filter(pl.col("reasons").list.len() > 0).height == 0
    assert rows["query"].n_unique() == 183
    assert rows["relevance"].value_counts().sort("relevance")["count"].to_list() == [
        569, 1_052, 1_244, 4_216]  # fmt: skip
    raw = pl.read_csv(path, infer_schema=False)
    expected = product_ids(raw["product_title"], raw["product_description"])
    assert rows["item_id"].to_list() == expected.to_list()
    assert set(judged.products["item_id"].to_list()) == set(expected.to_list())
