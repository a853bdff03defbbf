"""Fine-tuning figures: MiniLM trained on Best Buy click pairs for a time budget on this CPU,
then retrieval of the clicked product on later clicks, base against fine-tuned, and the
Crowdflower judged pools to check general product text matching survives.

The click log is cut by click time: pairs come from the first 80% of clicks, and every click
of the last 20% asks for its query (normalised as in training) to rank the whole catalog by
cosine; Recall@10, MRR@10 and MAP@5 (1/rank within the top 5, else 0) are means over all those
clicks (a click on a product missing from the catalog counts as a miss). Product text is
``product_text`` of the search documents, for both models.

    python benchmarks/finetune_encoder.py [--budget 300] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import harness
import machine
import numpy as np
import polars as pl

import catalog
from aisle.catalog.build import build_catalog
from aisle.catalog.embeddings import MiniLMEncoder, TextEncoder, product_text
from aisle.config import Settings
from aisle.pipeline import ingest
from aisle.search.click_pairs import click_pairs, normalise_query
from aisle.search.documents import search_documents
from aisle.search.finetune import FineTuneRun, fine_tune
from aisle.storage import Store

SECRET = "f" * 48
TRAIN_SHARE = 0.8


def best_buy(shared: Path, root: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The click log sorted by click time, and the catalog as search documents (ingested and
    built as the pipeline does, embeddings left out)."""
    folder = shared / "bestbuy-small-xbox"
    clicks = pl.read_csv(folder / "clicks.csv.gz", schema_overrides={"sku": pl.String})
    clicks = clicks.with_columns(
        pl.col("click_time", "query_time").str.to_datetime("%Y-%m-%d %H:%M:%S%.f")
    ).sort("click_time", "query_time", "user", "sku", "query")
    settings = Settings(home=root, secret_key=SECRET)
    ingest("products", folder, "bestbuy-products", settings)
    with Store(settings.home) as store:
        build_catalog(store, settings, embed=False)
        documents = search_documents(store)
    return clicks, documents


def ranks(
    encoder: TextEncoder, tests: pl.DataFrame, products: pl.DataFrame
) -> tuple[np.ndarray, float]:
    """Rank of each test click's product among all products by cosine with its query (inf
    when the product or the query is missing), and the seconds spent encoding."""
    started = time.perf_counter()
    vectors = encoder.encode(products["text"].to_list())
    queries = tests["key"].drop_nulls().unique().sort()
    query_vectors = encoder.encode(queries.to_list())
    seconds = time.perf_counter() - started
    row = {item: i for i, item in enumerate(products["item_id"].to_list())}
    query_row = {query: i for i, query in enumerate(queries.to_list())}
    result = np.full(tests.height, np.inf)
    known = [
        (i, query_row[key], row[sku])
        for i, (key, sku) in enumerate(tests.select("key", "sku").iter_rows())
        if key is not None and sku in row
    ]
    at, q, p = (np.asarray(column) for column in zip(*known, strict=True))
    scores = query_vectors[q] @ vectors.T  # clicks x catalog
    clicked = scores[np.arange(q.size), p]
    result[at] = 1 + (scores > clicked[:, None]).sum(axis=1)
    return result, seconds


def retrieval(rank: np.ndarray) -> dict[str, float]:
    """Recall@10, MRR@10 and MAP@5 over every click."""
    reciprocal = 1.0 / rank
    return {
        "recall10": float((rank <= 10).mean()),
        "mrr10": float(np.where(rank <= 10, reciprocal, 0.0).mean()),
        "map5": float(np.where(rank <= 5, reciprocal, 0.0).mean()),
    }


def popularity_ranks(train: pl.DataFrame, tests: pl.DataFrame, items: list[str]) -> np.ndarray:
    """The baseline: every query gets the catalog ordered by clicks in the training period."""
    counts = dict(train.group_by("sku").len().iter_rows())
    order = sorted(items, key=lambda item: (-counts.get(item, 0), item))
    position = {item: i + 1 for i, item in enumerate(order)}
    return np.asarray([position.get(sku, np.inf) for sku in tests["sku"].to_list()], dtype=float)


def crowdflower(
    shared: Path, encoders: dict[str, TextEncoder], queries: int | None
) -> dict[str, Any]:
    """nDCG@10 of each encoder's cosine over the judged pools (the catalog benchmark's)."""
    frame = catalog.pools(shared)
    if queries is not None:
        kept = frame["query"].unique().sort().head(queries)
        frame = frame.filter(pl.col("query").is_in(kept.implode()))
    figures: dict[str, Any] = {"queries": frame["query"].n_unique(), "rows": frame.height}
    for name, encoder in encoders.items():
        started = time.perf_counter()
        figures[name] = catalog.ndcg_at_10(frame, catalog.cosine_scores(frame, encoder.encode))
        figures[f"{name}_seconds"] = time.perf_counter() - started
    figures["tfidf"] = catalog.ndcg_at_10(frame, catalog.tfidf_scores(frame))
    return figures


def run_figures(run: FineTuneRun, wall: float) -> dict[str, Any]:
    return {
        "wall_seconds": wall,
        "train_seconds": run.seconds,
        "steps": run.steps,
        "steps_per_s": run.steps_per_s,
        "pairs": run.pairs,
        "train_pairs": run.train_pairs,
        "validation_pairs": run.validation_pairs,
        "validation_before": run.validation_before,
        "validation_after": run.validation_after,
        "kept_step": run.kept_step,
        "blocks": run.blocks,
        "data_hash": run.data_hash,
        "parameters": json.loads((run.path / "manifest.json").read_text())["parameters"],
    }


