"""The ingest benchmark's baseline: aisle's UCI import checks written with pandas + pandera."""

from __future__ import annotations

import hashlib
import json
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import duckdb
    import numpy as np
    import numpy.typing as npt
    import pandas as pd

    from aisle.config import QualitySettings

# pandas, pandera, numpy and duckdb are imported inside the functions: the benchmark's parent and
# its aisle children import this module too, and must not pay for them.

_DDL = """
CREATE TABLE imports (import_id INTEGER, kind VARCHAR, source VARCHAR, sha256 VARCHAR,
    status VARCHAR, input BIGINT, accepted BIGINT, quarantined BIGINT, duplicates BIGINT,
    reasons JSON, seconds DOUBLE);
CREATE TABLE events (event_id VARCHAR NOT NULL, user_id VARCHAR, session_id VARCHAR,
    item_id VARCHAR, type VARCHAR NOT NULL, value DOUBLE, price DOUBLE, currency VARCHAR,
    query VARCHAR, timestamp TIMESTAMPTZ NOT NULL, source VARCHAR,
    consent_personalisation BOOLEAN, consent_analytics BOOLEAN, ref_event_id VARCHAR,
    import_id INTEGER NOT NULL);
CREATE TABLE products (item_id VARCHAR NOT NULL, title VARCHAR, aliases VARCHAR[],
    price DOUBLE, currency VARCHAR, source VARCHAR, record_id VARCHAR, import_id INTEGER);
CREATE TABLE quarantine (record_id VARCHAR NOT NULL, kind VARCHAR NOT NULL,
    import_id INTEGER NOT NULL, line BIGINT, reasons VARCHAR[] NOT NULL, item_id VARCHAR,
    hold_until TIMESTAMPTZ, payload VARCHAR, record VARCHAR, status VARCHAR NOT NULL);
CREATE TABLE duplicates (record_id VARCHAR NOT NULL, kind VARCHAR NOT NULL,
    import_id INTEGER NOT NULL, line BIGINT, duplicate_of VARCHAR NOT NULL, rule VARCHAR);
"""
_NUL, _UNIT_SEPARATOR = "\x00", "\x1f"


def _clean_text(values: pd.Series) -> pd.Series:
    """NFKC, runs of whitespace to one space, trimmed, blank to missing (as aisle.text).

    Computed once per distinct value and mapped back, as aisle does: codes and titles repeat,
    and pandas runs a regex replacement value by value.
    """
    import numpy as np
    import pandas as pd

    distinct = pd.Series(values.dropna().unique(), dtype="str")
    cleaned = distinct.str.normalize("NFKC").str.replace(r"\s+", " ", regex=True).str.strip()
    mapping = pd.Series(cleaned.replace("", np.nan).to_numpy(), index=distinct)
    return values.map(mapping)


def _catalog(
    raw: pd.DataFrame, code: pd.Series, product: pd.Series, sold: pd.Series, price: pd.Series
) -> pd.DataFrame:
    """Products from the stock codes: the description most sold under a code is its title."""
    import pandas as pd

    lines = pd.DataFrame(
        {"item_id": code, "title": _clean_text(raw["Description"]), "sold": sold, "price": price}
    )[product]
    votes = (
        lines.dropna(subset=["title"])
        .groupby(["item_id", "title"], as_index=False)
        .agg(sold_lines=("sold", "sum"), lines=("sold", "size"))
        .sort_values(
            ["item_id", "sold_lines", "lines", "title"], ascending=[True, False, False, True]
        )
    )
    titles = votes.groupby("item_id", sort=False)["title"].agg(list)
    catalog = pd.DataFrame({"item_id": lines["item_id"].unique()})
    catalog["title"] = catalog["item_id"].map(titles.str[0])
    catalog["aliases"] = catalog["item_id"].map(titles.str[1:])
    catalog["price"] = catalog["item_id"].map(
        lines[lines["sold"]].groupby("item_id")["price"].median()
    )
    return catalog


