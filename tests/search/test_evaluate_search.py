"""`aisle evaluate-search` end to end on real slices (Best Buy clicks, Crowdflower judgements),
the harness's ranking rules, and the baselines' contracts."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from aisle.config import load_settings
from aisle.evaluation.search import (
    SEARCH_METHODS,
    Ranked,
    SearchTask,
    click_cases,
    click_metrics,
    judged_cases,
    judged_metrics,
    method_factories,
    pool_ranks,
)
from aisle.search.baselines import Bm25sDefault, TantivyBm25, query_words
from aisle.search.documents import conform
from aisle.storage import Store
from tests.conftest import SHARED_DATA, TEST_SECRET
from tests.conftest import json_result as json_out
from tests.conftest import run_aisle as aisle

TRAIN_CLICKS, TEST_CLICKS = 3_000, 500
TRAIN_QUERIES, TEST_QUERIES = 100, 30
CLICK_METRICS = {"map@5", "mrr", "recall@10", "ndcg@10", "zero_results", "seconds"}
JUDGED_METRICS = {"ndcg@10", "ndcg@10_linear", "kappa", "seconds"}
BASELINES = "popularity,bm25-tantivy,bm25s"


def dataset(*parts: str) -> Path:
    path = SHARED_DATA.joinpath(*parts)
    if not path.is_file():
        pytest.skip(f"real dataset not found at {path} (set AISLE_DATA)")
    return path


def write_gzip_csv(frame: pl.DataFrame, path: Path) -> Path:
    frame.write_csv(path, compression="gzip")
    assert path.read_bytes()[:2] == b"\x1f\x8b"
    return path


@pytest.fixture(scope="module")
def bestbuy(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The catalog and the first 3,000 clicks by time in a store; the next 500 as the test."""
    clicks = dataset("bestbuy-small-xbox", "clicks.csv.gz")
    products = dataset("bestbuy-small-xbox", "products.jsonl.gz")
    folder = tmp_path_factory.mktemp("bestbuy-search")
    rows = pl.read_csv(clicks, infer_schema=False).with_row_index("_i").sort("click_time", "_i")
    rows = rows.drop("_i")
    train = rows.head(TRAIN_CLICKS)
    test = rows.slice(TRAIN_CLICKS, TEST_CLICKS)
    train.write_csv(folder / "train.csv")
    home = folder / "home"
    json_out(aisle(home, "ingest", "products", str(products), "-a", "bestbuy-products", "--json"))
    json_out(aisle(home, "ingest", "events", str(folder / "train.csv"), "-a", "bestbuy-clicks",
                   "--json"))  # fmt: skip
    catalog = pl.read_ndjson(products)["sku"].cast(pl.String)
    return {"home": home, "folder": folder, "train": train, "test": test, "catalog": catalog,
            "test_file": write_gzip_csv(test, folder / "test.csv.gz")}  # fmt: skip


def event_count(home: Path) -> int:
    with Store(home, read_only=True) as store:
        return int(store.scalar("SELECT count(*) FROM events"))


def test_a_catalog_never_built_is_built_before_ranking(bestbuy: dict[str, Any]) -> None:
    home = bestbuy["home"]
    vocabulary = home / "artifacts" / "catalog" / "vocabulary.json"
    was_built = vocabulary.exists()  # False unless another test of the module evaluated first

    def built_notes() -> list[str]:
        out = json_out(aisle(home, "evaluate-search", "--clicks", str(bestbuy["test_file"]),
                             "--methods", "popularity", "--json"))  # fmt: skip
        return [note for note in out["notes"] if "never been built" in note]

    assert len(built_notes()) == (0 if was_built else 1)
    assert vocabulary.exists()
    with Store(home, read_only=True) as store:  # what search reads from a built catalog
        assert store.scalar("SELECT count(*) FROM product_attributes") > 0
    assert built_notes() == []  # built once, not at every evaluation


