"""Catalog figures: embedding throughput of MiniLM and of the static model distilled from it,
the quality the fast one gives up (Crowdflower judged pools re-ranked by cosine, nDCG@10, beside
TF-IDF cosine in the same process), catalog build time on UCI and Best Buy, attribute
precision on the hand-checked sample, and held-out category accuracy.

    python benchmarks/catalog.py [--repeats 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import harness
import machine
import numpy as np
import polars as pl

from aisle.catalog import categories, embeddings
from aisle.catalog.attributes import extract_attributes, score_extraction
from aisle.catalog.build import build_catalog
from aisle.catalog.vocabulary import learn_vocabulary
from aisle.config import Settings
from aisle.pipeline import ingest
from aisle.storage import Store

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the hand-checked sample
from tests.catalog.test_attributes import crowdflower_products, load_sample, sample_products

SECRET = "c" * 48


def pools(shared: Path) -> pl.DataFrame:
    """Crowdflower rows: query, product text, median relevance (1-4)."""
    rows = pl.read_csv(shared / "crowdflower-relevance" / "train_shared.csv.gz")
    return rows.select(
        "query",
        pl.concat_str(
            "product_title", pl.col("product_description").fill_null("").str.slice(0, 1000),
            separator=". ",
        ).alias("text"),
        pl.col("median_relevance").alias("grade"),
    )  # fmt: skip


def ndcg_at_10(frame: pl.DataFrame, score: np.ndarray) -> float:
    """Mean over queries of nDCG@10, gain 2^(r-1) - 1, ideal from the pool's own labels."""
    ranked = frame.with_columns(
        pl.Series("score", score), (2.0 ** (pl.col("grade") - 1) - 1).alias("gain")
    )

    def dcg(order: pl.Expr) -> pl.Expr:
        top = pl.col("gain").sort_by(order, descending=True).head(10)
        return (top / (pl.int_range(pl.len()).head(10) + 2).log(2)).sum()

    per_query = ranked.group_by("query").agg(
        dcg(pl.col("score")).alias("dcg"), dcg(pl.col("gain")).alias("ideal")
    )
    return float(
        per_query.filter(pl.col("ideal") > 0)
        .select((pl.col("dcg") / pl.col("ideal")).mean())
        .item()
    )


def cosine_scores(frame: pl.DataFrame, encode: Any) -> np.ndarray:
    """Cosine of each row's product text with its query (distinct texts encoded once)."""
    queries = frame["query"].unique().to_list()
    texts = frame["text"].unique().to_list()
    q = dict(zip(queries, encode(queries), strict=True))
    t = dict(zip(texts, encode(texts), strict=True))
    return np.asarray([float(q[a] @ t[b]) for a, b in frame.select("query", "text").iter_rows()])


