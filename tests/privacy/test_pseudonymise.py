"""The pseudonymisation boundary: keyed, stable, and refusing weak secrets."""

from __future__ import annotations

import stat
from pathlib import Path

import polars as pl
import pytest

from aisle.config import load_settings
from aisle.errors import SecretKeyError
from aisle.privacy.pseudonymise import KEY_FILE, Pseudonymiser, load_secret


def test_key_file_is_created_private_and_reused(home: Path) -> None:
    settings = load_settings(home=home)
    first = load_secret(settings)
    path = home / KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_secret(settings) == first and len(first) == 64


def test_a_key_file_others_can_read_is_refused(home: Path) -> None:
    settings = load_settings(home=home)
    load_secret(settings)
    (home / KEY_FILE).chmod(0o644)
    with pytest.raises(SecretKeyError, match="chmod 600"):
        load_secret(settings)


@pytest.mark.parametrize("secret", ["changeme", "secret", "CHANGE-ME-PLEASE-NOW", "", "Zq9xK2wP"])
def test_placeholder_and_short_secrets_are_refused(home: Path, secret: str) -> None:
    with pytest.raises(SecretKeyError) as caught:
        load_secret(load_settings(home=home, secret_key=secret))
    if len(secret) > 6:
        assert secret not in str(caught.value)  # the message never repeats the secret


def test_env_secret_wins_over_the_key_file(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AISLE_SECRET_KEY", "f" * 40)
    assert load_secret(load_settings(home=home)) == b"f" * 40
    assert not (home / KEY_FILE).exists()


def test_pseudonyms_are_keyed_stable_and_keep_nulls() -> None:
    one, other = Pseudonymiser(b"k" * 32), Pseudonymiser(b"j" * 32)
    ids = pl.Series("customer", ["17850", " 17850 ", None, "", "12583"])
    out = one.series(ids)
    assert out[0] == out[1] == one.one("17850")  # surrounding blanks do not matter
    assert out[2] is None and out[3] is None  # missing stays missing, never hashed
    assert out[0] != out[4] and len(out[0]) == 32
    assert other.one("17850") != one.one("17850")  # another key, another pseudonym
    assert "17850" not in "".join(v for v in out.to_list() if v)


def test_only_listed_columns_are_replaced() -> None:
    frame = pl.DataFrame({"CustomerID": ["1"], "Country": ["France"]})
    out = Pseudonymiser(b"k" * 32).frame(frame, ["CustomerID", "absent"])
    assert out["Country"][0] == "France" and out["CustomerID"][0] != "1"
