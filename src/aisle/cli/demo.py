"""`aisle demo`: a real shop's data imported, cleaned, learnt from, indexed and served."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from aisle.cli.context import console, guarded, settings
from aisle.cli.ingest import reasons_table, result_table
from aisle.config import Settings
from aisle.datasets import download_cache, shared_data_dir, uci_online_retail
from aisle.pipeline import ImportResult, ingest
from aisle.quality.report import build_report, summary_table, write_html
from aisle.storage import Store

#: The recommenders the demo trains and puts in production, cheapest first.
DEMO_MODELS = ("popularity", "itemknn", "als")


def _show(result: ImportResult) -> None:
    for part in [*result.derived, result]:
        console.print(result_table(part))
        if part.reasons:
            console.print(reasons_table(part))
    if result.accepted == 0 and result.duplicates == result.input:
        console.print("[yellow]already imported:[/yellow] every row was a duplicate; nothing added")


def _import_shops(config: Settings) -> None:
    with console.status("locating UCI Online Retail"):
        path = uci_online_retail(download_cache())
    console.print(f"source: {path}")
    with console.status("importing UCI Online Retail") as status:
        _show(ingest("events", str(path), "uci-online-retail", config, progress=status.update))
    bestbuy = shared_data_dir() / "bestbuy-small-xbox"
    if not (bestbuy / "clicks.csv.gz").is_file():
        console.print(f"[yellow]Best Buy data not found at {bestbuy}: search learns from the "
                      "UCI catalog alone[/yellow]")  # fmt: skip
        return
    with console.status("importing the Best Buy catalog and search clicks") as status:
        _show(ingest("products", str(bestbuy / "products.jsonl.gz"), "bestbuy-products", config,
                     progress=status.update))  # fmt: skip
        _show(ingest("events", str(bestbuy / "clicks.csv.gz"), "bestbuy-clicks", config,
                     progress=status.update))  # fmt: skip


def _train(config: Settings) -> None:
    from aisle.models import registry  # noqa: PLC0415 (heavy)
    from aisle.models.training import train  # noqa: PLC0415

    table = Table(title="recommenders in production")
    for name in ("model", "version", "customers", "items", "seconds"):
        table.add_column(name, justify="right")
    with Store(config.home) as store:
        for name in DEMO_MODELS:
            with console.status(f"training {name}"):
                fitted, version = train(store, config, name)
                registry.promote(store, name, version)
            report = fitted.report
            table.add_row(name, f"v{version}", f"{report.users:,}", f"{report.items:,}",
                          f"{report.seconds:.1f}")  # fmt: skip
    console.print(table)


def _index(config: Settings) -> None:
    from aisle.search.index import build_index  # noqa: PLC0415 (heavy)

    with console.status("indexing the catalog for search (text, meaning, clicks)"), \
            Store(config.home) as store:  # fmt: skip
        made = build_index(store, config)
    console.print(
        f"search index v{made.version}: {made.products:,} products, {made.clicks:,} clicks, "
        f"ranking {made.ranker}, {made.seconds:.0f} s"
    )


def try_these(base: str) -> list[str]:
    """A few requests to try against the demo's server."""
    return [
        f'curl "{base}/v1/search?q=metal+lantern&per_page=5"',
        f'curl "{base}/v1/search?q=halo+reach+under+%2440&facets=brand,category"',
        f'curl "{base}/v1/users/17850/recommendations?n=5&explain=true"',
        f'curl "{base}/v1/suggest?q=hal"',
        f"curl -X POST {base}/v1/events -H 'content-type: application/json' -d "
        """'[{"user_id": "17850", "item_id": "22423", "type": "add_to_cart", """
        """"timestamp": "2026-11-28T12:00:00Z"}]'""",
        f'curl "{base}/metrics"',
    ]


@guarded
def demo(
    serve: Annotated[bool, typer.Option(help="Start the server at the end.")] = True,
    port: Annotated[int | None, typer.Option(help="Port (default: serve.port).")] = None,
) -> None:
    """Import UCI Online Retail and the Best Buy data, clean, train, index, then serve."""
    config = settings()
    home = Path(config.home)
    _import_shops(config)
    with Store(home) as store:
        report = build_report(store)
    html = write_html(report, home / "reports" / "quality.html")
    console.print(summary_table(report))
    console.print(f"quality report: [bold]{html.resolve()}[/bold]")
    _train(config)
    _index(config)
    port = config.serve.port if port is None else port
    base = f"http://{config.serve.host}:{port}"
    console.print("\n[bold]Try:[/bold]")
    for line in try_these(base):
        console.print(f"  {line}", highlight=False, soft_wrap=True)
    if serve:
        from aisle.cli.serve import serve_command  # noqa: PLC0415

        serve_command(host=None, port=port, access_log=True)
