"""The coerce stage: types, timestamps to UTC, and text normalisation."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from aisle.config import Settings
from aisle.domain import Reason
from aisle.pipeline import ingest
from aisle.quality.coerce import coerce
from aisle.text import clean_series, clean_text
from tests.quality.tiny_batches import (
    EVENTS,
    T0,
    UTC_TS,
    event,
    import_products,
    import_rows,
    iso,
    quarantine_by_line,
    table,
)

# -- coerce: types and timestamps -------------------------------------------------------------


def test_coerce_unreadable_number_is_bad_type_naming_the_field() -> None:
    frame = pl.DataFrame({"_line": [2, 3, 4, 5], "value": ["1.5", "six", " 2 ", "1,000"]})
    typed, flags = coerce(frame, {"value": pl.Float64()})
    # "1,000" may be a thousand or one: no separator is guessed, the value fails loudly
    assert typed["value"].to_list() == [1.5, None, 2.0, None]
    [flag] = flags
    assert flag.reason is Reason.BAD_TYPE
    assert typed.select(flag.mask).to_series().to_list() == [False, True, False, True]
    assert "'value'" in str(flag.detail)


def test_coerce_empty_string_is_missing_not_a_type_error() -> None:
    frame = pl.DataFrame({"_line": [2, 3, 4], "value": ["", "   ", None]})
    typed, [flag] = coerce(frame, {"value": pl.Float64()})
    assert typed["value"].null_count() == 3
    assert not typed.select(flag.mask).to_series().any()


def test_coerce_fills_absent_columns_with_nulls() -> None:
    typed, flags = coerce(pl.DataFrame({"_line": [2]}), {"price": pl.Float64()})
    assert typed["price"].to_list() == [None]
    assert flags == []


@pytest.mark.parametrize(
    ("text", "zone", "fmt", "expected"),
    [
        pytest.param("2024-03-01T10:00:00Z", "UTC", None, T0, id="iso-z"),
        pytest.param("2024-03-01T12:00:00+02:00", "UTC", None, T0, id="iso-offset"),
        pytest.param("2024-03-01T12:00:00+02:00", "Asia/Tokyo", None, T0, id="offset-wins"),
        pytest.param(
            "2024-03-01T10:00:00.250Z", "UTC", None, T0 + timedelta(milliseconds=250), id="frac"
        ),
        pytest.param("2024-03-01 11:00:00", "Europe/Paris", None, T0, id="naive-winter"),
        pytest.param(
            "2024-07-01 12:00:00",
            "Europe/Paris",
            None,
            datetime(2024, 7, 1, 10, tzinfo=UTC),
            id="naive-summer",
        ),
        pytest.param("2024-03-01", "UTC", None, datetime(2024, 3, 1, tzinfo=UTC), id="date"),
        pytest.param("1709287200", "UTC", None, T0, id="epoch-seconds"),
        pytest.param("01/03/2024 10:00", "Europe/London", "%d/%m/%Y %H:%M", T0, id="strptime"),
        pytest.param(
            "01/07/2024 11:00",
            "Europe/London",
            "%d/%m/%Y %H:%M",
            datetime(2024, 7, 1, 10, tzinfo=UTC),
            id="strptime-bst",
        ),
    ],
)
def test_coerce_timestamps_to_utc(
    text: str, zone: str, fmt: str | None, expected: datetime
) -> None:
    frame = pl.DataFrame({"_line": [2], "timestamp": [text]})
    typed, [flag] = coerce(frame, {"timestamp": UTC_TS}, timestamp_format=fmt, timezone=zone)
    assert typed["timestamp"].to_list() == [expected]
    assert typed["timestamp"].dtype == UTC_TS
    assert not typed.select(flag.mask).item()


def test_coerce_epoch_seconds_are_utc_whatever_the_naive_timezone() -> None:
    """Regression: epoch seconds are absolute; the zone of naive text must not shift them."""
    frame = pl.DataFrame({"_line": [2], "timestamp": ["1709287200"]})
    typed, _ = coerce(frame, {"timestamp": UTC_TS}, timezone="Europe/Paris")
    assert typed["timestamp"].to_list() == [T0]


@pytest.mark.parametrize("fmt", [None, "%d/%m/%Y %H:%M"])
def test_coerce_junk_timestamp_is_bad_timestamp(fmt: str | None) -> None:
    frame = pl.DataFrame(
        {"_line": [2, 3, 4, 5], "timestamp": ["not a date", "2024-13-45T00:00:00", "", None]}
    )
    typed, [flag] = coerce(frame, {"timestamp": UTC_TS}, timestamp_format=fmt)
    assert flag.reason is Reason.BAD_TIMESTAMP
    assert "'timestamp'" in str(flag.detail)
    assert typed["timestamp"].null_count() == 4
    # empty and absent timestamps are missing fields (a later rule), not unreadable ones
    assert typed.select(flag.mask).to_series().to_list() == [True, True, False, False]


# -- text normalisation -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("\ufb01ne", "fine"),  # the "fi" ligature
        ("\uff11\uff12\uff13", "123"),  # full-width digits
        ("\uff21\uff22", "AB"),  # full-width letters
        ("a \t b\u00a0\u00a0c\n d", "a b c d"),  # tabs, NBSP, newlines collapse
        ("  padded\u3000", "padded"),  # ideographic space trimmed
        ("", None),
        ("   ", None),
        ("\u00a0\t\n", None),
        (None, None),
    ],
)
def test_clean_text(raw: str | None, clean: str | None) -> None:
    frame = pl.DataFrame({"t": [raw]}, schema={"t": pl.String})
    assert frame.select(clean_text(pl.col("t"))).item() == clean
    # the per-distinct-value path (many repeats) gives the same answer
    assert clean_series(pl.Series("t", [raw] * 6, dtype=pl.String)).to_list() == [clean] * 6


def test_text_is_normalised_on_ingest(settings: Settings, tmp_path: Path) -> None:
    products = import_products(
        settings,
        tmp_path,
        [
            {"item_id": "A", "title": "Desk\u00a0\u00a0Lamp\t"},
            {"item_id": "\uff22", "title": "\ufb01re  pit"},
        ],
    )
    assert products.accepted == 2
    titles = dict(table(settings, "SELECT item_id, title FROM products").iter_rows())
    assert titles == {"A": "Desk Lamp", "B": "fire pit"}

    result = import_rows(
        settings,
        tmp_path,
        "events",
        [
            event(type="search", item_id=None, query="  \ufb01ne\tshoes\u00a0"),  # line 2
            event(type="search", item_id=None, query=" \t ", timestamp=iso(T0 + timedelta(1))),
        ],
        header=EVENTS,
    )
    assert result.accepted == 1
    assert table(settings, "SELECT query FROM events")["query"].to_list() == ["fine shoes"]
    # a query of whitespace only is no query at all
    assert quarantine_by_line(settings, result.import_id)[3]["reasons"] == ["missing_field"]


def test_an_array_or_object_in_a_plain_field_quarantines_that_record_only(
    settings: Settings, tmp_path: Path
) -> None:
    """JSON sources can hold any shape: the records with the wrong one are held, the rest kept."""

    rows = [
        {"item_id": "p1", "title": "fine", "brand": ["a", "list"]},
        {"item_id": "p2", "title": "fine", "aliases": [[None]]},
        {"item_id": "p3", "title": "fine", "price": {"amount": 3}},
        {"item_id": "p4", "title": "kept", "category_path": ["Games", "Shooters"]},
    ]
    path = tmp_path / "shapes.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    result = ingest("products", path, "canonical", settings)
    assert (result.input, result.accepted, result.quarantined) == (4, 1, 3)
    assert result.reasons == {Reason.BAD_TYPE.value: 3}
    held = quarantine_by_line(settings, result.import_id)
    assert sorted(held) == [1, 2, 3]
    assert "'price'" in held[3]["detail"]
