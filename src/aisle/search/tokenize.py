"""Search text as the indexes see it: normalised English, Chinese segmented into words.

Latin text is normalised (NFKC, lowercase, whitespace collapsed) and left for the index's own
tokenizer to split. Chinese has no spaces between words, and tantivy's tokenizer would keep a
run of Han characters as one token, so every run is segmented with jieba in search mode
(``lcut_for_search``): it emits the words of precise mode plus the dictionary words inside long
ones ("笔记本电脑" gives 笔记, 电脑, 笔记本, 笔记本电脑). A shopper who types the shorter word
("电视") then finds the product named by the longer one ("小米电视机"), which precise mode misses;
for product search recall matters more than the extra tokens cost.

The same ``segment`` runs on documents and on queries, and it is idempotent (segmenting twice
gives the same text), so callers may segment early without changing what the index matches.
"""

from __future__ import annotations

import logging
import re
import tempfile
import threading
import unicodedata
from typing import Any, Final

import jieba
import polars as pl

#: Han ideographs: the unified block, extension A, the compatibility block and extensions B-G.
_HAN: Final = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ebef\U00030000-\U0003134f"
_HAN_CHAR: Final = re.compile(f"[{_HAN}]")
#: A region of Chinese: runs of Han characters separated only by single spaces (the text is
#: collapsed first), segmented together so that words repeated by an earlier segmentation
#: are counted once and segmenting again changes nothing.
_HAN_REGION: Final = re.compile(f"[{_HAN}]+(?: [{_HAN}]+)*")
#: Whitespace other than the plain space, as Python's ``str.isspace`` has it, spelt out so
#: that Python's and polars' (Rust's) regular expressions agree on it.
_OTHER_SPACE: Final = (
    "\t\n\x0b\x0c\r\x1c-\x1f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
)
_SPACES: Final = re.compile(f"[ {_OTHER_SPACE}]+")
#: The same runs for polars, where single plain spaces (most matches) are left alone: runs of
#: two or more, or any other whitespace character.
_SPACES_TO_COLLAPSE: Final = f"[ {_OTHER_SPACE}]{{2,}}|[{_OTHER_SPACE}]"
#: A term: a run of letters and digits, as tantivy's simple tokenizer splits (no underscore).
_TERM: Final = re.compile(r"[^\W_]+")

_lock = threading.Lock()
_loaded: dict[str, Any] = {}  # "jieba": the segmenter, once loaded


def _segmenter() -> Any:
    """The jieba tokenizer, loaded once from its bundled dictionary on first use (about 1 s;
    English-only shops never pay it).

    A private instance rather than ``jieba.dt``: a user dictionary added elsewhere must not
    change how documents already indexed were segmented. Its cache goes to the system temp
    directory, never into the repository or the aisle home."""
    segmenter = _loaded.get("jieba")
    if segmenter is None:
        with _lock:
            segmenter = _loaded.get("jieba")
            if segmenter is None:
                jieba.setLogLevel(logging.WARNING)
                segmenter = jieba.Tokenizer()
                segmenter.tmp_dir = tempfile.gettempdir()
                segmenter.initialize()
                _loaded["jieba"] = segmenter
    return segmenter


def has_cjk(text: str) -> bool:
    """True when ``text`` holds at least one Han (Chinese) character."""
    return _HAN_CHAR.search(text) is not None


def _segment_region(match: re.Match[str]) -> str:
    segmenter = _segmenter()
    words = (
        word
        for run in match.group(0).split(" ")
        for word in segmenter.lcut_for_search(run)
        if not word.isspace()
    )
    return " " + " ".join(dict.fromkeys(words)) + " "  # ordered, each word once


def _normalise(text: str) -> str:
    return _SPACES.sub(" ", unicodedata.normalize("NFKC", text).lower()).strip()


def segment(text: str) -> str:
    """``text`` normalised (NFKC, lowercase, whitespace collapsed) with every stretch of Chinese
    segmented into space-separated words, each word once per stretch (so that segmenting again
    changes nothing); latin letters and digits are left as they are."""
    normal = _normalise(text)
    if not has_cjk(normal):
        return normal
    return _SPACES.sub(" ", _HAN_REGION.sub(_segment_region, normal)).strip()


def segment_many(texts: pl.Series) -> pl.Series:
    """``segment`` of every text of a column (nulls stay null), vectorised for the common case:
    only texts with characters beyond ASCII are NFKC-normalised (ASCII is its own normal form),
    and only those that hold Chinese go through jieba, one by one."""
    texts = texts.cast(pl.String)
    beyond_ascii = texts.str.contains(r"[^\x00-\x7F]").fill_null(False).arg_true()
    if beyond_ascii.len():
        texts = texts.scatter(beyond_ascii, texts.gather(beyond_ascii).str.normalize("NFKC"))
    normal = (
        texts.str.to_lowercase()
        .str.replace_all(_SPACES_TO_COLLAPSE, " ")
        .str.strip_chars(" ")
        .alias(texts.name)
    )
    chinese = beyond_ascii.filter(normal.gather(beyond_ascii).str.contains(f"[{_HAN}]"))
    if not chinese.len():
        return normal
    segmented = normal.gather(chinese).map_elements(segment, return_dtype=pl.String)
    return normal.scatter(chinese, segmented)


def terms(text: str) -> list[str]:
    """The terms of ``text`` as the lexical index sees them before stemming: ``segment``, then
    split on anything that is not a letter or digit."""
    return _TERM.findall(segment(text))
