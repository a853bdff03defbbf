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
    first_of = first_of or {}
    hashes = pl.DataFrame(
        {
            "pseudonym": distinct,
            "subject_hash": [subject_hash(first_of.get(p, p)) for p in distinct.to_list()],
        }
    )
    with store.registered("_candidates", hashes):
        found = store.query(
            f"SELECT DISTINCT c.pseudonym FROM _candidates c JOIN {table} t USING (subject_hash) "
            f"WHERE {where}",
            params,
        )
    return found["pseudonym"]
