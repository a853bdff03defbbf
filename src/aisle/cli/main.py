"""The root `aisle` command and its global options."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from aisle import __version__
from aisle.cli import (
    catalog,
    demo,
    evaluate,
    experiments,
    ingest,
    models,
    privacy,
    quality,
    search,
    search_eval,
    serve,
    store,
)
from aisle.cli.context import set_home

app = typer.Typer(
    name="aisle",
    help="Self-hostable e-commerce search and recommendations on data you can trust.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(ingest.app, name="ingest")
app.add_typer(quality.app, name="quality")
app.add_typer(store.app, name="store")
app.add_typer(privacy.app, name="privacy")
app.add_typer(catalog.app, name="catalog")
app.add_typer(models.app, name="models")
app.command("train")(models.train_command)
app.command("tune")(models.tune_command)
app.command("recommend")(models.recommend_command)
app.command("erase")(privacy.erase_command)
app.command("demo")(demo.demo)
app.command("evaluate")(evaluate.evaluate)
app.command("evaluate-search")(search_eval.evaluate_search_command)
app.add_typer(search.index_app, name="index")
app.command("search")(search.search_command)
app.command("suggest")(search.suggest_command)
app.command("serve")(serve.serve_command)
app.add_typer(experiments.app, name="experiments")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"aisle {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    home: Annotated[
        Path | None,
        typer.Option(
            "--home", envvar="AISLE_HOME", help="Directory of the store and artifacts [./var]."
        ),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """aisle: ingest, clean, search and recommend."""
    set_home(home)


def run() -> None:
    """Console-script entry point."""
    app()
