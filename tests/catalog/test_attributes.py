"""Attribute extraction: each rule on made-up titles, the hand-checked sample, the real catalogs.

How ``attribute_sample.jsonl`` was made
---------------------------------------
150 products in three strata, drawn with ``polars.DataFrame.sample(n, seed=20240613)`` (see
:func:`draw_sample`, which :func:`test_sample_is_the_documented_draw` re-runs):

* 60 UCI Online Retail products: the ``products`` table after
  ``ingest("events", shared_data / "uci-online-retail", ...)``, sorted by ``item_id``;
* 40 Best Buy Xbox 360 products: the ``products`` table after
  ``ingest("products", shared_data / "bestbuy-small-xbox", ...)``, sorted by ``item_id``; their
  lines keep ``brand`` and the ``type``, ``platform`` and ``esrbRating`` keys of ``attributes``;
* 50 Crowdflower products: ``train_shared.csv.gz`` sorted by ``id``, the first row of each
  distinct ``product_title``; ``item_id`` is ``"cf-<id>"``.

Descriptions are cut to their first 400 characters; the labels judge that text only.

Labelling. Every title and description was read by hand and the attributes a careful person
would record were written down before the extractor had run on any sampled product, and were
not revised after seeing its output. The rules had been sketched from other catalog rows
first, so the conventions below follow the module's value formats; the Best Buy labels were
read off the record's fields and checked against each title (all 40 are Xbox 360 games, so
their colour-like titles, "Red Dead Redemption", "Blackwater", carry no colour). Conventions:

* colour: lower-case names the text gives for the product, labelled colour options included
  ("Color options: Black, cadet, plum"), pattern colours too ("RED RETROSPOT"); not colours in
  a brand ("Pink Angel"), a flavour ("WHITE CHOC") or a game title;
* material: what the product is made of, from title or description ("made from a hard
  plastic", "Material: Wood"); not the topic of a book ("Metal Turning on the Lathe");
* size: size words ("JUMBO", "SMALL", "mini"), letter and numeric sizes ("XL", "13", "18M");
* dimensions: lengths only, numbers joined by "x" and one unit ("20x31 in"); weights,
  volumes, areas and connector sizes ("3.5mm" jack) are no dimensions;
* pack_quantity: the number of items sold together ("SET OF 3" -> "3", "Quantity: 1");
* product_type: the lower-case phrase naming what the item is, without colour, material,
  size, motif or brand words; "a|b" lists acceptable variants where the head is ambiguous
  ("t-light holder", "letter tray|tray");
* brand: maker or brand name as written (Best Buy: the manufacturer field); licences and
  compatible devices ("for Samsung Galaxy") are no brand;
* platform: one name per platform ("PlayStation 3"), for games and for accessories made for
  one; age_rating: ESRB code.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from aisle.catalog.attributes import (
    ATTRIBUTE_SCHEMA,
    ATTRIBUTES,
    extract_attributes,
    score_extraction,
)
from aisle.catalog.vocabulary import Vocabulary, learn_vocabulary, seed_vocabulary
from aisle.config import Settings
from aisle.pipeline import ingest
from aisle.storage import Store

SAMPLE = Path(__file__).with_name("attribute_sample.jsonl")
SEED = 20240613
STRATA = {"uci-online-retail": 60, "bestbuy-products": 40, "crowdflower-relevance": 50}
DESCRIPTION_CHARS = 400

#: A vocabulary knowing a few product types, as a catalog would teach them.
VOCABULARY = replace(
    seed_vocabulary(),
    product_types=frozenset({"t-light holder", "holder", "lantern", "glass", "cream", "bag"}),
    brands=frozenset({"Black & Decker", "Hamilton Beach", "LEGO"}),
)


# -- helpers -------------------------------------------------------------------------------
def load_sample() -> list[dict[str, Any]]:
    """The hand-checked sample, one dict per product."""
    with SAMPLE.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def sample_products(rows: list[dict[str, Any]]) -> pl.DataFrame:
    """The sample as a products frame."""
    return pl.DataFrame(
        [
            {
                "item_id": r["item_id"],
                "title": r["title"],
                "description": r["description"],
                "brand": r.get("brand"),
                "attributes": json.dumps(r["attributes"]) if r.get("attributes") else None,
                "source": r["source"],
            }
            for r in rows
        ],
        schema={c: pl.String for c in ("item_id", "title", "description", "brand")}
        | {"attributes": pl.String, "source": pl.String},
    )


def crowdflower_products(shared_data: Path) -> pl.DataFrame:
    """Distinct Crowdflower product texts (first row of each title) as products."""
    rows = pl.read_csv(shared_data / "crowdflower-relevance" / "train_shared.csv.gz")
    first = rows.sort("id").unique("product_title", keep="first", maintain_order=True)
    return first.select(
        item_id=pl.format("cf-{}", pl.col("id")),
        title=pl.col("product_title"),
        description=pl.col("product_description"),
        source=pl.lit("crowdflower-relevance"),
    )


def real_catalogs(settings: Settings, shared_data: Path) -> pl.DataFrame:
    """UCI Online Retail and Best Buy products, ingested into the test home."""
    ingest("events", shared_data / "uci-online-retail", "uci-online-retail", settings)
    ingest("products", shared_data / "bestbuy-small-xbox", "bestbuy-products", settings)
    with Store(settings.home) as store:
        return store.query("SELECT * FROM products ORDER BY item_id")


def draw_sample(catalogs: pl.DataFrame, crowdflower: pl.DataFrame) -> list[str]:
    """The item_ids of the documented draw, stratum by stratum."""
    ids: list[str] = []
    for source, n in STRATA.items():
        frame = crowdflower if source == "crowdflower-relevance" else catalogs
        stratum = frame.filter(pl.col("source") == source)
        if source != "crowdflower-relevance":
            stratum = stratum.sort("item_id")
        ids += stratum.sample(n, seed=SEED)["item_id"].to_list()
    return ids


def extracted(title: str, description: str | None = None, **fields: str) -> dict[str, set[str]]:
    """Attribute -> values for one made-up product."""
    product = pl.DataFrame(
        [{"item_id": "x", "title": title, "description": description, **fields}],
        schema={"item_id": pl.String, "title": pl.String, "description": pl.String}
        | {k: pl.String for k in fields},
    )
    found: dict[str, set[str]] = {}
    for attribute, value in (
        extract_attributes(product, VOCABULARY).select("attribute", "value").iter_rows()
    ):
        found.setdefault(attribute, set()).add(value)
    return found


# -- rules on made-up titles ---------------------------------------------------------------
def test_output_has_the_long_schema() -> None:
    out = extract_attributes(
        pl.DataFrame({"item_id": ["a"], "title": ["SET OF 3 RED CAKE TINS"]}), VOCABULARY
    )
    assert dict(out.schema) == ATTRIBUTE_SCHEMA
    assert set(out["attribute"]) <= set(ATTRIBUTES)
    assert set(out["method"]) <= {"source", "rule", "dictionary"}
    empty = extract_attributes(pl.DataFrame({"item_id": [], "title": []}), VOCABULARY)
    assert empty.height == 0 and dict(empty.schema) == ATTRIBUTE_SCHEMA


@pytest.mark.parametrize(
    ("title", "colours"),
    [
        ("WHITE HANGING HEART T-LIGHT HOLDER", {"white"}),
        ("STANDARD LAMP SHADE", set()),  # "tan" inside "standard"
        ("SHREDDED PAPER FILLER", set()),  # "red" inside "shredded"
        ("PINK/WHITE CHRISTMAS TREE 60CM", {"pink", "white"}),
        ("Women's Yoga Pants - Gray Heather, XL", {"grey"}),
        ("Light Blue Jacket", {"light blue"}),
        ("CREAM HEART CARD HOLDER", {"cream"}),  # a noun used as a colour
        ("Aveeno Eye Cream", set()),
        ("Extra Virgin Olive Oil", set()),
        ("MURANO STYLE GLASS BRACELET GOLD", {"gold"}),
        ("ACRYLIC HANGING JEWEL,BLUE", {"blue"}),
        ("Black & Decker Waffle Maker", set()),  # brand, not colour
        ("BAKING MOULD EASTER EGG WHITE CHOC", set()),
        ("Diamond Ring in Sterling Silver", set()),
    ],
)
def test_colour(title: str, colours: set[str]) -> None:
    assert extracted(title).get("colour", set()) == colours


def test_colour_from_labels_in_the_description() -> None:
    found = extracted("Wireless Mouse", "Great mouse.\nColor: Ruby\nWeight: 3 oz")
    assert found["colour"] == {"ruby"}
    options = extracted("Sweater Dress", "Color options: Black, cadet, plum\nLining: None")
    assert options["colour"] == {"black", "cadet", "plum"}
    prose = extracted("Board Game", "The bright blue sky stretches before you.")
    assert "colour" not in prose  # free text in a description is not trusted


@pytest.mark.parametrize(
    ("title", "description", "materials"),
    [
        ("WHITE METAL LANTERN", None, {"metal"}),
        ("GLASS STAR FROSTED T-LIGHT HOLDER", None, {"glass"}),
        ("CRYSTAL WINE GLASS", None, {"crystal"}),  # "glass" names the product here
        ("Cast Iron Skillet", None, {"cast iron"}),
        ("Iron Man Mask", None, set()),
        ("Steam Iron", None, set()),
        ("HANGING WOOD AND FELT BUTTERFLY", None, {"wood", "felt"}),
        ("WOODEN PICTURE FRAME", None, {"wood"}),
        ("Phone Case", "It is made from a hard plastic with a glossy finish.", {"plastic"}),
        ("T-Shirt", "Material: 60 % Cotton, 40 % Polyester", {"cotton", "polyester"}),
        ("Shotgun Shell Holder", None, set()),
    ],
)
def test_material(title: str, description: str | None, materials: set[str]) -> None:
    assert extracted(title, description).get("material", set()) == materials


@pytest.mark.parametrize(
    ("title", "sizes"),
    [
        ("JUMBO BAG RED RETROSPOT", {"jumbo"}),
        ("SMALL GLASS HEART TRINKET POT", {"small"}),
        ("IVORY WICKER HEART LARGE", {"large"}),
        ("ASSORTED MINI MADRAS NOTEBOOK", {"mini"}),
        ("Mini USB Cable", set()),
        ("Medium Roast Coffee", set()),
        ("Women's Yoga Pants - Gray Heather, XL", {"XL"}),
        ("MEN'S VINTAGE JERSEY SIZE XL", {"XL"}),
        ("Baseball Cleats Size 13", {"13"}),
        ("Queen-size Memory Foam Pillow", {"queen"}),
        ("Pink Angel Baby Girl 18M Black Sweater Dress", {"18M"}),
        ("Polo Shirt - X-Large", {"XL"}),
    ],
)
def test_size(title: str, sizes: set[str]) -> None:
    assert extracted(title).get("size", set()) == sizes


@pytest.mark.parametrize(
    ("title", "description", "dimensions"),
    [
        ("Accent Pillow - Red", 'Red satin accent pillow. 8" x 8".', {"8x8 in"}),
        ("CANVAS PRINT 20x30cm", None, {"20x30 cm"}),
        ("VASE H 12cm", None, {"12 cm"}),
        ("BLACK CHRISTMAS TREE 60CM", None, {"60 cm"}),
        ("POLYESTER FILLER PAD 65CMx65CM", None, {"65x65 cm"}),
        ("Kitchen Rug; 19'' x 31''", None, {"19x31 in"}),
        ("Bookcase", 'Dimensions: 21.0 " H x 4.0 " W x 6.0 " D', {"21.0x4.0x6.0 in"}),
        ("3M Command Hooks", None, set()),  # a brand, not three metres
        ("2 in 1 Shampoo", None, set()),
        ("Headphone Jack Splitter 3.5mm", None, set()),
        ("Galaxy Tab 3 7.0", None, set()),  # no unit, no dimension
        ("Board Game", "Walk 10 feet to the door.", set()),  # one measure in prose
    ],
)
def test_dimensions(title: str, description: str | None, dimensions: set[str]) -> None:
    assert extracted(title, description).get("dimensions", set()) == dimensions


def test_dimensions_carry_their_unit() -> None:
    product = pl.DataFrame({"item_id": ["a"], "title": ["CANVAS PRINT 20x30cm"]})
    row = extract_attributes(product, VOCABULARY).filter(pl.col("attribute") == "dimensions")
    assert row.select("value", "unit", "evidence", "method").row(0) == (
        "20x30 cm",
        "cm",
        "20x30cm",
        "rule",
    )


@pytest.mark.parametrize(
    ("title", "description", "count"),
    [
        ("SET OF 3 CAKE TINS PANTRY DESIGN", None, "3"),
        ("PACK OF 72 RETROSPOT CAKE CASES", None, "72"),
        ("SET/6 RED SPOTTY PAPER PLATES", None, "6"),
        ("ROUND SNACK BOXES SET OF4 WOODLAND", None, "4"),
        ("BOX OF 6 ASSORTED COLOUR TEASPOONS", None, "6"),
        ("Hair Clips, 12 PCS", None, "12"),
        ("Set of 10 Battery Operated Christmas Lights", None, "10"),
        ("Snap Clips, 4 count", None, "4"),
        ("Screen Protector Twin Pack", None, "2"),
        ("36 PENCILS TUBE WOODLAND", None, "36"),
        ("Screen Protector", "Clear protector\n    Quantity: 1\n", "1"),
        ("1000 Piece Jigsaw Puzzle", None, None),
        ("1/7 CT.T.W. Diamond Ring", None, None),
        ("3 DRAWER ANTIQUE WHITE WOOD CABINET", None, None),
        ("Baby Romper 1pc Outfit", None, None),
        ("JUMBO BAG 500g SWIRLY MARBLES", None, None),
    ],
)
def test_pack_quantity(title: str, description: str | None, count: str | None) -> None:
    found = extracted(title, description).get("pack_quantity", set())
    assert found == ({count} if count else set())


def test_product_type_is_the_longest_phrase_ending_furthest_right() -> None:
    assert extracted("WHITE HANGING HEART T-LIGHT HOLDER")["product_type"] == {"t-light holder"}
    assert extracted("WHITE METAL LANTERN")["product_type"] == {"lantern"}
    assert extracted("JUMBO BAG RED RETROSPOT")["product_type"] == {"bag"}
    assert extracted("Cocoa Butter Cream")["product_type"] == {"cream"}
    assert "colour" not in extracted("Cocoa Butter Cream")  # the product, not its colour
    assert extracted("Metal Turning on the Lathe (Hardcover)") == {"product_type": {"book"}}


def test_structured_fields_win_and_games_get_no_physical_attributes() -> None:
    game = extracted(
        "Red Dead Redemption - Xbox 360",
        "Synopsis: the bright red sun sets on a 10 feet wall.",
        brand="Rockstar Games",
        attributes=json.dumps({"type": "Game", "platform": "X360", "esrbRating": "M=Mature"}),
    )
    assert game == {
        "brand": {"Rockstar Games"},
        "platform": {"Xbox 360"},
        "age_rating": {"M"},
        "product_type": {"game"},
    }
    product = pl.DataFrame(
        {
            "item_id": ["g"],
            "title": ["LEGO Rock Band - Xbox 360"],
            "brand": ["WB Games"],
            "attributes": [json.dumps({"type": "Game", "esrbRating": "E10+=Everyone 10+"})],
        }
    )
    rows = extract_attributes(product, VOCABULARY)
    assert rows.filter(pl.col("attribute") == "brand")["value"].to_list() == ["WB Games"]
    methods = dict(rows.select("attribute", "method").iter_rows())
    assert methods["age_rating"] == "source" and methods["platform"] == "dictionary"


def test_platforms_and_age_ratings_from_text() -> None:
    assert extracted("PS3 Dualshock 3 Wireless Controller")["platform"] == {"PlayStation 3"}
    assert extracted("Controller for Nintendo Wii U")["platform"] == {"Wii U"}
    assert "platform" not in extracted("Hybrid PC / TPU Phone Case")
    assert extracted("Skylanders", "ESRB Rating: E10+ for fantasy violence")["age_rating"] == {
        "E10+"
    }
    assert extracted("Halo 3 (Xbox 360)", "Rated M for Mature")["age_rating"] == {"M"}


def test_brands_lead_the_title_or_are_labelled() -> None:
    assert extracted("Hamilton Beach Toaster")["brand"] == {"Hamilton Beach"}
    assert extracted("NEW LEGO Star Wars Watch")["brand"] == {"LEGO"}
    assert "brand" not in extracted("Toaster by Hamilton Beach")  # only where brands lead
    assert extracted("Pocket Knife", "Features:\nBrand: Victorinox\nBlade: 3 in")["brand"] == {
        "Victorinox"
    }


# -- vocabulary ----------------------------------------------------------------------------
def test_vocabulary_round_trips_through_json() -> None:
    vocabulary = learn_vocabulary(
        pl.DataFrame(
            {
                "item_id": ["1", "2", "3", "4"],
                "title": [
                    "WHITE HANGING HEART T-LIGHT HOLDER",
                    "RED HANGING HEART T-LIGHT HOLDER",
                    "PINK STAR T-LIGHT HOLDER",
                    "Sniper: Ghost Warrior - Xbox 360",
                ],
                "brand": [None, None, None, "City Interactive"],
                "attributes": [None, None, None, json.dumps({"platform": "X360"})],
            }
        )
    )
    assert "t-light holder" in vocabulary.product_types
    assert "City Interactive" in vocabulary.brands
    assert "Xbox 360" in vocabulary.platforms
    assert Vocabulary.from_json(vocabulary.to_json()) == vocabulary


def test_learned_brands_pass_the_proper_noun_test() -> None:
    titles = [
        "Hamilton Beach 2-Slice Toaster",
        "Hamilton Beach Blender",
        "Hamilton Beach Kettle",
        "Women's Running Shoes",
        "Women's Walking Shoes",
        "New Red Kettle",
        "New Blue Kettle",
    ]
    descriptions = [
        "A toaster by Hamilton Beach for busy mornings.",
        "Every Hamilton Beach blender is tested.",
        None,
        "Light shoes for women's feet.",
        "Made for women's comfort.",
        "A new kettle.",
        "A new kettle in blue.",
    ]
    products = pl.DataFrame(
        {"item_id": [str(i) for i in range(7)], "title": titles, "description": descriptions}
    )
    brands = learn_vocabulary(products).brands
    assert "Hamilton Beach" in brands
    assert not {"Women's", "New"} & brands


def test_learned_product_types_skip_collection_names() -> None:
    titles = [f"{c} HANGING HEART T-LIGHT HOLDER" for c in ("WHITE", "RED", "PINK")]
    titles += [f"{c} SWEETHEART BRACELET" for c in ("WHITE", "RED", "PINK")]
    titles += [f"SWEETHEART {kind}" for kind in ("CAKE CASES", "BIRD HOUSE", "TRINKET BOX", "MUG")]
    products = pl.DataFrame({"item_id": [str(i) for i in range(len(titles))], "title": titles})
    types = learn_vocabulary(products).product_types
    assert {"t-light holder", "holder", "bracelet"} <= types
    assert "sweetheart bracelet" not in types  # "sweetheart" leads many kinds of product


# -- scoring -------------------------------------------------------------------------------
def test_score_extraction_counts_alternatives_once() -> None:
    found = pl.DataFrame(
        {
            "item_id": ["a", "a", "a", "b", "z"],
            "attribute": ["colour", "colour", "product_type", "colour", "colour"],
            "value": ["Red", "blue", "tray", "green", "red"],
        }
    )
    expected = {
        "a": {"colour": ["red"], "product_type": ["letter tray|tray"]},
        "b": {"colour": ["green", "white"]},
    }
    scores = score_extraction(found, expected)
    assert scores["precision/colour"] == pytest.approx(2 / 3)  # "z" is not in the sample
    assert scores["recall/colour"] == pytest.approx(2 / 3)
    assert scores["precision/product_type"] == 1.0
    assert scores["precision"] == pytest.approx(3 / 4)
    assert scores["recall"] == pytest.approx(3 / 4)
    assert scores["extracted"] == 4 and scores["expected"] == 4


# -- the hand-checked sample ---------------------------------------------------------------
def test_sample_fixture_is_well_formed() -> None:
    rows = load_sample()
    assert len(rows) == sum(STRATA.values())
    assert {s: sum(r["source"] == s for r in rows) for s in STRATA} == STRATA
    assert len({r["item_id"] for r in rows}) == len(rows)
    for row in rows:
        assert set(row["expected"]) <= set(ATTRIBUTES), row["item_id"]
        assert all(isinstance(v, list) and v for v in row["expected"].values())
        assert row["description"] is None or len(row["description"]) <= DESCRIPTION_CHARS


def test_sample_precision_with_a_vocabulary_learned_from_the_sample() -> None:
    """Offline: the sample alone teaches few product types, so recall is lower."""
    rows = load_sample()
    products = sample_products(rows)
    scores = score_extraction(
        extract_attributes(products, learn_vocabulary(products)),
        {r["item_id"]: r["expected"] for r in rows},
    )
    assert scores["precision"] >= 0.95  # measured 0.99
    assert scores["recall"] >= 0.6  # measured 0.65


def test_sample_is_the_documented_draw(settings: Settings, shared_data: Path) -> None:
    catalogs = real_catalogs(settings, shared_data)
    ids = draw_sample(catalogs, crowdflower_products(shared_data))
    assert ids == [r["item_id"] for r in load_sample()]


def test_sample_precision_with_the_catalog_vocabulary(
    settings: Settings, shared_data: Path
) -> None:
    """The vocabulary learned from UCI, Best Buy and the Crowdflower texts, as in production.

    Measured: precision 0.95 (brand 0.94, colour 0.96, product_type 0.90, every other attribute
    1.0) and recall 0.81 (material 0.65, product_type 0.75, colour 0.79, brand 0.83).
    """
    catalogs = real_catalogs(settings, shared_data)
    everything = pl.concat(
        [
            catalogs.select("item_id", "title", "description", "brand", "attributes", "source"),
            crowdflower_products(shared_data),
        ],
        how="diagonal",
    )
    rows = load_sample()
    scores = score_extraction(
        extract_attributes(sample_products(rows), learn_vocabulary(everything)),
        {r["item_id"]: r["expected"] for r in rows},
    )
    assert scores["precision"] >= 0.9
    assert scores["recall"] >= 0.7
    for attribute in ATTRIBUTES:
        assert scores.get(f"precision/{attribute}", 1.0) >= 0.85, attribute


# -- the real catalogs ---------------------------------------------------------------------
def test_whole_uci_and_bestbuy_catalogs(settings: Settings, shared_data: Path) -> None:
    """Measured on 3,807 UCI and 437 Best Buy products: learning 0.1 s, extraction 0.2 s
    (about 25,000 products/s); 90% of UCI products get an attribute (62% one other than a
    product type), every Best Buy product gets brand, platform and type."""
    catalogs = real_catalogs(settings, shared_data)
    started = time.perf_counter()
    vocabulary = learn_vocabulary(catalogs)
    found = extract_attributes(catalogs, vocabulary)
    elapsed = time.perf_counter() - started
    assert elapsed < 10, f"{catalogs.height / elapsed:.0f} products/s"

    def coverage(source: str, *, exclude: str | None = None) -> float:
        ids = catalogs.filter(pl.col("source") == source)["item_id"]
        rows = found.filter(pl.col("item_id").is_in(ids.implode()))
        if exclude:
            rows = rows.filter(pl.col("attribute") != exclude)
        return rows["item_id"].n_unique() / ids.len()

    assert coverage("uci-online-retail") >= 0.85
    assert coverage("uci-online-retail", exclude="product_type") >= 0.55
    assert coverage("bestbuy-products") == 1.0
    games = found.filter(
        pl.col("item_id").is_in(
            catalogs.filter(pl.col("source") == "bestbuy-products")["item_id"].implode()
        )
    )
    assert set(games["attribute"]) == {"brand", "platform", "age_rating", "product_type"}
    uci = found.filter(
        pl.col("item_id").is_in(
            catalogs.filter(pl.col("source") == "uci-online-retail")["item_id"].implode()
        )
    )
    assert "brand" not in set(uci["attribute"])  # no all-caps word passes for a brand
    holder = found.filter((pl.col("item_id") == "85123A") & (pl.col("attribute") == "product_type"))
    assert holder["value"].to_list() == ["t-light holder"]
