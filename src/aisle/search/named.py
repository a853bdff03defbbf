"""Queries that name products by id: a shopper who types a SKU ("2945052", or several,
"2945052, 2953607") means those products, whatever their text says.

A query names products only when every word of it is a catalog item id (letter case aside),
so "fifa 12" never pins a product whose id is "12". Named products join the retrieval pool
and come first, in the order typed; the rest follow in the ranker's order. On the Best Buy
clicks carved for validation a handful of queries are bare SKUs, and their shoppers clicked
the product with that SKU.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Final

import numpy as np

_WORDS: Final = re.compile(r"[^\s,;]+")


def folded_ids(item_ids: Sequence[str]) -> dict[str, int]:
    """The item ids that case folding changes ("85123A" -> "85123a"), folded, to their catalog
    column: beside the catalog's own positions they find an id typed in any case, without a
    second entry for every id that has no letters."""
    return {folded: column for column, item in enumerate(item_ids)
            if (folded := item.casefold()) != item}  # fmt: skip


def named_columns(query: str, position: Mapping[str, int], folded: Mapping[str, int]) -> np.ndarray:
    """The columns of the products the query names (``position``: item id -> column;
    ``folded``: ``folded_ids``), in the order typed; none unless every word is an item id."""
    words = _WORDS.findall(query.casefold())
    columns = [position.get(word, folded.get(word)) for word in words]
    if not columns or any(column is None for column in columns):
        return np.zeros(0, dtype=np.int64)
    return np.asarray(list(dict.fromkeys(columns)), dtype=np.int64)


def named_first(columns: np.ndarray, named: np.ndarray) -> np.ndarray:
    """A sort key that puts the named columns first, in their order (higher: earlier), and
    leaves every other column at 0."""
    key = np.zeros(len(columns), dtype=np.int64)
    for place, column in enumerate(named.tolist()):
        key[columns == column] = len(named) - place
    return key
