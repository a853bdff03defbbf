"""Lists of customers kept without their pseudonyms: erased, or having withdrawn consent."""

from __future__ import annotations

import hashlib
from typing import Any

import polars as pl

from aisle.storage import Store


def subject_hash(pseudonym: str) -> str:
    """What such a list keeps of a customer: a hash of the pseudonym, not the pseudonym."""
    return hashlib.sha256(pseudonym.encode()).hexdigest()


def listed_among(
    store: Store, pseudonyms: pl.Series, table: str, where: str = "TRUE",
    params: list[Any] | None = None, *, first_of: dict[str, str] | None = None,
) -> pl.Series:  # fmt: skip
    """Those of the given pseudonyms whose subject is in ``table`` (rows matching ``where``).

    Lists hold hashes of first-generation pseudonyms (which key rotation does not change);
    ``first_of`` maps current pseudonyms to them (identity when the chain has one key).
    """
    distinct = pseudonyms.drop_nulls().unique()
    if distinct.len() == 0:
        return distinct
    candidates = distinct.rename("pseudonym").to_frame()
    if first_of:
        candidates = candidates.with_columns(pl.col("pseudonym").replace(first_of).alias("subject"))
    else:
        candidates = candidates.with_columns(pl.col("pseudonym").alias("subject"))
    # DuckDB's sha256 is subject_hash, vectorised: no Python call per customer
    with store.registered("_candidates", candidates):
        found = store.query(
            f"SELECT DISTINCT c.pseudonym FROM _candidates c JOIN {table} t "
            f"ON t.subject_hash = sha256(c.subject) WHERE {where}",
            params,
        )
    return found["pseudonym"]
