"""Measures in product text: dimensions with their unit, and pack quantities."""

from __future__ import annotations

from typing import Final

import polars as pl

from aisle.catalog import extraction as x

# fmt: off
# -- dimensions ----------------------------------------------------------------------------
_NUM = r"(?:\d+(?:\.\d+)?(?:[\s-]\d{1,2}/\d{1,2})?|\.\d+)"
_UNIT = (
    r"(?:cm|mm|(?-i:m)\b|metres?\b|meters?\b|inches\b|inch\b|in\b\.?|\"|''|”|ft\b|feet\b|foot\b)"
)
_AXIS = r"(?:\s?\(?(?:[HWDL]|high|wide|long|deep|tall|thick|dia(?:meter)?)\)?\b)?"
_TERM = rf"{_NUM}\s?-?\s?(?:{_UNIT}{_AXIS})?"
_DIMENSIONS = rf"(?i){_TERM}(?:\s*[x×*]\s*{_TERM}){{0,3}}"
_DIMENSION_LABEL = (
    rf"(?i)(?:measur\w*|dimensions?|length|height|width|diameter|depth)[^:\n\d]{{0,25}}:?\s*"
    rf"{_TERM}(?:\s*[x×*]\s*{_TERM}){{0,3}}"
)
_UNITS: Final = {
    "cm": "cm", "mm": "mm", "m": "m", "metre": "m", "metres": "m", "meter": "m", "meters": "m",
    "inches": "in", "inch": "in", "in": "in", "in.": "in", '"': "in", "''": "in", "”": "in",
    "ft": "ft", "feet": "ft", "foot": "ft",
}
_N_IN_1 = r"(?i)\b\d+\s*-?\s*in\s*-?\s*\d+\b"  # "2 in 1" is no dimension
_JACK = r"(?i)\b(?:2\.5|3\.5|6\.35)\s?mm\b"  # audio-jack sizes name a connector
_AUDIO = r"(?i)\b(?:jack|plug|audio|aux|headphones?|earphones?|stereo|speakers?)\b"
# -- pack quantity -------------------------------------------------------------------------
_PACK_NOUN = r"(?i)\b((?:set|pack|pk|lot)(?:\s+of|\s*/)?\s*(\d{1,4}))\b"
_PACK_CONTAINER = (
    r"(?i)\b((?:box|case|bag|tube|tin|carton|bundle|jar|pouch)(?:\s+of|\s*/)\s*(\d{1,4}))\b"
)
_PACK_COUNT = r"(?i)\b(\d{1,4})\s?-?\s?(pack|pk|pcs|pc|pieces?|count|ct|pairs?)\b(\.?)\s*([a-z]*)"
_PACK_LABEL = r"(?i)(?:^|[^\w-])((?:pkg\.?\s*qty|quantity|qty|pack\s*size)\s*:\s*(\d{1,4}))\b"
_PACK_LEADING = r"^(\d{1,3})\s+((?:[A-Za-z'\-]+\s?){1,4})"
_NOT_LEADING_PACK: Final = frozenset({
    "tier", "drawer", "drawers", "hook", "hooks", "wick", "layer", "hole", "colour", "color",
    "piece", "pc", "light", "seater", "way", "speed", "door", "shelf", "compartment", "port",
    "slice", "cup", "inch", "oz", "ml", "gb", "tb", "mb", "lb", "quart", "gallon", "watt", "volt",
    "ft", "mm", "cm", "x", "month", "year", "pin", "player", "d",
})
# fmt: on


