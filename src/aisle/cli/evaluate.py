"""`aisle evaluate --test PATH --adapter NAME`: train on the store, score on a held-out file."""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Annotated, Any

import polars as pl
import typer
from pydantic import SecretStr
from rich.table import Table

from aisle.cli.context import console, emit_json, guarded, settings
from aisle.config import Settings
from aisle.domain import RecordKind
from aisle.errors import ConfigError, StoreError
from aisle.evaluation.protocols import SAMPLED_SEED
from aisle.evaluation.report import write_html
from aisle.evaluation.runner import EvaluationResult, check_options, resolve_models
from aisle.evaluation.runner import evaluate as run_evaluation
from aisle.features.interactions import load_events
from aisle.pipeline import ImportResult, ingest
from aisle.privacy.pseudonymise import load_keys
from aisle.privacy.rotation import pseudonymiser_for
from aisle.storage import Store

#: Lists of people whose wishes the held-out file must honour as the store does.
PRIVACY_TABLES = ("erased_users", "consent_withdrawals")


def model_params(pairs: list[str] | None) -> dict[str, dict[str, Any]]:
    """MODEL.KEY=VALUE pairs, values read as JSON where they parse (numbers, true, null)."""
    params: dict[str, dict[str, Any]] = {}
    for pair in pairs or []:
        target, sep, value = pair.partition("=")
        model, dot, key = target.partition(".")
        if not sep or not dot or not model or not key:
            raise ConfigError(f"--param expects MODEL.KEY=VALUE, got {pair!r}")
        try:
            params.setdefault(model, {})[key] = json.loads(value)
        except json.JSONDecodeError:
            params.setdefault(model, {})[key] = value
    return params


def held_out_events(
    config: Settings, store: Store, source: str, adapter: str, progress: Any = None
) -> tuple[pl.DataFrame, ImportResult, int]:
    """The held-out file's accepted, consented events, read through the same adapter and
    cleaning as training into a temporary home that shares the store's key (so pseudonyms
    match) and its erasure and withdrawal lists. The store itself is never written.
    Returns the events, the import's reconciliation and how many accepted events lacked
    consent to personalisation (or a customer or item)."""
    pseudonymiser_for(store, config)  # the configured key must be the store's
    keys = ",".join(key.decode() for key in load_keys(config))
    # inside home: pseudonymised data stays where the store's data lives, and only briefly
    with tempfile.TemporaryDirectory(prefix=".evaluate-", dir=config.home) as scratch:
        temporary = config.model_copy(update={"home": Path(scratch), "secret_key": SecretStr(keys)})
        with Store(temporary.home) as held:
            for table in PRIVACY_TABLES:
                held.append(table, store.query(f"SELECT * FROM {table}"))
        result = ingest(RecordKind.EVENTS, source, adapter, temporary, progress=progress)
        with Store(temporary.home) as held:
            events = load_events(held)
            left = int(held.scalar("SELECT count(*) FROM events") or 0) - events.height
    return events, result, left


def _reconciliation(result: ImportResult, without_consent: int) -> dict[str, Any]:
    return {
        "input": result.input,
        "accepted": result.accepted,
        "quarantined": result.quarantined,
        "quarantined_by_reason": dict(sorted(result.reasons.items())),
        "duplicates": result.duplicates,
        "accepted_without_consent": without_consent,
    }


def _format(value: float | None) -> str:
    return "—" if value is None or not math.isfinite(value) else f"{value:.4f}"


def result_table(result: EvaluationResult) -> Table:
    """The metrics as rows, one column per model (and per model and variant), so that a
    narrow terminal still shows every figure."""
    k = result.k
    shown = [f"ndcg@{k}", f"hr@{k}", f"recall@{k}", "recall@20", f"map@{k}", "mrr", "auc",
             "coverage", "novelty", "popularity_bias", "rmse", "mae"]  # fmt: skip
    columns: list[tuple[str, dict[str, float]]] = []
    for model, r in result.models.items():
        columns.append((model, r.metrics))
        columns += [(f"{model}\n{v}", figures) for v, figures in r.variants.items()]
    names = [n for n in dict.fromkeys(shown) if any(n in figures for _, figures in columns)]
    table = Table(title=f"{result.protocol} ({result.split}): {result.label}", title_justify="left")
    table.add_column("metric")
    for header, _ in columns:
        table.add_column(header, justify="right")
    for name in names:
        table.add_row(name, *(_format(figures.get(name)) for _, figures in columns))
    seconds = {model: r.train_seconds for model, r in result.models.items()}
    table.add_row("train s", *(f"{seconds[h]:.2f}" if h in seconds else "" for h, _ in columns))
    return table


def _print(result: EvaluationResult, html: Path | None) -> None:
    console.print(result_table(result))
    data, unknown = result.dataset, result.unknown
    console.print(
        f"{data['test_users']:,} test users, {data['truth_items']:,} relevant items; "
        f"trained on {data['train_users']:,} customers x {data['train_items']:,} items"
    )
    console.print(
        f"unknown to training: {unknown['users']:,} users ({unknown['user_events']:,} test "
        f"events), {unknown['items']:,} items ({unknown['item_events']:,} test events): "
        f"{unknown['handling']}"
    )
    if result.ratings:
        r = result.ratings
        console.print(
            f"ratings ({r['baseline']} baseline, {r['n']:,} test ratings): "
            f"rmse {_format(r['rmse'])}, mae {_format(r['mae'])}"
        )
    for note in result.notes:
        console.print(f"[yellow]note:[/yellow] {note}", highlight=False)
    if html:
        console.print(f"report written to [bold]{html}[/bold]")


@guarded
def evaluate(
    test: Annotated[
        str, typer.Option("--test", help="Held-out file (or URL) in the training file's format.")
    ],
    adapter: Annotated[
        str, typer.Option("--adapter", "-a", help="The adapter the training file was read with.")
    ] = "canonical",
    k: Annotated[int, typer.Option("--k", help="Cut-off of the top-k metrics.")] = 10,
    protocol: Annotated[
        str, typer.Option(help="full, or sampled-100 (for comparison with papers only).")
    ] = "full",
    models: Annotated[
        str | None, typer.Option(help="Comma-separated models (default: every available one).")
    ] = None,
    split: Annotated[
        str, typer.Option(help="auto, leave-last-out (one item per user) or time.")
    ] = "auto",
    param: Annotated[
        list[str] | None, typer.Option(help="A hyperparameter, MODEL.KEY=VALUE (repeatable).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the sampled protocol.")] = SAMPLED_SEED,
    html: Annotated[Path | None, typer.Option("--html", help="Write the HTML report here.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Train on what the store holds and score every model on a held-out file."""
    config = settings()
    check_options(protocol, split, k)
    names = [n.strip() for n in models.split(",") if n.strip()] if models else None
    resolve_models(names)
    params = model_params(param)
    with Store(config.home, read_only=True) as store:
        if not store.scalar("SELECT count(*) FROM events"):
            raise StoreError("the store holds no events to train on: run `aisle ingest` first")
        with console.status(f"reading the held-out file {test}") as status:
            events, imported, left = held_out_events(config, store, test, adapter, status.update)
            result = run_evaluation(
                store, config, events, models=names, k=k, protocol=protocol, params=params,
                split=split, seed=seed, progress=status.update,
            )  # fmt: skip
    result.test_file = _reconciliation(imported, left)
    path = write_html(result, html) if html else None
    if as_json:
        payload = result.to_json()
        if path:
            payload["html"] = str(path)
        emit_json(payload)
        return
    _print(result, path)
