"""Typed attributes from product titles, descriptions and structured fields.

:func:`extract_attributes` turns products into long rows ``item_id, attribute, value, unit,
evidence, method``. Values are normalised text: colours and materials in lower case with the
shop's spelling ("grey", "aluminium", "wood" for "wooden"); sizes as letters ("XL", "18M") or
lower-case words ("jumbo", "queen"); dimensions as ``"20x30 cm"`` with the unit also in
``unit`` (only lengths: weights and volumes are left alone); pack quantities as a count ("72");
product types as the lower-case phrase that names the item ("t-light holder"); platforms by one
name ("Xbox 360"); age ratings as ESRB codes ("M"); brands as written.

``method`` says where a value came from: ``source`` (copied from a structured field: brand,
``type``, ``platform``, ``esrbRating``), ``rule`` (a pattern: "PACK OF 72", '8" x 8"',
"Color: Ruby", "made from hard plastic") or ``dictionary`` (a word of the
:class:`~aisle.catalog.vocabulary.Vocabulary`). Precision comes first:

* words that are also nouns ("cream", "glass", "mini") count only where they modify the next
  word, or end a title that does not name them as its product type;
* phrases that merely contain such words are set aside first ("eye cream", "Iron Man",
  "sterling silver" for colour, "mini USB" for size);
* a title that names a work (a game, a book: a structured type, an ESRB rating, or a
  " - Xbox 360" / "(Paperback)" suffix) gives no colour, material, size, dimensions or pack;
* descriptions count only through labels ("Color:", "Material:", "Size:", "Brand:"), stated
  materials ("made of", "100% cotton") and dimensions with two or more measures;
* for brand, platform, age rating and product type a structured value beats a pattern, which
  beats a dictionary word.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import polars as pl

from aisle.catalog import extraction as x
from aisle.catalog.extraction import ATTRIBUTE_SCHEMA
from aisle.catalog.measures import dimensions, pack_quantities
from aisle.catalog.vocabulary import (
    AMBIGUOUS_COLOURS,
    AMBIGUOUS_MATERIALS,
    COLOURS,
    MATERIALS,
    PLATFORMS,
    SHADES,
    SIZE_WORDS,
    Vocabulary,
    alternation,
    column,
    names_a_work,
    word_positions,
)

__all__ = ["ATTRIBUTES", "ATTRIBUTE_SCHEMA", "extract_attributes", "score_extraction"]

ATTRIBUTES: Final = (
    "colour",
    "material",
    "size",
    "dimensions",
    "pack_quantity",
    "product_type",
    "brand",
    "platform",
    "age_rating",
)
#: Attributes a product has one of: only the most trusted method's values are kept.
SINGLE_VALUED: Final = frozenset({"product_type", "brand", "platform", "age_rating"})
METHOD_RANK: Final = {"source": 0, "rule": 1, "dictionary": 2}
ESRB_NAMES: Final = {
    "early childhood": "EC",
    "everyone 10+": "E10+",
    "everyone": "E",
    "teen": "T",
    "mature": "M",
    "adults only": "AO",
    "rating pending": "RP",
}
#: Format suffixes of titles that name a work, and the product type they mean.
FORMATS: Final = {
    "paperback": "book",
    "hardcover": "book",
    "hardback": "book",
    "dvd": "movie",
    "blu-ray": "movie",
    "audio cd": "music",
    "vinyl": "music",
}

# fmt: off
# -- what a word merely appears in ---------------------------------------------------------
_NOT_COLOUR = (
    r"(?i)\b(?:(?:eye|face|hand|body|ice|sour|whipped|shaving|night|day|cocoa|butter|blood|"
    r"agent|live|sun|lip|foot|skin|hair|cleansing)[\s-]+(?:cream|orange|gold|silver|mint)s?|"
    r"sterling[\s-]+silver|(?:white|milk|dark)[\s-]+choc(?:olate)?|"
    r"(?:olive|lemon|lime|orange|mint|peach|cherry|plum)[\s-]+(?:oil|juice|extract|zest|tree|"
    r"blossom|flavou?r(?:ed)?|scent(?:ed)?|tea|sauce|seeds?|cake|pie|slices?|peel|leaf|leaves|"
    r"squeezer|press))\b"
)
_NOT_MATERIAL = (
    r"(?i)\b(?:(?:iron|tin)[\s-]+(?:man|maiden|board|horse|foil)|(?:steam|curling|flat|travel|"
    r"shotgun|hard|soft)[\s-]+(?:iron|shell)|shell[\s-]+(?:case|cases|jacket|holster|pouch)|"
    r"paper[\s-]+(?:towels?|holder|weights?|clips?|shredder|cutter|trimmer)|marble[\s-]+run|"
    r"stone[\s-]+age|crystal[\s-]+clear|glass[\s-]+(?:cleaner|cutter)|cork[\s-]?screw|"
    r"google[\s-]+chrome|chrome[\s-]*(?:book|cast)|pearl[\s-]+(?:jam|harbou?r))\b"
)
_NOT_SIZE = (
    r"(?i)\b(?:mini[\s-]*(?:usb|hdmi|displayport|display|sd|sdhc|jack|dv|cooper|b\b)|"
    r"medium[\s-]+(?:roast|weight|heat|format|density|duty|grit|firm|hold|rare)|"
    r"large[\s-]+(?:print|format)|small[\s-]+business)\w*"
)
# -- size ----------------------------------------------------------------------------------
_LETTER_SIZES = r"XXS|XS|S|M|L|XL|XXL|XXXL|[2-5]XL|X-Large|XX-Large|X-Small"
_SIZE_VALUE = (
    rf"((?-i:{_LETTER_SIZES})|\d{{1,2}}(?:\.5)?(?:[-/]\d{{1,2}})?|x-?small|small|medium|x-?large"
    r"|xx-?large|extra[\s-]large|large|king|queen|twin|full)"
)
_SIZE_TITLE = rf"(?i)\bsize\s*:?\s*{_SIZE_VALUE}(?:[\s,.;)]|$)"
_SIZE_LABEL = rf"(?i)(?:^|[^\w\s-]\s*|\n\s*|\t\s*|\s{{2}})size\s*:\s*{_SIZE_VALUE}(?:[\s,.;)<]|$)"
_SIZE_TRAILING = (
    rf"(?:,|\s[-–]|\()\s*((?-i:{_LETTER_SIZES})|(?i:x-?large|xx-?large|small|medium|large))"
    r"\)?\s*$"
)
_BED_SIZE = r"(?i)\b(california king|king|queen|twin|full)[\s-]size\b"
_AGE_SIZE = r"\b(\d{1,2}(?:-\d{1,2})?(?:M|T)|\d{1,2}-\d{1,2} Months)\b"  # "18M", "3T"
_CHILD = r"(?i)\b(?:baby|infant|toddler|newborn|girls?|boys?|kids?)\b"
# -- labels and other rules ----------------------------------------------------------------
_AGE_TEXT = (
    r"(?:\bESRB(?i:\s+rating)?|\b[Rr]ated)\s*:?\s*(EC|E10\+|E|T|M|AO|RP|Early Childhood|"
    r"Everyone 10\+|Everyone|Teen|Mature|Adults Only|Rating Pending)(?:[^\w+]|$)"
)
_LABEL_END = r"([^\n\r\t.;<|:]{1,60})"
_COLOUR_LABEL = rf"(?i)\bcolou?r(?:s|\(s\)|\s+options)?\s*:\s*{_LABEL_END}"
_FINISH_LABEL = rf"(?i)\bfinish\s*:\s*{_LABEL_END}"
_MATERIAL_LABEL = rf"(?i)\bmaterials?\s*:\s*{_LABEL_END}"
_MADE_OF = r"(?i)\b(?:made|crafted|constructed|built)\s+(?:of|from|with|in)\s+(?:[\w-]+\s+){0,3}?"
_PERCENT_OF = r"(?i)\b\d{1,3}\s?(?:%|percent)\s+"
_BRAND_LABEL = r"(?:^|[^\w\s-]\s*|\n\s*|\t\s*)(?i:brand)\s*:\s*([^\n\r\t.;<|:,]{2,40})"
_NOT_A_VALUE: Final = frozenset(
    {"n/a", "na", "none", "no", "assorted", "multiple", "various", "see description", "other"}
)
# fmt: on


# -- public API ----------------------------------------------------------------------------
def extract_attributes(products: pl.DataFrame, vocabulary: Vocabulary) -> pl.DataFrame:
    """Attributes of each product as long rows (see the module docstring), in product order.

    ``products`` needs ``item_id`` and ``title``; ``description``, ``brand`` and ``attributes``
    (JSON text) are used where present.
    """
    base = _prepare(products, vocabulary)
    physical = base.filter(~pl.col("media"))
    parts = [
        _from_source(base),
        _brands(base, vocabulary),
        _platforms(base, vocabulary),
        _age_ratings(base),
        _colours(physical, vocabulary),
        _materials(physical, vocabulary),
        _sizes(physical),
        dimensions(physical),
        pack_quantities(physical),
        _product_types(base, physical, vocabulary),
    ]
    return _resolve(pl.concat([p.select("_row", *ATTRIBUTE_SCHEMA) for p in parts]))


def score_extraction(
    extracted: pl.DataFrame, expected: Mapping[str, Mapping[str, Sequence[str]]]
) -> dict[str, float]:
    """Precision and recall of extracted values against hand labels.

    ``expected`` maps item_id to attribute to values; a value may list acceptable spellings as
    ``"a|b"``. Only items in ``expected`` count; values compare case- and space-insensitively.
    Keys: ``precision``, ``recall``, ``extracted``, ``expected`` and, per attribute,
    ``precision/<attribute>`` (where something was extracted), ``recall/<attribute>`` (where
    something was expected), ``extracted/<attribute>`` and ``expected/<attribute>``.
    """
    truth: dict[tuple[str, str], list[set[str]]] = {
        (item_id, attribute): [{_norm(a) for a in value.split("|")} for value in values]
        for item_id, attributes in expected.items()
        for attribute, values in attributes.items()
    }
    rows = extracted.filter(pl.col("item_id").is_in(list(expected)))
    hits: dict[str, list[int]] = {}  # attribute -> [correct, extracted]
    matched: set[tuple[str, str, int]] = set()
    for item_id, attribute, value in rows.select("item_id", "attribute", "value").iter_rows():
        tally = hits.setdefault(attribute, [0, 0])
        tally[1] += 1
        groups = truth.get((item_id, attribute), [])
        index = next((i for i, g in enumerate(groups) if _norm(value) in g), None)
        if index is not None:
            tally[0] += 1
            matched.add((item_id, attribute, index))
    wanted: dict[str, list[int]] = {}  # attribute -> [found, expected]
    for (item_id, attribute), groups in truth.items():
        tally = wanted.setdefault(attribute, [0, 0])
        tally[0] += sum((item_id, attribute, i) in matched for i in range(len(groups)))
        tally[1] += len(groups)
    scores: dict[str, float] = {}
    for attribute, (correct, n) in sorted(hits.items()):
        scores[f"precision/{attribute}"] = correct / n
        scores[f"extracted/{attribute}"] = float(n)
    for attribute, (found, n) in sorted(wanted.items()):
        scores[f"recall/{attribute}"] = found / n if n else 0.0
        scores[f"expected/{attribute}"] = float(n)
    correct, n = sum(h[0] for h in hits.values()), sum(h[1] for h in hits.values())
    found, total = sum(w[0] for w in wanted.values()), sum(w[1] for w in wanted.values())
    scores |= {
        "precision": correct / n if n else 0.0,
        "recall": found / total if total else 0.0,
        "extracted": float(n),
        "expected": float(total),
    }
    return scores


def _norm(value: str) -> str:
    return " ".join(value.casefold().split())


# -- preparation and plumbing --------------------------------------------------------------
def _prepare(products: pl.DataFrame, vocabulary: Vocabulary) -> pl.DataFrame:
    """Row number, texts, structured fields, the leading brand, the title without it
    (``body``) and whether the title names a work rather than describes a thing (``media``)."""
    brands = alternation(b.lower() for b in vocabulary.brands)
    leading = (
        rf"(?i)^(?:(?:new|genuine|authentic|original|official)\s+)?({brands})\b(?:'s)?"
        if brands
        else r"^\b$"
    )
    structured = column(products, "attributes")
    frame = products.select(
        pl.int_range(pl.len()).alias("_row"),
        column(products, "item_id").alias("item_id"),
        column(products, "title")
        .str.replace_all(r"\s+", " ")
        .str.strip_chars()
        .fill_null("")
        .alias("title"),
        column(products, "description").fill_null("").alias("description"),
        column(products, "brand").str.strip_chars().alias("brand"),
        structured.str.json_path_match("$.type").alias("type"),
        structured.str.json_path_match("$.platform").alias("platform"),
        structured.str.json_path_match("$.esrbRating").alias("esrb"),
        names_a_work(products, vocabulary.platforms).alias("media"),
    )
    # case tells a name from a word: an all-caps title names only brands written in capitals
    capitals = sorted(b.lower() for b in vocabulary.brands if b == b.upper())
    lead = pl.col("title").str.extract(leading, 1)
    lead = pl.when(
        pl.col("title").str.contains(r"[a-z]") | lead.str.to_lowercase().is_in(capitals)
    ).then(lead)
    body = pl.when(lead.is_not_null()).then(pl.col("title").str.replace(leading, ""))
    return frame.with_columns(lead=lead).with_columns(body=body.otherwise(pl.col("title")))


def _resolve(found: pl.DataFrame) -> pl.DataFrame:
    """One row per (item, attribute, value), the most trusted method first; single-valued
    attributes keep only the values of their most trusted method."""
    order = {a: i for i, a in enumerate(ATTRIBUTES)}
    ranked = found.with_columns(
        rank=pl.col("method").replace_strict(METHOD_RANK, return_dtype=pl.Int8),
        key=pl.col("value").str.to_lowercase(),
        order=pl.col("attribute").replace_strict(order, return_dtype=pl.Int8),
    )
    best = pl.col("rank").min().over("_row", "attribute")
    keep = ~pl.col("attribute").is_in(sorted(SINGLE_VALUED)) | (pl.col("rank") == best)
    return (
        ranked.filter(keep)
        .sort("_row", "order", "rank", maintain_order=True)
        .unique(["_row", "attribute", "key"], keep="first", maintain_order=True)
        .select(list(ATTRIBUTE_SCHEMA))
    )


# -- structured fields, brand, platform, age rating ----------------------------------------
def _from_source(base: pl.DataFrame) -> pl.DataFrame:
    platform, esrb, kind = pl.col("platform"), pl.col("esrb"), pl.col("type")
    named = platform.str.to_lowercase().replace_strict(PLATFORMS, default=platform)
    return x.concat([
        x.rows(base, "brand", "source", pl.col("brand"), pl.col("brand")),
        x.rows(base, "product_type", "source", kind.str.to_lowercase(), kind),
        x.rows(base, "platform", "source", named, platform),
        x.rows(base, "age_rating", "source", esrb.str.extract(r"^([^=]+)", 1), esrb),
    ])  # fmt: skip


def _brands(base: pl.DataFrame, vocabulary: Vocabulary) -> pl.DataFrame:
    spelling = {b.lower(): b for b in sorted(vocabulary.brands)}
    lead = pl.col("lead")
    labelled = pl.col("description").str.extract(_BRAND_LABEL, 1).str.strip_chars()
    labelled = pl.when(
        (labelled.str.count_matches(" ") < 4)
        & ~labelled.str.to_lowercase().is_in(sorted(_NOT_A_VALUE))
    ).then(labelled)
    named = lead.str.to_lowercase().replace_strict(spelling, default=lead)
    return x.concat([
        x.rows(base, "brand", "rule", labelled, labelled),
        x.rows(base, "brand", "dictionary", named, lead),
    ])  # fmt: skip


def _platforms(base: pl.DataFrame, vocabulary: Vocabulary) -> pl.DataFrame:
    names = dict(PLATFORMS) | {p.lower(): p for p in vocabulary.platforms}
    matches = x.matches(base, pl.col("title"), rf"(?i)\b(?:{alternation(names)})\b")
    key = pl.col("m").str.to_lowercase().str.replace_all(r"[\s-]+", " ")
    return x.found(matches, "platform", "dictionary", key.replace_strict(names, default=None))


def _age_ratings(base: pl.DataFrame) -> pl.DataFrame:
    text = pl.concat_str(pl.col("title"), pl.col("description"), separator=" \n ")
    found = text.str.extract(_AGE_TEXT, 1)
    value = found.str.to_lowercase().replace_strict(ESRB_NAMES, default=found)
    return x.rows(base, "age_rating", "rule", value, found)


# -- dictionary words: colour, material, size ----------------------------------------------
@dataclass(frozen=True)
class _Lexicon:
    """Words of one attribute and how to read them."""

    attribute: str
    plain: frozenset[str]  # always this attribute
    ambiguous: frozenset[str]  # also nouns: only where they modify a word or end the title
    not_this: str  # phrases to set aside first
    normal: Callable[[pl.Expr], pl.Expr]
    shades: bool = False


def _dictionary_words(
    frame: pl.DataFrame, lexicon: _Lexicon, product_types: Iterable[str]
) -> pl.DataFrame:
    """Lexicon words in the title without its brand. An ambiguous word counts where another
    word follows it, or where it ends the title and is no product type of the vocabulary."""
    text = pl.col("body").str.replace_all(lexicon.not_this, " # ")
    shade = rf"(?:(?:{alternation(SHADES)})[\s-]+)?" if lexicon.shades else ""
    name, normal = lexicon.attribute, lexicon.normal
    parts = []
    if lexicon.plain:
        plain = rf"(?i)\b{shade}(?:{alternation(lexicon.plain)})\b"
        parts.append(
            x.found(x.matches(frame, text, plain), name, "dictionary", normal(pl.col("m")))
        )
        text = text.str.replace_all(plain, " # ")  # "cast iron" holds no second "iron"
    if lexicon.ambiguous:
        pattern = rf"(?i)\b({shade}(?:{alternation(lexicon.ambiguous)}))\b(?:([\s-]+)([a-z']+))?"
        groups = pl.col("m").str.extract_groups(pattern)
        word, follower = groups.struct.field("1"), groups.struct.field("3")
        modifies = follower.is_not_null() | ~normal(word).is_in(sorted(product_types))
        ambiguous = x.matches(frame, text, pattern).filter(modifies).with_columns(m=word)
        parts.append(x.found(ambiguous, name, "dictionary", normal(pl.col("m"))))
    return x.concat(parts)


def _trailing_list(frame: pl.DataFrame, lexicon: _Lexicon) -> pl.DataFrame:
    """Words of a title's last segment ("... - Red/Black", "...,BLUE") when the segment holds
    nothing but such words: there even ambiguous ones count."""
    shade = rf"(?:(?:{alternation(SHADES)})[\s-]+)?" if lexicon.shades else ""
    word = rf"{shade}(?:{alternation(lexicon.plain | lexicon.ambiguous)})"
    whole = rf"(?i)^{word}(?:\s*(?:/|&|\band\b|\s)\s*(?:{word}|colou?rs?))*$"
    segment = pl.col("title").str.extract(r"(?:\s[-–/]\s|,\s*|\()([^,()–]+?)\)?\s*$", 1)
    listed = frame.with_columns(seg=segment.str.strip_chars()).filter(
        pl.col("seg").str.contains(whole)
    )
    matches = x.matches(listed, pl.col("seg"), rf"(?i)\b{word}\b")
    return x.found(matches, lexicon.attribute, "dictionary", lexicon.normal(pl.col("m")))


def _labelled(
    frame: pl.DataFrame, pattern: str, accept: Callable[[pl.Expr], pl.Expr]
) -> pl.DataFrame:
    """``Label: a, b/c and d`` values of descriptions, one row each, filtered by ``accept``."""
    values = frame.select(
        "_row", "item_id", pl.col("description").str.extract(pattern, 1).alias("m")
    ).drop_nulls("m")
    values = values.with_columns(
        pl.col("m").str.replace_all(r"\d+(?:\.\d+)?\s*(?:%|-?percent)\s*:?", "")
    )
    for separator in (",", "/", " and "):
        values = values.with_columns(pl.col("m").str.split(separator)).explode("m")
    cleaned = pl.col("m").str.strip_chars(" -*").str.replace_all(r"\s+", " ")
    values = values.with_columns(cleaned).filter(pl.col("m") != "")
    return values.filter(accept(pl.col("m")))


def _colour_value(text: pl.Expr) -> pl.Expr:
    value = (
        text.str.to_lowercase()
        .str.replace_all(r"\s+", " ")
        .str.replace_all(r"\bgray\b", "grey")
        .str.replace(r"^multi[\s-]?colou?r(?:ed)?$", "multicolour")
    )
    return value.replace_strict(COLOURS, default=value)


def _material_value(text: pl.Expr) -> pl.Expr:
    value = text.str.to_lowercase().str.replace_all(r"[\s-]+", " ")
    spelling = {k.replace("-", " "): v for k, v in MATERIALS.items()}
    return value.replace_strict(spelling, default=value)


def _size_value(text: pl.Expr) -> pl.Expr:
    lower = text.str.to_lowercase().str.replace_all(r"[\s-]+", " ").str.strip_chars()
    words = {k.replace("-", " "): v for k, v in SIZE_WORDS.items()}
    letters = text.str.contains(rf"^(?:{_LETTER_SIZES})$")
    return (
        pl.when(lower.is_in(list(words)))
        .then(lower.replace_strict(words, default=lower))
        .when(letters)
        .then(text.str.to_uppercase())
        .otherwise(lower)
    )


def _colours(frame: pl.DataFrame, vocabulary: Vocabulary) -> pl.DataFrame:
    plain = frozenset(COLOURS)
    lexicon = _Lexicon(
        "colour",
        plain,
        frozenset(c for c in vocabulary.colours if c not in plain) | AMBIGUOUS_COLOURS,
        _NOT_COLOUR,
        _colour_value,
        shades=True,
    )

    def short(v: pl.Expr) -> pl.Expr:
        return (
            v.str.contains(r"^[A-Za-z][A-Za-z' -]*$")
            & (v.str.count_matches(" ") < 2)
            & ~v.str.to_lowercase().is_in(sorted(_NOT_A_VALUE))
        )

    known = sorted(vocabulary.colours | set(COLOURS.values()))
    labelled = _labelled(frame, _COLOUR_LABEL, short)
    finish = _labelled(frame, _FINISH_LABEL, lambda v: _colour_value(v).is_in(known))
    return x.concat([
        x.found(labelled, "colour", "rule", _colour_value(pl.col("m"))),
        x.found(finish, "colour", "rule", _colour_value(pl.col("m"))),
        _dictionary_words(frame, lexicon, vocabulary.product_types),
        _trailing_list(frame, lexicon),
    ])  # fmt: skip


def _materials(frame: pl.DataFrame, vocabulary: Vocabulary) -> pl.DataFrame:
    plain = frozenset(MATERIALS) | (vocabulary.materials - AMBIGUOUS_MATERIALS)
    lexicon = _Lexicon("material", plain, AMBIGUOUS_MATERIALS, _NOT_MATERIAL, _material_value)
    phrase = rf"(?:{alternation(plain | AMBIGUOUS_MATERIALS)})\b"
    labelled = _labelled(frame, _MATERIAL_LABEL, lambda v: v.str.count_matches(" ") < 4)
    in_label = labelled.with_columns(pl.col("m").str.extract_all(rf"(?i)\b{phrase}")).explode("m")
    stated = pl.concat([
        x.matches(frame, pl.col("description"), _MADE_OF + phrase),
        x.matches(frame, pl.col("description"), _PERCENT_OF + phrase),
    ]).with_columns(m=pl.col("m").str.extract(rf"(?i)({phrase})$", 1))  # fmt: skip
    value = _material_value(pl.col("m"))
    return x.concat([
        x.found(in_label.drop_nulls("m"), "material", "rule", value),
        x.found(stated.drop_nulls("m"), "material", "rule", value),
        _dictionary_words(frame, lexicon, vocabulary.product_types),
        _trailing_list(frame, lexicon),
    ])  # fmt: skip


def _sizes(frame: pl.DataFrame) -> pl.DataFrame:
    """Size words ("JUMBO", "SMALL"; "mini" and "medium" only before a word), "Size: XL",
    "SIZE 13", trailing ", XL", bed sizes ("Queen-size") and child sizes ("18M")."""
    always = frozenset({"small", "large", "jumbo", "giant", "extra large", "x-large",
                        "xx-large", "extra small", "x-small"})  # fmt: skip
    modifying = frozenset({"mini", "medium"})
    lexicon = _Lexicon("size", always, modifying, _NOT_SIZE, _size_value)
    title, description = pl.col("title"), pl.col("description")
    child = pl.when(title.str.contains(_CHILD)).then(title.str.extract(_AGE_SIZE, 1))
    bed = title.str.extract(_BED_SIZE, 1)
    return x.concat(
        [_dictionary_words(frame, lexicon, modifying)]
        + [
            x.rows(frame, "size", "rule", _size_value(found), found)
            for found in (
                title.str.extract(_SIZE_TITLE, 1),
                description.str.extract(_SIZE_LABEL, 1),
                title.str.extract(_SIZE_TRAILING, 1),
            )
        ]
        + [
            x.rows(frame, "size", "rule", child, child),
            x.rows(frame, "size", "rule", bed.str.to_lowercase(), bed),
        ]
    )


# -- product type --------------------------------------------------------------------------
def _product_types(
    base: pl.DataFrame, physical: pl.DataFrame, vocabulary: Vocabulary
) -> pl.DataFrame:
    """A format suffix ("(Paperback)" -> book) and, for physical products, the vocabulary
    phrase that ends furthest right in the main clause of the title without its brand, the
    longest where several end there."""
    fmt = pl.col("title").str.extract(rf"(?i)\(({alternation(FORMATS)})\)\s*$", 1)
    formats = x.rows(
        base,
        "product_type",
        "rule",
        fmt.str.to_lowercase().replace_strict(FORMATS, default=None),
        fmt,
    )
    types = sorted(vocabulary.product_types)
    if not types or physical.height == 0:
        return formats
    words = word_positions(physical, pl.col("body"))
    best = pl.coalesce(
        pl.when(pl.col(g).is_in(types)).then(pl.col(g)) for g in ("g3", "g2", "word")
    )
    picked = (
        words.with_columns(m=best)
        .drop_nulls("m")
        .sort("_row", "pos")
        .group_by("_row", maintain_order=True)
        .last()
    )
    return x.concat([formats, x.found(picked, "product_type", "dictionary", pl.col("m"))])
