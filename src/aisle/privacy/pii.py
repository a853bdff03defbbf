"""PII scrubbing of free text that customers write: typed placeholders such as ``<EMAIL>``.

Recognizers are patterns with validators: Luhn for payment cards, mod-97 for IBANs, the
ISO 7064 check digit and a real birth date for China resident ids, area rules for US SSNs,
prefix rules for UK NI numbers, ``phonenumbers`` for phone numbers in international, US, UK
and mainland China forms. A vectorised pre-filter sends only texts with an '@', a dot-quad
or a long run of digits to them, so clean text costs one scan.

Chosen over presidio with a blank spaCy pipeline: without a NER model presidio runs the same
pattern-and-validator recognizers, but per text in Python behind a spaCy pipeline (hundreds of
MB to install); these run only on the few texts the pre-filter flags.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date
from typing import Final

import phonenumbers
import polars as pl

#: Texts worth a closer look: an '@', an IP-like dot-quad, 6+ digits, or an NI/IBAN shape.
_PREFILTER: Final = (
    r"@|\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}|[0-9a-fA-F]{1,4}::?[0-9a-fA-F]{1,4}:"
    r"|\d[\d \-().]{5,}\d|[A-Za-z]{2}\s?\d{2}\s?\d{2}\s?\d{2}\s?[A-Da-d]\b"
    r"|\b[A-Z]{2}\d{2}[A-Z0-9 ]{11,}"
    r"|\b\d+\s+[A-Za-z][A-Za-z ]*\s(?i:street|st|road|rd|avenue|ave|lane|ln|drive|dr|way|"
    r"boulevard|blvd|court|ct|place|pl|close|crescent|terrace)\b"
)


@dataclass(frozen=True)
class Finding:
    """One piece of PII in a text."""

    entity: str
    start: int
    end: int


def _luhn(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


#: Issuer prefixes of the card networks (Visa, Mastercard, Amex, Discover, JCB, UnionPay,
#: Diners, Maestro): a run of digits that passes Luhn by chance rarely starts with one.
_ISSUERS: Final = re.compile(r"4|5[1-5]|2[2-7]|3[47]|6011|64[4-9]|65|35|62|30[0-5]|36|38|5018|6304")


def _card(match: re.Match[str]) -> bool:
    digits = re.sub(r"\D", "", match.group())
    return 13 <= len(digits) <= 19 and bool(_ISSUERS.match(digits)) and _luhn(digits)


def _iban(match: re.Match[str]) -> bool:
    text = match.group().replace(" ", "").upper()
    moved = text[4:] + text[:4]
    number = "".join(str(int(c, 36)) for c in moved)
    return 15 <= len(text) <= 34 and int(number) % 97 == 1


_CN_WEIGHTS: Final = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def _cn_resident_id(match: re.Match[str]) -> bool:
    text = match.group().upper()
    total = sum(int(d) * w for d, w in zip(text[:17], _CN_WEIGHTS, strict=True))
    if "10X98765432"[total % 11] != text[17]:
        return False
    try:
        born = date(int(text[6:10]), int(text[10:12]), int(text[12:14]))
    except ValueError:
        return False
    return date(1900, 1, 1) <= born <= date.today()


def _ssn(match: re.Match[str]) -> bool:
    area, group, serial = match.group(1), match.group(2), match.group(3)
    return area not in {"000", "666"} and area[0] != "9" and group != "00" and serial != "0000"


def _ip(match: re.Match[str]) -> bool:
    try:
        ipaddress.ip_address(match.group())
    except ValueError:
        return False
    return True


def _always(_match: re.Match[str]) -> bool:
    return True


#: entity -> (pattern, validator); tried in order, earlier entities win overlaps.
_RECOGNIZERS: Final[list[tuple[str, re.Pattern[str], Callable[[re.Match[str]], bool]]]] = [
    ("EMAIL", re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}"),
     _always),
    ("CN_RESIDENT_ID", re.compile(r"(?<!\d)\d{17}[\dXx](?!\d)"), _cn_resident_id),
    # contiguous, or in the printed groups 4-4-4-4(-3) and 4-6-5 (Amex)
    ("CREDIT_CARD", re.compile(
        r"(?<!\d)(?:\d{13,19}|\d{4}([ \-])\d{4}\1\d{4}\1\d{1,7}|\d{4}([ \-])\d{6}\2\d{5})(?!\d)"),
     _card),
    ("IBAN", re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{1,4}){3,8}\b"), _iban),
    ("US_SSN", re.compile(r"(?<!\d)(\d{3})-(\d{2})-(\d{4})(?!\d)"), _ssn),
    ("UK_NINO", re.compile(
        r"\b(?!BG|GB|NK|KN|TN|NT|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]"
        r" ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b", re.IGNORECASE), _always),
    ("IP_ADDRESS", re.compile(
        r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])|(?<![\w:])(?:[0-9a-fA-F]{0,4}:){2,7}"
        r"[0-9a-fA-F]{0,4}(?![\w:])"), _ip),
    ("ADDRESS", re.compile(
        r"\b\d{1,5}\s+(?:[A-Z][a-z]+\s){1,3}(?:Street|St|Road|Rd|Avenue|Ave|Lane|Ln|Drive|Dr|Way|"
        r"Boulevard|Blvd|Court|Ct|Place|Pl|Close|Crescent|Terrace)\b\.?"), _always),
]  # fmt: skip
#: Words before a number that say it is a phone number.
_PHONE_CONTEXT: Final = re.compile(
    r"(?i)\b(?:call|phone|tel|telephone|mobile|cell|text|ring|whatsapp|contact)\b|电话|手机"
)


def _written_as_phone(raw: str) -> bool:
    """ "+44 20 ...", "(415) 555-2671", "415-555-2671" or one run of 10+ digits read as a phone
    number without context; "2011 360 360" (years, models) needs a word such as "call"."""
    return bool(re.search(r"[+()\-.]", raw)) or bool(re.fullmatch(r"\d{10,}", raw))


#: Regions whose national formats the phone recognizer reads (international ones always).
PHONE_REGIONS: Final = ("US", "GB", "CN")


def find(text: str) -> list[Finding]:
    """The PII found in a text, without overlaps, in order."""
    found: list[Finding] = []
    for entity, pattern, valid in _RECOGNIZERS:
        found += [Finding(entity, m.start(), m.end()) for m in pattern.finditer(text) if valid(m)]
    for region in PHONE_REGIONS:
        for match in phonenumbers.PhoneNumberMatcher(text, region):
            if _written_as_phone(match.raw_string) or _PHONE_CONTEXT.search(
                text[max(0, match.start - 24) : match.start]
            ):
                found.append(Finding("PHONE", match.start, match.end))
    kept: list[Finding] = []
    for finding in sorted(found, key=lambda f: (f.start, -(f.end - f.start))):
        if not kept or finding.start >= kept[-1].end:
            kept.append(finding)
    return kept


def scrub(text: str) -> tuple[str, list[str]]:
    """The text with each piece of PII replaced by ``<ENTITY>``, and the entities found."""
    findings = find(text)
    for finding in reversed(findings):
        text = f"{text[: finding.start]}<{finding.entity}>{text[finding.end :]}"
    return text, [f.entity for f in findings]


def scrub_series(values: pl.Series) -> tuple[pl.Series, Counter[str]]:
    """Scrub a text column, and count the entities per row; only pre-filtered candidates
    reach the recognizers, each distinct text once."""
    counts: Counter[str] = Counter()
    candidates = values.str.contains(_PREFILTER).fill_null(False)
    if not candidates.any():
        return values, counts
    results = {text: scrub(text) for text in values.filter(candidates).unique().to_list()}
    cleaned = {text: result for text, (result, entities) in results.items() if entities}
    if not cleaned:
        return values, counts
    for text, rows in values.filter(values.is_in(list(cleaned))).value_counts().iter_rows():
        for entity in results[text][1]:
            counts[entity] += rows
    return values.replace(cleaned), counts


def entities_in(texts: Iterable[str]) -> Counter[str]:
    """How many of each entity the texts hold (for reports and tests)."""
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(f.entity for f in find(text))
    return counts


def scrub_columns(frame: pl.DataFrame, columns: Iterable[str]) -> tuple[pl.DataFrame, Counter[str]]:
    """Scrub the listed text columns that the frame has; the entities found, all columns."""
    total: Counter[str] = Counter()
    for name in columns:
        if name in frame.columns and frame.schema[name] == pl.String:
            cleaned, counts = scrub_series(frame[name])
            frame = frame.with_columns(cleaned.alias(name))
            total.update(counts)
    return frame, total
