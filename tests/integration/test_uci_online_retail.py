"""The whole UCI Online Retail file: anomaly counts computed independently with DuckDB SQL."""

from __future__ import annotations

import math
from pathlib import Path

import duckdb
import pytest

from aisle.config import Settings
from aisle.pipeline import ImportResult, ingest
from aisle.storage import Store

pytestmark = pytest.mark.integration

PATTERN = r"^\d{5}[A-Za-z]{0,3}$"


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> tuple[ImportResult, Path, Path]:
    from tests.conftest import SHARED_DATA, TEST_SECRET

    source = SHARED_DATA / "uci-online-retail" / "transactions.csv.gz"
    if not source.exists():
        pytest.skip(f"UCI Online Retail not found at {source}")
    home = tmp_path_factory.mktemp("uci")
    settings = Settings(home=home, secret_key=TEST_SECRET)
    return ingest("events", source, "uci-online-retail", settings), home, source


def _expected(source: Path, settings: Settings) -> dict[str, int]:
    """The rules of the issue, written again as one SQL query over the raw file."""
    quality = settings.quality
    non_products = ", ".join(f"'{c}'" for c in quality.non_product_codes)
    con = duckdb.connect()
    con.execute(
        f"""
        CREATE TABLE raw AS SELECT *, row_number() OVER () AS line
        FROM read_csv('{source}', all_varchar = true, header = true);
        CREATE TABLE firsts AS SELECT * EXCLUDE (rn) FROM (
            SELECT *, row_number() OVER (PARTITION BY InvoiceNo, StockCode, Description,
                Quantity, InvoiceDate, UnitPrice, CustomerID, Country ORDER BY line) AS rn
            FROM raw) WHERE rn = 1;
        CREATE TABLE typed AS SELECT *,
            upper(trim(StockCode)) AS code,
            InvoiceNo LIKE 'C%' AS cancelled,
            CAST(Quantity AS DOUBLE) AS q,
            CAST(UnitPrice AS DOUBLE) AS price,
            regexp_matches(upper(trim(StockCode)), '{PATTERN}')
                AND upper(trim(StockCode)) NOT IN ({non_products}) AS product
        FROM firsts;
        CREATE TABLE titled AS SELECT upper(trim(StockCode)) AS code FROM raw
            WHERE trim(coalesce(Description, '')) <> '' GROUP BY 1;
        CREATE TABLE stats AS SELECT upper(trim(StockCode)) AS code,
            median(ln(1 + CAST(Quantity AS DOUBLE))) AS med, count(*) AS n
            FROM raw WHERE InvoiceNo NOT LIKE 'C%' AND CAST(Quantity AS DOUBLE) > 0 GROUP BY 1;
        CREATE TABLE mads AS SELECT r.code, median(abs(ln(1 + CAST(raw.Quantity AS DOUBLE))
            - r.med)) AS mad FROM raw JOIN stats r ON upper(trim(raw.StockCode)) = r.code
            WHERE raw.InvoiceNo NOT LIKE 'C%' AND CAST(raw.Quantity AS DOUBLE) > 0 GROUP BY 1;
        """
    )
    limit_ratio = math.log(quality.outlier_min_ratio)
    scale = quality.outlier_z * 1.4826
    row = con.execute(
        f"""
        SELECT
            (SELECT count(*) FROM raw) AS input,
            (SELECT count(*) FROM raw) - (SELECT count(*) FROM firsts) AS duplicates,
            count(*) FILTER (WHERE CustomerID IS NULL) AS missing_field,
            count(*) FILTER (WHERE NOT product) AS non_product,
            count(*) FILTER (WHERE price <= 0) AS nonpositive_price,
            count(*) FILTER (WHERE NOT cancelled AND q < 0) AS bad_quantity,
            count(*) FILTER (WHERE product AND code NOT IN (SELECT code FROM titled))
                AS unknown_item,
            count(*) FILTER (WHERE abs(q) > 0 AND s.n >= {quality.outlier_min_lines}
                AND ln(1 + abs(q)) - s.med > greatest({scale} * m.mad, {limit_ratio})
                AND NOT (NOT cancelled AND q < 0)) AS outlier_quantity,
            count(*) FILTER (WHERE CustomerID IS NULL OR NOT product OR price <= 0
                OR (NOT cancelled AND q < 0)
                OR (product AND code NOT IN (SELECT code FROM titled))
                OR (abs(q) > 0 AND s.n >= {quality.outlier_min_lines}
                    AND ln(1 + abs(q)) - s.med > greatest({scale} * m.mad, {limit_ratio})))
                AS any_rule
        FROM typed LEFT JOIN stats s USING (code) LEFT JOIN mads m USING (code)
        """
    ).fetchall()[0]
    names = [
        "input",
        "duplicates",
        "missing_field",
        "non_product",
        "nonpositive_price",
        "bad_quantity",
        "unknown_item",
        "outlier_quantity",
        "any_rule",
    ]
    return dict(zip(names, row, strict=True))


