"""The quality report: one offline HTML page, a JSON summary and a terminal table."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from plotly.offline import get_plotlyjs
from rich.console import Console

from aisle.config import QualitySettings
from aisle.quality.drift import detect_drift
from aisle.quality.profile import profile_frame, save_profile
from aisle.quality.report import build_report, report_json, summary_table, write_html
from aisle.storage.store import Store

SECTIONS = (
    "Reconciliation", "Quarantine", "Duplicates", "Profiles and drift", "User behaviour",
    "Product attributes",
)  # fmt: skip
T0 = datetime(2011, 3, 1, 9, tzinfo=UTC)


def _imports() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "import_id": [1, 2, 3],
            "kind": ["products", "events", "events"],
            "source": ["data/catalog.csv", "/data/uci/online_retail.xlsx", "https://shop/e.jsonl"],
            "adapter": ["generic", "uci-online-retail", "uci-online-retail"],
            "status": ["complete", "complete", "complete"],
            "started_at": [T0, T0, T0 + timedelta(days=1)],
            "input": [3, 10, 6],
            "accepted": [3, 6, 4],
            "quarantined": [0, 3, 1],
            "duplicates": [0, 1, 0],
            "seconds": [0.5, 2.0, 0.0],
        }
    )


def _events() -> pl.DataFrame:
    rows = [  # user, item, type, day
        ("u1", "A", "purchase", 0), ("u1", "B", "purchase", 0), ("u2", "A", "purchase", 1),
        ("u3", "A", "purchase", 1), ("u2", "C", "return", 1), ("u3", "B", "purchase", 2),
        ("u1", "A", "purchase", 2), ("u4", "C", "purchase", 2), ("u4", "C", "return", 2),
        ("u1", "B", "purchase", 3),
    ]  # fmt: skip
    return pl.DataFrame(
        {
            "event_id": [f"e{i}" for i in range(len(rows))],
            "user_id": [f"pseudo-{r[0]}" for r in rows],
            "item_id": [r[1] for r in rows],
            "type": [r[2] for r in rows],
            "value": [1.0] * len(rows),
            "timestamp": [T0 + timedelta(days=r[3]) for r in rows],
            "import_id": [2] * 6 + [3] * 4,
        }
    )


def _products() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "item_id": ["A", "B", "C"],
            "title": ["<script>alert(1)</script> lantern", "Mug", None],
            "category_path": [["home", "light"], [], None],
            "price": [2.5, 1.25, 10.0],
            "source": ["uci", "uci", "feed"],
            "record_id": ["r1", "r2", "r3"],
            "import_id": [1, 1, 1],
        }
    )


def _quarantine() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "record_id": ["q1", "q2", "q3", "q4"],
            "kind": ["events"] * 4,
            "import_id": [2, 2, 2, 3],
            "reasons": [["bad_quantity"], ["nonpositive_price", "non_product"], ["bot_user"],
                        ["bad_quantity"]],
            "status": ["held", "held", "dropped", "released"],
            "created_at": [T0, T0, T0, T0 + timedelta(days=1)],
        }
    )  # fmt: skip


def _duplicates() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "record_id": ["d1"],
            "kind": ["events"],
            "import_id": [2],
            "duplicate_of": ["e1"],
            "rule": ["exact"],
        }
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "home") as s:
        yield s


@pytest.fixture
def filled(store: Store) -> Store:
    for table, frame in (
        ("imports", _imports()), ("events", _events()), ("products", _products()),
        ("quarantine", _quarantine()), ("duplicates", _duplicates()),
    ):  # fmt: skip
        store.append(table, frame)
    events = _events()
    for import_id in (2, 3):
        batch = events.filter(pl.col("import_id") == import_id).drop("import_id")
        save_profile(store, import_id, "events", profile_frame(batch, "events"))
    detect_drift(store, 3, "events", QualitySettings())
    return store


def _check_offline(page: str) -> str:
    """The page with plotly.js inlined exactly once and no other remote reference."""
    bundle = get_plotlyjs()
    assert page.count(bundle) == page.count("plotly.js v") == 1
    rest = page.replace(bundle, "")
    assert "cdn.plot.ly" not in rest
    assert 'src="http' not in rest and "src='http" not in rest
    return rest


def test_html_report_renders_offline(filled: Store, tmp_path: Path) -> None:
    path = write_html(build_report(filled), tmp_path / "out" / "report.html")
    page = _check_offline(path.read_text(encoding="utf-8"))
    for heading in SECTIONS:
        assert f"<h2>{heading}</h2>" in page
    assert "<script>alert(1)" not in page  # product titles are escaped
    assert "pseudo-u" not in page  # customers are never shown
    assert 'class="bad"' in page  # import 3 does not reconcile
    assert "online_retail.xlsx" in page
    assert "Plotly.newPlot" in page
    assert "⚠ drift" in page  # flagged drift rows stand out


def test_report_json_totals_match_inserted_rows(filled: Store) -> None:
    data = report_json(build_report(filled))
    json.dumps(data)
    totals = data["totals"]
    imports = _imports()
    for column in ("input", "accepted", "quarantined", "duplicates"):
        assert totals[column] == imports[column].sum()
    assert (totals["imports"], totals["events"], totals["products"]) == (3, 10, 3)
    assert (totals["quarantine_rows"], totals["quarantine_held"], totals["duplicate_rows"]) == (
        4,
        2,
        1,
    )
    assert totals["unreconciled"] == 1
    assert [i["reconciles"] for i in data["imports"]] == [True, True, False]
    assert data["imports"][1]["rows_per_s"] == 5.0
    assert data["quarantine"]["by_reason"] == {
        "bad_quantity": 2,
        "bot_user": 1,
        "non_product": 1,
        "nonpositive_price": 1,
    }
    assert data["quarantine"]["by_status"] == {"held": 2, "dropped": 1, "released": 1}
    assert data["duplicates"]["by_rule"] == {"exact": 1}
    assert data["drift"]["checked"] > 0
    assert totals["drift_flags"] == len(data["drift"]["flagged"])


def test_behaviour_and_product_aggregates(filled: Store) -> None:
    frames = build_report(filled).frames
    assert dict(frames["funnel"].iter_rows()) == {
        "view": 0,
        "click": 0,
        "add_to_cart": 0,
        "purchase": 4,
    }
    top = frames["top_items"]
    assert top["item_id"].to_list()[:2] == ["A", "B"]
    assert top["purchases"].to_list()[:2] == [4, 3]
    assert top["title"][0].endswith("lantern")
    assert frames["activity"]["users"].sum() == 4
    assert set(frames["prices"]["category"]) == {"home", "(none)"}
    missing = dict(frames["product_missing"].iter_rows())
    assert missing["title"] == pytest.approx(1 / 3)
    assert missing["category_path"] == pytest.approx(2 / 3)
    assert missing["brand"] == 1.0


def test_empty_store_report(store: Store, tmp_path: Path) -> None:
    report = build_report(store)
    page = write_html(report, tmp_path / "empty.html").read_text(encoding="utf-8")
    for heading in SECTIONS:
        assert f"<h2>{heading}</h2>" in page
    assert "no data" in page
    assert "cdn.plot.ly" not in page
    assert report_json(report)["totals"]["input"] == 0
    Console(file=None, record=True, width=80).print(summary_table(report))


def test_summary_table_lists_totals(filled: Store) -> None:
    console = Console(record=True, width=80)
    console.print(summary_table(build_report(filled)))
    text = console.export_text()
    assert "quarantined" in text and "19" in text


def test_many_users_are_binned_in_the_store(store: Store) -> None:
    n = 5_000
    rng = np.random.default_rng(0)
    store.append(
        "events",
        pl.DataFrame(
            {
                "event_id": [f"e{i}" for i in range(n)],
                "user_id": [f"p{u}" for u in rng.zipf(1.8, n) % 1000],
                "type": ["view"] * n,
                "timestamp": [T0] * n,
                "import_id": [1] * n,
            }
        ),
    )
    frames = build_report(store).frames
    assert frames["activity"]["users"].sum() == store.scalar(
        "SELECT count(DISTINCT user_id) FROM events"
    )
    assert frames["funnel"]["users"][0] == frames["activity"]["users"].sum()
