"""`aisle erase` and the `aisle privacy` commands: proof, audit, consent, releases, keys."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from aisle.cli.context import console, emit_json, guarded, settings
from aisle.models import registry
from aisle.privacy import audit
from aisle.privacy.compliance import build as build_compliance
from aisle.privacy.compliance import write_html as write_compliance
from aisle.privacy.consent import Purpose, withdraw
from aisle.privacy.dp import ALL, Release, release, spent
from aisle.privacy.erasure import erase, find_traces
from aisle.privacy.exports import export
from aisle.privacy.retention import apply_retention
from aisle.privacy.rotation import pseudonymiser_for, rotate
from aisle.storage import Store

app = typer.Typer(help="Privacy: proof of erasure, audit, consent, retention, private releases.")

UserOption = Annotated[
    str, typer.Option("--user", help="The customer's id as the shop knows it (never stored).")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]


@guarded
def erase_command(user: UserOption, as_json: JsonOption = False) -> None:
    """Erase a customer (right to be forgotten): records, held rows, snapshots; keep them out."""
    config = settings()
    with Store(config.home) as store:
        keys = pseudonymiser_for(store, config)
        pseudonym = keys.one(user.strip())
        receipt = erase(
            store,
            pseudonym,
            subject=keys.first(user.strip()),
            forget_in_models=lambda who: registry.forget_user(store, who),
        )
    if as_json:
        emit_json(receipt.to_json())
        return
    table = Table(title=f"erased customer {pseudonym}")
    table.add_column("removed from")
    table.add_column("records", justify="right")
    for name, count in receipt.removed.items():
        table.add_row(name, f"{count:,}")
    table.add_row("snapshot files rewritten", f"{receipt.snapshots_rewritten:,}")
    console.print(table)
    console.print(f"models: {receipt.models}; receipt written to the audit log")


@app.command("verify")
@guarded
def verify_command(user: UserOption, as_json: JsonOption = False) -> None:
    """Prove that no trace of a customer is left in the store, snapshots or artifacts."""
    config = settings()
    with Store(config.home) as store:
        pseudonym = pseudonymiser_for(store, config).one(user.strip())
        traces = find_traces(store, pseudonym, raw_id=user.strip())
    if as_json:
        emit_json(traces.to_json())
    elif traces.clean:
        console.print(f"no trace of {pseudonym} ({traces.receipts} erasure receipt(s) on record)")
    else:
        for place, rows in traces.tables.items():
            console.print(f"[red]trace:[/red] {place}: {rows} row(s)")
        for path in traces.files:
            console.print(f"[red]trace:[/red] {path}")
    if not traces.clean:
        raise typer.Exit(1)


@app.command("audit")
@guarded
def audit_command(
    action: Annotated[str | None, typer.Option(help="Only entries of this action.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many entries.")] = 20,
    as_json: JsonOption = False,
) -> None:
    """Check the audit log's hash chain and show its newest entries."""
    with Store(settings().home) as store:
        check = audit.verify(store)
        rows = audit.entries(store, action=action, limit=limit)
    if as_json:
        emit_json({"chain": check.to_json(), "entries": rows})
    else:
        verdict = "[green]intact[/green]" if check.ok else f"[red]BROKEN[/red]: {check.problem}"
        console.print(f"audit log: {check.entries} entries, chain {verdict}")
        table = Table()
        for name in ("seq", "logged_at", "action", "subject"):
            table.add_column(name)
        for row in rows:
            table.add_row(str(row["seq"]), str(row["logged_at"]), row["action"], row["subject"])
        console.print(table)
    if not check.ok:
        raise typer.Exit(1)


consent_app = typer.Typer(help="Customers' consent purposes.")
app.add_typer(consent_app, name="consent")
retention_app = typer.Typer(help="The retention policy (the retention section of aisle.toml).")
app.add_typer(retention_app, name="retention")


@consent_app.command("withdraw")
@guarded
def withdraw_command(
    user: UserOption,
    purpose: Annotated[Purpose, typer.Option(help="The purpose withdrawn.")],
    as_json: JsonOption = False,
) -> None:
    """Withdraw a purpose: stored events lose it now, later imports never carry it."""
    config = settings()
    with Store(config.home) as store:
        keys = pseudonymiser_for(store, config)
        pseudonym = keys.one(user.strip())
        changed = withdraw(store, pseudonym, purpose, subject=keys.first(user.strip()))
    if as_json:
        emit_json({"pseudonym": pseudonym, "purpose": purpose.value, "events": changed})
        return
    console.print(f"{purpose.value} withdrawn for {pseudonym}: {changed:,} events updated")


@retention_app.command("apply")
@guarded
def retention_command(as_json: JsonOption = False) -> None:
    """Apply the retention policy now (running it twice changes nothing more)."""
    config = settings()
    with Store(config.home) as store:
        outcome = apply_retention(store, config.retention)
    if as_json:
        emit_json(outcome.to_json())
        return
    for name, value in outcome.to_json().items():
        console.print(f"{name.replace('_', ' ')}: {value:,}")