def _schema_failures(
    events: pd.DataFrame, quality: QualitySettings, now: pd.Timestamp
) -> dict[str, npt.NDArray[np.bool_]]:
    """pandera (pandas backend) over the event columns; failing rows per reason."""
    import pandas as pd
    import pandera.pandas as pa

    from aisle.domain import EventType, Reason

    oldest = pd.Timestamp(quality.oldest_timestamp)
    oldest = oldest.tz_localize("UTC") if oldest.tz is None else oldest
    latest = now + pd.Timedelta(seconds=quality.max_future_seconds)
    checks: dict[str, list[tuple[Any, Reason]]] = {
        "type": [(pa.Check.isin([t.value for t in EventType]), Reason.BAD_EVENT_TYPE)],
        "price": [(pa.Check.le(quality.max_price), Reason.ABSURD_PRICE)],
        "timestamp": [
            (pa.Check.le(latest), Reason.FUTURE_TIMESTAMP),
            (pa.Check.ge(oldest), Reason.ANCIENT_TIMESTAMP),
        ],
        "currency": [(pa.Check.str_matches(r"^[A-Z]{3}$"), Reason.BAD_TYPE)],
    }
    dtypes = {
        "event_id": str,
        "user_id": str,
        "session_id": str,
        "item_id": str,
        "type": str,
        "value": float,
        "price": float,
        "currency": str,
        "timestamp": pd.DatetimeTZDtype("us", "UTC"),
        "source": str,
        "consent_personalisation": bool,
        "consent_analytics": bool,
    }
    required = ("type", "timestamp")
    schema = pa.DataFrameSchema(
        {
            name: pa.Column(
                dtype, [c for c, _ in checks.get(name, [])], nullable=name not in required
            )
            for name, dtype in dtypes.items()
        },
        strict=False,
    )
    try:
        schema.validate(events, lazy=True)
    except pa.errors.SchemaErrors as errors:
        cases = errors.failure_cases.dropna(subset=["index"])
    else:
        return {}
    failures: dict[str, npt.NDArray[np.bool_]] = {}
    for (column, check, number), group in cases.groupby(
        ["column", "check", "check_number"], dropna=False
    ):
        if check == "not_nullable":
            reason = Reason.MISSING_FIELD.value
        elif column in checks and not pd.isna(number) and int(number) < len(checks[column]):
            reason = checks[column][int(number)][1].value
        else:
            reason = Reason.BAD_TYPE.value
        mask = events.index.isin(group["index"].astype("int64"))
        failures[reason] = failures[reason] | mask if reason in failures else mask
    return failures


def _outliers(events: pd.DataFrame, quality: QualitySettings, trade: pd.Series) -> pd.Series:
    """Robust z (MAD of log1p quantity) per item, as aisle.quality.rules.outlier_quantities."""
    import numpy as np
    import pandas as pd

    from aisle.domain import EventType

    value = events["value"]
    log_value = np.log1p(value.where(value > 0))
    bought = (events["type"] == EventType.PURCHASE.value) & (value > 0)
    sample = pd.DataFrame({"item_id": events["item_id"], "log": log_value})[bought]
    sample["median"] = sample.groupby("item_id")["log"].transform("median")
    sample["deviation"] = (sample["log"] - sample["median"]).abs()
    stats = sample.groupby("item_id").agg(
        median=("median", "first"), mad=("deviation", "median"), lines=("log", "size")
    )
    stats = stats[stats["lines"] >= quality.outlier_min_lines]
    limit = np.maximum(
        quality.outlier_z * 1.4826 * stats["mad"], math.log(quality.outlier_min_ratio)
    )
    item_median = events["item_id"].map(stats["median"])
    item_limit = events["item_id"].map(limit)
    return (
        trade & item_median.notna() & (value > 0) & (log_value - item_median > item_limit)
    ).fillna(False)


