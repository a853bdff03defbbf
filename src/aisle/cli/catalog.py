"""`aisle catalog build|show ITEM|conflicts|duplicates|attributes`."""

from __future__ import annotations

import json
from typing import Annotated, Any

import polars as pl
import typer
from rich.table import Table

from aisle.catalog import views
from aisle.cli.context import console, emit_json, guarded, settings
from aisle.storage import Store

app = typer.Typer(help="The product catalog: integration, attributes, categories, embeddings.")

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]
LimitOption = Annotated[int, typer.Option(help="At most this many rows.")]


def _table(title: str, frame: pl.DataFrame) -> Table:
    table = Table(title=title)
    for name in frame.columns:
        table.add_column(name, overflow="fold")
    for row in frame.iter_rows():
        table.add_row(*("" if v is None else _text(v) for v in row))
    return table


def _text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return str(value)


@app.command("build")
@guarded
def build(
    embed: Annotated[bool, typer.Option(help="Embed product text (only changed texts).")] = True,
    model: Annotated[str | None, typer.Option(help="minilm or static [catalog setting].")] = None,
    as_json: JsonOption = False,
) -> None:
    """Re-resolve every product, extract attributes, infer categories, fill or flag gaps,
    embed text and list near duplicates."""
    config = settings()
    with Store(config.home) as store:
        from aisle.catalog.build import build_catalog  # noqa: PLC0415 (scikit-learn: ~1 s)

        report = build_catalog(store, config, embed=embed, model=model)
    if as_json:
        emit_json(report.to_json())
        return
    table = Table(title="catalog build", show_header=False)
    table.add_column("what")
    table.add_column("count", justify="right")
    for key, value in report.to_json().items():
        if key != "seconds":
            table.add_row(key.replace("_", " "), str(value))
    for step, seconds in report.seconds.items():
        table.add_row(f"{step} (s)", f"{seconds:.2f}")
    console.print(table)


@app.command("show")
@guarded
def show(item_id: str, as_json: JsonOption = False) -> None:
    """One product: canonical record, sources, conflicts, history, attributes, gaps, twins."""
    with Store(settings().home) as store:
        card = views.product_card(store, item_id)
    if as_json:
        emit_json(card)
        return
    product = Table(title=f"product {item_id}", show_header=False)
    product.add_column("field")
    product.add_column("value", overflow="fold")
    for key, value in card["product"].items():
        shown = (
            value[:300] + "..." if key == "description" and value and len(value) > 300 else value
        )
        product.add_row(key, "" if shown is None else _text(shown))
    console.print(product)
    for part in ("sources", "conflicts", "history", "attributes", "gaps", "duplicates"):
        if card[part]:
            console.print(_table(part, pl.DataFrame(card[part], infer_schema_length=None)))


@app.command("conflicts")
@guarded
def conflicts(
    field: Annotated[str | None, typer.Option(help="Only this field.")] = None,
    item: Annotated[str | None, typer.Option(help="Only this product.")] = None,
    limit: LimitOption = 50,
    as_json: JsonOption = False,
) -> None:
    """Fields the sources disagree on: the candidates, the winner and why."""
    with Store(settings().home) as store:
        rows = views.conflicts(store, field=field, item_id=item, limit=limit)
    if as_json:
        emit_json({"conflicts": [{**r, "candidates": json.loads(r["candidates"])}
                                 for r in rows.to_dicts()]})  # fmt: skip
        return
    console.print(_table("conflicts", rows))


@app.command("duplicates")
@guarded
def duplicates(limit: LimitOption = 50, as_json: JsonOption = False) -> None:
    """Near-duplicate products listed for merging (from the last build)."""
    with Store(settings().home) as store:
        rows = views.near_duplicates(store, limit=limit)
    if as_json:
        emit_json({"pairs": rows.to_dicts()})
        return
    console.print(_table("near duplicates", rows))


@app.command("attributes")
@guarded
def attributes(
    attribute: Annotated[str | None, typer.Option("--name", help="Only this attribute.")] = None,
    item: Annotated[str | None, typer.Option(help="Only this product.")] = None,
    limit: LimitOption = 50,
    as_json: JsonOption = False,
) -> None:
    """Extracted attributes: a summary, or the values of one attribute or product."""
    with Store(settings().home) as store:
        if attribute is None and item is None:
            rows, title = views.attribute_summary(store), "attributes"
        else:
            rows = views.attributes_of(store, attribute=attribute, item_id=item, limit=limit)
            title = f"attributes of {item}" if item else f"attribute {attribute}"
    if as_json:
        emit_json({"attributes": rows.to_dicts()})
        return
    console.print(_table(title, rows))