def _show_release(result: Release, left: float, as_json: bool) -> None:
    if as_json:
        emit_json({**result.to_json(), "budget_left": left})
        return
    table = Table(
        title=f"{result.what} ({result.dataset}, epsilon {result.epsilon:g}, budget left {left:g})"
    )
    columns = [c for c in result.items.columns if c != "title" or result.what != "categories"]
    table.add_column("rank")
    for name in columns:
        table.add_column(name)
    for rank, row in enumerate(result.items.iter_rows(named=True), start=1):
        table.add_row(str(rank), *[str(row[c] if row[c] is not None else "") for c in columns])
    console.print(table)


@app.command("release")
@guarded
def release_command(
    what: Annotated[
        str,
        typer.Argument(
            help="popular (items), trending (items bought lately), categories, or "
            "suggestions (search queries: one few customers typed never appears)."
        ),
    ],
    epsilon: Annotated[float, typer.Option(help="Privacy cost of this release.")] = 1.0,
    top: Annotated[int, typer.Option(help="How many to release.")] = 100,
    dataset: Annotated[str, typer.Option(help="An events source (adapter), or 'all'.")] = ALL,
    days: Annotated[int, typer.Option(help="trending: days back from the last sale.")] = 30,
    as_json: JsonOption = False,
) -> None:
    """Release a statistic with differential privacy; refused past the dataset's budget."""
    config = settings()
    with Store(config.home) as store:
        result = release(
            store, config.privacy, what, epsilon=epsilon, top=top, dataset=dataset, days=days
        )
        left = config.privacy.epsilon_budget - spent(store, dataset)
    _show_release(result, left, as_json)


@app.command("report")
@guarded
def report_command(
    html_path: Annotated[
        Path | None, typer.Option("--html", help="Write the report page here.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Data inventory, consent coverage, budget spent, erasures, retention, audit."""
    config = settings()
    with Store(config.home) as store:
        report = build_compliance(store, config)
    written = write_compliance(report, html_path) if html_path else None
    if as_json:
        emit_json({**report.to_json(), **({"html": str(written)} if written else {})})
        return
    table = Table(title="aisle compliance", show_header=False)
    figures = report.figures
    table.add_row("customers / events", f"{figures['customers']:,} / {figures['events']:,}")
    share = figures["consent"]["personalisation_share"]
    table.add_row("personalisation consent", "-" if share is None else f"{share:.1%}")
    table.add_row("consent withdrawals", str(figures["consent"]["withdrawals"] or 0))
    table.add_row("DP releases", str(sum(b["releases"] for b in figures["privacy_budget"])))
    table.add_row("erasures", str(figures["erasures"]["count"]))
    table.add_row("events past retention", str(figures["retention"]["events_past_policy"]))
    table.add_row("PII scrubbed", str(sum(figures["pii_scrubbed"].values())))
    table.add_row("audit chain", "intact" if figures["audit_log"]["ok"] else "BROKEN")
    console.print(table)
    if written:
        console.print(f"report written to [bold]{written}[/bold]")


@app.command("rotate-key")
@guarded
def rotate_key_command(as_json: JsonOption = False) -> None:
    """Add a key and re-key every pseudonym in the store and its snapshots (the key itself is
    never printed or logged)."""
    config = settings()
    with Store(config.home) as store:
        outcome = rotate(store, config)
    if as_json:
        emit_json(outcome.to_json())
        return
    console.print(
        f"key generation {outcome.generation}: {outcome.customers:,} customers re-keyed in "
        f"{sum(outcome.rows.values()):,} rows, {outcome.payloads:,} held payloads and "
        f"{outcome.snapshot_files} snapshot files"
    )


@app.command("export")
@guarded
def export_command(
    what: Annotated[str, typer.Argument(help="A table of the store, or a SELECT query.")],
    to: Annotated[Path, typer.Option("--to", help="CSV or .parquet file to write.")],
    quasi: Annotated[
        str | None, typer.Option(help="Quasi-identifier columns, comma-separated [from config].")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Write even below k-anonymity (audited).")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Export data, refusing rows a rare quasi-identifier combination could single out."""
    config = settings()
    columns = [c.strip() for c in quasi.split(",") if c.strip()] if quasi else None
    with Store(config.home) as store:
        outcome = export(store, what, to, config.privacy, quasi=columns, force=force)
    if as_json:
        emit_json(outcome.to_json())
        return
    console.print(
        f"{outcome.rows:,} rows written to {outcome.path}; smallest group over "
        f"{' x '.join(outcome.quasi_identifiers) or '(no quasi-identifier)'}: "
        f"{outcome.smallest_group}" + (" [yellow](forced)[/yellow]" if outcome.forced else "")
    )
