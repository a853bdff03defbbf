"""Ingest throughput: aisle end to end on UCI Online Retail, a 10x replay, and a pandas baseline.

The targets (issue): the whole UCI Online Retail file ingested, validated and pseudonymised at
>= 200,000 rows/s end to end on the 2-core reference machine with peak RSS <= 2 GiB; a file ten
times larger, made by replaying it with shifted ids and times, keeps the same rate (cost linear
in rows). Side by side, the same checks written with pandas + pandera's pandas backend give the
baseline, and the script prints the ratio.

Every run is a fresh subprocess of this script (``--child aisle|pandas``) with a fresh store, so
peak RSS is per run and imports are paid alike; the time is taken inside the child around the
import alone (for aisle: the ``ingest()`` call, which opens the store, reads, pseudonymises,
validates, writes, commits and closes), and the child's wall time with interpreter start-up is
reported beside it.

    .venv/bin/python benchmarks/ingest.py                 # table, ratios, PASS/FAIL lines
    .venv/bin/python benchmarks/ingest.py --json          # one JSON object on stdout
    .venv/bin/python benchmarks/ingest.py --repeat 5 --pandas-10x
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import resource
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from machine import cpu_busy_seconds, describe, render

TARGET_ROWS_PER_SECOND = 200_000
TARGET_PEAK_RSS_MIB = 2048
LINEAR_TOLERANCE = 0.20  # the 10x rate may differ from the 1x rate by this fraction
OTHER_LOAD_WARNING = 0.10  # a larger share of the CPU taken by other processes skews timings
ADAPTER = "uci-online-retail"
UCI_FILE = Path("uci-online-retail") / "transactions.csv.gz"
# How the 10x file replays the original: copy k shifts every id and time by k steps.
REPLAYS = 10
INVOICE_STEP = 1_000_000
CUSTOMER_STEP = 100_000
DAYS_STEP = 400  # 2010-12 + 9 * 400 days is 2020-10: still in the past
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
FATES = ("input", "accepted", "quarantined", "duplicates")


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux counts KiB


# --- the data ----------------------------------------------------------------------------------


def find_source() -> Path | None:
    """The shared UCI file: $AISLE_DATA, else ../shared/data (from here or from the repo)."""
    from aisle.datasets import shared_data_dir

    candidates = [shared_data_dir() / UCI_FILE]
    if "AISLE_DATA" not in os.environ:
        candidates.append(Path(__file__).resolve().parents[2] / "shared" / "data" / UCI_FILE)
    return next((path for path in candidates if path.exists()), None)


def build_replay(source: Path, target: Path, copies: int = REPLAYS) -> int:
    """Write ``copies`` replays of ``source`` to ``target`` (gzip CSV, same header); the rows.

    Copy k gets invoice numbers + k * 1,000,000 (the letter prefix, such as the "C" of a
    cancellation, kept), customer ids + k * 100,000 (empty stays empty) and times + k * 400
    days; stock codes are unchanged, so the catalog is the same. Copy 0 is the original.
    """
    import polars as pl

    raw = pl.read_csv(source, infer_schema=False)
    invoice = pl.col("InvoiceNo").str.strip_chars()
    prefix = invoice.str.extract(r"^(\D*)", 1)
    number = invoice.str.extract(r"(\d+)$", 1).cast(pl.Int64, strict=False)
    customer = pl.col("CustomerID").str.strip_chars()
    customer_number = customer.cast(pl.Float64, strict=False).cast(pl.Int64, strict=False)
    stamp = pl.col("InvoiceDate").str.strptime(pl.Datetime("us"), TIME_FORMAT, strict=False)

    def replay(k: int) -> pl.DataFrame:
        if k == 0:
            return raw
        return raw.with_columns(
            pl.coalesce(
                prefix + (number + k * INVOICE_STEP).cast(pl.String), invoice + f"-{k}"
            ).alias("InvoiceNo"),
            pl.when(customer.is_null() | (customer == ""))
            .then(pl.col("CustomerID"))
            .otherwise(
                pl.coalesce(
                    (customer_number + k * CUSTOMER_STEP).cast(pl.String), customer + f"-{k}"
                )
            )
            .alias("CustomerID"),
            pl.coalesce(
                (stamp + pl.duration(days=k * DAYS_STEP)).dt.strftime(TIME_FORMAT),
                pl.col("InvoiceDate"),
            ).alias("InvoiceDate"),
        )

    replayed = pl.concat([replay(k) for k in range(copies)])
    replayed.write_csv(target, compression="gzip", compression_level=6)
    return replayed.height


# --- the children: one import each -----------------------------------------------------------


#: aisle's progress messages, by first word, and the stage each one opens.
AISLE_STAGES = {
    "reading": "read + pseudonymise",
    "building": "catalog",
    "checking": "events: check, write, profile, commit, close",
}


def _stages(started: float, marks: list[tuple[str, float]], finished: float) -> dict[str, float]:
    """Seconds per stage, from the times aisle reported progress at."""
    names = ["open store"] + [AISLE_STAGES.get(m.split()[0], m.split()[0]) for m, _ in marks]
    times = [started, *(t for _, t in marks), finished]
    return {name: times[i + 1] - times[i] for i, name in enumerate(names)}


def aisle_child(source: Path, home: Path) -> dict[str, Any]:
    """One aisle import, end to end, into a fresh store; its figures."""
    from aisle.config import Settings
    from aisle.pipeline import ingest

    settings = Settings(home=home)  # the secret comes from AISLE_SECRET_KEY
    marks: list[tuple[str, float]] = []
    started = time.perf_counter()
    result = ingest(
        "events",
        source,
        ADAPTER,
        settings,
        progress=lambda stage: marks.append((stage, time.perf_counter())),
    )
    seconds = time.perf_counter() - started
    products = result.derived[0] if result.derived else None
    return {
        "seconds": seconds,
        "stages": _stages(started, marks, started + seconds),
        "input": result.input,
        "accepted": result.accepted,
        "quarantined": result.quarantined,
        "duplicates": result.duplicates,
        "reasons": dict(sorted(result.reasons.items())),
        "products": {
            "accepted": products.accepted if products else 0,
            "quarantined": products.quarantined if products else 0,
        },
    }


# --- the baseline: the same checks in pandas + pandera (pandas backend) ------------------------

_PANDAS_DDL = """
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


