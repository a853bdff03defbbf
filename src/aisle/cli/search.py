"""`aisle index build`, `aisle search "query"` and `aisle suggest PREFIX`."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from aisle.cli.context import console, emit_json, guarded, settings
from aisle.errors import ConfigError, NotFoundError
from aisle.privacy.rotation import pseudonymiser_for
from aisle.storage import Store

index_app = typer.Typer(help="The search index: build it from the store.")

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]


@index_app.command("build")
@guarded
def build(
    encoder: Annotated[
        str | None,
        typer.Option(
            help="Text encoder: the catalog's embedding model (default), or minilm-clicks to "
            "fine-tune MiniLM on the store's clicks first and index with it."
        ),
    ] = None,
    encoder_budget: Annotated[
        float, typer.Option(help="Seconds of fine-tuning for --encoder minilm-clicks.")
    ] = 300.0,
    as_json: JsonOption = False,
) -> None:
    """Index the catalog (lexical and dense), learn query understanding, click history and
    the ranker from the store, and make the new version current."""
    from aisle.catalog.build import build_if_never_built  # noqa: PLC0415 (scikit-learn)
    from aisle.search.index import build_index  # noqa: PLC0415 (heavy: torch, lightgbm)

    config = settings()
    if encoder_budget <= 0:
        raise ConfigError("--encoder-budget must be positive")
    with Store(config.home) as store:
        first = build_if_never_built(store, config)
        made = build_index(store, config, text_encoder=encoder, encoder_budget_s=encoder_budget)
    if first is not None and not as_json:
        console.print(f"the catalog had never been built: built it first ({first.products:,} "
                      "products)")  # fmt: skip
    if as_json:
        emit_json(made.to_json())
        return
    console.print(
        f"search index v{made.version}: {made.products:,} products, {made.clicks:,} clicks, "
        f"{made.judgements:,} judgements, ranking {made.ranker}, {made.seconds:.1f} s"
    )


def _filters(pairs: list[str] | None) -> dict[str, list[str]]:
    """KEY=VALUE pairs (brand, category), several values of one key meaning any of them."""
    chosen: dict[str, list[str]] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or key.strip() not in ("brand", "category") or not value.strip():
            raise ConfigError(f"--filter expects brand=VALUE or category=VALUE, got {pair!r}")
        chosen.setdefault(key.strip(), []).append(value.strip())
    return chosen


def _personal(
    config: Any, user: str | None, model: str | None
) -> tuple[dict[str, dict[str, float]] | None, dict[str, float] | None]:
    """The customer's affinity and a recommender's scores for them (None without a user; no
    scores where no model is registered or the model does not know the customer)."""
    if user is None:
        return None, None
    from aisle.search.personal import customer_affinity  # noqa: PLC0415

    with Store(config.home, read_only=True) as store:
        pseudonym = pseudonymiser_for(store, config).one(user.strip())
        return customer_affinity(store, pseudonym), _recommended(store, pseudonym, model)


def _recommended(store: Store, pseudonym: str, model: str | None) -> dict[str, float] | None:
    """Every item's score for the customer from ``model`` (default: the model most recently
    put in production); None where none is registered or it does not know the customer."""
    import numpy as np  # noqa: PLC0415 (lazy: the CLI starts light)
    import polars as pl  # noqa: PLC0415

    from aisle.models import registry  # noqa: PLC0415

    name = model
    if name is None:
        live = registry.versions(store).filter(pl.col("status") == "production")
        if not live.height:
            return None
        name = str(live.sort("promoted_at", descending=True, nulls_last=True)["name"][0])
    try:
        recommender = registry.load(store, name)
    except NotFoundError:
        if model is not None:
            raise  # asked for by name: say it is missing
        return None
    if not recommender.knows(pseudonym):
        return None
    scores = recommender.score_users(np.asarray([recommender.user_row(pseudonym)]))[0]
    return dict(zip(recommender.items, np.asarray(scores, dtype=np.float64).tolist(), strict=True))


@guarded
def search_command(
    query: Annotated[str, typer.Argument(help="What the shopper typed.")],
    user: Annotated[str | None, typer.Option(help="Personalise for this customer id.")] = None,
    model: Annotated[
        str | None,
        typer.Option(help="Recommender whose scores personalise (default: the production one)."),
    ] = None,
    filters: Annotated[
        list[str] | None, typer.Option("--filter", help="brand=X or category=X (repeatable).")
    ] = None,
    facets: Annotated[str, typer.Option(help="Comma-separated: brand,category,price.")] = "",
    sort: Annotated[str | None, typer.Option(help="price, -price, popularity or newest.")] = None,
    n: Annotated[int, typer.Option("-n", help="Results per page.")] = 10,
    page: Annotated[int, typer.Option(help="Page number, from 1.")] = 1,
    explain: Annotated[bool, typer.Option(help="Say why each result ranks where it does.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Search the catalog as a shopper would."""
    from aisle.search.index import load_engine  # noqa: PLC0415 (heavy)

    config = settings()
    if n < 1 or page < 1:
        raise ConfigError("-n and --page must be at least 1")
    affinity, scores = _personal(config, user, model)
    engine = load_engine(config.home)
    result = engine.search(
        query, limit=n, offset=(page - 1) * n, filters=_filters(filters) or None, sort=sort,
        facets=[f.strip() for f in facets.split(",") if f.strip()], affinity=affinity,
        explain=explain, personal_scores=scores,
    )  # fmt: skip
    titles = dict(zip(engine.documents["item_id"], engine.documents["title"], strict=True))
    prices = dict(zip(engine.documents["item_id"], engine.documents["price"], strict=True))
    hits = [
        {"item_id": h.item_id, "title": titles.get(h.item_id), "price": prices.get(h.item_id),
         "score": h.score, **({"why": h.why} if explain else {})}
        for h in result.hits
    ]  # fmt: skip
    if as_json:
        emit_json({"query": result.query, "searched": result.searched, "total": result.total,
                   "notes": result.notes, "relaxed": result.relaxed, "facets": result.facets,
                   "hits": hits})  # fmt: skip
        return
    for note in [*result.notes, *result.relaxed]:
        console.print(f"[dim]{note}[/dim]")
    table = Table(title=f"{result.total:,} results for {result.searched!r}")
    for name in ("item", "title", "price", "score", *(["why"] if explain else [])):
        table.add_column(name, overflow="fold")
    for found in result.hits:
        price = prices.get(found.item_id)
        row = [found.item_id, str(titles.get(found.item_id) or ""),
               "" if price is None else f"{price:.2f}", f"{found.score:.3f}"]  # fmt: skip
        table.add_row(*row, *(["; ".join(found.why or [])] if explain else []))
    console.print(table)
    for facet, counts in result.facets.items():
        shown = ", ".join(f"{value} ({count})" for value, count in list(counts.items())[:10])
        console.print(f"{facet}: {shown}")


@guarded
def suggest_command(
    prefix: Annotated[str, typer.Argument(help="What the shopper typed so far.")],
    n: Annotated[int, typer.Option("-n", help="How many suggestions.")] = 10,
    as_json: JsonOption = False,
) -> None:
    """Autocomplete: product titles and popular past queries starting like the prefix."""
    from aisle.search.index import load_suggester  # noqa: PLC0415

    found = load_suggester(settings().home).suggest(prefix, n=n)
    rows = [{"text": s.text, "source": s.source, "weight": s.weight} for s in found]
    if as_json:
        emit_json({"prefix": prefix, "suggestions": rows})
        return
    for row in rows:
        console.print(f"{row['text']}  [dim]({row['source']})[/dim]")
