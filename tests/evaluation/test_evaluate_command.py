"""`aisle evaluate` end to end on a slice of MovieLens: each user's last rating held out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from plotly.offline import get_plotlyjs
from typer.testing import Result

from aisle.storage import Store
from tests.conftest import json_result as payload
from tests.conftest import run_aisle as run

ROWS = 20_000
METRICS = ("ndcg@10", "recall@10", "recall@20", "hr@10", "mrr", "map@10", "auc", "coverage",
           "novelty", "popularity_bias")  # fmt: skip


def split_ratings(source: Path, folder: Path) -> tuple[Path, Path, int, int]:
    """The first ROWS ratings: each user's latest (ties: the later line) is the test file,
    the rest the training file; a user with one rating stays whole in training."""
    rows = [line.split("\t") for line in source.read_text().splitlines()[:ROWS]]
    latest: dict[str, int] = {}
    count: dict[str, int] = {}
    for n, row in enumerate(rows):
        user = row[0]
        count[user] = count.get(user, 0) + 1
        if user not in latest or int(row[3]) >= int(rows[latest[user]][3]):
            latest[user] = n
    held = {n for user, n in latest.items() if count[user] > 1}
    train, test = folder / "train.tsv", folder / "test.tsv"
    train.write_text("".join("\t".join(r) + "\n" for n, r in enumerate(rows) if n not in held))
    test.write_text("".join("\t".join(rows[n]) + "\n" for n in sorted(held)))
    return train, test, len(rows) - len(held), len(held)


@pytest.fixture(scope="module")
def movielens(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from tests.conftest import SHARED_DATA

    source = SHARED_DATA / "movielens-100k" / "ratings.tsv"
    if not source.is_file():
        pytest.skip(f"MovieLens not found at {source}")
    folder = tmp_path_factory.mktemp("movielens-eval")
    train, test, n_train, n_test = split_ratings(source, folder)
    home = folder / "home"
    imported = payload(run(home, "ingest", "events", str(train), "-a", "movielens-100k", "--json"))
    assert imported["accepted"] == n_train
    return {"home": home, "folder": folder, "train": train, "test": test,
            "n_train": n_train, "n_test": n_test}  # fmt: skip


def evaluate(ml: dict[str, Any], *args: str, test: Path | None = None) -> Result:
    return run(ml["home"], "evaluate", "--test", str(test or ml["test"]), "--adapter",
               "movielens-100k", *args)  # fmt: skip


def test_full_ranking_json(movielens: dict[str, Any]) -> None:
    out = payload(evaluate(movielens, "--models", "popularity", "--json"))
    assert out["protocol"] == "full"
    assert out["split"] == "leave-last-out"
    assert out["protocol_label"].startswith("full ranking")
    assert out["k"] == 10
    assert out["dataset"]["test_users"] == movielens["n_test"]
    assert out["dataset"]["train_events"] == movielens["n_train"]
    assert out["test_file"]["input"] == out["test_file"]["accepted"] == movielens["n_test"]
    popularity = out["models"]["popularity"]
    assert popularity["train_seconds"] >= 0
    metrics = popularity["metrics"]
    for key in METRICS:
        assert key in metrics, key
    for key in ("ndcg@10", "recall@20", "hr@10", "mrr", "map@10", "auc", "coverage"):
        assert 0 <= metrics[key] <= 1, (key, metrics[key])
    assert metrics["hr@10"] > 0.02  # popularity is far better than chance on MovieLens
    assert metrics["auc"] > 0.6
    assert metrics["recall@20"] >= metrics["recall@10"] == metrics["hr@10"]
    assert metrics["popularity_bias"] > 90  # popularity recommends the head
    assert out["unknown"]["users"] == 0
    ratings = out["ratings"]  # explicit ratings always have rmse and mae
    assert ratings["n"] == movielens["n_test"]
    assert 0.5 < ratings["rmse"] < 1.5
    assert 0.3 < ratings["mae"] <= ratings["rmse"]
    assert ratings["rmse"] < ratings["global_mean_rmse"]
    # the held-out events never reach the store
    with Store(movielens["home"], read_only=True) as store:
        assert store.scalar("SELECT count(*) FROM events") == movielens["n_train"]
    assert [p.name for p in movielens["home"].iterdir() if p.name.startswith(".evaluate")] == []


def test_sampled_protocol_is_labelled_and_kinder(movielens: dict[str, Any]) -> None:
    full = payload(evaluate(movielens, "--models", "popularity", "--json"))
    sampled = payload(evaluate(movielens, "--models", "popularity", "--json",
                               "--protocol", "sampled-100"))  # fmt: skip
    assert sampled["protocol"] == "sampled-100"
    assert sampled["protocol_label"].startswith("SAMPLED")
    assert sampled["seed"] is not None
    assert sampled["counts"]["users_with_fewer_negatives"] == 0
    f, s = full["models"]["popularity"]["metrics"], sampled["models"]["popularity"]["metrics"]
    assert s["hr@10"] > f["hr@10"]
    assert s["ndcg@10"] > f["ndcg@10"]
    again = payload(evaluate(movielens, "--models", "popularity", "--json",
                             "--protocol", "sampled-100"))  # fmt: skip
    assert again["models"]["popularity"]["metrics"] == s  # a fixed seed


def test_unknown_users_and_items_are_counted_as_misses(movielens: dict[str, Any]) -> None:
    test = movielens["folder"] / "test-unknowns.tsv"
    lines = movielens["test"].read_text()
    test.write_text(lines + "99999\t50\t4\t893286638\n" + "99998\t99999\t3\t893286638\n")
    out = payload(evaluate(movielens, "--models", "popularity", "--json", "--k", "5", test=test))
    assert out["unknown"]["users"] == 2
    assert out["unknown"]["user_events"] == 2
    assert out["unknown"]["items"] >= 1
    assert out["dataset"]["test_users"] == movielens["n_test"] + 2  # still in the denominator
    assert "ndcg@5" in out["models"]["popularity"]["metrics"]
    assert "recall@20" in out["models"]["popularity"]["metrics"]
    assert out["ratings"]["unknown_users"] == 2


def test_terminal_table_and_html_report(movielens: dict[str, Any]) -> None:
    report = movielens["folder"] / "report.html"
    result = evaluate(movielens, "--models", "popularity", "--html", str(report))
    assert result.exit_code == 0, (result.stdout, result.stderr)
    assert "ndcg@10" in result.stderr
    assert "popularity" in result.stderr
    assert "unknown to training" in result.stderr
    page = report.read_text()
    assert "plotly-graph-div" in page
    bundle = get_plotlyjs()  # inlined exactly once, no remote reference: works offline
    assert page.count(bundle) == 1
    rest = page.replace(bundle, "")
    assert "cdn.plot.ly" not in rest and 'src="http' not in rest
    assert "full ranking" in page


def test_unknown_model_or_protocol_is_one_error_line(movielens: dict[str, Any]) -> None:
    for args in (("--models", "nosuch"), ("--protocol", "sampled-5")):
        result = evaluate(movielens, *args, "--json")
        assert result.exit_code == 2
        assert "Traceback" not in result.output
        assert result.stdout == ""


def test_an_empty_store_is_refused(tmp_path: Path) -> None:
    result = run(tmp_path / "empty", "evaluate", "--test", str(tmp_path / "x.tsv"), "--adapter",
                 "movielens-100k")  # fmt: skip
    assert result.exit_code == 2
    assert "run `aisle ingest" in result.stderr.replace("\n", "")


def test_withdrawn_and_erased_customers_stay_out_of_the_test(tmp_path: Path) -> None:
    train, test = tmp_path / "train.tsv", tmp_path / "test.tsv"
    train.write_text("".join(f"{u}\t{(u + j) % 9 + 1}\t{j + 2}\t{880000000 + 10 * u + j}\n"
                             for u in range(1, 7) for j in range(3)))  # fmt: skip
    test.write_text("".join(f"{u}\t{(u + 5) % 9 + 1}\t4\t{890000000 + u}\n" for u in range(1, 7)))
    home = tmp_path / "home"
    payload(run(home, "ingest", "events", str(train), "-a", "movielens-100k", "--json"))
    assert run(home, "privacy", "consent", "withdraw", "--user", "1", "--purpose",
               "personalisation").exit_code == 0  # fmt: skip
    assert run(home, "erase", "--user", "2").exit_code == 0
    out = payload(run(home, "evaluate", "--test", str(test), "-a", "movielens-100k",
                      "--models", "popularity", "--json"))  # fmt: skip
    assert out["test_file"]["input"] == 6
    assert out["test_file"]["accepted_without_consent"] == 1  # the withdrawn customer
    assert out["test_file"]["accepted"] + out["test_file"]["quarantined"] == 6
    assert out["test_file"]["quarantined"] == 1  # the erased customer
    assert out["dataset"]["test_users"] == 4
    assert out["unknown"]["users"] == 0
