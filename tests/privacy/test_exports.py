"""Exports refuse quasi-identifier combinations that could single people out."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from aisle.cli.main import app
from aisle.config import PrivacySettings, Settings
from aisle.privacy import audit
from aisle.privacy.exports import KAnonymityError, export, k_anonymity
from aisle.storage import Store
from tests.conftest import TEST_SECRET


def test_k_anonymity_counts_rows_in_small_groups() -> None:
    frame = pl.DataFrame({"age": [30, 30, 30, 41], "zip": ["1", "1", "1", "2"]})
    assert k_anonymity(frame, ["age", "zip"], 3) == (1, 1)
    assert k_anonymity(frame, ["age", "zip"], 2) == (1, 1)
    assert k_anonymity(frame, [], 3) == (None, 0)


@pytest.fixture
def movielens_users(settings: Settings, shared_data: Path) -> Settings:
    """MovieLens' user table (age, gender, occupation, zip) as a table of the store."""
    users = pl.read_csv(
        shared_data / "movielens-100k" / "u.user", separator="|", has_header=False,
        new_columns=["user", "age", "gender", "occupation", "zip"], infer_schema=False,
    )  # fmt: skip
    with Store(settings.home) as store, store.registered("_users", users):
        store.execute("CREATE TABLE movielens_users AS SELECT * FROM _users")
    return settings


def test_age_gender_zip_is_refused_and_force_is_audited(
    movielens_users: Settings, tmp_path: Path
) -> None:
    policy = PrivacySettings()
    with Store(movielens_users.home) as store:
        with pytest.raises(KAnonymityError, match="age x gender x zip x occupation"):
            export(store, "movielens_users", tmp_path / "users.csv", policy)
        assert not (tmp_path / "users.csv").exists()
        forced = export(store, "movielens_users", tmp_path / "users.csv", policy, force=True)
        entries = audit.entries(store, action="export_forced")
    assert forced.forced and forced.rows == 943 and (tmp_path / "users.csv").exists()
    assert entries and entries[0]["details"]["rows_in_small_groups"] > 0


def test_a_generalised_export_passes(movielens_users: Settings, tmp_path: Path) -> None:
    query = (
        "SELECT CASE WHEN CAST(age AS INT) < 30 THEN 'under 30' WHEN CAST(age AS INT) < 50 "
        "THEN '30-49' ELSE '50+' END AS age, gender FROM movielens_users"
    )
    out = CliRunner().invoke(
        app,
        ["--home", str(movielens_users.home), "privacy", "export", query,
         "--to", str(tmp_path / "ages.parquet"), "--json"],
        env={"AISLE_SECRET_KEY": TEST_SECRET},
    )  # fmt: skip
    assert out.exit_code == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["quasi_identifiers"] == ["age", "gender"]
    assert result["smallest_group"] >= 5 and not result["forced"]
    assert pl.read_parquet(tmp_path / "ages.parquet").height == 943