def _read(source: Path, key: bytes) -> pd.DataFrame:
    """The file as text columns, customer ids pseudonymised (HMAC once per distinct id)."""
    import hmac

    import numpy as np
    import pandas as pd

    from aisle.privacy.pseudonymise import PSEUDONYM_HEX

    raw = pd.read_csv(source, dtype=str, keep_default_na=False, na_values=[""], engine="pyarrow")
    customer = raw["CustomerID"].str.strip().replace("", np.nan)
    pseudonyms = {
        value: hmac.new(key, value.encode(), hashlib.sha256).hexdigest()[:PSEUDONYM_HEX]
        for value in customer.dropna().unique()
    }
    raw["CustomerID"] = customer.map(pseudonyms)
    return raw


def _content_ids(raw: pd.DataFrame, adapter: str) -> pd.Series:
    """md5 of the adapter's name and the row's fields, as aisle.ingest.identity computes it."""
    import pandas as pd

    text = raw.fillna(_NUL)
    first, *rest = raw.columns
    joined = f"{adapter}{_UNIT_SEPARATOR}" + text[first].str.cat(
        [text[c] for c in rest], sep=_UNIT_SEPARATOR
    )
    ids = [hashlib.md5(row.encode()).hexdigest() for row in joined]
    return pd.Series(ids, index=raw.index, dtype="str")


def _timestamps(text: pd.Series, fmt: str, zone: str) -> pd.Series:
    """Local times to UTC; an ambiguous (autumn) hour counts as its first occurrence."""
    import numpy as np
    import pandas as pd

    naive = pd.to_datetime(text, format=fmt, errors="coerce")
    first = np.ones(len(naive), dtype=bool)  # True: summer time, the earlier of the two
    local = naive.dt.tz_localize(zone, ambiguous=first, nonexistent="NaT")
    return local.dt.tz_convert("UTC").dt.as_unit("us")


def _match_returns(con: duckdb.DuckDBPyConnection, candidates: pd.DataFrame) -> pd.Series:
    """For clean returns, the latest earlier clean purchase of the item by the customer (this
    file's or the store's); null where none. Indexed like the returns among ``candidates``."""
    import pandas as pd

    from aisle.domain import EventType

    keys = ["user_id", "item_id"]
    kind = candidates["type"]
    returns = candidates.loc[kind == EventType.RETURN.value, [*keys, "timestamp"]]
    con.register("returners", returns[keys].drop_duplicates())
    stored = con.execute(
        "SELECT e.event_id, e.user_id, e.item_id, e.timestamp FROM events e "
        "JOIN returners r USING (user_id, item_id) WHERE e.type = 'purchase'"
    ).df()
    con.unregister("returners")
    stored["timestamp"] = stored["timestamp"].dt.tz_convert("UTC").dt.as_unit("us")
    mine = candidates.loc[kind == EventType.PURCHASE.value, ["event_id", *keys, "timestamp"]]
    purchases = (
        pd.concat([mine, stored])
        .astype({"event_id": "str", "user_id": "str", "item_id": "str"})
        .dropna(subset=keys)
        .rename(columns={"event_id": "purchase_id"})
        .sort_values("timestamp")
    )
    matched = pd.merge_asof(
        returns.reset_index().sort_values("timestamp"),
        purchases,
        on="timestamp",
        by=keys,
        direction="backward",
    )
    return matched.set_index("index")["purchase_id"]


