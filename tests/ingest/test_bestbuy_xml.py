"""The Best Buy catalog as XML (``bestbuy-xml``): the XML reader, the adapter, the pipeline."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from aisle.config import Settings, load_settings
from aisle.domain import PRODUCT_SCHEMA
from aisle.errors import InputError
from aisle.ingest.adapters import AdaptContext, Adapter, get_adapter
from aisle.ingest.adapters.bestbuy import BestBuyXml
from aisle.ingest.readers import ReadOptions, read_source
from aisle.pipeline import ingest
from aisle.storage import Store
from tests.conftest import TEST_SECRET

CATEGORY_PATH = """\
    <categoryPath>
      <category><id>cat00000</id><name>Best Buy</name></category>
      <category><id>abcat0700000</id><name>Video Games</name></category>
      <category><id>abcat0701002</id><name>Xbox 360 Games</name></category>
    </categoryPath>"""


def product(sku: str, name: str, *, sale: str = "", regular: str = "", extra: str = "") -> str:
    """One <product> as the Products API exports it (a subset of its fields)."""
    return f"""\
  <product>
    <sku>{sku}</sku>
    <name>{name}</name>
    <type>Game</type>
    <activeUpdateDate>2012-07-03T04:13:57</activeUpdateDate>
    <regularPrice>{regular}</regularPrice>
    <salePrice>{sale}</salePrice>
    <planPrice />
    <priceUpdateDate>2011-08-23T00:14:27</priceUpdateDate>
    <itemUpdateDate>2012-07-28T10:15:45</itemUpdateDate>
    <manufacturer>City Interactive</manufacturer>
{CATEGORY_PATH}
    <shortDescription>Control the power of death</shortDescription>
    <longDescription>Walk through the jungles &amp; be a Ghost Warrior.</longDescription>
{extra}
  </product>
