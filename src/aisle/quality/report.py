"""The data quality report: store aggregates as an offline HTML page, JSON and a terminal table."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import plotly.graph_objects as go
import polars as pl
from plotly.offline import get_plotlyjs
from rich.table import Table

from aisle.quality.profile import OTHER, load_profile
from aisle.storage.store import Store

FUNNEL_STEPS: Final = ("view", "click", "add_to_cart", "purchase")
#: Product columns whose missing rate the report shows (the others are NOT NULL).
PRODUCT_FIELDS: Final = (
    "title", "description", "category_path", "brand", "price", "currency", "attributes",
    "aliases", "source", "updated_at",
)  # fmt: skip
_LIST_FIELDS: Final = frozenset({"category_path", "aliases"})
_TEXT_FIELDS: Final = frozenset({"title", "description", "brand", "currency", "source"})

_SQL: Final[dict[str, str]] = {
    "imports": """SELECT import_id, kind, adapter, source, status, started_at, input, accepted,
        quarantined, duplicates, seconds FROM imports ORDER BY import_id""",
    "quarantine_reasons": """SELECT reason, count(*) AS n FROM
        (SELECT unnest(reasons) AS reason FROM quarantine) GROUP BY reason
        ORDER BY n DESC, reason""",
    "quarantine_status": """SELECT status, count(*) AS n FROM quarantine GROUP BY status
        ORDER BY n DESC""",
    "quarantine_by_import": """SELECT import_id, reason, count(*) AS n FROM
        (SELECT import_id, unnest(reasons) AS reason FROM quarantine) GROUP BY ALL ORDER BY ALL""",
    "quarantine_by_day": """SELECT day, reason, count(*) AS n FROM (SELECT
        CAST(created_at AS DATE) AS day, unnest(reasons) AS reason FROM quarantine)
        GROUP BY ALL ORDER BY ALL""",
    "duplicate_rules": "SELECT rule, count(*) AS n FROM duplicates GROUP BY rule ORDER BY n DESC",
    "drift": """SELECT import_id, baseline_import_id, kind, column_name, metric, value, threshold,
        flagged FROM drift ORDER BY import_id, flagged DESC, value DESC""",
    "events_per_day": """SELECT CAST(timestamp AS DATE) AS day, type, count(*) AS n FROM events
        GROUP BY ALL ORDER BY ALL""",
    "funnel": "SELECT "
    + ", ".join(f"count(DISTINCT user_id) FILTER (WHERE type = '{t}') AS {t}" for t in FUNNEL_STEPS)
    + " FROM events",
    "top_items": """WITH top AS (SELECT item_id, count(*) AS purchases,
            count(DISTINCT user_id) AS buyers FROM events WHERE type = 'purchase'
            GROUP BY item_id ORDER BY purchases DESC, item_id LIMIT 20),
        titles AS (SELECT item_id, arg_max(title, import_id) AS title FROM products
            WHERE item_id IN (SELECT item_id FROM top) GROUP BY item_id)
        SELECT item_id, title, purchases, buyers FROM top LEFT JOIN titles USING (item_id)
        ORDER BY purchases DESC, item_id""",
    "activity": """SELECT CAST(floor(log2(n)) AS INTEGER) AS bucket, count(*) AS users
        FROM (SELECT count(*) AS n FROM events WHERE user_id IS NOT NULL GROUP BY user_id)
        GROUP BY bucket ORDER BY bucket""",
    "prices": """WITH p AS (SELECT coalesce(nullif(category_path[1], ''), '(none)') AS category,
            price FROM products WHERE isfinite(price)),
        top AS (SELECT category FROM p GROUP BY category ORDER BY count(*) DESC LIMIT 15),
        s AS (SELECT CASE WHEN category IN (SELECT category FROM top) THEN category
                ELSE '(other)' END AS category, count(*) AS n, min(price) AS lo,
                quantile_cont(price, 0.25) AS q1, median(price) AS median,
                quantile_cont(price, 0.75) AS q3, max(price) AS hi, avg(price) AS mean
            FROM p GROUP BY 1)
        SELECT category, n, q1, median, q3, mean, greatest(lo, q1 - 1.5 * (q3 - q1)) AS lower,
            least(hi, q3 + 1.5 * (q3 - q1)) AS upper FROM s ORDER BY n DESC, category""",
    "product_sources": """SELECT coalesce(source, '(none)') AS source, count(*) AS n FROM products
        GROUP BY 1 ORDER BY n DESC""",
    "product_missing": "SELECT count(*) AS rows, "
    + ", ".join(
        f"avg(CAST(({c} IS NULL"
        + (f" OR len({c}) = 0" if c in _LIST_FIELDS else "")
        + (f" OR trim({c}) = ''" if c in _TEXT_FIELDS else "")
        + (f" OR CAST({c} AS VARCHAR) IN ('{{}}', 'null')" if c == "attributes" else "")
        + f") AS DOUBLE)) AS {c}"
        for c in PRODUCT_FIELDS
    )
    + " FROM products",
}


@dataclass(frozen=True)
class Report:
    """Everything the quality page shows, aggregated in the store.

    ``frames`` holds one small aggregate per name of ``_SQL`` (``imports`` with the
    reconciliation check, ``quarantine_reasons``, ``funnel``, ``top_items``, ...);
    ``profiles`` maps import ids to their stored column profiles.
    """

    generated_at: datetime
    totals: dict[str, int]
    frames: dict[str, pl.DataFrame]
    profiles: dict[int, dict[str, dict[str, Any]]] = field(default_factory=dict)


def _imports(frame: pl.DataFrame) -> pl.DataFrame:
    """The import ledger with file name, throughput and the reconciliation check."""
    parts = pl.col("quarantined") + pl.col("duplicates") + pl.col("accepted")
    return frame.with_columns(
        file=pl.col("source").str.extract(r"([^/\\]+)[/\\]*$", 1).fill_null(pl.col("source")),
        rows_per_s=pl.when(pl.col("seconds") > 0).then(pl.col("input") / pl.col("seconds")),
        reconciles=pl.col("input") == parts,
    ).select(
        "import_id", "kind", "adapter", "file", "status", "input", "accepted", "quarantined",
        "duplicates", "seconds", "rows_per_s", "reconciles", "started_at",
    )  # fmt: skip


def _funnel(row: pl.DataFrame) -> pl.DataFrame:
    """The one-row step counts as (step, users), every step present."""
    users = [int(row[s][0] or 0) if row.height else 0 for s in FUNNEL_STEPS]
    return pl.DataFrame({"step": list(FUNNEL_STEPS), "users": users})


def _missing(row: pl.DataFrame) -> pl.DataFrame:
    """The one-row missing rates as (column, missing_rate); empty without products."""
    if not row.height or not row["rows"][0]:
        return pl.DataFrame(schema={"column": pl.String, "missing_rate": pl.Float64})
    return row.drop("rows").unpivot(variable_name="column", value_name="missing_rate")


def build_report(store: Store) -> Report:
    """Aggregate the ledger, quarantine, duplicates, profiles, drift, events and products."""
    frames = {name: store.query(sql) for name, sql in _SQL.items()}
    frames["imports"] = _imports(frames["imports"])
    frames["funnel"] = _funnel(frames["funnel"])
    frames["product_missing"] = _missing(frames["product_missing"])
    ids = store.query("SELECT DISTINCT import_id FROM profiles ORDER BY import_id")["import_id"]
    imports = frames["imports"]
    fates = ("input", "accepted", "quarantined", "duplicates")
    totals = {
        "imports": imports.height,
        **{c: int(imports[c].sum() or 0) for c in fates},
        "unreconciled": int((~imports["reconciles"]).sum() or 0),
        "events": int(store.scalar("SELECT count(*) FROM events")),
        "users": int(store.scalar("SELECT count(DISTINCT user_id) FROM events")),
        "products": int(store.scalar("SELECT count(*) FROM products")),
        "quarantine_rows": int(store.scalar("SELECT count(*) FROM quarantine")),
        "quarantine_held": int(
            store.scalar("SELECT count(*) FROM quarantine WHERE status = 'held'")
        ),
        "duplicate_rows": int(store.scalar("SELECT count(*) FROM duplicates")),
        "drift_flags": int(frames["drift"]["flagged"].sum() or 0),
    }
    return Report(
        generated_at=datetime.now(UTC),
        totals=totals,
        frames=frames,
        profiles={int(i): load_profile(store, int(i)) for i in ids},
    )


def _rows(frame: pl.DataFrame) -> list[dict[str, Any]]:
    """JSON-ready rows: temporal values as ISO text."""
    temporal = [c for c, t in frame.schema.items() if t.is_temporal()]
    return frame.with_columns(pl.col(temporal).cast(pl.String)).to_dicts()


def report_json(report: Report) -> dict[str, Any]:
    """Machine-readable report: reconciliation per import, quarantine, duplicates, drift, totals."""
    f = report.frames
    drift = f["drift"]
    return {
        "generated_at": report.generated_at.isoformat(),
        "totals": dict(report.totals),
        "imports": _rows(f["imports"]),
        "quarantine": {
            "by_reason": dict(f["quarantine_reasons"].iter_rows()),
            "by_status": dict(f["quarantine_status"].iter_rows()),
        },
        "duplicates": {"by_rule": dict(f["duplicate_rules"].iter_rows())},
        "drift": {"checked": drift.height, "flagged": _rows(drift.filter("flagged"))},
    }


def summary_table(report: Report) -> Table:
    """A short terminal summary of the report."""
    t = report.totals
    table = Table(title="aisle data quality", show_header=False)
    table.add_column("measure", style="bold")
    table.add_column("value", justify="right")
    rows = [
        ("imports", t["imports"]), ("input records", t["input"]), ("accepted", t["accepted"]),
        ("quarantined", t["quarantined"]), ("duplicates", t["duplicates"]),
        ("imports not reconciling", t["unreconciled"]), ("quarantine held", t["quarantine_held"]),
        ("drift flags", t["drift_flags"]), ("events stored", t["events"]),
        ("products stored", t["products"]),
    ]  # fmt: skip
    for name, value in rows:
        bad = name in ("imports not reconciling", "drift flags") and value > 0
        table.add_row(name, f"[red]{value:,}[/red]" if bad else f"{value:,}")
    return table


# ---- HTML ---------------------------------------------------------------------------------

_CSS: Final = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1200px;color:#222;padding:0 1rem}
table{border-collapse:collapse;margin:.5rem 0 1rem;font-size:.85rem}
th,td{border:1px solid #ddd;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f4f4f4} td.num{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#1a7f37;font-weight:bold} .bad{color:#cf222e;font-weight:bold}
tr.flagged td{background:#ffebe9} .note{color:#777;font-style:italic}
.cards{display:flex;gap:1rem;flex-wrap:wrap} .card{border:1px solid #ddd;padding:.5rem 1rem}
.card b{display:block;font-size:1.3rem}
"""


