"""The words attribute extraction looks for: seed lists, plus what the catalog itself teaches.

Seeds cover what every shop shares: base colours, common materials, size words, game platforms
and the motif words of gift-shop titles ("RETROSPOT", "PAISLEY"). :func:`learn_vocabulary` adds
what one catalog teaches:

* product types: head phrases that end titles once trailing colour, material, size and motif
  words are set aside ("T-LIGHT HOLDER", "LANTERN"), learned per source (see
  :func:`learn_product_types`);
* brands: the brand field (manufacturer), recurring labelled ``Brand:`` values, and phrases that
  lead at least two mixed-case titles (not titles naming a game or a book) and that
  descriptions capitalise wherever they mention them, a proper-noun test that "New",
  "Women's" and "Set" fail (see :func:`leading_brands`);
* platforms from structured ``platform`` attributes ("X360" -> "Xbox 360");
* colours and materials from labelled ``Color:`` and ``Material:`` values that recur.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass

import polars as pl


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


def _mapping(text: str) -> dict[str, str]:
    """``"a=b; c=d"`` as a dict; a bare ``"a"`` maps to itself."""
    pairs = (item.strip().partition("=") for item in text.split(";") if item.strip())
    return {key.strip(): (value.strip() or key.strip()) for key, _, value in pairs}


# fmt: off
#: Colour words that are only colours, mapped to the shop's spelling.
COLOURS: dict[str, str] = _mapping(
    "red; blue; green; yellow; purple; pink; black; white; grey; brown; beige; navy; teal;"
    "turquoise; aqua; lilac; violet; magenta; fuchsia; khaki; burgundy; maroon; scarlet;"
    "crimson; indigo; cyan; mauve; taupe; rose gold; multicolour; clear; gray=grey;"
    "multicolor=multicolour; multi-colour=multicolour; multi-color=multicolour;"
    "multicoloured=multicolour; multicolored=multicolour; multi-coloured=multicolour;"
    "multi-colored=multicolour"
)
#: Colour words that are also nouns: a colour only where they modify the next word
#: ("CREAM HEART") or end a title that does not name them as its product ("BRACELET GOLD").
AMBIGUOUS_COLOURS: frozenset[str] = _words(
    "cream ivory orange lime lemon mint olive coral peach plum cherry chocolate lavender amber "
    "ruby emerald jade charcoal gold silver tan camel mustard natural multi"
)
#: Shade words that may precede a colour ("light blue", "hot pink").
SHADES: frozenset[str] = _words(
    "light dark pale bright deep hot baby royal sky jet dusty navy neon pastel"
)
#: Materials, mapped to the shop's spelling.
MATERIALS: dict[str, str] = _mapping(
    "cotton; polyester; wool; silk; linen; leather; faux leather; suede; denim; nylon; spandex;"
    "elastane; rayon; viscose; acrylic; cashmere; velvet; satin; fleece; canvas; jute; hessian;"
    "burlap; felt; chiffon; bamboo; wood; hardwood; oak; pine; mahogany; teak; metal; steel;"
    "stainless steel; carbon steel; cast iron; wrought iron; aluminium; copper; brass; zinc;"
    "titanium; pewter; sterling silver; ceramic; porcelain; stoneware; earthenware; terracotta;"
    "bone china; enamel; plastic; polycarbonate; polypropylene; polyurethane; pvc; vinyl;"
    "silicone; rubber; neoprene; latex; memory foam; resin; granite; concrete; cardboard;"
    "wicker; rattan; seagrass; microfibre; tpu; mdf; melamine; sheepskin; faux fur; textile;"
    "fabric; cloth; cubic zirconia; diamond; wooden=wood; aluminum=aluminium;"
    "microfiber=microfibre; pu leather=faux leather; leatherette=faux leather;"
    "stainless=stainless steel; ceramics=ceramic"
)
#: Material words that are also product nouns ("WINE GLASS", "steam iron", "cake tin").
AMBIGUOUS_MATERIALS: frozenset[str] = _words(
    "glass crystal tin iron paper cork stone marble slate shell foam bronze pearl walnut chrome"
)
#: Size words and their normal form (letters upper case, words lower case).
SIZE_WORDS: dict[str, str] = _mapping(
    "small; large; medium; jumbo; mini; giant; extra large=XL; x-large=XL; x large=XL;"
    "xx-large=XXL; xx large=XXL; extra small=XS; x-small=XS; x small=XS; xl=XL; xxl=XXL"
)
#: Game platforms: every spelling catalogs use, mapped to one name.
PLATFORMS: dict[str, str] = _mapping(
    "xbox 360=Xbox 360; x360=Xbox 360; xbox360=Xbox 360; xbox one=Xbox One; xbox=Xbox;"
    "playstation 4=PlayStation 4; ps4=PlayStation 4; playstation 3=PlayStation 3;"
    "ps3=PlayStation 3; playstation 2=PlayStation 2; ps2=PlayStation 2;"
    "playstation vita=PS Vita; ps vita=PS Vita; psp=PSP; playstation portable=PSP;"
    "playstation=PlayStation; nintendo wii u=Wii U; wii u=Wii U; nintendo wii=Wii; wii=Wii;"
    "nintendo 3ds=Nintendo 3DS; 3ds=Nintendo 3DS; nintendo dsi=Nintendo DS;"
    "nintendo ds=Nintendo DS; gamecube=GameCube; nintendo switch=Nintendo Switch"
)
#: Motif, pattern, collection and style words of gift-shop titles: never a product type.
MOTIFS: frozenset[str] = _words(
    "retrospot polkadot spotty spots spot paisley spaceboy dolly girl union jack london "
    "woodland vintage pantry design designs stripe stripes stripey striped gingham check "
    "tartan floral doily skull skulls heart hearts star stars christmas easter birthday love "
    "flock rose roses daisy strawberry apples owl butterfly bird birds assorted asstd hanging "
    "decorative colour colours coloured painted antique french english scandinavian rustic "
    "boudoir regency edwardian baroque suki babushka circus parade tropical"
)
#: Words that never start or end a product type: grammar, condition and marketing words.
STOPWORDS: frozenset[str] = _words(
    "a an and the of with w in for to on by or new s x pack lot size used refurbished display "
    "authentic genuine original official nwt nib sealed latest model edition style"
)
#: Words that lead titles without naming a brand: who it is for, what technology it uses.
NOT_BRAND_WORDS: frozenset[str] = _words(
    "women's womens men's mens ladies girls girls' boys boys' kids kid's baby toddler unisex "
    "youth junior led usb cd dvd hd hdmi lcd tv pc bluetooth wireless digital electric portable"
)
#: Structured ``type`` values (lower case) of products whose title names a work, not a thing.
MEDIA_TYPES: frozenset[str] = _words("game movie music software book bundle")
#: Format suffixes of titles that name a work ("(Paperback)").
WORK_FORMATS: frozenset[str] = frozenset(
    {"paperback", "hardcover", "hardback", "dvd", "blu-ray", "audio cd", "vinyl"}
)
# fmt: on

_FIELDS = ("colours", "materials", "product_types", "brands", "platforms")


@dataclass(frozen=True)
class Vocabulary:
    """Dictionaries for attribute extraction; store it as an artifact with :meth:`to_json`."""

    colours: frozenset[str]
    materials: frozenset[str]
    product_types: frozenset[str]
    brands: frozenset[str]
    platforms: frozenset[str]

    def to_json(self) -> str:
        """The vocabulary as JSON text (sorted lists, stable across runs)."""
        data = {field: sorted(getattr(self, field)) for field in _FIELDS}
        return json.dumps(data, ensure_ascii=False, indent=0)

    @classmethod
    def from_json(cls, text: str) -> Vocabulary:
        """Read back what :meth:`to_json` wrote."""
        data = json.loads(text)
        return cls(**{field: frozenset(data.get(field, ())) for field in _FIELDS})


def seed_vocabulary() -> Vocabulary:
    """The vocabulary before any catalog has taught it anything."""
    return Vocabulary(
        colours=frozenset(COLOURS.values()) | AMBIGUOUS_COLOURS,
        materials=frozenset(MATERIALS.values()) | AMBIGUOUS_MATERIALS,
        product_types=frozenset(),
        brands=frozenset(),
        platforms=frozenset(PLATFORMS.values()),
    )


def learn_vocabulary(products: pl.DataFrame, *, min_products: int = 3) -> Vocabulary:
    """Seed lists plus what the catalog teaches (see the module docstring).

    ``products`` needs ``item_id`` and ``title``; ``description``, ``brand``, ``attributes``
    (JSON text) and ``source`` are used where present.
    """
    seed = seed_vocabulary()
    colours = set(seed.colours) | {
        COLOURS.get(v, v) for v in _recurring(labelled_values(products, "colou?rs?"), 3, 2)
    }
    materials = set(seed.materials) | {
        MATERIALS.get(v, v) for v in _recurring(labelled_values(products, "materials?"), 3, 2)
    }
    modifiers = colours | materials | set(SIZE_WORDS) | set(SHADES) | MOTIFS | set(PLATFORMS)
    types = {
        phrase
        for part in _by_source(products)
        for phrase in learn_product_types(part, modifiers, min_products=min_products)
    }
    brands = set(column_values(products, "brand")) | {
        _spelling(products, v) for v in _recurring(labelled_values(products, "brand"), 2, 3)
    }
    brands |= leading_brands(products, modifiers)
    platforms = {PLATFORMS.get(p.lower(), p) for p in column_values(products, "platform")}
    return Vocabulary(
        colours=frozenset(colours),
        materials=frozenset(materials),
        product_types=frozenset(types),
        brands=frozenset(b for b in brands if b.strip()),
        platforms=frozenset(seed.platforms | platforms),
    )


# -- helpers shared with extraction --------------------------------------------------------
def alternation(phrases: Iterable[str]) -> str:
    """A regex alternation of phrases, longest first; a space also matches a hyphen."""
    ordered = sorted({p for p in phrases if p}, key=lambda p: (-len(p), p))
    return "|".join(re.sub(r"\\ |\\-| ", r"[\\s-]+", re.escape(p)) for p in ordered)


def column(products: pl.DataFrame, name: str) -> pl.Expr:
    """A string column of the products, or nulls where the frame lacks it."""
    if name in products.columns:
        return pl.col(name).cast(pl.String)
    return pl.lit(None, dtype=pl.String)


def column_values(products: pl.DataFrame, name: str) -> list[str]:
    """Distinct values of a column, or of a key of the ``attributes`` JSON."""
    if name in products.columns:
        expr = column(products, name)
    else:
        expr = column(products, "attributes").str.json_path_match(f"$.{name}")
    values = products.select(expr.str.strip_chars().alias("v")).to_series()
    return [str(v) for v in values.drop_nulls().unique().sort().to_list()]


def texts(products: pl.DataFrame) -> pl.Expr:
    """Title and description as one text."""
    return pl.concat_str(
        column(products, "title"), column(products, "description"), separator=" \n ",
        ignore_nulls=True,
    )  # fmt: skip


def names_a_work(products: pl.DataFrame, platforms: Iterable[str] = ()) -> pl.Expr:
    """Whether a title names a work (a game, a film, a book) rather than describes a thing: a
    structured type such as "Game", an ESRB rating, or a " - Xbox 360" / "(Paperback)" suffix."""
    structured = column(products, "attributes")
    kinds = structured.str.json_path_match("$.type").str.to_lowercase()
    suffixes = set(PLATFORMS) | {p.lower() for p in platforms} | WORK_FORMATS | {"pc"}
    suffix = rf"(?i)(?:\s[-–]\s|\()\s*(?:{alternation(suffixes)})\)?\s*$"
    return (
        kinds.is_in(sorted(MEDIA_TYPES)).fill_null(False)
        | structured.str.json_path_match("$.esrbRating").is_not_null()
        | column(products, "title").str.contains(suffix).fill_null(False)
    )


def main_clause(title: pl.Expr) -> pl.Expr:
    """The part of a title that names the product: before " - ", ",", "(", " with ", " for ",
    " in ", " by "."""
    cut = r"(?i)(?:\s[-–|]\s|[,;(\[]|\s(?:with\s|w/|w\s|for\s|in\s|by\s)).*$"
    return title.str.replace(cut, "").str.replace_all(r"[\"”]", " ").str.strip_chars()


def title_words(title: pl.Expr) -> pl.Expr:
    """Lower-case words of the main clause, without pack phrases and tokens holding digits."""
    clause = main_clause(title).str.replace_all(
        r"(?i)\b(?:set|pack|box|bag|case|lot)(?:\s+of|\s*/)?\s*\d+\b", " "
    )
    words = clause.str.replace_all(r"\S*\d\S*", " ").str.to_lowercase()
    return words.str.extract_all(r"[a-z](?:[a-z'\-]*[a-z])?")


def word_positions(frame: pl.DataFrame, title: pl.Expr) -> pl.DataFrame:
    """One row per word of each title's main clause: ``item_id``, ``word``, ``pos`` and the
    2- and 3-word phrases ending there (``g2``, ``g3``) with their first words (``w2``,
    ``w3``); a ``_row`` column of ``frame`` is kept and keys the titles."""
    key = "_row" if "_row" in frame.columns else "item_id"
    words = (
        frame.select(*dict.fromkeys((key, "item_id")), title_words(title).alias("word"))
        .with_columns(pos=pl.int_ranges(pl.col("word").list.len()))
        .explode("word", "pos")
        .drop_nulls("word")
    )
    prev1 = pl.col("word").shift(1).over(key, order_by="pos")
    prev2 = pl.col("word").shift(2).over(key, order_by="pos")
    return words.with_columns(
        g2=pl.concat_str(prev1, pl.col("word"), separator=" "),
        g3=pl.concat_str(prev2, prev1, pl.col("word"), separator=" "),
        w2=prev1,
        w3=prev2,
    )


def labelled_values(products: pl.DataFrame, label: str) -> pl.Series:
    """Lower-cased ``Label: value`` values of descriptions, split at commas, slashes, "and",
    without percentages ("95 % Rayon" -> "rayon")."""
    pattern = rf"(?i)(?:^|[^\w-])(?:{label})\s*:\s*([^\n\r\t.;<|:]{{1,60}})"
    values = products.select(
        column(products, "description").str.extract(pattern, 1).str.to_lowercase().alias("v")
    ).drop_nulls()
    values = values.with_columns(
        pl.col("v").str.replace_all(r"\d+(?:\.\d+)?\s*(?:%|-?percent)\s*:?", "")
    )
    for separator in (",", "/", " and "):
        values = values.with_columns(pl.col("v").str.split(separator)).explode("v")
    cleaned = pl.col("v").str.strip_chars(" -*").str.replace_all(r"\s+", " ")
    return values.select(cleaned).to_series()


# -- learning ------------------------------------------------------------------------------
def _recurring(values: pl.Series, min_products: int, max_words: int) -> set[str]:
    """Alphabetic values of at most ``max_words`` words seen at least ``min_products`` times."""
    frame = values.to_frame("v").filter(
        pl.col("v").str.contains(r"^[a-z][a-z' &-]*$")
        & (pl.col("v").str.count_matches(" ") < max_words)
        & ~pl.col("v").is_in(["n/a", "na", "none", "other", "see description"])
    )
    counts = frame.group_by("v").len().filter(pl.col("len") >= min_products)
    return set(counts["v"].to_list())


def _by_source(products: pl.DataFrame) -> list[pl.DataFrame]:
    """One frame per source: each catalog names its products in its own way."""
    if "source" not in products.columns:
        return [products]
    return [part for _, part in products.group_by("source", maintain_order=True)]


def learn_product_types(
    products: pl.DataFrame, modifiers: set[str], *, min_products: int = 3
) -> set[str]:
    """Head phrases of titles: the last word of the main clause that is no modifier.

    A head word must end at least ``min_products`` titles and at least half of the titles it
    appears in. A 2-3 word phrase ending in a head must end ``min_products`` titles, hold no
    modifier, and its first word must lead to the phrase in at least half of the titles it
    appears in: a compound ("cushion cover"), not a collection name ("sweetheart bracelet").
    Words written with an inner capital ("iPhone", "CandyShell") name models, not kinds.
    """
    words = word_positions(products.unique("item_id"), column(products, "title"))
    if words.height == 0:
        return set()
    blocked = sorted(modifiers | STOPWORDS | model_names(products))
    head = ~pl.col("word").is_in(blocked) & (pl.col("word").str.len_chars() > 2)
    last = words.filter(head).group_by("item_id").agg(pl.col("pos").max().alias("last"))
    words = words.join(last, on="item_id", how="left")
    is_last = pl.col("pos") == pl.col("last")
    share = words.group_by("word").agg(
        ends=pl.col("item_id").filter(is_last).n_unique(), seen=pl.col("item_id").n_unique()
    )
    heads = share.filter((pl.col("ends") >= min_products) & (pl.col("ends") * 2 >= pl.col("seen")))[
        "word"
    ]
    seen = dict(zip(share["word"].to_list(), share["seen"].to_list(), strict=True))
    ends = words.filter(is_last & pl.col("word").is_in(heads.implode()))
    found = set(heads.to_list())
    for phrase, first in (("g2", "w2"), ("g3", "w3")):
        counts = (
            ends.filter(
                pl.col(phrase).is_not_null()
                & ~pl.col(first).is_in(blocked)
                & ~pl.col("w2").is_in(blocked)
            )
            .group_by(phrase, first)
            .agg(pl.col("item_id").n_unique().alias("n"))
            .filter(pl.col("n") >= min_products)
        )
        found |= {g for g, w, n in counts.iter_rows() if n * 2 >= seen.get(w, 0)}
    return found


def model_names(products: pl.DataFrame) -> set[str]:
    """Lower-cased words written with a capital inside them ("iPhone", "ThinkPad")."""
    found = (
        products.select(texts(products).str.extract_all(r"\b[A-Za-z]*[a-z][A-Z][A-Za-z]*\b"))
        .to_series()
        .explode()
        .drop_nulls()
    )
    return set(found.str.to_lowercase().unique().to_list())


def leading_brands(
    products: pl.DataFrame, modifiers: set[str], *, min_products: int = 2
) -> set[str]:
    """Words that lead at least ``min_products`` mixed-case titles and that descriptions write
    with a capital wherever they mention them, extended by the next title word where that word
    follows them in at least 80% of all mentions ("Hamilton" -> "Hamilton Beach")."""
    mixed = products.filter(
        column(products, "title").str.contains(r"[a-z]") & ~names_a_work(products)
    )
    lead = r"^([A-Z][\w'&.\-]*(?:\s(?:(?:&|of|the|de)\s)?[A-Z][\w'&.\-]*){0,3})(?:\s|$)"
    starts = mixed.select(column(mixed, "title").str.extract(lead, 1).str.split(" ").alias("w"))
    counts: dict[str, int] = {}
    spelling: dict[str, str] = {}
    for size in range(1, 5):
        phrases = starts.drop_nulls().filter(pl.col("w").list.len() >= size)
        grouped = (
            phrases.select(pl.col("w").list.slice(0, size).list.join(" ").alias("p"))
            .group_by(pl.col("p").str.to_lowercase().alias("k"))
            .agg(n=pl.len(), p=pl.col("p").mode().min())
        )
        for key, n, phrase in grouped.iter_rows():
            counts[key], spelling[key] = n, phrase
    blocked = modifiers | STOPWORDS | set(SIZE_WORDS) | NOT_BRAND_WORDS
    capitalised = _capitalised_words(products)
    corpus = products.select(texts(products).alias("t"))

    def mentions(phrase: str, *, proper: bool = False) -> int:
        body = _proper_pattern(phrase) if proper else rf"(?i)\b{alternation([phrase])}\b"
        return int(corpus.select(pl.col("t").str.count_matches(body).sum()).item())

    found: set[str] = set()
    for word, n in counts.items():
        if " " in word or n < min_products or word in blocked or not re.search(r"[a-z]", word):
            continue
        if not capitalised.get(word, True):
            continue
        key = word
        while True:  # extend while the next word nearly always follows
            longer = [(m, k) for k, m in counts.items() if k.startswith(f"{key} ")]
            longer = [(m, k) for m, k in longer if k.count(" ") == key.count(" ") + 1]
            if not longer or max(longer)[0] < min_products:
                break
            nxt = max(longer)[1]
            if nxt.rsplit(" ", 1)[1] in blocked or mentions(nxt) < 0.8 * mentions(key):
                break
            key = nxt
        phrase = spelling[key]
        if " " not in key or mentions(phrase, proper=True) >= 0.9 * mentions(key):
            found.add(phrase)
    return found


def _capitalised_words(products: pl.DataFrame) -> dict[str, bool]:
    """For each lower-cased word of the descriptions: written with a capital at least 90% of
    the times it stands inside a sentence."""
    inside = (
        products.select(
            column(products, "description").str.extract_all(r"[a-z,;]\s+[A-Za-z][\w'\-]*")
        )
        .to_series()
        .explode()
        .drop_nulls()
        .str.extract(r"([A-Za-z][\w'\-]*)$", 1)
    )
    share = (
        inside.to_frame("w")
        .group_by(pl.col("w").str.to_lowercase().alias("k"))
        .agg(n=pl.len(), upper=pl.col("w").str.contains(r"^[A-Z]").sum())
    )
    return {k: upper >= 0.9 * n for k, n, upper in share.iter_rows()}


def _proper_pattern(phrase: str) -> str:
    """A case-sensitive pattern for a phrase whose words each start with a capital letter."""
    parts = []
    for word in phrase.split(" "):
        if word.lower() in {"of", "the", "de", "&"} or not word[0].isalpha():
            parts.append(f"(?i:{re.escape(word)})")
        else:
            parts.append(f"[{word[0].upper()}](?i:{re.escape(word[1:])})")
    return r"\b" + r"[\s-]+".join(parts) + r"\b"


def _spelling(products: pl.DataFrame, lower: str) -> str:
    """The most frequent spelling of a lower-cased phrase in titles and descriptions."""
    found = (
        products.select(texts(products).str.extract_all(rf"(?i)\b{alternation([lower])}\b"))
        .to_series()
        .explode()
        .drop_nulls()
    )
    if found.len() == 0:
        return lower.title()
    return str(found.mode().sort()[0])