"""


SNIPER_EXTRA = """\
    <details>
      <detail><name>Genre</name><value>Shooter</value></detail>
      <detail><name>Number of Players</name><value>1</value></detail>
    </details>
    <features>
      <feature>Bullet Cam mode</feature>
      <feature>Real-time assault</feature>
    </features>
    <customerReviewCount>7</customerReviewCount>
    <customerReviewAverage>3.4</customerReviewAverage>"""
HALO_EXTRA = """\
    <features>
      <feature>Split screen</feature>
    </features>"""


def catalog(*products: str) -> bytes:
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<products>\n' + "".join(products)).encode(
        "utf-8"
    ) + b"</products>\n"


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def start_lines(data: bytes, tag: bytes = b"<product>") -> list[int]:
    """1-based lines on which ``tag`` opens."""
    return [n for n, line in enumerate(data.split(b"\n"), start=1) if tag in line]


def stored(settings: Settings, sql: str) -> pl.DataFrame:
    with Store(settings.home) as store:
        return store.query(sql)


TWO = catalog(
    product("1004622", "Sniper: Ghost Warrior - Xbox 360", sale="14.99", regular="19.99",
            extra=SNIPER_EXTRA),
    product("2000001", "Halo - Xbox 360", extra=HALO_EXTRA),  # no price at all
)  # fmt: skip


# --- through the pipeline -------------------------------------------------------------------


def test_two_products_ingest_and_reconcile(tmp_path: Path, settings: Settings) -> None:
    path = write(tmp_path / "catalog.xml.gz", TWO)
    result = ingest("products", path, "bestbuy-xml", settings)
    assert (result.input, result.accepted, result.quarantined, result.duplicates) == (2, 2, 0, 0)
    assert result.adapter == "bestbuy-xml"
    rows = {
        r["item_id"]: r
        for r in stored(settings, "SELECT * FROM products ORDER BY item_id").to_dicts()
    }
    sniper, halo = rows["1004622"], rows["2000001"]
    assert sniper["title"] == "Sniper: Ghost Warrior - Xbox 360"
    assert sniper["description"] == "Walk through the jungles & be a Ghost Warrior."
    assert sniper["category_path"] == ["Video Games", "Xbox 360 Games", "Shooter"]
    assert halo["category_path"] == ["Video Games", "Xbox 360 Games"]  # no Genre detail
    assert sniper["brand"] == "City Interactive"
    assert sniper["price"] == 14.99  # the sale price wins
    assert halo["price"] is None  # a missing price is not an error
    assert sniper["currency"] == "USD"
    attributes = json.loads(sniper["attributes"])
    assert attributes["features"] == ["Bullet Cam mode", "Real-time assault"]
    assert attributes["customerReviewCount"] == 7
    assert attributes["customerReviewAverage"] == 3.4
    assert json.loads(halo["attributes"])["features"] == ["Split screen"]  # one is still a list
    assert sniper["source"] == "bestbuy-xml"
    # the freshest of priceUpdateDate, activeUpdateDate and itemUpdateDate, in UTC
    assert sniper["updated_at"] == datetime(2012, 7, 28, 10, 15, 45, tzinfo=UTC)


def test_bad_records_are_held_at_the_line_of_their_product(
    tmp_path: Path, settings: Settings
) -> None:
    data = catalog(
        product("1004622", "Sniper", sale="19.99", extra=SNIPER_EXTRA),
        product("1004622", "Sniper", sale="19.99", extra=SNIPER_EXTRA),  # the export's copy
        product("3000003", "Broken price", sale="n/a"),
        "  <product/>\n",  # no fields at all: malformed
        product("", "No sku"),
    )
    path = write(tmp_path / "catalog.xml", data)
    result = ingest("products", path, "bestbuy-xml", settings)
    assert (result.input, result.accepted, result.quarantined, result.duplicates) == (5, 1, 3, 1)
    assert result.input == result.accepted + result.quarantined + result.duplicates
    lines = start_lines(data)
    empty = start_lines(data, b"<product/>")[0]
    held = stored(settings, "SELECT line, reasons, item_id FROM quarantine ORDER BY line")
    assert held["line"].to_list() == sorted([lines[2], empty, lines[3]])
    reasons = dict(zip(held["line"], held["reasons"].to_list(), strict=True))
    assert reasons[lines[2]] == ["bad_type"]
    assert reasons[empty] == ["malformed_row"]
    assert reasons[lines[3]] == ["missing_field"]
    dup = stored(settings, "SELECT line FROM duplicates")
    assert dup["line"].to_list() == [lines[1]]


def test_malformed_xml_is_a_clean_input_error(tmp_path: Path, settings: Settings) -> None:
    good = catalog(product("1", "One", sale="1.00"), product("2", "Two", sale="2.00"))
    broken = good.replace(b"<name>Two</name>", b"<name>Two</nam>")
    path = write(tmp_path / "broken.xml.gz", broken)
    with pytest.raises(InputError) as caught:
        ingest("products", path, "bestbuy-xml", settings)
    error = caught.value
    assert error.source == str(path)
    assert error.line == start_lines(broken, b"</nam>")[0]
    assert "mismatched tag" in str(error)
    assert str(path) in str(error) and f"line {error.line}" in str(error)


def test_a_truncated_document_names_where_it_stops(tmp_path: Path) -> None:
    data = TWO[: TWO.index(b"<name>Halo")]
    with pytest.raises(InputError, match="invalid XML") as caught:
        read_source(write(tmp_path / "cut.xml", data), BestBuyXml().read_options("products"))
    assert caught.value.line == data.count(b"\n") + 1


def test_entity_declarations_are_refused(tmp_path: Path) -> None:
    bomb = (
        b'<?xml version="1.0"?>\n<!DOCTYPE products [\n <!ENTITY lol "lol">\n'
        b' <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">\n]>\n'
        b"<products><product><sku>1</sku><name>&lol2;</name></product></products>\n"
    )
    with pytest.raises(InputError, match="entity") as caught:
        read_source(write(tmp_path / "bomb.xml", bomb))
    assert caught.value.line == 3
    external = b'<!DOCTYPE p [<!ENTITY x SYSTEM "file:///etc/passwd">]>\n<p><r><a>&x;</a></r></p>'
    with pytest.raises(InputError, match="entity"):
        read_source(write(tmp_path / "external.xml", external))
    deep = b"<r><p>" + b"<a>" * 200 + b"</a>" * 200 + b"</p></r>"
    with pytest.raises(InputError, match="nest deeper"):
        read_source(write(tmp_path / "deep.xml", deep))


# --- the reader -------------------------------------------------------------------------------


def test_xml_reader_shapes_records_and_keeps_start_lines(tmp_path: Path) -> None:
    data = b"""<?xml version="1.0"?>
<feed>
  <item id="a1">
    <title>One</title>
    <price currency="EUR">9.50</price>
    <tags><tag>x</tag><tag>y</tag></tags>
    <empty/>
  </item>
  <item id="a2"><title>Two</title><tags><tag>z</tag></tags></item>
</feed>
"""
    plain = read_source(write(tmp_path / "feed.xml", data))
    zipped = read_source(write(tmp_path / "feed.dat.gz", data))  # sniffed from the content
    assert plain.format == zipped.format == "xml"
    assert plain.frame.equals(zipped.frame)
    frame = plain.frame
    assert frame["_line"].to_list() == [3, 9]
    assert frame["@id"].to_list() == ["a1", "a2"]
    assert frame["title"].to_list() == ["One", "Two"]
    # <tag> repeats in one item, so it is a list in both, and <tags> is that list
    assert frame["tags"].to_list() == [["x", "y"], ["z"]]
    assert frame["price"].to_list()[0] == {"@currency": "EUR", "#text": "9.50"}
    assert frame["empty"].to_list() == [None, None]
    assert plain.malformed.is_empty()


def test_xml_list_elements_and_record_element_options(tmp_path: Path) -> None:
    data = b"""<export><meta><count>2</count></meta>
