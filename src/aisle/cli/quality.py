"""`aisle quality report` and `aisle quality quarantine list|show|release|drop`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from aisle.cli.context import console, emit_json, guarded, settings
from aisle.privacy import audit
from aisle.quality import quarantine as q
from aisle.quality.report import build_report, report_json, summary_table, write_html
from aisle.releases import release as release_held
from aisle.storage import Store

app = typer.Typer(help="Data-quality report and the quarantine.")
quarantine_app = typer.Typer(help="Inspect, release or drop quarantined records.")
app.add_typer(quarantine_app, name="quarantine")

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]
IdsArgument = Annotated[list[str] | None, typer.Argument(help="Record ids.")]
ReasonOption = Annotated[str | None, typer.Option("--reason", help="Every held record with it.")]


@app.command("report")
@guarded
def report(
    html: Annotated[Path | None, typer.Option("--html", help="Write the HTML report here.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Reconciliation, quarantine, profiles, drift and pictures of the data."""
    config = settings()
    with Store(config.home) as store:
        data = build_report(store)
    path = write_html(data, html) if html else None
    if as_json:
        payload = report_json(data)
        if path:
            payload["html"] = str(path)
        emit_json(payload)
        return
    console.print(summary_table(data))
    if path:
        console.print(f"report written to [bold]{path}[/bold]")


@quarantine_app.command("list")
@guarded
def list_(
    reason: ReasonOption = None,
    status: Annotated[str, typer.Option(help="held, released or dropped.")] = "held",
    kind: Annotated[str | None, typer.Option(help="events or products.")] = None,
    import_id: Annotated[int | None, typer.Option("--import", help="One import.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many rows.")] = 50,
    as_json: JsonOption = False,
) -> None:
    """Quarantined records, newest import first."""
    with Store(settings().home) as store:
        rows = q.list_quarantine(
            store, reason=reason, status=status, kind=kind, import_id=import_id, limit=limit
        )
    if as_json:
        emit_json({"records": rows.to_dicts()})
        return
    table = Table(title=f"quarantine ({status})")
    for name in ("record_id", "kind", "import", "line", "reasons", "detail"):
        table.add_column(name, overflow="fold")
    for row in rows.iter_rows(named=True):
        table.add_row(
            row["record_id"],
            row["kind"],
            str(row["import_id"]),
            str(row["line"]),
            ", ".join(row["reasons"]),
            row["detail"] or "",
        )
    console.print(table)


@quarantine_app.command("show")
@guarded
def show(record_id: str, as_json: JsonOption = False) -> None:
    """One quarantined record with its source row (customer ids pseudonymised)."""
    with Store(settings().home) as store:
        row = q.show_record(store, record_id)
        audit.record(store, "read_quarantine", record_id, {"import_id": row["import_id"]})
    if as_json:
        emit_json(row)
        return
    table = Table(title=f"quarantined record {record_id}", show_header=False)
    table.add_column("field")
    table.add_column("value", overflow="fold")
    for key, value in row.items():
        table.add_row(key, str(value))
    console.print(table)


@quarantine_app.command("release")
@guarded
def release(
    record_ids: IdsArgument = None,
    reason: ReasonOption = None,
    force: Annotated[
        bool, typer.Option("--force", help="Accept as parsed, even if rules still object.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Release held records whose problem is fixed (or, with --force, as they are)."""
    config = settings()
    with Store(config.home) as store:
        outcome = release_held(store, config, record_ids=record_ids, reason=reason, force=force)
    if as_json:
        emit_json(outcome.to_json())
        return
    console.print(f"released {outcome.released:,}; still held {outcome.still_held:,}")


@quarantine_app.command("drop")
@guarded
def drop(
    record_ids: IdsArgument = None,
    reason: ReasonOption = None,
    note: Annotated[str, typer.Option(help="Why, for the ledger.")] = "",
    as_json: JsonOption = False,
) -> None:
    """Drop held records for good (they stay in the ledger as dropped)."""
    with Store(settings().home) as store:
        dropped = q.drop(store, record_ids=record_ids, reason=reason, note=note)
    if as_json:
        emit_json({"dropped": dropped})
        return
    console.print(f"dropped {dropped:,}")