def figures_for(args: argparse.Namespace, shared: Path, root: Path) -> dict[str, Any]:
    clicks, documents = best_buy(shared, root / "home")
    cut = int(TRAIN_SHARE * clicks.height)
    train, tests = clicks.head(cut), clicks.slice(cut)
    tests = tests.with_columns(normalise_query(pl.col("query")).alias("key"))
    pairs = click_pairs(train, documents)
    products = product_text(documents)
    figures: dict[str, Any] = {
        "data": {
            "clicks": clicks.height,
            "train_clicks": train.height,
            "test_clicks": tests.height,
            "cut_time": str(tests["click_time"].min()),
            "test_clicks_in_catalog": tests.filter(
                pl.col("sku").is_in(products["item_id"].implode())
            ).height,
            "products": products.height,
            "pairs": pairs.height,
            "pair_queries": pairs["query"].n_unique(),
        }
    }

    out = Path(args.out) if args.out else root / "minilm-clicks"
    started = time.perf_counter()
    run = fine_tune(
        pairs,
        out,
        budget_s=args.budget,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        seed=args.seed,
        on_block=lambda block: print(f"fine-tune block {block}", file=sys.stderr, flush=True),
    )
    figures["fine_tune"] = run_figures(run, time.perf_counter() - started)
    figures["fine_tune"]["path"] = str(out)

    seen = tests["key"].is_in(pairs["query"].unique().implode()).fill_null(False).to_numpy()
    encoders: dict[str, TextEncoder] = {"base": MiniLMEncoder(), "fine_tuned": run.encoder}
    bestbuy: dict[str, Any] = {"seen_query_share": float(seen.mean())}
    for name, encoder in encoders.items():
        rank, seconds = ranks(encoder, tests, products)
        bestbuy[name] = {
            **retrieval(rank),
            "seen": retrieval(rank[seen]),
            "unseen": retrieval(rank[~seen]),
            "encode_seconds": seconds,
        }
    popular = popularity_ranks(train, tests, products["item_id"].to_list())
    bestbuy["popularity"] = {
        **retrieval(popular),
        "seen": retrieval(popular[seen]),
        "unseen": retrieval(popular[~seen]),
    }
    figures["bestbuy"] = bestbuy
    figures["crowdflower"] = crowdflower(shared, encoders, args.crowdflower_queries)
    return figures


def render(figures: dict[str, Any], args: argparse.Namespace) -> str:
    d, f, b, c = (figures[k] for k in ("data", "fine_tune", "bestbuy", "crowdflower"))
    lines = [
        machine.render(figures["machine"]),
        f"torch:     {figures['torch']}",
        "",
        f"Best Buy clicks: {d['clicks']:,} by click time; fine-tuned on the first "
        f"{d['train_clicks']:,} ({d['pairs']:,} pairs over {d['pair_queries']:,} queries), "
        f"tested on the last {d['test_clicks']:,} from {d['cut_time']} "
        f"({d['test_clicks_in_catalog']:,} on one of the {d['products']} catalog products)",
        "",
        f"fine-tune (budget {args.budget:g} s, batch {args.batch_size}, lr {args.learning_rate:g}, "
        f"seed {args.seed}, {f['parameters']['threads']} threads, {f['parameters']['precision']}): "
        f"{f['steps']} steps in "
        f"{f['train_seconds']:.0f} s "
        f"({f['steps_per_s']:.3f} steps/s, {f['wall_seconds']:.0f} s with loading and saving); "
        f"validation loss {f['validation_before']:.3f} -> {f['validation_after']:.3f} "
        f"(kept step {f['kept_step']})",
        "steps      train loss  validation loss  seconds",
    ]
    lines += [
        f"{k['first_step']:>4}-{k['last_step']:<4} {k['train_loss']:>11.3f} "
        f"{k['validation_loss']:>16.3f} {k['seconds']:>8.0f}"
        for k in f["blocks"]
    ]
    lines += [
        "",
        f"retrieval over the catalog, every test click ({b['seen_query_share']:.0%} of them "
        "with a query seen in training):",
        "model        Recall@10  MRR@10   MAP@5   | unseen queries: Recall@10  MRR@10",
    ]
    for name in ("base", "fine_tuned", "popularity"):
        m = b[name]
        lines.append(
            f"{name:<12} {m['recall10']:>9.3f} {m['mrr10']:>7.3f} {m['map5']:>7.3f}   |"
            f"                 {m['unseen']['recall10']:>9.3f} {m['unseen']['mrr10']:>7.3f}"
        )
    lines += [
        "",
        f"Crowdflower judged pools ({c['queries']} queries, {c['rows']:,} judged products), "
        f"nDCG@10: base {c['base']:.3f}, fine-tuned {c['fine_tuned']:.3f} "
        f"(TF-IDF {c['tfidf']:.3f})",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=300, help="training seconds")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=2e-5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="keep the fine-tuned model in this folder")
    parser.add_argument(
        "--crowdflower-queries", type=int, help="only the first N Crowdflower queries (quicker)"
    )
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args()
    shared = harness.shared_data("bestbuy-small-xbox", "crowdflower-relevance")
    if shared is None:
        return 2
    import torch

    figures: dict[str, Any] = {"machine": machine.describe()}
    with tempfile.TemporaryDirectory() as root:
        figures.update(figures_for(args, shared, Path(root)))
    figures["torch"] = (
        f"{torch.__version__}, {torch.get_num_threads()} threads, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}"
    )
    if args.json:
        print(json.dumps(figures, default=str))
    else:
        print(render(figures, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
