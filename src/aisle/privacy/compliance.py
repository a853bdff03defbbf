"""The compliance report: what personal data aisle holds, where, why, for how long, and
what was done with it (consent, releases, erasures, retention, audit)."""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aisle.config import Settings
from aisle.privacy import audit
from aisle.storage import Store

#: Where personal data lives, what it is and why it is kept.
INVENTORY = [
    ("events.user_id", "customer pseudonym (keyed HMAC-SHA256)",
     "recommendations and search personalisation (with consent), aggregates"),
    ("events.query", "search text, scrubbed of PII at ingest", "search quality and suggestions"),
    ("quarantine.payload, quarantine.user_id", "source row with pseudonymised customer",
     "operators inspect and release held records"),
    ("duplicates.user_id", "customer pseudonym", "erasure of a customer's duplicates"),
    ("snapshots/*.parquet", "copies of the tables above", "exports to other tools"),
    ("erased_users, consent_withdrawals", "sha256 of pseudonyms (no pseudonym)",
     "keep erased customers and withdrawn purposes out of later imports"),
]  # fmt: skip


@dataclass(frozen=True)
class ComplianceReport:
    """Everything the page and the JSON show."""

    generated_at: datetime
    figures: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        """Machine-readable form."""
        return {"generated_at": self.generated_at.isoformat(), **self.figures}


def _one(store: Store, sql: str, params: list[Any] | None = None) -> Any:
    return store.scalar(sql, params)


def build(store: Store, settings: Settings) -> ComplianceReport:
    """Gather the report from the store (aggregates only: no pseudonym is shown)."""
    now = datetime.now(UTC)
    events = int(_one(store, "SELECT count(*) FROM events"))
    consent = store.query(
        "SELECT count(*) FILTER (WHERE consent_personalisation) AS personalisation, "
        "count(*) FILTER (WHERE consent_analytics) AS analytics, "
        "count(DISTINCT user_id) AS customers FROM events"
    ).row(0, named=True)
    withdrawals = dict(
        store.query("SELECT purpose, count(*) FROM consent_withdrawals GROUP BY 1").iter_rows()
    )
    budget = [
        {"dataset": d, "spent": s, "budget": settings.privacy.epsilon_budget, "releases": n}
        for d, s, n in store.query(
            "SELECT dataset, sum(epsilon), count(*) FROM privacy_releases GROUP BY 1 ORDER BY 1"
        ).iter_rows()
    ]
    erasures = store.query(
        "SELECT count(*) AS n, max(logged_at) AS last FROM audit_log WHERE action = 'erasure'"
    ).row(0, named=True)
    retention = settings.retention
    pending_events = (
        int(_one(store, "SELECT count(*) FROM events WHERE timestamp < ?",
                 [now - timedelta(days=retention.events_days)]))
        if retention.events_days is not None else 0
    )  # fmt: skip
    pending_payloads = (
        int(_one(store, "SELECT count(*) FROM quarantine WHERE created_at < ? AND "
                 "(payload IS NOT NULL OR user_id IS NOT NULL)",
                 [now - timedelta(days=retention.quarantine_days)]))
        if retention.quarantine_days is not None else 0
    )  # fmt: skip
    scrubbed: dict[str, int] = {}
    for details in store.query("SELECT details FROM audit_log WHERE action = 'import'")["details"]:
        for entity, count in json.loads(details).get("pii_scrubbed", {}).items():
            scrubbed[entity] = scrubbed.get(entity, 0) + count
    chain = audit.verify(store)
    figures = {
        "inventory": [{"where": w, "what": what, "why": why} for w, what, why in INVENTORY],
        "events": events,
        "customers": consent["customers"],
        "consent": {
            "personalisation_share": consent["personalisation"] / events if events else None,
            "analytics_share": consent["analytics"] / events if events else None,
            "withdrawals": withdrawals,
        },
        "privacy_budget": budget,
        "erasures": {"count": erasures["n"], "last": erasures["last"]},
        "retention": {
            "events_days": retention.events_days,
            "quarantine_days": retention.quarantine_days,
            "events_past_policy": pending_events,
            "held_payloads_past_policy": pending_payloads,
            "aggregate_rows": int(_one(store, "SELECT count(*) FROM event_aggregates")),
            "oldest_event": _one(store, "SELECT min(timestamp) FROM events"),
        },
        "pii_scrubbed": dict(sorted(scrubbed.items())),
        "audit_log": chain.to_json(),
    }
    return ComplianceReport(now, figures)


def _rows(pairs: list[tuple[str, Any]]) -> str:
    return "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in pairs
    )


def write_html(report: ComplianceReport, path: Path) -> Path:
    """One self-contained page (no script, no external resource)."""
    f = report.figures
    inventory = "".join(
        f"<tr><td>{html.escape(i['where'])}</td><td>{html.escape(i['what'])}</td>"
        f"<td>{html.escape(i['why'])}</td></tr>"
        for i in f["inventory"]
    )
    budget = (
        "".join(
            f"<tr><td>{html.escape(b['dataset'])}</td><td>{b['spent']:g}</td><td>{b['budget']:g}</td>"
            f"<td>{b['releases']}</td></tr>"
            for b in f["privacy_budget"]
        )
        or "<tr><td colspan=4>no release yet</td></tr>"
    )
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>aisle compliance</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:60em}}table{{border-collapse:collapse;
margin:1em 0}}td,th{{border:1px solid #ccc;padding:.3em .6em;text-align:left}}</style></head>
<body><h1>aisle compliance report</h1><p>generated {report.generated_at:%Y-%m-%d %H:%M} UTC</p>
<h2>Data inventory</h2><table><tr><th>where</th><th>what</th><th>why</th></tr>{inventory}</table>
<h2>Consent</h2><table>{
        _rows(
            [
                ("events", f["events"]),
                ("customers", f["customers"]),
                (
                    "personalisation consented (share of events)",
                    f["consent"]["personalisation_share"],
                ),
                ("analytics consented (share of events)", f["consent"]["analytics_share"]),
                ("withdrawals", f["consent"]["withdrawals"]),
            ]
        )
    }</table>
<h2>Privacy budget</h2><table><tr><th>dataset</th><th>epsilon spent</th><th>budget</th>
<th>releases</th></tr>{budget}</table>
<h2>Erasures</h2><table>{_rows(list(f["erasures"].items()))}</table>
<h2>Retention</h2><table>{_rows(list(f["retention"].items()))}</table>
<h2>PII scrubbed at ingest</h2><table>{_rows(list(f["pii_scrubbed"].items()) or [("none", 0)])}
</table><h2>Audit log</h2><table>{_rows(list(f["audit_log"].items()))}</table></body></html>"""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page)
    return path