def tfidf_scores(frame: pl.DataFrame) -> np.ndarray:
    """The baseline: TF-IDF cosine of query and product text."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(sublinear_tf=True).fit(frame["text"].unique().to_list())
    q = vectorizer.transform(frame["query"].to_list())
    t = vectorizer.transform(frame["text"].to_list())
    return np.asarray(q.multiply(t).sum(axis=1)).ravel()


def embedding_figures(shared: Path, home: Path, repeats: int) -> dict[str, Any]:
    """Throughput on real product texts and nDCG@10 on the judged pools."""
    frame = pools(shared)
    texts = frame["text"].unique().to_list()[:2000]
    figures: dict[str, Any] = {"texts": len(texts), "queries": frame["query"].n_unique()}
    for name in ("minilm", "static"):
        model = embeddings.encoder(name, home)
        model.encode(texts[:64])  # warm
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            model.encode(texts)
            times.append(time.perf_counter() - started)
        figures[name] = {
            "products_per_s": len(texts) / statistics.median(times),
            "ndcg10": ndcg_at_10(frame, cosine_scores(frame, model.encode)),
        }
    figures["tfidf_ndcg10"] = ndcg_at_10(frame, tfidf_scores(frame))
    figures["speedup"] = figures["static"]["products_per_s"] / figures["minilm"]["products_per_s"]
    return figures


def build_figures(shared: Path, root: Path) -> dict[str, Any]:
    """Catalog build time (first build, then a rebuild with nothing changed)."""
    figures: dict[str, Any] = {}
    sources = {
        "uci": [("events", "uci-online-retail", "uci-online-retail")],
        "bestbuy": [("products", "bestbuy-small-xbox", "bestbuy-products"),
                    ("products", "bestbuy-small-xbox/small_product_data.xml.gz", "bestbuy-xml")],
    }  # fmt: skip
    for name, imports in sources.items():
        settings = Settings(home=root / name, secret_key=SECRET)
        for kind, path, adapter in imports:
            ingest(kind, shared / path, adapter, settings)
        with Store(settings.home) as store:
            started = time.perf_counter()
            first = build_catalog(store, settings)
            seconds = time.perf_counter() - started
            started = time.perf_counter()
            again = build_catalog(store, settings)
            figures[name] = {
                "products": first.products,
                "build_seconds": seconds,
                "rebuild_seconds": time.perf_counter() - started,
                "re_embedded_on_rebuild": again.embedded,
                "steps": first.seconds,
                "conflicts": first.conflicts,
                "duplicates": first.duplicates,
                "categories_filled": first.categories_filled,
                "categories_flagged": first.categories_flagged,
                "prices_filled": first.prices_filled,
            }
            products = store.query("SELECT * FROM products")
            figures.setdefault("_catalogs", []).append(products)
            if name == "bestbuy":
                figures["category_accuracy"] = categories.evaluate_categories(products)
    return figures


def attribute_figures(shared: Path, catalogs: pl.DataFrame) -> dict[str, Any]:
    """Precision and recall on the hand-checked sample, the vocabulary learned from the real
    catalogs (UCI, Best Buy, Crowdflower texts), and extraction speed on the catalogs."""
    rows = load_sample()
    everything = pl.concat([catalogs, crowdflower_products(shared)], how="diagonal_relaxed")
    started = time.perf_counter()
    vocabulary = learn_vocabulary(everything)
    learned = time.perf_counter() - started
    scores = score_extraction(
        extract_attributes(sample_products(rows), vocabulary),
        {r["item_id"]: r["expected"] for r in rows},
    )
    started = time.perf_counter()
    extract_attributes(catalogs, vocabulary)
    seconds = time.perf_counter() - started
    return {**scores, "learn_seconds": learned,
            "products_per_s": catalogs.height / seconds}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per encoder")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args()
    shared = harness.shared_data("crowdflower-relevance")
    if shared is None:
        return 2
    figures: dict[str, Any] = {"machine": machine.describe()}
    with tempfile.TemporaryDirectory() as root:
        figures["embeddings"] = embedding_figures(shared, Path(root) / "models", args.repeats)
        figures["build"] = build_figures(shared, Path(root))
    catalogs = pl.concat(figures["build"].pop("_catalogs"), how="diagonal_relaxed")
    figures["attributes"] = attribute_figures(shared, catalogs)
    if args.json:
        print(json.dumps(figures, default=str))
        return 0
    print(machine.render(figures["machine"]))
    e = figures["embeddings"]
    print(f"\nembeddings ({e['texts']} Crowdflower product texts, median of {args.repeats}):")
    print("model    products/s  nDCG@10 on the judged pools")
    for name in ("minilm", "static"):
        print(f"{name:<8} {e[name]['products_per_s']:>10,.0f}  {e[name]['ndcg10']:.3f}")
    print(f"baseline TF-IDF cosine nDCG@10 {e['tfidf_ndcg10']:.3f}; static is "
          f"{e['speedup']:.0f}x faster than MiniLM")  # fmt: skip
    b = figures["build"]
    for name in ("uci", "bestbuy"):
        f = b[name]
        print(f"\ncatalog build, {name}: {f['products']} products in {f['build_seconds']:.1f} s "
              f"(rebuild with nothing changed {f['rebuild_seconds']:.1f} s, re-embedded "
              f"{f['re_embedded_on_rebuild']}); steps {f['steps']}")  # fmt: skip
    c = b["category_accuracy"]
    print(f"\ncategory inference, Best Buy genres, {c['folds']}-fold held out ({c['labelled']} "
          f"labelled, {c['classes']} genres): accuracy {c['accuracy']:.3f} +- "
          f"{c['accuracy_std']:.3f}, macro-F1 {c['macro_f1']:.2f} (majority baseline "
          f"{c['baseline_accuracy']:.3f}, {c['baseline_macro_f1']:.2f}); confidence >= "
          f"{c['min_confidence']}: {c['confident_share']:.0%} of products, accuracy "
          f"{c['confident_accuracy']:.2f}")  # fmt: skip
    a = figures["attributes"]
    print(f"\nattributes, hand-checked sample ({a['expected']:.0f} expected values): precision "
          f"{a['precision']:.3f}, recall {a['recall']:.3f}; extraction "
          f"{a['products_per_s']:,.0f} products/s")  # fmt: skip
    print("attribute      precision  recall  extracted")
    for name in sorted(k.split("/")[1] for k in a if k.startswith("precision/")):
        print(f"{name:<14} {a['precision/' + name]:>9.3f}  {a['recall/' + name]:>6.3f}  "
              f"{a['extracted/' + name]:>9.0f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
