"""`aisle train`, `aisle recommend` and `aisle models list|show|promote|rollback|retrain`."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.table import Table

from aisle.cli.context import console, emit_json, guarded, settings
from aisle.errors import ConfigError
from aisle.models import registry
from aisle.models.lifecycle import retrain
from aisle.models.training import train, training_data
from aisle.models.tuning import tune
from aisle.privacy.rotation import pseudonymiser_for
from aisle.storage import Store

app = typer.Typer(help="The model registry: versions, production, rollback.")

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]


def _params(pairs: list[str] | None) -> dict[str, Any]:
    """KEY=VALUE pairs, values read as JSON where they parse (numbers, true, null)."""
    params: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--param expects KEY=VALUE, got {pair!r}")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    return params


@guarded
def train_command(
    model: Annotated[str, typer.Option("--model", "-m", help="popularity, itemknn, als, ...")],
    param: Annotated[list[str] | None, typer.Option(help="A hyperparameter, KEY=VALUE.")] = None,
    promote: Annotated[bool, typer.Option(help="Put the new version in production.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Fit a model on the store's consented interactions and register a new version."""
    config = settings()
    with Store(config.home) as store:
        fitted, version = train(store, config, model, _params(param))
        if promote:
            registry.promote(store, model, version)
    payload = {"model": model, "version": version, "promoted": promote,
               "fit_seconds": fitted.report.seconds, "users": fitted.report.users,
               "items": fitted.report.items, "params": fitted.params}  # fmt: skip
    if as_json:
        emit_json(payload)
        return
    console.print(
        f"{model} v{version}: {fitted.report.users:,} customers x {fitted.report.items:,} items "
        f"in {fitted.report.seconds:.1f} s" + (" (in production)" if promote else "")
    )


@guarded
def tune_command(
    model: Annotated[str, typer.Option("--model", "-m", help="itemknn, als, bpr, ...")],
    minutes: Annotated[float, typer.Option(help="Time budget of the search.")] = 5.0,
    trials: Annotated[int | None, typer.Option(help="Stop after this many trials.")] = None,
    register: Annotated[
        bool, typer.Option(help="Train the best on everything, register it.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Search hyperparameters on a validation split (each customer's latest interaction)."""
    config = settings()
    with Store(config.home) as store:
        data, side = training_data(store, config)
        found = tune(model, data, side, minutes=minutes, trials=trials)
        version = train(store, config, model, found.best_params)[1] if register else None
    if as_json:
        emit_json({**found.to_json(), "version": version})
        return
    console.print(
        f"{model}: best ndcg@10 {found.best_value:.4f} on validation with {found.best_params} "
        f"({len(found.trials)} trials, {found.seconds:.0f} s)"
        + (f"; registered as v{version}" if version else "")
    )


@guarded
def recommend_command(
    user: Annotated[str, typer.Argument(help="The customer's id as the shop knows it.")],
    n: Annotated[int, typer.Option("-n", help="How many items.")] = 10,
    model: Annotated[str, typer.Option("--model", "-m", help="Which model.")] = "als",
    explain: Annotated[bool, typer.Option(help="Say why each item is recommended.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Recommendations for one customer from the production (else newest) version."""
    config = settings()
    with Store(config.home) as store:
        pseudonym = pseudonymiser_for(store, config).one(user.strip())
        recommender = registry.load(store, model)
        titles = dict(store.query("SELECT item_id, title FROM products").iter_rows())
    items = recommender.recommend(pseudonym, n=n)
    rows = []
    for item in items:
        row: dict[str, Any] = {"item_id": item.item_id, "title": titles.get(item.item_id),
                               "score": item.score}  # fmt: skip
        if explain:
            why = recommender.explain(pseudonym, item.item_id)
            because = [{"item_id": i, "title": titles.get(i), "weight": w} for i, w in why.because]
            row["because"] = {"kind": why.kind, "items": because}
        rows.append(row)
    if as_json:
        emit_json({"model": model, "items": rows})
        return
    table = Table(title=f"{model} for customer {pseudonym[:12]}...")
    for name in ("item", "title", "score", *(["because"] if explain else [])):
        table.add_column(name, overflow="fold")
    for row in rows:
        reasons: list[str] = []
        if explain:
            reasons = [", ".join(f"{b['title'] or b['item_id']} ({b['weight']:.2f})"
                                 for b in row["because"]["items"])]  # fmt: skip
        table.add_row(row["item_id"], row["title"] or "", f"{row['score']:.3f}", *reasons)
    console.print(table)


@app.command("list")
@guarded
def list_(
    model: Annotated[str | None, typer.Option("--model", "-m", help="One model.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Every registered version, and retrains owed."""
    with Store(settings().home) as store:
        rows = registry.versions(store, model)
        due = registry.retrains_due(store)
    if as_json:
        emit_json({"versions": rows.drop("params").to_dicts(), "retrains_due": due.to_dicts()})
        return
    table = Table(title="models")
    for name in ("model", "version", "status", "created", "metrics"):
        table.add_column(name, overflow="fold")
    for row in rows.iter_rows(named=True):
        table.add_row(row["name"], str(row["version"]), row["status"],
                      f"{row['created_at']:%Y-%m-%d %H:%M}", row["metrics"])  # fmt: skip
    console.print(table)
    for row in due.iter_rows(named=True):
        console.print(f"[yellow]{row['name']}: retrain due ({row['reason']}, "
                      f"{row['requests']} request(s))[/yellow]")  # fmt: skip


@app.command("show")
@guarded
def show(
    model: str,
    version: Annotated[int | None, typer.Option(help="A version [production].")] = None,
    as_json: JsonOption = False,
) -> None:
    """One version: parameters, metrics and manifest."""
    with Store(settings().home) as store:
        info = registry.show(store, model, version)
    if as_json:
        emit_json(info)
        return
    console.print_json(json.dumps(info, default=str))


@app.command("promote")
@guarded
def promote(model: str, version: int) -> None:
    """Put a version in production."""
    with Store(settings().home) as store:
        registry.promote(store, model, version)
    console.print(f"{model} v{version} is in production")


@app.command("rollback")
@guarded
def rollback(model: str) -> None:
    """Return to the previous production version."""
    with Store(settings().home) as store:
        version = registry.rollback(store, model)
    console.print(f"{model} rolled back to v{version}")


@app.command("retrain")
@guarded
def retrain_command(
    model: Annotated[str, typer.Option("--model", "-m", help="popularity, itemknn, als, ...")],
    param: Annotated[
        list[str] | None,
        typer.Option(help="A hyperparameter, KEY=VALUE [the production version's]."),
    ] = None,
    tolerance: Annotated[
        float | None,
        typer.Option(min=0.0, help="NDCG@10 the new version may lose [serve.gate_tolerance]."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Fit a model anew and put it in production if it validates no worse than the current one
    (exit code 1 when it does not go live)."""
    config = settings()
    outcome = retrain(
        lambda: Store(config.home), config, model, _params(param) or None, tolerance=tolerance
    )
    if as_json:
        emit_json(outcome.to_json())
    elif outcome.promoted:
        console.print(f"{model}: {outcome.reason}")
    else:
        console.print(f"[yellow]{model}: {outcome.reason}[/yellow]")
    if not outcome.promoted:
        raise typer.Exit(1)