def ingest_with_pandas(source: Path, home: Path) -> dict[str, Any]:
    """The UCI import done the pandas way, checks and store writes included; its figures.

    Not mirrored from aisle: the bot rule (it judges browse events; UCI has none), near
    duplicates (windows exist only for browse types), and the profile and drift report.
    """
    import duckdb
    import numpy as np
    import pandas as pd
    import pandera.pandas  # noqa: F401  (imported before the clock starts, as aisle's modules are)

    from aisle.config import Settings
    from aisle.domain import EventType, Reason
    from aisle.ingest.adapters.uci_online_retail import CURRENCY, UciOnlineRetail
    from aisle.privacy.pseudonymise import load_secret

    settings = Settings(home=home)
    adapter = UciOnlineRetail()
    parsing = adapter.parsing
    quality = settings.quality
    key = load_secret(settings)
    purchase, refund = EventType.PURCHASE.value, EventType.RETURN.value
    started = time.perf_counter()
    now = pd.Timestamp.now(tz="UTC")
    con = duckdb.connect(str(home / "pandas.duckdb"))
    con.execute(_DDL)
    sha256 = hashlib.sha256(source.read_bytes()).hexdigest()
    con.execute(
        "INSERT INTO imports (import_id, kind, source, sha256, status) "
        "VALUES (1, 'events', ?, ?, 'running')",
        [str(source), sha256],
    )
    raw = _read(source, key)
    line = raw.index + 2  # the header is line 1

    # the adapter: invoice lines to purchases and returns; stock codes to products
    invoice = raw["InvoiceNo"].str.strip()
    cancelled = invoice.str.startswith("C")
    quantity = pd.to_numeric(raw["Quantity"].str.strip(), errors="coerce")
    code = raw["StockCode"].str.strip().str.upper()
    codes = pd.Series(code.unique())
    non_products = [c.upper() for c in quality.non_product_codes]
    product = code.isin(
        codes[codes.str.contains(quality.product_code_pattern) & ~codes.isin(non_products)]
    )
    price_text = raw["UnitPrice"].str.strip().str.replace(",", "", regex=False)
    price = pd.to_numeric(price_text, errors="coerce")
    stamp_text = raw["InvoiceDate"].str.strip()
    timestamp = _timestamps(stamp_text, str(parsing.timestamp_format), parsing.timezone)
    events = pd.DataFrame(
        {
            "event_id": _content_ids(raw, adapter.name),
            "user_id": raw["CustomerID"],
            "session_id": _clean_text(invoice.str.removeprefix("C")),
            "item_id": _clean_text(code),
            "type": pd.Series(np.where(cancelled, refund, purchase), index=raw.index, dtype="str"),
            "value": quantity.abs().where(cancelled, quantity),
            "price": price,
            "currency": CURRENCY,
            "query": pd.Series(np.nan, index=raw.index, dtype="str"),
            "timestamp": timestamp,
            "source": adapter.name,
            "consent_personalisation": settings.ingest.default_consent_personalisation,
            "consent_analytics": settings.ingest.default_consent_analytics,
        }
    )
    catalog = _catalog(raw, code, product, (quantity > 0) & (price > 0) & ~cancelled, price)
    titled = catalog["title"].notna()  # a product without a title is quarantined

    # the rules: one boolean column per reason
    trade = events["type"].isin([purchase, refund])
    item, value = events["item_id"], events["value"]
    flags: dict[str, pd.Series] = {}

    def flag(reason: Reason, mask: pd.Series | npt.NDArray[np.bool_]) -> None:
        mask = pd.Series(mask, index=events.index).fillna(False).astype(bool)
        flags[reason.value] = flags[reason.value] | mask if reason.value in flags else mask

    flag(Reason.BAD_TYPE, price_text.notna() & price.isna())
    flag(Reason.BAD_TIMESTAMP, stamp_text.notna() & timestamp.isna())
    flag(Reason.NON_PRODUCT, ~product)
    flag(Reason.BAD_QUANTITY, product & ~cancelled & (quantity < 0))
    flag(Reason.MISSING_FIELD, item.isna())
    if quality.require_user:
        flag(Reason.MISSING_FIELD, events["user_id"].isna())
    flag(Reason.NONPOSITIVE_PRICE, trade & (price <= 0))
    flag(
        Reason.BAD_QUANTITY, trade & value.notna() & ((value <= 0) | (value > quality.max_quantity))
    )
    flag(Reason.OUTLIER_QUANTITY, _outliers(events, quality, trade))
    if quality.check_unknown_items and titled.any():
        flag(Reason.UNKNOWN_ITEM, item.notna() & ~item.isin(catalog["item_id"][titled]) & product)
    for reason, mask in _schema_failures(events, quality, now).items():
        flag(Reason(reason), mask)

    # exact duplicates: an id seen earlier in the file or already in the store
    con.register("batch_ids", events[["event_id"]])
    seen = con.execute(
        "SELECT event_id FROM events WHERE event_id IN (SELECT event_id FROM batch_ids) "
        "UNION ALL SELECT record_id FROM quarantine WHERE kind = 'events' "
        "AND record_id IN (SELECT event_id FROM batch_ids)"
    ).df()["event_id"]
    con.unregister("batch_ids")
    duplicate = events["event_id"].duplicated(keep="first") | events["event_id"].isin(seen)

    clean = ~pd.DataFrame(flags).any(axis=1) & ~duplicate
    purchase_of = _match_returns(con, events[clean])
    events["ref_event_id"] = purchase_of.reindex(events.index)
    flag(Reason.UNMATCHED_RETURN, events.index.isin(purchase_of.index[purchase_of.isna()]))

    # fates: an exact duplicate first, then quarantine with every reason, else accepted
    reasons = pd.DataFrame(flags)
    quarantined = reasons.any(axis=1) & ~duplicate
    accepted = ~quarantined & ~duplicate
    held = reasons[quarantined]
    unknown = held.get(Reason.UNKNOWN_ITEM.value, pd.Series(False, index=held.index))
    hold = now + pd.Timedelta(hours=quality.unknown_item_grace_hours)
    catalog["record_id"] = [
        hashlib.md5(f"{i}{_UNIT_SEPARATOR}{t}".encode()).hexdigest()
        for i, t in zip(catalog["item_id"], catalog["title"], strict=True)
    ]
    untitled = catalog[~titled]
    quarantine = pd.DataFrame(
        {
            "record_id": events.loc[quarantined, "event_id"],
            "kind": "events",
            "import_id": 1,
            "line": line[quarantined],
            "reasons": held.dot(held.columns + ",").str.rstrip(",").str.split(","),
            "item_id": item[quarantined],
            "hold_until": pd.Series(hold, index=held.index).where(unknown),
            "payload": raw[quarantined].to_json(orient="records", lines=True).splitlines(),
            "record": events[quarantined]
            .to_json(orient="records", lines=True, date_format="iso")
            .splitlines(),
            "status": "held",
        }
    )
    quarantined_products = pd.DataFrame(
        {
            "record_id": untitled["record_id"],
            "kind": "products",
            "import_id": 1,
            "reasons": [[Reason.MISSING_FIELD.value]] * len(untitled),
            "item_id": untitled["item_id"],
            "payload": untitled.to_json(orient="records", lines=True).splitlines(),
            "status": "held",
        }
    )
    duplicates = pd.DataFrame(
        {
            "record_id": events.loc[duplicate, "event_id"],
            "kind": "events",
            "import_id": 1,
            "line": line[duplicate],
            "duplicate_of": events.loc[duplicate, "event_id"],
            "rule": "exact",
        }
    )
    tables = [
        ("events", events[accepted].assign(import_id=1)),
        ("products", catalog[titled].assign(currency=CURRENCY, source=adapter.name, import_id=1)),
        ("quarantine", quarantine),
        ("quarantine", quarantined_products),
        ("duplicates", duplicates),
    ]
    figures = {
        "input": len(events),
        "accepted": int(accepted.sum()),
        "quarantined": int(quarantined.sum()),
        "duplicates": int(duplicate.sum()),
    }
    if figures["input"] != figures["accepted"] + figures["quarantined"] + figures["duplicates"]:
        raise RuntimeError(f"counts do not reconcile: {figures}")
    counts = {reason: int(n) for reason, n in held.sum().items() if n}
    con.execute("BEGIN TRANSACTION")
    for table, frame in tables:
        con.register("frame", frame)
        con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM frame")
        con.unregister("frame")
    con.execute(
        "UPDATE imports SET status = 'complete', input = ?, accepted = ?, quarantined = ?, "
        "duplicates = ?, reasons = ?, seconds = ? WHERE import_id = 1",
        [*figures.values(), json.dumps(counts), time.perf_counter() - started],
    )
    con.execute("COMMIT")
    con.close()
    return {
        "seconds": time.perf_counter() - started,
        **figures,
        "reasons": dict(sorted(counts.items())),
        "products": {"accepted": int(titled.sum()), "quarantined": int((~titled).sum())},
    }
