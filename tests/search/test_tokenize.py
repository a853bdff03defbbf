"""The search tokenizer: one contract for English and Chinese, then what each language needs."""

from __future__ import annotations

import tempfile
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import polars as pl
import pytest

from aisle.search import tokenize
from aisle.search.tokenize import has_cjk, segment, segment_many, terms

REPO = Path(__file__).resolve().parents[2]

#: Product titles and queries as shoppers and merchants write them.
CASES = {
    "english": [
        "Call of Duty: Black Ops (2) - Xbox 360",
        '"call of duty: black ops (2)" AND OR -',
        "  Gears of  War 3\tLimited\nEdition ",
        "Ｆｕｌｌ－ｗｉｄｔｈ ＬＥＤ Desk Lamp 40cm",
        "Brütal Legend – Xbox 360",
        "Kinect Adventures!",
        "Oak\x1cLamp\u2028 40cm\xa0\u3000Ｗhite\t\u1680 \x85Shade ",
        "",
    ],
    "chinese": [
        "苹果手机壳 透明",
        "华为 Mate 60 Pro 手机",
        "苹果iPhone15手机壳",
        "小米电视机 4K 超高清",
        "笔记本电脑包 15.6英寸",
        "儿童保温杯 500ml 不锈钢",
        "男士运动鞋 耐克 Air Max，黑色",
        "无线蓝牙耳机 降噪 入耳式",
        "中华人民共和国国歌",
        "三星Galaxy S24 Ultra 512GB 钛灰色",
    ],
}
CONTRACT = [(language, text) for language, texts in CASES.items() for text in texts]


@pytest.mark.parametrize(("language", "text"), CONTRACT)
def test_segmenting_twice_changes_nothing(language: str, text: str) -> None:
    once = segment(text)
    assert segment(once) == once


@pytest.mark.parametrize(("language", "text"), CONTRACT)
def test_segmented_text_is_lowercase_nfkc_with_single_spaces(language: str, text: str) -> None:
    once = segment(text)
    assert once == once.lower()
    assert once == unicodedata.normalize("NFKC", once)
    assert once == once.strip()
    assert "  " not in once and "\t" not in once and "\n" not in once


@pytest.mark.parametrize(("language", "text"), CONTRACT)
def test_terms_of_segmented_text_are_the_terms_of_the_text(language: str, text: str) -> None:
    assert terms(segment(text)) == terms(text)
    assert all(term and term.isalnum() for term in terms(text))


@pytest.mark.parametrize("language", CASES)
def test_segment_many_agrees_with_segment(language: str) -> None:
    texts = [*CASES[language], None]
    column = pl.Series("text", texts, dtype=pl.String)
    segmented = segment_many(column)
    assert segmented.to_list() == [None if t is None else segment(t) for t in texts]
    assert segmented.name == "text"
    assert column.to_list() == texts  # the input is left as it was


def test_has_cjk() -> None:
    assert has_cjk("华为 Mate 60")
    assert has_cjk("𠀀")  # extension B
    assert not has_cjk("Call of Duty: Black Ops")
    assert not has_cjk("")


def test_latin_text_is_only_normalised() -> None:
    assert segment("  Call of Duty:  Black Ops (2) ") == "call of duty: black ops (2)"
    assert segment("ＬＥＤ Ｌａｍｐ　40cm") == "led lamp 40cm"
    assert terms("Call of Duty: Black Ops (2)") == ["call", "of", "duty", "black", "ops", "2"]
    assert terms("LaborDay_VideoGames_20110902") == ["laborday", "videogames", "20110902"]


def test_english_never_loads_the_chinese_dictionary(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse() -> None:
        raise AssertionError("jieba loaded for English text")

    monkeypatch.setattr(tokenize, "_segmenter", refuse)
    assert segment("Gears of War 3") == "gears of war 3"
    assert segment_many(pl.Series(["Halo: Reach", None])).to_list() == ["halo: reach", None]


def test_phone_case_is_split_into_words() -> None:
    assert {"手机壳", "手机"} & set(terms("苹果手机壳 透明"))
    assert {"苹果", "透明"} <= set(terms("苹果手机壳 透明"))


def test_latin_words_inside_chinese_are_kept() -> None:
    found = terms("华为 Mate 60 Pro 手机")
    assert {"mate", "60", "pro", "华为", "手机"} <= set(found)
    # no space between Chinese and latin in the source: still separate terms
    assert {"苹果", "iphone15", "手机"} <= set(terms("苹果iPhone15手机壳"))


def test_search_mode_adds_the_shorter_words_inside_long_ones() -> None:
    # Why lcut_for_search: a shopper typing 电视 must find the product called 电视机.
    assert {"电视", "电视机"} <= set(terms("小米电视机"))
    assert {"笔记本", "笔记本电脑", "电脑"} <= set(terms("笔记本电脑包"))


def test_each_chinese_word_appears_once_per_run() -> None:
    segmented = segment("手机 手机壳 手机")
    assert segmented.split().count("手机") == 1


def test_segmenting_from_many_threads_gives_one_answer() -> None:
    texts = [text for _, text in CONTRACT] * 8
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(segment, texts))
    assert results == [segment(t) for t in texts]


def test_jieba_cache_stays_out_of_the_repository() -> None:
    segment("苹果手机壳")  # loads the dictionary
    segmenter = tokenize._segmenter()
    assert segmenter.tmp_dir == tempfile.gettempdir()
    assert not list(REPO.glob("jieba*.cache"))
