"""Shopping intents in a query: price limits ("under $20", "100元以下"), pack sizes ("pack of 2")
and "cheap", recognised and taken out of the words to search.

Only a number that a price word, a currency or a pack word marks is read: "gears of war 3",
"fifa 12" and "xbox 360" keep their numbers, because a bare number in a product search is far
more often part of a name than a price. A range needs a currency on one end or "between" /
"from" before it, so "10-20" alone stays text.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Final

#: The largest pack or set size read: "pack of 5000" is more likely a typo, and "xbox 360 pack"
#: a console, not 360 of anything.
MAX_PACK: Final = 250

_SYMBOL: Final = r"[$€£¥￥]"
#: Currency written after the amount: symbols, 元 / 块 (yuan), words and ISO codes.
_SUFFIX: Final = (
    r"(?:[$€£¥￥元块]|dollars?|bucks|euros?|pounds?|quid|yuan|yen|rmb|usd|eur|gbp|cny|jpy)"
)
#: An amount: "1,299.99", "19,99" (decimal comma), "20". Not part of a longer word or number.
_NUMBER: Final = r"(?<![A-Za-z0-9.,])(?:\d{1,3}(?:,\d{3})+(?:\.\d{1,2})?|\d+(?:[.,]\d{1,2})?)"
#: After an amount: no letter or digit of a latin word (Chinese may follow: "100元以下").
_END: Final = r"(?![A-Za-z0-9])"


def _money(name: str) -> str:
    """An amount with an optional currency before or after it, in named groups."""
    return (
        rf"(?:(?P<{name}_pre>{_SYMBOL})\s*)?(?P<{name}>{_NUMBER})"
        rf"(?:\s*(?P<{name}_post>{_SUFFIX}))?{_END}"
    )


#: Words that put an upper limit on the price of the amount after them.
_AT_MOST: Final = (
    r"under|below|less\s+than|lower\s+than|cheaper\s+than|at\s+most|no\s+more\s+than|"
    r"not\s+more\s+than|<=?|≤|低于|少于|不超过|不到|小于"
)
#: Words that put a lower limit on it.
_AT_LEAST: Final = r"over|above|more\s+than|greater\s+than|at\s+least|>=?|≥|高于|超过|多于|大于"
#: Limit words that also name things ("Mad Max 2", "Mini 3"): read only before a currency.
_LOOSE_AT_MOST: Final = r"max(?:imum)?|up\s*to|within"
_LOOSE_AT_LEAST: Final = r"min(?:imum)?|starting\s+at|from"
_RANGE_JOIN: Final = r"\s*(?:-|–|—|~|to|and|到|至)\s*"
#: Words that ask for low prices without a limit.
_CHEAP: Final = r"cheap(?:est)?|inexpensive|budget|affordable|bargain"
#: The particle after a Chinese limit ("100元以下的游戏"), part of the limit.
_DE: Final = r"(?:\s*的)?"
#: Not inside a latin word (Chinese may come right before: "手机低于1000元").
_START: Final = r"(?<![A-Za-z0-9])"

#: (kind, needs a currency, pattern) in the order they are tried; a span that one takes is not
#: read again by a later one.
_PATTERNS: Final[tuple[tuple[str, bool, re.Pattern[str]], ...]] = tuple(
    (kind, needs_currency, re.compile(pattern, re.IGNORECASE))
    for kind, needs_currency, pattern in (
        # "between 10 and 20", "from $10 to $20", "在100到200元之间"
        ("range", False, rf"(?:\bbetween|\bfrom|在)\s*{_money('low')}{_RANGE_JOIN}"
                         rf"{_money('high')}(?:\s*之间)?"),
        # "$10-$20", "10 to 20 dollars", "100-200元"; "10-20" alone is an edition, not a price
        ("range", True, rf"{_money('low')}{_RANGE_JOIN}{_money('high')}"),
        ("at_most", False, rf"{_START}(?:{_AT_MOST})\s*{_money('amount')}(?:\s*以[下内])?{_DE}"),
        ("at_least", False, rf"{_START}(?:{_AT_LEAST})\s*{_money('amount')}(?:\s*以上)?{_DE}"),
        ("at_most", True, rf"{_START}(?:{_LOOSE_AT_MOST})\s*{_money('amount')}"),
        ("at_least", True, rf"{_START}(?:{_LOOSE_AT_LEAST})\s*{_money('amount')}"),
        ("at_most", False, rf"{_money('amount')}\s*(?:以下{_DE}|以内{_DE}|or\s+less|"
                           r"or\s+under|and\s+under)(?![A-Za-z])"),
        ("at_least", False, rf"{_money('amount')}\s*(?:以上{_DE}|or\s+more|and\s+up|"
                            r"and\s+over)(?![A-Za-z])"),
        ("at_least", True, rf"{_money('amount')}\s*\+"),
        # "2 pack", "2-pack", "2pk", "6 count", "pack of 2", "set of 4", "x2", "2个装", "3件套"
        ("pack", False, rf"{_START}(?P<count>\d{{1,4}})\s*-?\s*(?:packs?|pk|pcs|pieces|count|ct)"
                        r"\b"),
        ("pack", False, r"\b(?:pack|set|box|case|bundle)\s+of\s+(?P<count>\d{1,4})\b"),
        ("pack", False, rf"{_START}x(?P<count>\d{{1,2}})\b"),  # not "x360"
        ("pack", False, r"(?<![\d.])(?P<count>\d{1,4})\s*(?:个|件|瓶|支|包|片|盒)?\s*[装套]"),
        ("cheap", False, rf"\b(?:{_CHEAP})\b|(?:便宜|实惠){_DE}"),
    )
)  # fmt: skip


@dataclass(frozen=True)
class Span:
    """One recognised intent: its kind (at_most, at_least, range, pack, cheap), the words that
    said it, where they were in the text, and the value read (a price, "low-high", a count)."""

    kind: str
    words: str
    start: int
    end: int
    value: str


@dataclass(frozen=True)
class Intents:
    """What a query asks for besides its words."""

    text: str  # the query without the intent words, whitespace collapsed
    price_min: float | None = None
    price_max: float | None = None
    pack_size: int | None = None
    cheap: bool = False  # "cheap", "budget": sort or boost by price, no limit given
    spans: tuple[Span, ...] = ()


def parse_intents(text: str) -> Intents:
    """Price limits, pack size and "cheap" read from a query, and the query without them."""
    taken: list[Span] = []
    price_min: float | None = None
    price_max: float | None = None
    pack: int | None = None
    cheap = False
    for kind, needs_currency, pattern in _PATTERNS:
        for match in pattern.finditer(text):
            if any(match.start() < s.end and s.start < match.end() for s in taken):
                continue
            if needs_currency and not _has_currency(match):
                continue
            read = _read(kind, match)
            if read is None:
                continue
            low, high, count = read
            if not all(math.isfinite(v) for v in (low, high) if v is not None):
                continue  # four hundred digits: not a price anyone means
            price_min = low if low is not None else price_min
            price_max = high if high is not None else price_max
            pack = count if count is not None else pack
            cheap = cheap or kind == "cheap"
            value = _value(low, high, count)
            taken.append(Span(kind, match.group(0).strip(), match.start(), match.end(), value))
    if price_min is not None and price_max is not None and price_min > price_max:
        price_min, price_max = price_max, price_min  # "between 20 and 10"
    rest = text
    for span in sorted(taken, key=lambda s: s.start, reverse=True):
        rest = f"{rest[: span.start]} {rest[span.end :]}"
    return Intents(
        text=" ".join(rest.split()),
        price_min=price_min,
        price_max=price_max,
        pack_size=pack,
        cheap=cheap,
        spans=tuple(sorted(taken, key=lambda s: s.start)),
    )


def _has_currency(match: re.Match[str]) -> bool:
    return any(v for k, v in match.groupdict().items() if k.endswith(("_pre", "_post")))


def _read(kind: str, match: re.Match[str]) -> tuple[float | None, float | None, int | None] | None:
    """(price_min, price_max, pack size) that a match says, or None when it says nothing."""
    groups = match.groupdict()
    if kind == "range":
        return _amount(groups["low"]), _amount(groups["high"]), None
    if kind == "at_most":
        return None, _amount(groups["amount"]), None
    if kind == "at_least":
        return _amount(groups["amount"]), None, None
    if kind == "pack":
        count = int(groups["count"])
        return (None, None, count) if 1 < count <= MAX_PACK else None
    return None, None, None  # cheap


def _amount(number: str) -> float:
    """ "1,299.99" -> 1299.99, "19,99" -> 19.99 (a comma before 1-2 final digits is decimal)."""
    if re.fullmatch(r"\d+,\d{1,2}", number):
        return float(number.replace(",", "."))
    return float(number.replace(",", ""))


def _value(low: float | None, high: float | None, count: int | None) -> str:
    if count is not None:
        return str(count)
    if low is not None and high is not None:
        return f"{low:g}-{high:g}"
    if low is not None:
        return f"{low:g}"
    if high is not None:
        return f"{high:g}"
    return ""
