"""Privacy figures: PII scrubbing (texts/s, precision, recall), pseudonymisation cost,
erasure time on the full UCI store, and the utility of differentially private popularity at
epsilon 0.1, 1 and 10, each beside a baseline run in the same process.

    python benchmarks/privacy.py [--releases 10] [--json]
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import machine
import numpy as np
import polars as pl

from aisle.config import PrivacySettings, Settings
from aisle.pipeline import ingest
from aisle.privacy.dp import release_popular
from aisle.privacy.erasure import erase, find_traces
from aisle.privacy.pii import find, scrub_series
from aisle.privacy.pseudonymise import Pseudonymiser
from aisle.storage import Store

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the labelled set lives in tests/
from tests.privacy.pii_samples import labelled

SECRET = "b" * 48
TOP = 100


def pseudonymisation(rows: int = 1_000_000, customers: int = 50_000) -> dict[str, float]:
    """Seconds per million ids: aisle (one HMAC per distinct id) vs one HMAC per row."""
    rng = np.random.default_rng(0)
    ids = pl.Series("customer", rng.integers(10_000, 10_000 + customers, rows).astype(str))
    key = SECRET.encode()
    started = time.perf_counter()
    Pseudonymiser(key).series(ids)
    ours = time.perf_counter() - started
    started = time.perf_counter()
    [hmac.new(key, v.encode(), hashlib.sha256).hexdigest()[:32] for v in ids.to_list()]
    naive = time.perf_counter() - started
    scale = 1_000_000 / rows
    return {"aisle_s_per_million": ours * scale, "per_row_hmac_s_per_million": naive * scale,
            "speedup": naive / ours}  # fmt: skip


def pii(data: Path) -> dict[str, float]:
    """Throughput on real queries (mostly clean) and on planted PII; precision and recall.

    Recall: planted values found with the right entity. Precision: of all findings on the
    labelled texts and on the 33,892 real Best Buy queries, the share that are planted PII.
    """
    queries = pl.read_csv(data / "bestbuy-small-xbox" / "clicks.csv.gz", infer_schema=False)[
        "query"
    ]
    rows = labelled(200)
    planted = pl.Series([text for text, _, _ in rows])
    started = time.perf_counter()
    _, on_queries = scrub_series(queries)
    real_s = time.perf_counter() - started
    started = time.perf_counter()
    scrub_series(planted)
    planted_s = time.perf_counter() - started
    hits = false = 0
    for text, entity, value in rows:
        spans = find(text)
        right = [f for f in spans if f.entity == entity and value in text[f.start : f.end]]
        hits += bool(right)
        false += len(spans) - len(right)
    false += sum(on_queries.values())
    return {
        "real_queries_per_s": queries.len() / real_s,
        "planted_texts_per_s": planted.len() / planted_s,
        "recall": hits / len(rows),
        "precision": hits / (hits + false) if hits + false else 1.0,
        "false_findings_on_real_queries": float(sum(on_queries.values())),
        "labelled_texts": float(len(rows)),
    }


def _exact_top(store: Store) -> set[str]:
    rows = store.query(
        "SELECT item_id, count(DISTINCT user_id) AS n FROM events WHERE type = 'purchase' "
        "AND item_id IN (SELECT item_id FROM products) GROUP BY 1 ORDER BY n DESC, 1 LIMIT ?",
        [TOP],
    )
    return set(rows["item_id"].to_list())


def _laplace_top_k(store: Store, epsilon: float, k: int, rng: np.random.Generator) -> set[str]:
    """Textbook baseline: each customer keeps their k most bought items (L1 bound k), Laplace
    noise of scale k / epsilon on the counts."""
    pairs = store.query(
        "SELECT user_id, item_id, count(*) AS n FROM events WHERE type = 'purchase' "
        "AND user_id IS NOT NULL GROUP BY ALL"
    )
    kept = pairs.sort(["user_id", "n", "item_id"], descending=[False, True, False])
    counts = kept.group_by("user_id", maintain_order=True).head(k).group_by("item_id").len()
    domain = store.query("SELECT item_id FROM products ORDER BY item_id")
    full = domain.join(counts, on="item_id", how="left").fill_null(0)
    noisy = full["len"].to_numpy().astype(float) + rng.laplace(0, k / epsilon, full.height)
    return set(full["item_id"].gather(np.argsort(-noisy, kind="stable")[:TOP]).to_list())


def dp_utility(store: Store, releases: int) -> list[dict[str, float]]:
    """Median overlap of the private top-100 with the exact top-100, for aisle and baseline."""
    exact = _exact_top(store)
    rng = np.random.default_rng(1)
    policy = PrivacySettings(epsilon_budget=1e9)
    rows = []
    for epsilon in (0.1, 1.0, 10.0):
        ours = [
            len(set(release_popular(store, policy, epsilon=epsilon, top=TOP).items["item_id"])
                & exact) / TOP
            for _ in range(releases)
        ]  # fmt: skip
        base = [len(_laplace_top_k(store, epsilon, 20, rng) & exact) / TOP for _ in range(releases)]
        rows.append({"epsilon": epsilon, "aisle_overlap": statistics.median(ours),
                     "laplace_top20_overlap": statistics.median(base)})  # fmt: skip
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--releases", type=int, default=10, help="releases per epsilon")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args()
    shared = Path(os.environ.get("AISLE_DATA", "../shared/data"))
    data = shared / "uci-online-retail"
    if not data.exists():
        print(f"UCI Online Retail not found at {data}", file=sys.stderr)
        return 2
    figures: dict[str, object] = {"machine": machine.describe()}
    figures["pii"] = pii(shared)
    figures["pseudonymisation"] = pseudonymisation()
    with tempfile.TemporaryDirectory() as home:
        settings = Settings(home=Path(home), secret_key=SECRET)
        ingest("events", data, "uci-online-retail", settings)
        pseudonym = Pseudonymiser(SECRET.encode()).one("17850")
        with Store(home) as store:
            figures["dp_utility_top100"] = dp_utility(store, args.releases)
            started = time.perf_counter()
            receipt = erase(store, pseudonym)
            erased = time.perf_counter() - started
            started = time.perf_counter()
            clean = find_traces(store, pseudonym, raw_id="17850").clean
            verified = time.perf_counter() - started
        figures["erasure"] = {"seconds": erased, "verify_seconds": verified, "clean": clean,
                              "removed": receipt.removed}  # fmt: skip
    if args.json:
        print(json.dumps(figures, default=str))
        return 0
    print(machine.render(figures["machine"]))  # type: ignore[arg-type]
    s = figures["pii"]
    print(
        f"\nPII scrubbing: {s['real_queries_per_s']:,.0f} real queries/s, "  # type: ignore[index]
        f"{s['planted_texts_per_s']:,.0f} texts with PII/s; recall {s['recall']:.3f}, "  # type: ignore[index]
        f"precision {s['precision']:.3f} ({s['labelled_texts']:.0f} labelled texts + the real "  # type: ignore[index]
        f"queries, {s['false_findings_on_real_queries']:.0f} false findings on them)"  # type: ignore[index]
    )
    p = figures["pseudonymisation"]
    print(
        f"\npseudonymisation, 1M ids of 50k customers: {p['aisle_s_per_million']:.3f} s "  # type: ignore[index]
        f"(per-row HMAC: {p['per_row_hmac_s_per_million']:.3f} s, {p['speedup']:.1f}x)"
    )  # type: ignore[index]
    print(
        f"\nDP popularity, top-{TOP} overlap with the exact top-{TOP} (median of {args.releases}):"
    )
    print("epsilon  aisle (2-round Gaussian, bound 2)  baseline (Laplace, top-20 per customer)")
    for row in figures["dp_utility_top100"]:  # type: ignore[attr-defined]
        print(
            f"{row['epsilon']:>7}  {row['aisle_overlap']:>28.2f}  "
            f"{row['laplace_top20_overlap']:>40.2f}"
        )
    e = figures["erasure"]
    print(
        f"\nerasure of one customer on the full UCI store: {e['seconds']:.3f} s, "  # type: ignore[index]
        f"proof of no trace: {e['verify_seconds']:.3f} s, clean: {e['clean']}"
    )  # type: ignore[index]
    return 0


if __name__ == "__main__":
    sys.exit(main())
