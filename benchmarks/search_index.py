"""Search index figures: lexical relevance on Best Buy clicks (MAP@5, MRR@10; tokenizer,
fuzzy matching and field boosts beside plain tantivy in the same run), indexing throughput,
query latency and index size on a 100k-product catalog recombined from Best Buy and
Crowdflower texts, ``field_scores`` cost, and the dense index's recall and speed on those
products embedded by the static model (distilled from MiniLM into a temporary home on the way).

Relevance: every click row (query -> clicked sku) counts; MAP@5 is 1/rank when the clicked
product ranks in the top 5 (else 0), MRR@10 the same to rank 10, both averaged over all click
rows. Settings are chosen on the first 80% of the clicks by time; the last 20% are reported
beside them and never used to choose.

    python benchmarks/search_index.py [--products 100000] [--grid] [--json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import harness
import machine
import numpy as np
import polars as pl
import tantivy

from aisle.catalog import embeddings
from aisle.catalog.build import build_catalog
from aisle.config import Settings
from aisle.pipeline import ingest
from aisle.search.dense import DenseIndex
from aisle.search.documents import search_documents
from aisle.search.lexical import LexicalIndex
from aisle.search.lexical_fields import DEFAULT_BOOSTS, DEFAULT_TOKENIZERS, TEXT_FIELDS
from aisle.storage import Store

SECRET = "s" * 48
TUNE_SHARE = 0.8
#: Boost settings shown in every run (the full grid with --grid): the default, the best of
#: the grid on Best Buy's tune clicks, all fields equal, and steps away from the default.
BOOSTS: dict[str, dict[str, float]] = {
    "default": dict(DEFAULT_BOOSTS),
    "best of grid on tune": {**DEFAULT_BOOSTS, "title": 3.0, "description": 0.0, "brand": 1.5,
                             "category": 0.5, "attributes": 0.0},
    "best on tune, descriptions kept": {**DEFAULT_BOOSTS, "title": 1.0, "description": 1.0,
                                        "brand": 1.0, "category": 0.5, "attributes": 0.0},
    "all 1": dict.fromkeys(DEFAULT_BOOSTS, 1.0),
    "title 3, description 0.5": {**DEFAULT_BOOSTS, "title": 3.0, "description": 0.5},
    "description 0.5": {**DEFAULT_BOOSTS, "description": 0.5},
    "title only": {**DEFAULT_BOOSTS, "description": 0.0},
    "brand 3": {**DEFAULT_BOOSTS, "brand": 3.0},
    "category 2": {**DEFAULT_BOOSTS, "category": 2.0},
    "attributes 0": {**DEFAULT_BOOSTS, "attributes": 0.0},
    "attributes 1.5": {**DEFAULT_BOOSTS, "attributes": 1.5},
}  # fmt: skip
GRID: dict[str, tuple[float, ...]] = {
    "title": (1.0, 2.0, 3.0, 5.0),
    "description": (0.0, 0.25, 0.5, 1.0),
    "brand": (1.0, 1.5, 3.0),
    "category": (0.5, 1.0, 2.0),
    "attributes": (0.0, 0.5, 1.5),
}
#: Tokenizer settings compared: the default (names stemmed, descriptions not) and one
#: analyzer for every field.
ANALYSERS: dict[str, str | dict[str, str]] = {
    "names stemmed": dict(DEFAULT_TOKENIZERS),
    "all en_stem": "en_stem",
    "all default": "default",
}
Search = Callable[[str], list[str]]


# -- relevance on Best Buy clicks ----------------------------------------------------------


def bestbuy(shared: Path, home: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Best Buy search documents (catalog built, without embeddings, so that attributes are
    filled) and the click rows (query, item_id, timestamp) in time order."""
    settings = Settings(home=home, secret_key=SECRET)
    ingest("products", shared / "bestbuy-small-xbox", "bestbuy-products", settings)
    ingest("events", shared / "bestbuy-small-xbox", "bestbuy-clicks", settings)
    with Store(settings.home) as store:
        build_catalog(store, settings, embed=False)
        documents = search_documents(store)
        clicks = store.query(
            "SELECT query, item_id, timestamp FROM events "
            "WHERE type = 'click' AND query IS NOT NULL ORDER BY timestamp, event_id"
        )
    return documents, clicks


