"""Query intents: price limits, pack sizes and "cheap" are read and taken out of the query;
numbers that name a product are left alone."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aisle.search.intents import Intents, parse_intents
from aisle.search.tokenize import segment

# query -> (text left, price_min, price_max, pack_size)
READ = [
    ("under $20", "", None, 20.0, None),
    ("games under $20", "games", None, 20.0, None),
    ("Halo Under $20", "Halo", None, 20.0, None),
    ("below 20", "", None, 20.0, None),
    ("less than 20 dollars", "", None, 20.0, None),
    ("lower than 15 bucks racing", "racing", None, 15.0, None),
    ("< 20", "", None, 20.0, None),
    ("<=25 kinect", "kinect", None, 25.0, None),
    ("at most $30 shooters", "shooters", None, 30.0, None),
    ("no more than 40 usd", "", None, 40.0, None),
    ("max $30", "", None, 30.0, None),
    ("up to €25 headset", "headset", None, 25.0, None),
    ("$20 or less", "", None, 20.0, None),
    ("$10-$20", "", 10.0, 20.0, None),
    ("$10 - $20 rpg", "rpg", 10.0, 20.0, None),
    ("10 to 20 dollars", "", 10.0, 20.0, None),
    ("10-20€", "", 10.0, 20.0, None),
    ("between 10 and 20", "", 10.0, 20.0, None),
    ("from 10 to 20 madden", "madden", 10.0, 20.0, None),
    ("between 20 and 10", "", 10.0, 20.0, None),
    ("over 50", "", 50.0, None, None),
    ("more than $50", "", 50.0, None, None),
    ("above 50 racing wheel", "racing wheel", 50.0, None, None),
    ("at least £15", "", 15.0, None, None),
    ("$50+ controllers", "controllers", 50.0, None, None),
    ("$50 and up", "", 50.0, None, None),
    ("under $1,299.99 laptop", "laptop", None, 1299.99, None),
    ("19,99 € or less", "", None, 19.99, None),
    ("under £15", "", None, 15.0, None),
    ("¥100以下", "", None, 100.0, None),
    ("100元以下", "", None, 100.0, None),
    ("100元以下的游戏", "游戏", None, 100.0, None),
    ("手机低于1000元", "手机", None, 1000.0, None),
    ("200元以上耳机", "耳机", 200.0, None, None),
    ("100-200元", "", 100.0, 200.0, None),
    ("100块以内", "", None, 100.0, None),
    ("2 pack", "", None, None, 2),
    ("2 pack batteries", "batteries", None, None, 2),
    ("2-pack", "", None, None, 2),
    ("rechargeable batteries 4pk", "rechargeable batteries", None, None, 4),
    ("pack of 2", "", None, None, 2),
    ("set of 4 controllers", "controllers", None, None, 4),
    ("controller x2", "controller", None, None, 2),
    ("12 count aa", "aa", None, None, 12),
    ("2个装电池", "电池", None, None, 2),
    ("gears of war 3 under $40", "gears of war 3", None, 40.0, None),
    ("fifa 12 2 pack under 30", "fifa 12", None, 30.0, 2),
    ("nba 2k12 under 19.99", "nba 2k12", None, 19.99, None),
    ("call of duty 4 between $5 and $10", "call of duty 4", 5.0, 10.0, None),
    ("xbox 360 over 200", "xbox 360", 200.0, None, None),
]

# queries whose numbers name a product: nothing is read, the text stays as it is
LEFT_ALONE = [
    "gears of war 3",
    "battlefield 3",
    "fifa 12",
    "xbox 360",
    "x box 360",
    "call of duty 4",
    "modern warfare 3",
    "left 4 dead 2",
    "nba 2k12",
    "madden 2012",
    "forza 4",
    "f1 2011",
    "halo 3",
    "mad max 2",
    "x360",
    "10-20",
    "saints row 3",
    "mass effect 3",
    "2622037 2127204",
    "thunder 20",
    "xbox 360 250gb",
    "warhammer 40k",
    "xbox 360 pack",
    "",
]


@pytest.mark.parametrize(("query", "text", "low", "high", "pack"), READ)
def test_intents_are_read_and_taken_out(
    query: str, text: str, low: float | None, high: float | None, pack: int | None
) -> None:
    intents = parse_intents(query)
    assert (intents.text, intents.price_min, intents.price_max, intents.pack_size) == (
        text,
        low,
        high,
        pack,
    )
    assert intents.spans, "what was read is listed for explain"


@pytest.mark.parametrize("query", LEFT_ALONE)
def test_numbers_that_name_products_are_not_prices(query: str) -> None:
    assert parse_intents(query) == Intents(text=" ".join(query.split()))


@pytest.mark.parametrize(
    ("query", "text"),
    [("cheap games", "games"), ("cheapest kinect", "kinect"), ("便宜的手机", "手机")],
)
def test_cheap_is_an_intent_without_a_price(query: str, text: str) -> None:
    intents = parse_intents(query)
    assert intents.cheap and intents.text == text
    assert intents.price_min is None and intents.price_max is None


def test_spans_say_what_was_read_and_where() -> None:
    query = "halo under $20 2 pack"
    intents = parse_intents(query)
    assert [(s.kind, s.words, s.value) for s in intents.spans] == [
        ("at_most", "under $20", "20"),
        ("pack", "2 pack", "2"),
    ]
    assert all(query[s.start : s.end].strip() == s.words for s in intents.spans)


@pytest.mark.parametrize(
    ("query", "text", "high"),
    [("100元以下的游戏", "游戏", 100.0), ("１００元以下", "", 100.0), ("UNDER ＄20", "", 20.0)],
)
def test_segmented_and_full_width_queries_read_the_same(query: str, text: str, high: float) -> None:
    intents = parse_intents(segment(query))
    assert (intents.text, intents.price_max) == (text, high)


def test_a_pack_size_must_be_plausible() -> None:
    assert parse_intents("1 pack").pack_size is None
    assert parse_intents("pack of 5000").pack_size is None


@given(st.text(max_size=80))
def test_any_text_parses_and_only_loses_words(text: str) -> None:
    intents = parse_intents(text)
    assert len(intents.text) <= len(" ".join(text.split()))
    if intents.price_min is not None and intents.price_max is not None:
        assert intents.price_min <= intents.price_max