def _pd_clean_text(values: Any) -> Any:
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


def _pd_catalog(raw: Any, code: Any, product: Any, sold: Any, price: Any) -> Any:
    """Products from the stock codes: the description most sold under a code is its title."""
    import pandas as pd

    lines = pd.DataFrame(
        {"item_id": code, "title": _pd_clean_text(raw["Description"]), "sold": sold, "price": price}
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


def _pd_schema_failures(events: Any, quality: Any, now: Any) -> dict[str, Any]:
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
    failures: dict[str, Any] = {}
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


def _pd_outliers(events: Any, quality: Any, trade: Any) -> Any:
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


def _pd_read(source: Path, key: bytes) -> Any:
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


def _pd_content_ids(raw: Any) -> Any:
    """md5 of the adapter's name and the row's fields, as aisle.ingest.identity computes it."""
    import pandas as pd

    text = raw.fillna(_NUL)
    first, *rest = raw.columns
    joined = f"{ADAPTER}{_UNIT_SEPARATOR}" + text[first].str.cat(
        [text[c] for c in rest], sep=_UNIT_SEPARATOR
    )
    ids = [hashlib.md5(row.encode()).hexdigest() for row in joined]
    return pd.Series(ids, index=raw.index, dtype="str")


def _pd_timestamps(text: Any, fmt: str, zone: str) -> Any:
    """Local times to UTC; an ambiguous (autumn) hour counts as its first occurrence."""
    import numpy as np
    import pandas as pd

    naive = pd.to_datetime(text, format=fmt, errors="coerce")
    first = np.ones(len(naive), dtype=bool)  # True: summer time, the earlier of the two
    local = naive.dt.tz_localize(zone, ambiguous=first, nonexistent="NaT")
    return local.dt.tz_convert("UTC").dt.as_unit("us")


def _pd_match_returns(con: Any, candidates: Any) -> Any:
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
    parsing = UciOnlineRetail().parsing
    quality = settings.quality
    key = load_secret(settings)
    purchase, refund = EventType.PURCHASE.value, EventType.RETURN.value
    started = time.perf_counter()
    now = pd.Timestamp.now(tz="UTC")
    con = duckdb.connect(str(home / "pandas.duckdb"))
    con.execute(_PANDAS_DDL)
    sha256 = hashlib.sha256(source.read_bytes()).hexdigest()
    con.execute(
        "INSERT INTO imports (import_id, kind, source, sha256, status) "
        "VALUES (1, 'events', ?, ?, 'running')",
        [str(source), sha256],
    )
    raw = _pd_read(source, key)
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
    timestamp = _pd_timestamps(stamp_text, str(parsing.timestamp_format), parsing.timezone)
    events = pd.DataFrame(
        {
            "event_id": _pd_content_ids(raw),
            "user_id": raw["CustomerID"],
            "session_id": _pd_clean_text(invoice.str.removeprefix("C")),
            "item_id": _pd_clean_text(code),
            "type": pd.Series(np.where(cancelled, refund, purchase), index=raw.index, dtype="str"),
            "value": quantity.abs().where(cancelled, quantity),
            "price": price,
            "currency": CURRENCY,
            "query": pd.Series(np.nan, index=raw.index, dtype="str"),
            "timestamp": timestamp,
            "source": ADAPTER,
            "consent_personalisation": settings.ingest.default_consent_personalisation,
            "consent_analytics": settings.ingest.default_consent_analytics,
        }
    )
    catalog = _pd_catalog(raw, code, product, (quantity > 0) & (price > 0) & ~cancelled, price)
    titled = catalog["title"].notna()  # a product without a title is quarantined

    # the rules: one boolean column per reason
    trade = events["type"].isin([purchase, refund])
    item, value = events["item_id"], events["value"]
    flags: dict[str, Any] = {}

    def flag(reason: Reason, mask: Any) -> None:
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
    flag(Reason.OUTLIER_QUANTITY, _pd_outliers(events, quality, trade))
    if quality.check_unknown_items and titled.any():
        flag(Reason.UNKNOWN_ITEM, item.notna() & ~item.isin(catalog["item_id"][titled]) & product)
    for reason, mask in _pd_schema_failures(events, quality, now).items():
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
    purchase_of = _pd_match_returns(con, events[clean])
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
        ("products", catalog[titled].assign(currency=CURRENCY, source=ADAPTER, import_id=1)),
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


def run_child(engine: str, source: Path, home: Path) -> None:
    """Entry point of a child: run one import and print its figures as one JSON line."""
    home.mkdir(parents=True, exist_ok=True)
    figures = (aisle_child if engine == "aisle" else ingest_with_pandas)(source, home)
    figures["peak_rss_mib"] = _peak_rss_mib()
    print(json.dumps(figures))


# --- the parent: runs, summaries, the report ---------------------------------------------------


def spawn(engine: str, source: Path, home: Path, secret: str) -> dict[str, Any]:
    """One import in a fresh interpreter; its figures, with the child's wall time beside them."""
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        engine,
        "--file",
        str(source),
        "--home",
        str(home),
    ]
    env = {**os.environ, "AISLE_SECRET_KEY": secret}
    busy_before, children_before = cpu_busy_seconds(), resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    busy_after, children_after = cpu_busy_seconds(), resource.getrusage(resource.RUSAGE_CHILDREN)
    child_cpu = (children_after.ru_utime - children_before.ru_utime) + (
        children_after.ru_stime - children_before.ru_stime
    )
    # CPU that other processes took while the child ran, as a share of what the machine had
    other_load = None
    if busy_before is not None and busy_after is not None:
        other = max(0.0, busy_after - busy_before - child_cpu)
        other_load = other / (wall * (os.cpu_count() or 1))
    shutil.rmtree(home, ignore_errors=True)
    if done.returncode != 0:
        why = (
            f"killed by signal {-done.returncode}"
            if done.returncode < 0
            else (f"exit {done.returncode}")
        )
        if done.returncode == -9:
            why += " (out of memory?)"
        tail = " | ".join(done.stderr.strip().splitlines()[-3:])
        return {"engine": engine, "ok": False, "error": f"{why}: {tail}", "wall_seconds": wall}
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    return {
        "engine": engine,
        "ok": True,
        "wall_seconds": wall,
        "child_cpu_seconds": child_cpu,
        "other_load": other_load,
        **figures,
    }


