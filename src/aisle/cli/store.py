"""`aisle store snapshot`: the store's tables as Parquet files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from aisle.cli.context import console, emit_json, guarded, settings
from aisle.privacy import audit
from aisle.storage import Store
from aisle.storage.snapshots import SNAPSHOT_TABLES, snapshot

app = typer.Typer(help="The embedded store.")


@app.command("snapshot")
@guarded
def snapshot_command(
    directory: Annotated[
        Path | None, typer.Option("--dir", help="Folder to write [home/snapshots/<time>].")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Write every table to Parquet (customer ids stay pseudonyms)."""
    with Store(settings().home) as store:
        folder = snapshot(store, directory)
        audit.record(store, "export", str(folder), {"tables": list(SNAPSHOT_TABLES)})
    files = {table: str(folder / f"{table}.parquet") for table in SNAPSHOT_TABLES}
    if as_json:
        emit_json({"folder": str(folder), "files": files})
        return
    console.print(f"snapshot written to [bold]{folder}[/bold] ({len(files)} tables)")