def split(clicks: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """The first 80% of click rows by time (to choose settings on) and the rest."""
    cut = int(clicks.height * TUNE_SHARE)
    return {"tune": clicks.head(cut), "test": clicks.slice(cut)}


def rank_metrics(search: Search, parts: Mapping[str, pl.DataFrame]) -> dict[str, float]:
    """MAP@5 and MRR@10 of ``search`` (query -> top ids) on each part; each distinct query is
    searched once."""
    queries = pl.concat([p["query"] for p in parts.values()]).unique().to_list()
    ranked = pl.DataFrame(
        [(q, item, r) for q in queries for r, item in enumerate(search(q)[:10], start=1)],
        schema={"query": pl.String, "item_id": pl.String, "rank": pl.Int64},
        orient="row",
    )
    figures = {}
    for name, part in parts.items():
        joined = part.join(ranked, on=["query", "item_id"], how="left")
        rank = pl.col("rank")
        figures.update(
            joined.select(
                pl.when(rank <= 5).then(1.0 / rank).otherwise(0.0).mean().alias(f"{name}_map5"),
                pl.when(rank <= 10).then(1.0 / rank).otherwise(0.0).mean().alias(f"{name}_mrr10"),
            ).row(0, named=True)
        )
    return figures


def plain_tantivy(documents: pl.DataFrame) -> Search:
    """The baseline: one field (title and description), tantivy's default tokenizer, the
    shopper's text through tantivy's lenient query parser."""
    builder = tantivy.SchemaBuilder()
    builder.add_text_field("item_id", stored=True, tokenizer_name="raw")
    builder.add_text_field("text")
    schema = builder.build()
    index = tantivy.Index(schema)
    writer = index.writer(heap_size=64_000_000, num_threads=1)
    for item, title, description in documents.select(
        "item_id", "title", pl.col("description").fill_null("")
    ).iter_rows():
        writer.add_document(tantivy.Document(item_id=item, text=f"{title} {description}"))
    writer.commit()
    index.reload()
    searcher = index.searcher()

    def search(query: str) -> list[str]:
        parsed, _errors = index.parse_query_lenient(query, ["text"])
        hits = searcher.search(parsed, 10).hits
        return [searcher.doc(address).get_first("item_id") for _, address in hits]

    return search


def lexical(index: LexicalIndex, **options: Any) -> Search:
    return lambda query: index.search(query, limit=10, **options).item_ids


def relevance(documents: pl.DataFrame, clicks: pl.DataFrame, grid: bool) -> dict[str, Any]:
    """Every variant's MAP@5 and MRR@10 on the tune and test parts."""
    parts = split(clicks)
    figures: dict[str, Any] = {
        "products": documents.height,
        "clicks": {name: part.height for name, part in parts.items()},
        "queries": clicks["query"].n_unique(),
        "plain tantivy": rank_metrics(plain_tantivy(documents), parts),
    }
    for analysis, tokenizers in ANALYSERS.items():
        index = LexicalIndex.create(documents, tokenizers=tokenizers)
        for fuzzy in (False, True):
            key = f"{analysis}, fuzzy {'on' if fuzzy else 'off'}"
            figures[key] = rank_metrics(lexical(index, fuzzy=fuzzy), parts)
        key = f"{analysis}, all terms required"
        figures[key] = rank_metrics(lexical(index, require_all=True), parts)
    settings = BOOSTS
    if grid:
        settings = {
            ", ".join(f"{k} {v:g}" for k, v in zip(GRID, values, strict=True)): {
                **DEFAULT_BOOSTS,
                **dict(zip(GRID, values, strict=True)),
            }
            for values in itertools.product(*GRID.values())
        }
    boosts = {}
    for name, setting in settings.items():
        index = LexicalIndex.create(documents, boosts=setting)
        boosts[name] = rank_metrics(lexical(index), parts)
    figures["boosts"] = boosts
    figures["best boosts on tune"] = max(boosts, key=lambda k: boosts[k]["tune_map5"])
    return figures


def crowdflower_pools(shared: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Crowdflower's products as search documents, and the judged rows (query, item_id,
    median relevance 1-4)."""
    rows = pl.read_csv(shared / "crowdflower-relevance" / "train_shared.csv.gz").with_columns(
        pl.col("product_description").fill_null("")
    )
    products = (
        rows.select(title="product_title", description="product_description")
        .unique(maintain_order=True)
        .with_row_index("row")
        .with_columns(item_id=pl.format("cf{}", "row"))
    )
    judged = rows.join(
        products, left_on=["product_title", "product_description"],
        right_on=["title", "description"],
    ).select("query", "item_id", grade="median_relevance")  # fmt: skip
    return products.drop("row"), judged


def pool_ndcg(documents: pl.DataFrame, judged: pl.DataFrame) -> dict[str, float]:
    """nDCG@10 (gain 2^(grade-1) - 1) of each boost setting re-ranking every query's judged
    pool by its boosted field BM25 (``field_scores`` weighted), under each of ``ANALYSERS``."""
    figures = {}
    for analysis, tokenizers in ANALYSERS.items():
        index = LexicalIndex.create(documents, tokenizers=tokenizers)
        pools = [
            (index.field_scores(query, part["item_id"].to_list()), part["grade"].to_numpy())
            for (query,), part in judged.group_by(["query"], maintain_order=True)
        ]
        discount = 1.0 / np.log2(np.arange(2, 12))
        for name, setting in BOOSTS.items():
            weights = np.asarray([setting[f] for f in TEXT_FIELDS])
            scores = []
            for fields, grades in pools:
                gain = 2.0 ** (grades - 1) - 1
                top = gain[np.argsort(-(fields @ weights), kind="stable")[:10]]
                ideal = np.sort(gain)[::-1][:10]
                if ideal.sum() > 0:
                    scores.append((top @ discount[: len(top)]) / (ideal @ discount[: len(ideal)]))
            figures[f"{name}, {analysis}"] = float(np.mean(scores))
    return figures


# -- throughput, latency and size on a recombined 100k catalog ------------------------------


def recombined_catalog(shared: Path, documents: pl.DataFrame, size: int) -> pl.DataFrame:
    """``size`` products whose titles are random words of the Best Buy and Crowdflower titles
    and whose descriptions are random sentences of their descriptions; brand, category path
    and price drawn from Best Buy."""
    rng = np.random.default_rng(7)
    crowdflower = pl.read_csv(shared / "crowdflower-relevance" / "train_shared.csv.gz")
    titles = pl.concat([documents["title"], crowdflower["product_title"]]).drop_nulls()
    words = titles.str.split(" ").explode()
    words = words.filter(words != "")
    descriptions = pl.concat([documents["description"], crowdflower["product_description"]])
    sentences = descriptions.drop_nulls().str.split(". ").explode()
    sentences = sentences.filter(sentences.str.len_chars() > 20)

    def pick(pool: pl.Series, low: int, high: int, separator: str) -> pl.Series:
        counts = rng.integers(low, high, size)
        chosen = pool.gather(rng.integers(0, pool.len(), int(counts.sum())))
        owner = np.repeat(np.arange(size), counts)
        return (
            pl.DataFrame({"owner": owner, "part": chosen})
            .group_by("owner", maintain_order=True)
            .agg(pl.col("part").str.join(separator))["part"]
        )

    drawn = documents.select("brand", "category", "category_path").gather(
        rng.integers(0, documents.height, size)
    )
    return drawn.with_columns(
        item_id=pl.format("p{}", pl.int_range(size)),
        title=pick(words, 3, 10, " "),
        description=pick(sentences, 1, 6, ". "),
        price=pl.Series(np.round(rng.lognormal(3.3, 1.0, size), 2)),
        popularity=pl.Series(rng.poisson(3.0, size).astype(float)),
    )


def timed(work: Callable[[], Any]) -> tuple[float, float, Any]:
    """Wall seconds, CPU seconds of this process (all its threads) and the result. On a
    shared machine the CPU seconds say what the work costs when others hold the cores."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = work()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def scale(catalog: pl.DataFrame, queries: list[str], root: Path) -> dict[str, Any]:
    """Indexing throughput (1 and 2 writer threads, in memory; 1 on disk), size on disk,
    query latency on one thread."""
    figures: dict[str, Any] = {"products": catalog.height}
    for threads in (1, 2):
        wall, cpu, _ = timed(lambda t=threads: LexicalIndex.create(catalog, threads=t))
        figures[f"indexing_{threads}_threads"] = (catalog.height / wall, catalog.height / cpu)
    path = root / "lexical"
    wall, cpu, index = timed(lambda: LexicalIndex.create(catalog, path))
    figures["indexing_on_disk"] = (catalog.height / wall, catalog.height / cpu)
    figures["bytes_per_million"] = folder_bytes(path) / catalog.height * 1_000_000
    variants: dict[str, dict[str, Any]] = {
        "relevance": {},
        "fuzzy": {"fuzzy": True},
        "all terms": {"require_all": True},
        "by price": {"sort": "price"},
        "brand filter": {"filters": {"brand": "Activision"}},
    }
    for name, options in variants.items():
        for query in queries[:50]:
            index.search(query, **options)  # warm
        walls, cpus = [], []
        for query in queries:
            wall, cpu, _ = timed(lambda q=query, o=options: index.search(q, **o))
            walls.append(wall)
            cpus.append(cpu)
        figures[f"latency_ms_{name}"] = [1000 * float(np.percentile(x, p))
                                         for x in (walls, cpus) for p in (50, 99)]  # fmt: skip
    figures["field_scores_ms"] = field_scores_ms(index, queries)
    return figures


def field_scores_ms(index: LexicalIndex, queries: list[str], candidates: int = 100) -> float:
    """Median ms of one ``field_scores`` call on the top ``candidates`` of each query."""
    pools = [(q, index.search(q, limit=candidates).item_ids) for q in queries[:300]]
    times = []
    for query, items in pools:
        started = time.perf_counter()
        index.field_scores(query, items)
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


# -- dense index ----------------------------------------------------------------------------


def product_vectors(catalog: pl.DataFrame, queries: list[str], home: Path) -> tuple[Any, Any]:
    """Vectors of the recombined products and of shoppers' queries from the static model
    distilled from MiniLM (distilled into ``home`` unless it is there already)."""
    model = embeddings.encoder("static", home)
    texts = catalog.select(
        pl.concat_str(["title", pl.col("description").str.slice(0, 300)], separator=". ")
    ).to_series()
    return model.encode(texts.to_list()), model.encode(queries)


def dense(vectors: np.ndarray, queries: np.ndarray, root: Path, k: int = 10) -> dict[str, Any]:
    """Build speed, recall@10 of the graph against numpy brute force, latency of graph and
    exact search, save and load."""
    ids = [f"p{i}" for i in range(len(vectors))]
    wall, cpu, index = timed(lambda: DenseIndex.create(ids, vectors))
    figures: dict[str, Any] = {"vectors": len(ids), "dimensions": vectors.shape[1],
                               "indexing": (len(ids) / wall, len(ids) / cpu)}  # fmt: skip
    exact = np.argsort(-(queries @ vectors.T), axis=1)[:, :k]
    found = index.search_many(queries, k, exact=False)
    pairs = zip(exact, found, strict=True)
    overlaps = [len({ids[j] for j in row} & set(got)) for row, (got, _) in pairs]
    figures["recall_at_10"] = float(np.mean(overlaps)) / k
    for exact_search in (False, True):
        walls, cpus = [], []
        for query in queries:
            wall, cpu, _ = timed(lambda q=query, e=exact_search: index.search(q, k, exact=e))
            walls.append(wall)
            cpus.append(cpu)
        figures[f"latency_ms_{'exact' if exact_search else 'graph'}"] = [
            1000 * float(np.percentile(x, p)) for x in (walls, cpus) for p in (50, 99)
        ]
    figures["save_s"], _, _ = timed(lambda: index.save(root / "dense"))
    figures["load_s"], _, _ = timed(lambda: DenseIndex.load(root / "dense"))
    figures["bytes_per_million"] = folder_bytes(root / "dense") / len(ids) * 1_000_000
    return figures


# -- report -----------------------------------------------------------------------------------


def metrics_line(name: str, f: Mapping[str, float]) -> str:
    return (f"{name:<34} {f['tune_map5']:.4f}  {f['tune_mrr10']:.4f}   "
            f"{f['test_map5']:.4f}  {f['test_mrr10']:.4f}")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=100_000, help="recombined catalog size")
    parser.add_argument("--grid", action="store_true", help="every boost setting of GRID")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args()
    shared = harness.shared_data("bestbuy-small-xbox")
    if shared is None:
        return 2
    figures: dict[str, Any] = {"machine": machine.describe()}
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        documents, clicks = bestbuy(shared, root / "home")
        figures["relevance"] = relevance(documents, clicks, args.grid)
        figures["crowdflower_ndcg10"] = pool_ndcg(*crowdflower_pools(shared))
        bestbuy_index = LexicalIndex.create(documents)
        queries = clicks["query"].unique(maintain_order=True).to_list()
        figures["field_scores_ms_bestbuy"] = field_scores_ms(bestbuy_index, queries)
        catalog = recombined_catalog(shared, documents, args.products)
        figures["scale"] = scale(catalog, queries[:2000], root)
        vectors, query_vectors = product_vectors(catalog, queries[:500], root / "models")
        figures["dense"] = dense(vectors, query_vectors, root)
    if args.json:
        print(json.dumps(figures, default=str))
        return 0
    print(machine.render(figures["machine"]))
    r = figures["relevance"]
    print(
        f"\nBest Buy relevance: {r['products']} products, {r['queries']} distinct queries, "
        f"click rows tune {r['clicks']['tune']} (first 80% by time) / test {r['clicks']['test']}"
    )
    print(f"{'variant':<34} tune MAP@5 MRR@10   test MAP@5 MRR@10")  # fmt: skip
    for name, f in r.items():
        if isinstance(f, dict) and "tune_map5" in f:
            print(metrics_line(name, f))
    print("boosts (names stemmed, fuzzy off):")
    for name, f in sorted(r["boosts"].items(), key=lambda kv: -kv[1]["tune_map5"])[:15]:
        print(metrics_line("  " + name, f))
    print(f"best boosts on tune: {r['best boosts on tune']}")
    print("\nCrowdflower judged pools re-ranked by boosted field BM25, nDCG@10 ("
          + " / ".join(ANALYSERS) + "):")  # fmt: skip
    c = figures["crowdflower_ndcg10"]
    for name in BOOSTS:
        values = " / ".join(f"{c[f'{name}, {analysis}']:.4f}" for analysis in ANALYSERS)
        print(f"  {name:<32} {values}")
    s = figures["scale"]
    print(f"\nrecombined catalog, {s['products']:,} products:")
    for key in ("indexing_1_threads", "indexing_2_threads", "indexing_on_disk"):
        wall, cpu = s[key]
        print(f"{key.replace('_', ' '):<22} {wall:>9,.0f} products/s, {cpu:>9,.0f} per CPU-second")
    print(f"size on disk: {s['bytes_per_million'] / 2**30:.2f} GiB per million products")
    for key in [k for k in s if k.startswith("latency_ms_")]:
        p50, p99, cpu50, cpu99 = s[key]
        name = key.removeprefix("latency_ms_")
        print(f"search latency, {name:<12} p50 {p50:6.2f} ms, p99 {p99:6.2f} ms "
              f"(one thread; CPU time p50 {cpu50:.2f}, p99 {cpu99:.2f} ms)")  # fmt: skip
    print(
        f"field_scores, 100 candidates: {figures['field_scores_ms_bestbuy']:.2f} ms on Best "
        f"Buy, {s['field_scores_ms']:.2f} ms at {s['products']:,} products"
    )
    d = figures["dense"]
    print(f"\ndense index, {d['vectors']:,} recombined products embedded by the static model "
          f"({d['dimensions']} dims), 500 Best Buy queries: {d['indexing'][0]:,.0f} vectors/s "
          f"({d['indexing'][1]:,.0f} per CPU-second); graph recall@10 {d['recall_at_10']:.4f}; "
          f"saved {d['bytes_per_million'] / 2**30:.2f} GiB per million, save {d['save_s']:.2f} "
          f"s, load {d['load_s']:.2f} s")  # fmt: skip
    for name in ("graph", "exact"):
        p50, p99, cpu50, cpu99 = d[f"latency_ms_{name}"]
        print(f"dense search, {name}: p50 {p50:.2f} ms, p99 {p99:.2f} ms "
              f"(CPU time p50 {cpu50:.2f}, p99 {cpu99:.2f} ms)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