def dimensions(frame: pl.DataFrame) -> pl.DataFrame:
    """Lengths with a unit: any in the title, in descriptions only with two or more measures
    ("8" x 8"") or after a label ("Height: 31.89 Inches")."""

    def clean(text: pl.Expr) -> pl.Expr:
        text = text.str.replace_all(_N_IN_1, " ")
        return (
            pl.when(pl.col("title").str.contains(_AUDIO))
            .then(text.str.replace_all(_JACK, " "))
            .otherwise(text)
        )

    title, description = clean(pl.col("title")), clean(pl.col("description"))
    labelled = description.str.extract_all(_DIMENSION_LABEL).list.join("\n")
    parts = []
    for text, least in ((title, 1), (description, 2), (labelled, 1)):
        matches = x.matches(frame, text, _DIMENSIONS).with_columns(
            numbers=pl.col("m").str.extract_all(_NUM),
            u=pl.col("m").str.extract(rf"(?i)({_UNIT})", 1).str.to_lowercase().str.strip_chars(),
        )
        matches = matches.filter(
            pl.col("u").is_not_null() & (pl.col("numbers").list.len() >= least)
        ).with_columns(
            u=pl.col("u").replace_strict(_UNITS, default=None), m=pl.col("m").str.strip_chars()
        )
        value = pl.concat_str(
            pl.col("numbers").list.eval(pl.element().str.strip_chars()).list.join("x"),
            pl.col("u"),
            separator=" ",
        )
        parts.append(x.found(matches, "dimensions", "rule", value, unit=pl.col("u")))
    return x.concat(parts)


def pack_quantities(frame: pl.DataFrame) -> pl.DataFrame:
    """Counts of items sold together: "SET OF 3", "PACK OF 72", "SET/6", "BOX OF 10", "12 PCS",
    "4pk", "10 Ct" (not the carats of "1/7 CT.T.W."), "Twin Pack", "Quantity: 1" and, in
    all-caps titles, a leading count before a plural ("36 PENCILS TUBE")."""
    title = pl.col("title")
    counted = x.matches(
        frame.filter(~title.str.contains(r"(?i)\b(?:puzzle|jigsaw)")), title, _PACK_COUNT
    )
    groups = pl.col("m").str.extract_groups(_PACK_COUNT)
    number, word = groups.struct.field("1"), groups.struct.field("2").str.to_lowercase()
    dot, after = groups.struct.field("3"), groups.struct.field("4").str.to_lowercase()
    carat = (word == "ct") & ((dot == ".") | after.is_in(["t", "tw", "gold", "diamond", "w"]))
    counted = counted.filter((number.cast(pl.Int64) > 1) & ~carat)
    twin = title.str.extract(r"(?i)\b(twin|double|triple)[\s-]pack\b", 1).str.to_lowercase()
    leading = title.str.extract_groups(_PACK_LEADING)
    words = leading.struct.field("2").str.to_lowercase().str.split(" ")
    plural = words.list.eval(pl.element().str.contains(r"[a-z]{2}[^su]s$")).list.any()
    first = words.list.first().is_in(sorted(_NOT_LEADING_PACK))
    # a leading count is the gift trade's way ("36 PENCILS"); elsewhere it names a model
    all_caps = ~title.str.contains(r"[a-z]")
    lead = pl.when(plural & ~first & all_caps).then(leading.struct.field("1"))
    label = pl.col("description").str.extract_groups(_PACK_LABEL)
    spans = [
        title.str.extract_groups(_PACK_NOUN),
        title.str.extract_groups(_PACK_CONTAINER),
        label,
    ]
    return x.concat(
        [
            x.rows(frame, "pack_quantity", "rule", _count(s.struct.field("2")), s.struct.field("1"))
            for s in spans
        ]
        + [
            x.found(counted, "pack_quantity", "rule", _count(number)),
            x.rows(frame, "pack_quantity", "rule",
                  twin.replace_strict({"twin": "2", "double": "2", "triple": "3"}, default=None),
                  twin),
            x.rows(frame, "pack_quantity", "rule", _count(lead), lead),
        ]
    )  # fmt: skip


def _count(text: pl.Expr) -> pl.Expr:
    number = text.cast(pl.Int64, strict=False)
    return pl.when(number > 0).then(number.cast(pl.String))
