"""`aisle experiments report`: online metrics of the configured A/B tests."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer
from rich.table import Table

from aisle.cli.context import console, emit_json, guarded, settings
from aisle.errors import ConfigError
from aisle.serving.experiments import METRICS, ExperimentReport, Rate, experiment_report
from aisle.storage import Store

app = typer.Typer(help="A/B tests: online metrics per variant.")

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]


@app.callback()
def experiments() -> None:
    """A/B tests: customers split by hashed id across model variants."""


def _rate(rate: Rate) -> str:
    if rate.rate is None or rate.low is None or rate.high is None:
        return "-"
    return f"{rate.rate:.2%} [{rate.low:.2%}, {rate.high:.2%}]"


def _table(report: ExperimentReport) -> Table:
    state = "" if report.enabled else " (disabled)"
    table = Table(
        title=f"{report.name} on {report.surface}{state}: share of exposed customers "
        f"[{report.confidence:.0%} interval]",
        caption=f"* the control; below each other arm's rate: its difference from the control "
        f"in percentage points [{report.confidence:.0%} interval] and the two-sided p-value",
    )
    for name in ("variant", "model", "exposed", *METRICS):
        table.add_column(name.replace("_", " "), overflow="fold")
    for arm in report.variants:
        cells = []
        for metric in METRICS:
            cell = _rate(arm.rates[metric])
            versus = arm.vs_control[metric] if arm.vs_control else None
            if versus is not None and versus.diff is not None:
                assert versus.low is not None and versus.high is not None
                assert versus.p_value is not None
                cell += (f"\n{versus.diff * 100:+.2f} [{versus.low * 100:+.2f}, "
                         f"{versus.high * 100:+.2f}]\np={versus.p_value:.3g}")  # fmt: skip
            cells.append(cell)
        name = arm.variant + (" *" if arm.variant == report.control else "")
        table.add_row(name, arm.model or "?", f"{arm.exposed:,}", *cells)
    return table


@app.command("report")
@guarded
def report(
    experiment: Annotated[
        str | None, typer.Option("--experiment", "-e", help="Only this experiment (default: all).")
    ] = None,
    as_of: Annotated[
        datetime | None,
        typer.Option("--as-of", help="Count only exposures and events up to this time (UTC)."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Online metrics of each variant, against the control.

    Per variant: customers exposed, and the share of them who clicked, clicked a shown item,
    added to cart and bought after their first exposure."""
    config = settings()
    chosen = config.experiments
    if experiment is not None:
        if experiment not in chosen:
            known = ", ".join(chosen) or "none"
            raise ConfigError(f"no experiment {experiment!r} in the config (configured: {known})")
        chosen = {experiment: chosen[experiment]}
    with Store(config.home) as store:
        reports = [experiment_report(store, n, spec, now=as_of) for n, spec in chosen.items()]
    if as_json:
        emit_json({"experiments": [r.to_json() for r in reports]})
        return
    if not reports:
        console.print("no experiments configured; add [experiments.NAME] to aisle.toml")
    for one in reports:
        console.print(_table(one))