def summarise(engine: str, label: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median, min and max of the runs of one engine on one file."""
    ok = [r for r in runs if r["ok"]]
    summary: dict[str, Any] = {
        "engine": engine,
        "file": label,
        "runs": len(ok),
        "failed": [r["error"] for r in runs if not r["ok"]],
    }
    if not ok:
        return summary
    seconds = [r["seconds"] for r in ok]
    median = statistics.median(seconds)
    first = ok[0]
    summary.update(
        rows=first["input"],
        median_seconds=median,
        min_seconds=min(seconds),
        max_seconds=max(seconds),
        rows_per_second=first["input"] / median,
        median_wall_seconds=statistics.median(r["wall_seconds"] for r in ok),
        peak_rss_mib=max(r["peak_rss_mib"] for r in ok),
        fates={k: first[k] for k in FATES},
        reasons=first["reasons"],
        products=first["products"],
        seconds=seconds,
        median_cpu_seconds=statistics.median(r["child_cpu_seconds"] for r in ok),
        stages={
            name: statistics.median(r["stages"].get(name, 0.0) for r in ok)
            for name in ok[0].get("stages", {})
        },
        other_load=max((r["other_load"] or 0.0) for r in ok),
    )
    return summary


def _check(name: str, passed: bool, figure: str) -> dict[str, Any]:
    return {"target": name, "pass": passed, "figure": figure}


def evaluate(results: dict[str, dict[str, Any]]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The ratios and the PASS/FAIL verdicts against the issue's targets."""
    aisle, pandas = results.get("aisle 1x", {}), results.get("pandas 1x", {})
    aisle_10x = results.get("aisle 10x", {})
    ratios: dict[str, Any] = {}
    checks: list[dict[str, Any]] = []
    if "rows_per_second" in aisle:
        rate = aisle["rows_per_second"]
        checks.append(
            _check(
                f"aisle 1x >= {TARGET_ROWS_PER_SECOND:,} rows/s",
                rate >= TARGET_ROWS_PER_SECOND,
                f"{rate:,.0f} rows/s",
            )
        )
        rss = aisle["peak_rss_mib"]
        checks.append(
            _check(
                f"aisle 1x peak RSS <= {TARGET_PEAK_RSS_MIB:,} MiB",
                rss <= TARGET_PEAK_RSS_MIB,
                f"{rss:,.0f} MiB",
            )
        )
    if "rows_per_second" in aisle and "rows_per_second" in pandas:
        ratios["aisle_over_pandas_speed"] = pandas["median_seconds"] / aisle["median_seconds"]
    if "rows_per_second" in aisle and "rows_per_second" in aisle_10x:
        linear = aisle_10x["rows_per_second"] / aisle["rows_per_second"]
        ratios["rate_10x_over_1x"] = linear
        ratios["rss_10x_over_1x"] = aisle_10x["peak_rss_mib"] / aisle["peak_rss_mib"]
        # seconds = fixed + rows / marginal rate, through the two medians
        per_row = (aisle_10x["median_seconds"] - aisle["median_seconds"]) / (
            aisle_10x["rows"] - aisle["rows"]
        )
        ratios["fixed_seconds"] = aisle["median_seconds"] - per_row * aisle["rows"]
        ratios["marginal_rows_per_second"] = 1 / per_row if per_row > 0 else None
        checks.append(
            _check(
                f"aisle 10x rate within {LINEAR_TOLERANCE:.0%} of 1x",
                abs(linear - 1) <= LINEAR_TOLERANCE,
                f"10x/1x = {linear:.2f}",
            )
        )
    for label, summary in results.items():
        if summary.get("failed"):
            checks.append(
                _check(f"{label}: every run completes", False, "; ".join(summary["failed"]))
            )
    return ratios, checks


def fate_differences(left: dict[str, Any], right: dict[str, Any]) -> list[tuple[str, int, int]]:
    """(name, left, right) for every fate and reason count of two summaries."""
    rows = [(k, left["fates"][k], right["fates"][k]) for k in FATES]
    for reason in sorted(set(left["reasons"]) | set(right["reasons"])):
        rows.append(
            (f"  {reason}", left["reasons"].get(reason, 0), right["reasons"].get(reason, 0))
        )
    for k in ("accepted", "quarantined"):
        rows.append((f"products {k}", left["products"][k], right["products"][k]))
    return rows


def render_report(report: dict[str, Any]) -> str:
    """The human form: machine, data, table, fates side by side, ratios, verdicts."""
    lines = [render(report["machine"]), ""]
    data = report["data"]
    lines.append(
        f"data:      {data['source']} ({data['rows_1x']:,} rows, "
        f"{data['bytes_1x'] / 2**20:.1f} MiB gzip)"
    )
    if data.get("rows_10x"):
        lines.append(
            f"           10x replay: {data['rows_10x']:,} rows, "
            f"{data['bytes_10x'] / 2**20:.1f} MiB gzip, built in "
            f"{data['build_seconds_10x']:.1f} s (not timed in any run)"
        )
    lines.append("")
    header = (
        f"{'engine':<7} {'file':<4} {'rows':>10} {'runs':>4} {'median s':>9} {'min s':>7} "
        f"{'max s':>7} {'rows/s':>9} {'wall s':>7} {'cpu s':>6} {'peak RSS MiB':>12} "
        f"{'other':>5}"
    )
    lines += [header, "-" * len(header)]
    for summary in report["results"].values():
        if not summary["runs"]:
            lines.append(
                f"{summary['engine']:<7} {summary['file']:<4} failed: "
                + "; ".join(summary["failed"])
            )
            continue
        lines.append(
            f"{summary['engine']:<7} {summary['file']:<4} {summary['rows']:>10,} "
            f"{summary['runs']:>4} {summary['median_seconds']:>9.2f} "
            f"{summary['min_seconds']:>7.2f} {summary['max_seconds']:>7.2f} "
            f"{summary['rows_per_second']:>9,.0f} {summary['median_wall_seconds']:>7.2f} "
            f"{summary['median_cpu_seconds']:>6.2f} {summary['peak_rss_mib']:>12,.0f} "
            f"{summary['other_load']:>5.0%}"
        )
    lines.append(
        "(s: the import alone, timed in the child; wall s: the child process, start-up "
        "and imports included;\n cpu s: the child's user + system CPU; other: the largest share "
        "of the machine's CPU that other processes took during a run)"
    )
    for label, summary in report["results"].items():
        if summary.get("stages"):
            parts = ", ".join(f"{k} {v:.2f}" for k, v in summary["stages"].items())
            lines.append(f"{label} stages (median s): {parts}")
    busiest = max((r.get("other_load", 0.0) for r in report["results"].values()), default=0.0)
    if busiest > OTHER_LOAD_WARNING:
        lines.append(
            f"WARNING: other processes took up to {busiest:.0%} of the CPU during the runs; "
            "the timings are skewed, rerun on an idle machine"
        )
    for note in report["notes"]:
        lines.append(f"note: {note}")
    results = report["results"]
    pairs = [
        ("aisle 1x", "pandas 1x", "aisle", "pandas", "fates, 1x"),
        ("aisle 1x", "aisle 10x", "aisle 1x x10", "aisle 10x", "fates, 10x"),
    ]
    for left_key, right_key, left_name, right_name, title in pairs:
        left, right = results.get(left_key, {}), results.get(right_key, {})
        if "fates" not in left or "fates" not in right:
            continue
        scale = 10 if right_key.endswith("10x") else 1
        lines += ["", f"{title:<22} {left_name:>12} {right_name:>12} {'difference':>11}"]
        for name, a, b in fate_differences(left, right):
            expected = a if name.startswith("products") else a * scale
            lines.append(f"{name:<22} {expected:>12,} {b:>12,} {b - expected:>+11,}")
    ratios = report["ratios"]
    lines.append("")
    if "aisle_over_pandas_speed" in ratios:
        lines.append(
            f"speed aisle / pandas+pandera (1x, median to median): "
            f"{ratios['aisle_over_pandas_speed']:.2f}x"
        )
    if "rate_10x_over_1x" in ratios:
        lines.append(
            f"rate 10x / rate 1x (aisle): {ratios['rate_10x_over_1x']:.2f}   "
            f"peak RSS 10x / 1x: {ratios['rss_10x_over_1x']:.2f}"
        )
        if ratios.get("marginal_rows_per_second"):
            lines.append(
                f"aisle cost fitted through 1x and 10x: {ratios['fixed_seconds']:.2f} s fixed "
                f"per import + rows at {ratios['marginal_rows_per_second']:,.0f} rows/s"
            )
    lines.append("")
    for check in report["checks"]:
        verdict = "PASS" if check["pass"] else "FAIL"
        lines.append(f"{verdict}  {check['target']}: {check['figure']}")
    return "\n".join(lines)


def benchmark(args: argparse.Namespace, source: Path) -> dict[str, Any]:
    """Every run the options ask for; the report as one JSON-ready object."""
    machine = describe()  # before the runs, so its load average is other work's alone
    secret = secrets.token_hex(32)
    results: dict[str, dict[str, Any]] = {}
    notes: list[str] = []
    data: dict[str, Any] = {"source": str(source), "bytes_1x": source.stat().st_size}
    with tempfile.TemporaryDirectory(prefix="aisle-bench-") as scratch:
        work = Path(scratch)
        runs: dict[str, list[dict[str, Any]]] = {"aisle": [], "pandas": []}
        for i in range(args.repeat):  # interleaved, so a drift of the machine hits both
            for engine, engine_runs in runs.items():
                run = spawn(engine, source, work / f"{engine}-1x-{i}", secret)
                engine_runs.append(run)
                _log(
                    f"{engine} 1x run {i + 1}/{args.repeat}: "
                    + (f"{run['seconds']:.2f} s" if run["ok"] else run["error"])
                )
        for engine, engine_runs in runs.items():
            results[f"{engine} 1x"] = summarise(engine, "1x", engine_runs)
        data["rows_1x"] = results["aisle 1x"].get("rows") or results["pandas 1x"].get("rows")
        if args.repeat_10x > 0:
            replay = work / "transactions-10x.csv.gz"
            started = time.perf_counter()
            _log(f"building the {REPLAYS}x replay ...")
            data["rows_10x"] = build_replay(source, replay)
            data["build_seconds_10x"] = time.perf_counter() - started
            data["bytes_10x"] = replay.stat().st_size
            engines = ["aisle", "pandas"] if args.pandas_10x else ["aisle"]
            for engine in engines:
                engine_runs = []
                for i in range(args.repeat_10x):
                    run = spawn(engine, replay, work / f"{engine}-10x-{i}", secret)
                    engine_runs.append(run)
                    _log(
                        f"{engine} 10x run {i + 1}/{args.repeat_10x}: "
                        + (f"{run['seconds']:.2f} s" if run["ok"] else run["error"])
                    )
                results[f"{engine} 10x"] = summarise(engine, "10x", engine_runs)
            pandas_1x = results["pandas 1x"].get("median_seconds")
            if not args.pandas_10x and pandas_1x:
                notes.append(
                    f"pandas skipped on 10x: about {pandas_1x * REPLAYS * args.repeat_10x:.0f} s "
                    "at its 1x rate; pass --pandas-10x to run it"
                )
        else:
            notes.append("10x replay skipped (--repeat-10x 0)")
    ratios, checks = evaluate(results)
    return {
        "machine": machine,
        "data": data,
        "results": results,
        "ratios": ratios,
        "checks": checks,
        "notes": notes,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per engine on the 1x file")
    parser.add_argument(
        "--repeat-10x",
        type=int,
        default=1,
        help="aisle runs on the 10x replay (0 skips the replay)",
    )
    parser.add_argument(
        "--pandas-10x",
        action="store_true",
        help="run the pandas baseline on the 10x replay too (slow)",
    )
    parser.add_argument("--data", type=Path, help="the UCI file (default: the shared copy)")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target fails")
    parser.add_argument("--child", choices=["aisle", "pandas"], help=argparse.SUPPRESS)
    parser.add_argument("--file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--home", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.repeat_10x < 0:
        parser.error("--repeat must be at least 1 and --repeat-10x at least 0")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (or, with --child, one import of it)."""
    args = parse_args(argv)
    if args.child:
        run_child(args.child, args.file, args.home)
        return 0
    source = args.data or find_source()
    if source is None or not source.exists():
        where = args.data or f"$AISLE_DATA or ../shared/data, under {UCI_FILE}"
        _log(
            f"ingest benchmark: the UCI Online Retail file is absent ({where}); "
            "set AISLE_DATA to the folder that holds uci-online-retail/ or pass --data FILE"
        )
        return 2
    report = benchmark(args, source)
    print(json.dumps(report, indent=2) if args.json else render_report(report))
    failed = any(not check["pass"] for check in report["checks"])
    return 1 if args.strict and failed else 0


if __name__ == "__main__":
    sys.exit(main())