def test_counts_match_an_independent_sql_count(imported: tuple[ImportResult, Path, Path]) -> None:
    result, home, source = imported
    expected = _expected(source, Settings(home=home))
    assert result.input == expected["input"] == 499_619
    assert result.duplicates == expected["duplicates"]
    assert result.duplicate_rules == {"exact": expected["duplicates"]}
    for reason in (
        "missing_field",
        "non_product",
        "nonpositive_price",
        "bad_quantity",
        "unknown_item",
        "outlier_quantity",
    ):
        assert result.reasons.get(reason, 0) == expected[reason], reason
    # every quarantined row but the unmatched returns is explained by the rules above
    assert result.quarantined - result.reasons.get("unmatched_return", 0) == expected["any_rule"]
    assert result.input == result.accepted + result.quarantined + result.duplicates


def test_store_agrees_with_the_import_record(imported: tuple[ImportResult, Path, Path]) -> None:
    result, home, _ = imported
    with Store(home, read_only=True) as store:
        events = store.scalar("SELECT count(*) FROM events")
        held = store.scalar("SELECT count(*) FROM quarantine WHERE kind = 'events'")
        duplicates = store.scalar("SELECT count(*) FROM duplicates WHERE kind = 'events'")
        status = store.scalar("SELECT status FROM imports WHERE import_id = ?", [result.import_id])
        matched = store.scalar("SELECT count(*) FROM events WHERE ref_event_id IS NOT NULL")
        returns = store.scalar("SELECT count(*) FROM events WHERE type = 'return'")
        products = store.scalar("SELECT count(*) FROM products")
        aliased = store.scalar("SELECT count(*) FROM products WHERE len(aliases) > 0")
    assert (events, held, duplicates) == (result.accepted, result.quarantined, result.duplicates)
    assert status == "complete"
    assert returns > 0 and matched == returns  # every accepted return names its purchase
    assert products > 3_500 and aliased > 100  # stock codes with several descriptions


def test_no_raw_customer_id_in_the_store(imported: tuple[ImportResult, Path, Path]) -> None:
    _, home, source = imported
    raw = {
        r[0]
        for r in duckdb.sql(
            f"SELECT DISTINCT CustomerID FROM read_csv('{source}', all_varchar = true) "
            "WHERE CustomerID IS NOT NULL"
        ).fetchall()
    }
    with Store(home, read_only=True) as store:
        stored = set(store.query("SELECT DISTINCT user_id FROM events")["user_id"].to_list())
        payload_ids = store.query(
            "SELECT DISTINCT json_extract_string(payload, '$.CustomerID') AS id FROM quarantine "
            "WHERE payload IS NOT NULL"
        )["id"].to_list()
    assert stored and not stored & raw
    assert all(len(u) == 32 for u in stored)
    assert not set(payload_ids) & raw
    assert all(p is None or len(p) == 32 for p in payload_ids)


def test_reimport_adds_nothing(imported: tuple[ImportResult, Path, Path]) -> None:
    from tests.conftest import TEST_SECRET

    _, home, source = imported
    again = ingest(
        "events", source, "uci-online-retail", Settings(home=home, secret_key=TEST_SECRET)
    )
    assert again.accepted == 0 and again.quarantined == 0 and again.duplicates == again.input
