"""`aisle evaluate-search --clicks PATH | --judgments PATH`: search methods on held-out data."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from aisle.cli.context import console, emit_json, guarded, settings
from aisle.errors import ConfigError
from aisle.evaluation.search import CLICKS, DEPTH, JUDGMENTS, SearchEvaluation, evaluate_search
from aisle.storage import Store

#: The adapter each kind of held-out file is read with unless --adapter says otherwise.
DEFAULT_ADAPTERS = {CLICKS: "bestbuy-clicks", JUDGMENTS: "crowdflower"}


def _format(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


def result_table(result: SearchEvaluation) -> Table:
    """Methods as rows, metrics as columns, and each method's seconds."""
    if result.protocol == CLICKS:
        metrics = [f"map@{result.k}", "mrr", f"recall@{DEPTH}", f"ndcg@{DEPTH}", "zero_results"]
    else:
        metrics = [f"ndcg@{DEPTH}", f"ndcg@{DEPTH}_linear", "kappa"]
    table = Table(title=f"search: {result.dataset} ({result.source})", title_justify="left")
    table.add_column("method")
    for name in [*metrics, "seconds"]:
        table.add_column(name, justify="right")
    for method, figures in result.methods.items():
        cells = [_format(figures.get(name)) for name in metrics]
        table.add_row(method, *cells, f"{figures['seconds']:.2f}")
    return table


def _print(result: SearchEvaluation) -> None:
    console.print(result_table(result))
    counts = result.counts
    if result.protocol == CLICKS:
        console.print(
            f"{counts['cases']:,} cases (every row of the file; {counts['malformed']:,} "
            f"unreadable), {counts['unknown_items']:,} clicked SKUs not in the catalog "
            "(scored 0)"
        )
    else:
        console.print(
            f"{counts['cases']:,} queries over {counts['rows'] - counts['unusable_rows']:,} "
            f"judged rows ({counts['unusable_rows']:,} unusable rows left out)"
        )
    for note in result.notes:
        console.print(f"[yellow]note:[/yellow] {note}", highlight=False)


@guarded
def evaluate_search_command(
    clicks: Annotated[
        str | None, typer.Option("--clicks", help="Held-out click log (one case per row).")
    ] = None,
    judgments: Annotated[
        str | None,
        typer.Option("--judgments", help="Held-out judged file (one case per query)."),
    ] = None,
    adapter: Annotated[
        str | None,
        typer.Option(
            "--adapter",
            "-a",
            help="The file's adapter (default: bestbuy-clicks, or crowdflower for --judgments).",
        ),
    ] = None,
    k: Annotated[int, typer.Option("--k", help="Cut-off of MAP (clicks).")] = 5,
    methods: Annotated[
        str | None, typer.Option(help="Comma-separated methods (default: every one).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Rank a held-out click log or judged file with every search method and its baselines."""
    if (clicks is None) == (judgments is None):
        raise ConfigError("give exactly one of --clicks PATH or --judgments PATH")
    protocol, source = (CLICKS, clicks) if clicks is not None else (JUDGMENTS, judgments)
    assert source is not None
    names = [n.strip() for n in methods.split(",") if n.strip()] if methods else None
    config = settings()
    from aisle.catalog.build import build_if_never_built, ever_built  # noqa: PLC0415

    first = None
    if not ever_built(config):  # the methods rank the built catalog; the store opens to write
        with Store(config.home) as store:  # only for that first build
            first = build_if_never_built(store, config)
    with (
        Store(config.home, read_only=True) as store,
        console.status(f"evaluating search on {source}") as status,
    ):
        result = evaluate_search(
            store, config, source=source, protocol=protocol,
            adapter=adapter or DEFAULT_ADAPTERS[protocol], methods=names, k=k,
            progress=status.update,
        )  # fmt: skip
    if first is not None:
        result.notes.append(f"the store's catalog had never been built: built it first "
                            f"({first.products:,} products)")  # fmt: skip
    if as_json:
        emit_json(result.to_json())
        return
    _print(result)
