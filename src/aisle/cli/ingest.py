"""`aisle ingest events|products|judgments PATH_OR_URL --adapter NAME`."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from aisle.cli.context import console, emit_json, guarded, settings
from aisle.domain import RecordKind
from aisle.pipeline import ImportResult, ingest
from aisle.search.judgments import import_judgments, judgment_columns
from aisle.storage import Store

app = typer.Typer(
    help="Import events, products or judgements from a file or URL (CSV, JSONL, Parquet, gz)."
)

AdapterOption = Annotated[
    str, typer.Option("--adapter", "-a", help="Dataset adapter, or one configured in aisle.toml.")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]


def result_table(result: ImportResult) -> Table:
    """The import's reconciliation as a small table."""
    table = Table(title=f"import {result.import_id}: {result.kind} via {result.adapter}")
    for name in ("input", "accepted", "quarantined", "duplicates", "seconds", "rows/s"):
        table.add_column(name, justify="right")
    table.add_row(
        f"{result.input:,}",
        f"{result.accepted:,}",
        f"{result.quarantined:,}",
        f"{result.duplicates:,}",
        f"{result.seconds:.2f}",
        f"{result.rows_per_second:,.0f}",
    )
    return table


def reasons_table(result: ImportResult) -> Table:
    """Quarantine reasons of the import."""
    table = Table(title="quarantined by reason")
    table.add_column("reason")
    table.add_column("records", justify="right")
    for reason, count in sorted(result.reasons.items(), key=lambda kv: -kv[1]):
        table.add_row(reason, f"{count:,}")
    return table


def _run(kind: RecordKind, source: str, adapter: str, as_json: bool) -> None:
    config = settings()
    with console.status(f"importing {kind.value} from {source}") as status:
        result = ingest(kind, source, adapter, config, progress=status.update)
    _report(result, as_json)


def _report(result: ImportResult, as_json: bool) -> None:
    if as_json:
        emit_json(result.to_json())
        return
    for part in [*result.derived, result]:
        console.print(result_table(part))
        if part.reasons:
            console.print(reasons_table(part))
        for note in part.notes:
            console.print(f"[yellow]note:[/yellow] {note}")
        flagged = [d for d in part.drift if d["flagged"]]
        for d in flagged:
            console.print(
                f"[yellow]drift:[/yellow] {d['column']} {d['metric']}={d['value']} "
                f"> {d['threshold']}"
            )
        if part.released:
            console.print(f"released {part.released:,} held events whose products arrived")


@app.command("events")
@guarded
def events(source: str, adapter: AdapterOption = "canonical", as_json: JsonOption = False) -> None:
    """Import behaviour events (views, clicks, carts, purchases, returns, searches, ratings)."""
    _run(RecordKind.EVENTS, source, adapter, as_json)


@app.command("products")
@guarded
def products(
    source: str, adapter: AdapterOption = "canonical", as_json: JsonOption = False
) -> None:
    """Import product records."""
    _run(RecordKind.PRODUCTS, source, adapter, as_json)


@app.command("judgments")
@guarded
def judgments(
    source: str, adapter: AdapterOption = "crowdflower", as_json: JsonOption = False
) -> None:
    """Import graded (query, product) judgements; the judged products enter the catalog too."""
    config = settings()
    judgment_columns(adapter)  # an adapter without judgements fails before anything is written
    with console.status(f"importing judgements from {source}") as status:
        products = ingest(RecordKind.PRODUCTS, source, adapter, config, progress=status.update)
        with Store(config.home) as store:
            result = import_judgments(store, config, source, adapter, progress=status.update)
    result.derived = [products]
    _report(result, as_json)