def _number(value: float) -> str:
    """A float for reading: thousands separated, else four significant digits."""
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def _shown(value: Any) -> str | None:
    """A profile value (number or ISO time) as text, so one table column can hold both."""
    return _number(value) if isinstance(value, float) else None if value is None else str(value)


def _cell(value: Any) -> str:
    """One escaped table cell; numbers right-aligned, checks coloured."""
    if value is None:
        return "<td>—</td>"
    if isinstance(value, bool):
        return f'<td class="{"ok" if value else "bad"}">{"✓" if value else "✗"}</td>'
    if isinstance(value, int):
        return f'<td class="num">{value:,}</td>'
    if isinstance(value, float):
        return f'<td class="num">{_number(value)}</td>'
    return f"<td>{html.escape(str(value)[:120])}</td>"


def _table(frame: pl.DataFrame, highlight: str | None = None) -> str:
    """An HTML table of a (small, aggregated) frame.

    Rows true in the boolean column ``highlight`` stand out, that column reading "drift".
    """
    if frame.height == 0:
        return '<p class="note">no data</p>'
    head = "".join(f"<th>{html.escape(c)}</th>" for c in frame.columns)
    if highlight:
        frame = frame.with_columns(pl.when(highlight).then(pl.lit("⚠ drift")).alias(highlight))
    body = "".join(
        ('<tr class="flagged">' if highlight and row[highlight] else "<tr>")
        + "".join(_cell(v) for v in row.values())
        + "</tr>"
        for row in frame.iter_rows(named=True)
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _figure(fig: go.Figure, title: str, **layout: Any) -> str:
    """A plotly figure as a div; plotly.js itself is inlined once in the page head."""
    fig.update_layout({"title": title, "template": "plotly_white", "height": 380} | layout)
    return str(fig.to_html(full_html=False, include_plotlyjs=False, config={"displaylogo": False}))


def _stacked(frame: pl.DataFrame, x: str, group: str, title: str) -> str:
    """A stacked bar of ``n`` per ``x``, one trace per ``group`` value."""
    if frame.height == 0:
        return '<p class="note">no data</p>'
    fig = go.Figure()
    for (key,), part in frame.partition_by(group, as_dict=True, maintain_order=True).items():
        fig.add_bar(x=part[x].cast(pl.String).to_list(), y=part["n"].to_list(), name=str(key))
    return _figure(fig, title, barmode="stack", xaxis={"type": "category"})


def _profile_section(report: Report) -> str:
    """Per import, its column profiles and its drift rows (flagged ones highlighted)."""
    if not report.profiles:
        return '<p class="note">no data: no profiles recorded yet</p>'
    drift = report.frames["drift"]
    parts: list[str] = []
    for import_id, profile in sorted(report.profiles.items(), reverse=True):
        rows = [
            {
                "column": name,
                "dtype": s.get("dtype"),
                "null rate": s.get("null_rate"),
                "distinct": s.get("distinct"),
                **{k: _shown(s.get(k)) for k in ("min", "max", "mean")},
                "top values": ", ".join(
                    f"{v[:30]} ({n:,})" for v, n in list(s.get("top", {}).items())[:6] if v != OTHER
                ),
            }
            for name, s in profile.items()
        ]
        own = drift.filter(pl.col("import_id") == import_id).drop("import_id", "kind")
        flags = int(own["flagged"].sum() or 0)
        parts.append(
            f"<details{' open' if not parts else ''}><summary>import {import_id}: "
            f"{len(profile)} columns, {flags} drift flags</summary>"
            f"{_table(pl.DataFrame(rows, infer_schema_length=None, strict=False))}"
            f"<h4>drift against the baseline</h4>{_table(own, highlight='flagged')}</details>"
        )
    return "".join(parts)


def _behaviour_section(f: dict[str, pl.DataFrame]) -> str:
    """Events per day, funnel, top items and activity per customer."""
    if f["events_per_day"].height == 0:
        return '<p class="note">no data: no events stored</p>'
    days = f["events_per_day"]
    lines = go.Figure()
    for (kind,), part in days.partition_by("type", as_dict=True, maintain_order=True).items():
        lines.add_scatter(x=part["day"].to_list(), y=part["n"].to_list(), mode="lines", name=kind)
    funnel = go.Figure(go.Funnel(y=f["funnel"]["step"].to_list(), x=f["funnel"]["users"].to_list()))
    top = f["top_items"].with_columns(label=pl.coalesce("title", "item_id").str.slice(0, 40))
    items = go.Figure(
        go.Bar(x=top["purchases"].to_list()[::-1], y=top["label"].to_list()[::-1], orientation="h")
    )
    low, high = 2 ** pl.col("bucket"), 2 ** (pl.col("bucket") + 1) - 1
    activity = f["activity"].with_columns(
        label=pl.when(low == high)
        .then(low.cast(pl.String))
        .otherwise(pl.format("{}–{}", low, high))
    )
    histogram = go.Figure(go.Bar(x=activity["label"].to_list(), y=activity["users"].to_list()))
    return (
        _figure(lines, "Events per day by type")
        + "<h3>Funnel (distinct customers reaching each step)</h3>"
        + _figure(funnel, "view → click → add_to_cart → purchase")
        + "<h3>Top 20 items by purchases</h3>"
        + (
            _figure(items, "Purchases", height=560)
            if top.height
            else '<p class="note">no purchases</p>'
        )
        + _table(top.drop("label"))
        + "<h3>Customers' activity</h3>"
        + _figure(
            histogram,
            "Customers by number of events",
            yaxis={"type": "log", "title": "customers"},
            xaxis={"title": "events per customer (doubling bins)", "type": "category"},
        )
    )


def _product_section(f: dict[str, pl.DataFrame]) -> str:
    """Price by category, products by source, missing-field rates."""
    if f["product_sources"].height == 0:
        return '<p class="note">no data: no products stored</p>'
    p = f["prices"]
    box = go.Figure(
        go.Box(
            x=p["category"].to_list(),
            q1=p["q1"].to_list(),
            median=p["median"].to_list(),
            q3=p["q3"].to_list(),
            mean=p["mean"].to_list(),
            lowerfence=p["lower"].to_list(),
            upperfence=p["upper"].to_list(),
            name="price",
        )
    )
    src, miss = f["product_sources"], f["product_missing"]
    sources = go.Figure(go.Bar(x=src["source"].to_list(), y=src["n"].to_list()))
    missing = go.Figure(go.Bar(x=miss["column"].to_list(), y=miss["missing_rate"].to_list()))
    return (
        (
            _figure(box, "Price by category (first level)")
            if p.height
            else '<p class="note">no prices</p>'
        )
        + _figure(sources, "Products by source")
        + _figure(missing, "Missing-field rate per product column", yaxis={"range": [0, 1]})
        + _table(miss)
    )


def _balance(t: dict[str, int]) -> str:
    """The totals line under the ledger: does everything that came in have a fate?"""
    fates = t["accepted"] + t["quarantined"] + t["duplicates"]
    mark = '<span class="ok">✓</span>' if fates == t["input"] else '<span class="bad">✗</span>'
    return (
        f"<p>totals: input {t['input']:,} = accepted {t['accepted']:,} + quarantined "
        f"{t['quarantined']:,} + duplicates {t['duplicates']:,} {mark}</p>"
    )


def write_html(report: Report, path: Path) -> Path:
    """Write the report as one self-contained HTML file (works offline) and return its path."""
    f, t = report.frames, report.totals
    cards = "".join(
        f'<div class="card">{html.escape(k.replace("_", " "))}<b>{v:,}</b></div>'
        for k, v in t.items()
    )
    imports = f["imports"].drop("started_at").rename({"reconciles": "input = a + q + d"})
    sections = [
        ("Reconciliation", _table(imports) + _balance(t)),
        (
            "Quarantine",
            "<h3>By reason</h3>"
            + _table(f["quarantine_reasons"])
            + "<h3>By status</h3>"
            + _table(f["quarantine_status"])
            + _stacked(f["quarantine_by_import"], "import_id", "reason", "Reasons per import")
            + _stacked(f["quarantine_by_day"], "day", "reason", "Reasons per day quarantined"),
        ),
        ("Duplicates", _table(f["duplicate_rules"])),
        ("Profiles and drift", _profile_section(report)),
        ("User behaviour", _behaviour_section(f)),
        ("Product attributes", _product_section(f)),
    ]
    body = "".join(f"<h2>{title}</h2>{content}" for title, content in sections)
    # plotly.js inlined once, only when a figure needs it: the page never reaches a CDN.
    script = f"<script>{get_plotlyjs()}</script>" if 'class="plotly-graph-div"' in body else ""
    page = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>aisle data quality</title><style>{_CSS}</style>{script}</head><body>"
        f"<h1>aisle data quality</h1><p>generated {report.generated_at:%Y-%m-%d %H:%M} UTC</p>"
        f'<div class="cards">{cards}</div>{body}</body></html>'
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path