def test_clicks_json_counts_every_row(bestbuy: dict[str, Any]) -> None:
    home, test = bestbuy["home"], bestbuy["test"]
    events = event_count(home)
    out = json_out(aisle(home, "evaluate-search", "--clicks", str(bestbuy["test_file"]),
                         "--adapter", "bestbuy-clicks", "--methods", BASELINES, "--json"))  # fmt: skip
    assert out["dataset"] == "bestbuy-clicks"
    assert out["cases"] == TEST_CLICKS == out["counts"]["rows"]
    unknown = int((~test["sku"].is_in(bestbuy["catalog"].implode())).sum())
    assert unknown > 0
    assert out["unknown_items"] == unknown
    assert set(out["methods"]) == {"popularity", "bm25-tantivy", "bm25s"}
    for name, figures in out["methods"].items():
        assert set(figures) == CLICK_METRICS, name
        for key in CLICK_METRICS - {"seconds"}:
            assert 0 <= figures[key] <= 1, (name, key)
        assert figures["recall@10"] >= figures["mrr"] >= figures["map@5"]
    popular = out["methods"]["popularity"]
    assert popular["zero_results"] == 0
    for lexical in ("bm25-tantivy", "bm25s"):
        assert out["methods"][lexical]["map@5"] > popular["map@5"] + 0.2
        assert out["methods"][lexical]["zero_results"] > 0  # some queries match no title
    # popularity by hand: the catalog's ten most clicked SKUs of training, ties by SKU
    top = (
        bestbuy["train"].filter(pl.col("sku").is_in(bestbuy["catalog"].implode()))
        .group_by("sku").len().sort(["len", "sku"], descending=[True, False])["sku"].head(10)
    )  # fmt: skip
    rank = {sku: n + 1 for n, sku in enumerate(top.to_list())}
    ranks = np.array([rank.get(sku, 0) for sku in test["sku"].to_list()])
    hits = (ranks >= 1) & (ranks <= 5)
    assert popular["map@5"] == pytest.approx(
        np.where(hits, 1 / np.maximum(ranks, 1), 0).mean(), abs=1e-6
    )
    assert popular["recall@10"] == pytest.approx((ranks >= 1).mean(), abs=1e-6)
    # test rows never reach the store, and the raw customer ids reach no file under home
    assert event_count(home) == events
    assert not [p for p in home.iterdir() if p.name.startswith((".evaluate", "aisle-"))]
    raw_ids = [u.encode() for u in test["user"].unique().to_list()]
    for path in home.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert not any(raw in data for raw in raw_ids), path


def test_unknown_skus_and_rows_ingest_would_reject_count_as_misses(
    bestbuy: dict[str, Any],
) -> None:
    """An oracle that ranks each row's clicked SKU first scores exactly the share of rows whose
    SKU the catalog has: a duplicate row, an unreadable time, an unknown SKU, an empty query
    and a line that does not parse all count."""
    folder, test = bestbuy["folder"], bestbuy["test"]
    rows = test.head(20)
    first = rows.row(0, named=True)
    extra = pl.DataFrame(
        [first,  # an exact duplicate
         {**first, "sku": "0000001"},  # a SKU the catalog lacks
         {**first, "click_time": "not a time", "query_time": "never"},
         {**first, "query": ""}],
        schema=rows.schema, orient="row",
    )  # fmt: skip
    path = folder / "odd.csv"
    pl.concat([rows, extra]).write_csv(path)
    with path.open("a") as handle:
        handle.write("a,line,with,too,many,fields,to,parse\n")
    settings = load_settings(home=bestbuy["home"], secret_key=TEST_SECRET)
    with Store(bestbuy["home"], read_only=True) as store:
        cases = click_cases(store, settings, str(path), "bestbuy-clicks")
        pseudonym = store.scalar("SELECT user_id FROM events LIMIT 1")
    assert cases.task.cases.height == 25
    assert cases.counts["malformed"] == 1
    assert cases.task.cases["case"].to_list() == list(range(25))
    skus = [*rows["sku"].to_list(), first["sku"], "0000001", first["sku"], first["sku"], None]
    known = sum(1 for sku in skus if sku in set(bestbuy["catalog"].to_list()))
    assert cases.counts["unknown_items"] == 25 - known
    oracle = Ranked([[sku] if sku else [] for sku in skus])
    figures = click_metrics(oracle, cases, 5)
    assert figures["map@5"] == pytest.approx(known / 25)
    assert figures["zero_results"] == pytest.approx(1 / 25)
    # the same customer, in the store's pseudonyms; times of queries where readable
    users = cases.task.cases["user_id"]
    assert users.str.len_chars().drop_nulls().unique().to_list() == [len(pseudonym)]
    assert first["user"] not in users.to_list()
    at = cases.task.cases["at"]
    assert at.dtype == pl.Datetime("us", "UTC")
    assert at.null_count() == 2  # the unreadable query time and the broken line
    assert str(at[0])[:19] == first["query_time"][:19]


def test_k_sets_the_map_cut_off(bestbuy: dict[str, Any]) -> None:
    out = json_out(aisle(bestbuy["home"], "evaluate-search", "--clicks",
                         str(bestbuy["test_file"]), "--k", "3", "--methods", "popularity",
                         "--json"))  # fmt: skip
    assert set(out["methods"]["popularity"]) == CLICK_METRICS - {"map@5"} | {"map@3"}
    assert out["k"] == 3


