"""`aisle demo`: a real shop's data imported, cleaned, reported on."""

from __future__ import annotations

from pathlib import Path

from aisle.cli.context import console, guarded, settings
from aisle.cli.ingest import reasons_table, result_table
from aisle.datasets import download_cache, uci_online_retail
from aisle.pipeline import ingest
from aisle.quality.report import build_report, summary_table, write_html
from aisle.storage import Store


@guarded
def demo() -> None:
    """Import UCI Online Retail, run quality, write the report and print the summary."""
    config = settings()
    home = Path(config.home)
    with console.status("locating UCI Online Retail"):
        path = uci_online_retail(download_cache())
    console.print(f"source: {path}")
    with console.status("importing") as status:
        result = ingest("events", str(path), "uci-online-retail", config, progress=status.update)
    for part in [*result.derived, result]:
        console.print(result_table(part))
        if part.reasons:
            console.print(reasons_table(part))
    if result.accepted == 0 and result.duplicates == result.input:
        console.print("[yellow]already imported:[/yellow] every row was a duplicate; nothing added")
    with Store(home) as store:
        report = build_report(store)
    html = write_html(report, home / "reports" / "quality.html")
    console.print(summary_table(report))
    console.print(f"quality report: [bold]{html.resolve()}[/bold]")
