"""The evaluation report: one self-contained HTML page (plotly.js inlined, never a CDN)."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from aisle.evaluation.runner import EvaluationResult

_CSS: Final = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#222}
h1{margin-bottom:.2rem} h2{border-bottom:1px solid #ddd;padding-bottom:.2rem;margin-top:2rem}
table{border-collapse:collapse;margin:.5rem 0;font-size:.9rem}
th,td{border:1px solid #ddd;padding:.25rem .5rem;text-align:left}
th{background:#f5f5f5} td.num{text-align:right;font-variant-numeric:tabular-nums}
.label{padding:.6rem 1rem;background:#eef5ff;border-left:4px solid #3b7ddd}
.sampled{background:#fff4e5;border-left-color:#e8890c;font-weight:600}
.note{color:#666}
"""
#: Metrics whose values lie in 0..1 and are shown together in one bar chart.
_RANKING: Final = ("ndcg", "hr", "recall", "map")


def _number(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def _cell(value: Any) -> str:
    if value is None:
        return "<td>—</td>"
    if isinstance(value, bool):
        return f"<td>{'yes' if value else 'no'}</td>"
    if isinstance(value, int):
        return f'<td class="num">{value:,}</td>'
    if isinstance(value, float):
        shown = _number(value) if math.isfinite(value) else "—"
        return f'<td class="num">{shown}</td>'
    return f"<td>{html.escape(str(value))}</td>"


def _table(head: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    if not rows:
        return '<p class="note">no data</p>'
    top = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{top}</tr>{body}</table>"


def _pairs(mapping: dict[str, Any]) -> str:
    return _table(["", "value"], [[k.replace("_", " "), v] for k, v in mapping.items()])


def _figure(fig: go.Figure, title: str, **layout: Any) -> str:
    fig.update_layout({"title": title, "template": "plotly_white", "height": 380} | layout)
    return str(fig.to_html(full_html=False, include_plotlyjs=False, config={"displaylogo": False}))


def _metric_names(result: EvaluationResult) -> list[str]:
    names: list[str] = []
    for model in result.models.values():
        names += [n for n in model.metrics if n not in names]
    return names


def _metrics_section(result: EvaluationResult) -> str:
    names = _metric_names(result)
    rows = [
        [name, *(r.metrics.get(n) for n in names), round(r.train_seconds, 3)]
        for name, r in result.models.items()
    ]
    out = _table(["model", *names, "train s"], rows)
    for variant, about in result.variants.items():
        rows = [
            [name, *(r.variants.get(variant, {}).get(n) for n in names)]
            for name, r in result.models.items()
        ]
        out += (
            f"<h3>{html.escape(variant)}</h3><p>{html.escape(about['label'])}; "
            f"{about['test_users']:,} test users</p>" + _table(["model", *names], rows)
        )
    return out


def _bars(result: EvaluationResult, metric_names: Sequence[str], title: str) -> str:
    if not metric_names or not result.models:
        return ""
    fig = go.Figure()
    for name, r in result.models.items():
        fig.add_bar(x=list(metric_names), y=[r.metrics.get(n) for n in metric_names], name=name)
    return _figure(fig, title, barmode="group")


def _charts(result: EvaluationResult) -> str:
    names = _metric_names(result)
    ranking = [n for n in names if n.split("@")[0] in _RANKING or n in ("mrr", "auc")]
    out = _bars(result, ranking, "Ranking metrics (higher is better)")
    out += _bars(result, [n for n in ("coverage",) if n in names], "Catalog coverage of top-k")
    out += _bars(result, [n for n in ("novelty",) if n in names], "Novelty (bits)")
    out += _bars(
        result, [n for n in ("popularity_bias",) if n in names], "Popularity percentile of top-k"
    )
    if result.models:
        times = go.Figure(
            go.Bar(
                x=list(result.models),
                y=[r.train_seconds for r in result.models.values()],
            )
        )
        out += _figure(times, "Training seconds")
        curve = go.Figure()
        for name, r in result.models.items():
            if r.hit_curve:
                curve.add_scatter(
                    x=list(range(1, len(r.hit_curve) + 1)), y=r.hit_curve, mode="lines", name=name
                )
        out += _figure(curve, "HR@n: share of test users with a hit in the top n",
                       xaxis={"title": "n"})  # fmt: skip
    return out


def _losses(result: EvaluationResult) -> str:
    fig = go.Figure()
    without = []
    for name, r in result.models.items():
        if r.losses:
            fig.add_scatter(x=list(range(1, len(r.losses) + 1)), y=r.losses, mode="lines+markers",
                            name=name)  # fmt: skip
        else:
            without.append(name)
    out = _figure(fig, "Training loss per epoch", xaxis={"title": "epoch"}) if fig.data else ""
    if without:
        out += f'<p class="note">no loss curve (not trained by epochs): {", ".join(without)}</p>'
    return out


def _data_section(result: EvaluationResult) -> str:
    parts = [
        "<h3>Split</h3>" + _pairs(result.dataset),
        "<h3>Unknown to training (counted, never dropped)</h3>" + _pairs(result.unknown),
        "<h3>Protocol counts</h3>" + _pairs(result.counts),
    ]
    if result.test_file:
        parts.append("<h3>Held-out file import</h3>" + _pairs(result.test_file))
    return "".join(parts)


def write_html(result: EvaluationResult, path: Path) -> Path:
    """Write the evaluation as one self-contained HTML file and return its path."""
    sampled = result.protocol != "full"
    label = (
        f'<p class="label{" sampled" if sampled else ""}">protocol: '
        f"{html.escape(result.protocol)} ({html.escape(result.split)} split, k = {result.k}) "
        f"— {html.escape(result.label)}</p>"
    )
    sections = [
        ("Metrics", _metrics_section(result)),
        ("Plots", _charts(result)),
        ("Training loss curves", _losses(result)),
        ("Data", _data_section(result)),
    ]
    if result.ratings:
        sections.append(("Ratings", _pairs(result.ratings)))
    if result.notes:
        items = "".join(f"<li>{html.escape(n)}</li>" for n in result.notes)
        sections.append(("Notes", f"<ul>{items}</ul>"))
    body = "".join(f"<h2>{title}</h2>{content}" for title, content in sections)
    script = f"<script>{get_plotlyjs()}</script>" if 'class="plotly-graph-div"' in body else ""
    page = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>aisle evaluation</title><style>{_CSS}</style>{script}</head><body>"
        f"<h1>aisle evaluation</h1><p>generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC</p>"
        f"{label}{body}</body></html>"
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path