def test_the_terminal_table(bestbuy: dict[str, Any]) -> None:
    result = aisle(bestbuy["home"], "evaluate-search", "--clicks", str(bestbuy["test_file"]),
                   "--methods", "popularity,bm25s")  # fmt: skip
    assert result.exit_code == 0, result.output
    text = " ".join(result.stderr.split())  # undo rich's wrapping
    for word in ("popularity", "bm25s", "map@5", "recall@10", "seconds", "not in the catalog",
                 f"{TEST_CLICKS} cases"):  # fmt: skip
        assert word in text, word


def test_the_registry_lists_aisle_methods_beside_the_baselines() -> None:
    assert list(SEARCH_METHODS) == ["popularity", "bm25-tantivy", "bm25s", "text-only",
                                    "click-aware"]  # fmt: skip
    assert SEARCH_METHODS["text-only"] == "aisle.search.methods:text_only"
    assert SEARCH_METHODS["click-aware"] == "aisle.search.methods:click_aware"


def test_methods_not_yet_importable_are_skipped_with_a_note(
    bestbuy: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(SEARCH_METHODS, "future", "aisle.search.not_written_yet:future")
    monkeypatch.setitem(SEARCH_METHODS, "renamed", "aisle.search.baselines:no_such_factory")
    factories, notes = method_factories(["popularity", "future", "renamed"])
    assert list(factories) == ["popularity"]
    assert len(notes) == 2
    assert all("skipped" in note for note in notes)
    out = json_out(aisle(bestbuy["home"], "evaluate-search", "--clicks",
                         str(bestbuy["test_file"]), "--methods", "future,popularity",
                         "--json"))  # fmt: skip
    assert set(out["methods"]) == {"popularity"}
    assert any("'future' skipped" in note for note in out["notes"])
    unknown = aisle(bestbuy["home"], "evaluate-search", "--clicks", str(bestbuy["test_file"]),
                    "--methods", "popularity,nope")  # fmt: skip
    assert unknown.exit_code == 2
    assert "no search method called 'nope'" in unknown.stderr


def test_exactly_one_held_out_file(tmp_path: Path) -> None:
    neither = aisle(tmp_path, "evaluate-search")
    both = aisle(tmp_path, "evaluate-search", "--clicks", "a.csv", "--judgments", "b.csv")
    for result in (neither, both):
        assert result.exit_code == 2
        assert "exactly one of --clicks" in result.stderr


# -- Crowdflower ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def crowdflower(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Judgements of 100 queries in a store; 30 other queries as the test file."""
    source = dataset("crowdflower-relevance", "train_shared.csv.gz")
    rows = pl.read_csv(source, infer_schema=False)
    queries = sorted(rows["query"].unique().to_list())
    random.Random(20240531).shuffle(queries)
    train_queries = queries[:TRAIN_QUERIES]
    test_queries = queries[TRAIN_QUERIES : TRAIN_QUERIES + TEST_QUERIES]
    folder = tmp_path_factory.mktemp("crowdflower-search")
    train = rows.filter(pl.col("query").is_in(train_queries))
    test = rows.filter(pl.col("query").is_in(test_queries))
    train.write_csv(folder / "train.csv")
    test.write_csv(folder / "test.csv")
    home = folder / "home"
    imported = json_out(aisle(home, "ingest", "judgments", str(folder / "train.csv"), "--json"))
    assert imported["input"] == train.height
    return {"home": home, "test": test, "test_file": folder / "test.csv"}


def test_judgments_json_and_bm25_beats_popularity(crowdflower: dict[str, Any]) -> None:
    out = json_out(aisle(crowdflower["home"], "evaluate-search", "--judgments",
                         str(crowdflower["test_file"]), "--adapter", "crowdflower",
                         "--methods", BASELINES, "--json"))  # fmt: skip
    assert out["dataset"] == "crowdflower"
    assert out["cases"] == TEST_QUERIES
    assert out["counts"]["rows"] == crowdflower["test"].height
    assert out["counts"]["unusable_rows"] == 0
    methods = out["methods"]
    for name, figures in methods.items():
        assert set(figures) == JUDGED_METRICS, name
        assert figures["kappa"] is None  # no baseline predicts grades
        assert 0 < figures["ndcg@10"] <= 1
        assert 0 < figures["ndcg@10_linear"] <= 1
    for lexical in ("bm25-tantivy", "bm25s"):
        assert methods[lexical]["ndcg@10"] > methods["popularity"]["ndcg@10"]
        assert methods[lexical]["ndcg@10_linear"] > methods["popularity"]["ndcg@10_linear"]


def test_judged_cases_and_a_grading_oracle(crowdflower: dict[str, Any]) -> None:
    settings = load_settings(home=crowdflower["home"], secret_key=TEST_SECRET)
    with Store(crowdflower["home"], read_only=True) as store:
        cases = judged_cases(store, settings, str(crowdflower["test_file"]), "crowdflower")
    task, truth = cases.task, cases.truth
    assert task.pools is not None
    assert task.pools.height == truth.height == crowdflower["test"].height
    assert (
        task.cases["query"].to_list()
        == crowdflower["test"]["query"].unique(maintain_order=True).to_list()
    )
    assert set(task.pools["item_id"].to_list()) == set(task.products["item_id"].to_list())
    # every test product is new to the store, which holds other queries' products
    assert cases.counts["unknown_items"] > 0
    best = (
        truth.sort(["case", "relevance"], descending=[False, True])
        .group_by("case", maintain_order=True)
        .agg("item_id")
    )
    items = [list(ids) for ids in best["item_id"].to_list()]
    grades = truth["relevance"].to_numpy()
    figures, without_gain = judged_metrics(Ranked(items, grades), cases)
    assert without_gain == 0
    assert figures["ndcg@10"] == pytest.approx(1.0)
    assert figures["ndcg@10_linear"] == pytest.approx(1.0)
    assert figures["kappa"] == pytest.approx(1.0)
    worst = [list(reversed(ids)) for ids in items]
    reversed_ndcg = judged_metrics(Ranked(worst), cases)[0]["ndcg@10"]
    assert reversed_ndcg is not None
    assert reversed_ndcg < 0.8


# -- the harness's ranking rules, the baselines' contracts -------------------------------------


def test_a_pool_ranking_is_completed_by_item_id_and_file_order() -> None:
    truth = pl.DataFrame(
        {"case": [0, 0, 0, 0, 1, 1], "item_id": ["a", "b", "c", "b", "x", "y"],
         "relevance": [4, 1, 2, 3, 2, 4]}
    )  # fmt: skip
    ranked = pool_ranks([["b", "zz", "b"], []], truth)
    # case 0: b (both rows, in file order), then a and c by item_id; case 1: by item_id
    assert ranked["rank"].to_list() == [3, 1, 4, 2, 1, 2]
    assert ranked.drop("rank").equals(truth)


def products(*rows: tuple[str, str, str | None]) -> pl.DataFrame:
    return conform(pl.DataFrame(rows, schema=["item_id", "title", "description"], orient="row"))


CATALOG = products(
    ("p3", "Halo 3", "a shooter on the xbox"),
    ("p1", "Halo 3", "a shooter on the xbox"),  # the same text: ties break by item_id
    ("p2", "Call of Duty", "war shooter; rated M"),
    ("p4", "Forza Motorsport", None),
)


def catalog_task(*queries: str | None) -> SearchTask:
    cases = pl.DataFrame(
        {"case": list(range(len(queries))), "query": list(queries)},
        schema={"case": pl.Int64, "query": pl.String},
    )
    return SearchTask(cases, None, CATALOG)


@pytest.mark.parametrize("method", [TantivyBm25, Bm25sDefault])
def test_lexical_baselines_rank_deterministically_and_never_raise(method: type) -> None:
    queries = ["halo", 'halo AND "call of', "(+-:^~*?) [x TO y] {z}", "", None, "forza",
               "NOT halo OR", "title:halo", "zzz unknown", "HALO shooter"]  # fmt: skip
    ranked = method(CATALOG).rank(catalog_task(*queries), 10)
    assert len(ranked.items) == len(queries)
    assert ranked.items[0] == ["p1", "p3"]
    assert ranked.items[3] == ranked.items[4] == []
    assert ranked.items[5] == ["p4"]
    assert ranked.items[8] == []
    assert ranked.items[9][:2] == ["p1", "p3"]
    assert set(ranked.items[9]) == {"p1", "p2", "p3"}


def test_tantivy_reads_query_syntax_as_words() -> None:
    assert query_words('Halo: "Reach" -ODST (AND) x_y') == "halo reach odst and x y"
    ranked = TantivyBm25(CATALOG).rank(catalog_task("call-of-duty: MW3"), 10)
    assert ranked.items[0][0] == "p2"


@pytest.mark.parametrize("method", [TantivyBm25, Bm25sDefault])
def test_a_pool_is_ranked_whole_with_catalog_scores(method: type) -> None:
    pools = pl.DataFrame({"case": [0, 0, 0, 1, 1], "item_id": ["p4", "p2", "p3", "p4", "p1"]})
    cases = pl.DataFrame({"case": [0, 1], "query": ["shooter war", "nothing matches"]})
    ranked = method(CATALOG).rank(SearchTask(cases, pools, CATALOG), 10)
    # the matches as over the whole catalog, then the rest of the pool by item_id
    assert ranked.items == [["p2", "p3", "p4"], ["p1", "p4"]]