<rows>
<row><v>1</v><kw>a</kw></row>
<row><v>2</v><kw>b</kw></row>
</rows></export>"""
    path = write(tmp_path / "rows.xml", data)
    options = ReadOptions(record_element="row", list_elements=("kw",))
    frame = read_source(path, options).frame
    assert frame["_line"].to_list() == [3, 4]
    assert frame["kw"].to_list() == [["a"], ["b"]]
    assert read_source(path, ReadOptions(record_element="row")).frame["kw"].to_list() == ["a", "b"]
    with pytest.raises(InputError, match="no <product> elements"):
        read_source(path, ReadOptions(record_element="product"))


def test_xml_reader_sets_aside_stray_elements_and_reads_declared_encodings(
    tmp_path: Path,
) -> None:
    data = (
        '<?xml version="1.0" encoding="ISO-8859-1"?>\n<products>\n'
        "<product><sku>1</sku><name>Caf\xe9</name></product>\n"
        "<note>not a product</note>\n"
        "<product><sku>2</sku><name>Na\xefve</name></product>\n</products>\n"
    ).encode("latin-1")
    batch = read_source(write(tmp_path / "latin.xml", data))
    assert batch.frame["name"].to_list() == ["Café", "Naïve"]
    assert batch.frame["_line"].to_list() == [3, 5]
    assert batch.frame["_bad_encoding"].to_list() == [False, False]
    assert batch.malformed["_line"].to_list() == [4]
    assert "expected a <product> element, found <note>" in batch.malformed["error"][0]
    assert batch.malformed["text"][0] == "<note>not a product</note>"


def test_an_empty_feed_reads_as_no_records(tmp_path: Path) -> None:
    batch = read_source(
        write(tmp_path / "none.xml", b"<products>\n</products>\n"),
        BestBuyXml().read_options("products"),
    )
    assert batch.frame.height == 0 and batch.malformed.height == 0


# --- the adapter ------------------------------------------------------------------------------


def test_the_adapter_is_registered_and_follows_the_protocol(tmp_path: Path) -> None:
    adapter = get_adapter("bestbuy-xml", Settings())
    assert isinstance(adapter, Adapter) and isinstance(adapter, BestBuyXml)
    assert adapter.locate(tmp_path, "products") == tmp_path / "small_product_data.xml.gz"
    raw = read_source(write(tmp_path / "c.xml", TWO), adapter.read_options("products")).frame
    out = adapter.products(raw, AdaptContext(Settings(), "test"))
    assert set(out.columns) - {"_line"} <= set(PRODUCT_SCHEMA)
    assert out["_line"].to_list() == raw["_line"].to_list()


# --- the real catalog -------------------------------------------------------------------------


def test_the_real_xml_matches_the_jsonl_export(
    shared_data: Path, settings: Settings, tmp_path: Path
) -> None:
    folder = shared_data / "bestbuy-small-xbox"
    xml = ingest("products", folder, "bestbuy-xml", settings)
    # 874 <product> entries: every one of the 437 SKUs twice, the copies identical
    assert (xml.input, xml.accepted, xml.quarantined, xml.duplicates) == (874, 437, 0, 437)
    jsonl_settings = load_settings(home=tmp_path / "jsonl", secret_key=TEST_SECRET)
    jsonl = ingest("products", folder, "bestbuy-products", jsonl_settings)
    assert jsonl.accepted == 437
    query = "SELECT * EXCLUDE (import_id) FROM products ORDER BY item_id"
    from_xml, from_jsonl = stored(settings, query), stored(jsonl_settings, query)
    assert from_xml["item_id"].to_list() == from_jsonl["item_id"].to_list()
    assert from_xml["title"].to_list() == from_jsonl["title"].to_list()
    # the same field rules give the same product; the record ids differ only by the source
    content = ["description", "category_path", "brand", "price", "currency", "attributes"]
    assert from_xml.select(content).equals(from_jsonl.select(content))
    assert not set(from_xml["record_id"]) & set(from_jsonl["record_id"])
    assert set(from_xml["source"]) == {"bestbuy-xml"}
    assert from_xml["updated_at"].null_count() == 0 and from_jsonl["updated_at"].null_count() == 437
    assert from_xml["updated_at"].min() >= datetime(2012, 7, 1, tzinfo=UTC)
