"""PII scrubbing: measured on a labelled set (templates and real shoppers' text), planted PII
never survives, and ordinary product text is left alone."""

from __future__ import annotations

import gzip
import json
import random
from collections import Counter
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aisle.privacy.pii import find, scrub, scrub_series
from tests.privacy.pii_samples import TEMPLATES, labelled, value

SAFE_WORDS = ["red", "lantern", "for", "my", "order", "xbox", "halo", "gift", "the", "set of"]


def test_precision_and_recall_on_the_labelled_set() -> None:
    rows = labelled(40)
    hits, misses, wrong = Counter(), Counter(), Counter()
    for text, entity, planted in rows:
        spans = find(text)
        caught = [
            f
            for f in spans
            if text[f.start : f.end].strip() in planted or planted in text[f.start : f.end]
        ]
        if any(f.entity == entity for f in caught):
            hits[entity] += 1
        else:
            misses[entity] += 1
        wrong[entity] += sum(1 for f in spans if f.entity != entity)
    for entity in TEMPLATES:
        recall = hits[entity] / (hits[entity] + misses[entity])
        assert recall >= 0.95, (entity, recall, misses[entity])
    assert sum(wrong.values()) <= 0.02 * len(rows)


def test_real_queries_and_titles_are_untouched(shared_data: Path) -> None:
    """Precision on real shoppers' text: 33,892 Best Buy queries and the catalogs' titles."""
    queries = pl.read_csv(shared_data / "bestbuy-small-xbox" / "clicks.csv.gz", infer_schema=False)
    with gzip.open(shared_data / "bestbuy-small-xbox" / "products.jsonl.gz", "rt") as handle:
        names = [json.loads(line)["name"] for line in handle]
    retail = (
        pl.read_csv(shared_data / "uci-online-retail" / "transactions.csv.gz", infer_schema=False)[
            "Description"
        ]
        .drop_nulls()
        .unique()
    )
    for texts in (queries["query"], pl.Series(names), retail):
        cleaned, found = scrub_series(texts)
        assert found == Counter(), found.most_common(5)
        assert cleaned.equals(texts)


@settings(max_examples=200, deadline=None)
@given(
    entity=st.sampled_from(sorted(TEMPLATES)),
    seed=st.integers(0, 10**6),
    before=st.lists(st.sampled_from(SAFE_WORDS), max_size=4),
    after=st.lists(st.sampled_from(SAFE_WORDS), max_size=4),
)
def test_no_planted_pii_survives(
    entity: str, seed: int, before: list[str], after: list[str]
) -> None:
    planted = value(entity, random.Random(seed))
    text = " ".join([*before, planted, *after])
    cleaned, entities = scrub(text)
    assert planted not in cleaned
    assert entities, text


@settings(max_examples=200, deadline=None)
@given(words=st.lists(st.sampled_from([*SAFE_WORDS, "2011", "360", "4", "12", "x 6"]), max_size=12))
def test_ordinary_product_text_is_untouched(words: list[str]) -> None:
    text = " ".join(words)
    assert scrub(text) == (text, [])


@pytest.mark.parametrize(
    "text",
    ["3550338 2330703 2330658 3001037", "FallSale_GPS_Car_20110930", "PACK OF 72 RETROSPOT",
     "SET/6 RED SPOTTY PAPER CUPS", "Call of Duty: Black Ops 2 - Xbox 360", "2011-10-20 00:41"],
)  # fmt: skip
def test_known_lookalikes_are_not_pii(text: str) -> None:
    assert scrub(text) == (text, [])
