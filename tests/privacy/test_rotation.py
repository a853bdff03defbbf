"""Key rotation: every pseudonym re-keyed at once, record ids and erasures still hold, and a
wrong key is refused instead of splitting customers in two."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aisle.cli.main import app
from aisle.config import Settings, load_settings
from aisle.errors import KeyRotationPendingError, SecretKeyError
from aisle.pipeline import ingest
from aisle.privacy.erasure import find_traces
from aisle.privacy.pseudonymise import KEY_FILE, Pseudonymiser, load_keys
from aisle.privacy.rotation import pseudonymiser_for, rotate
from aisle.storage import Store
from aisle.storage.snapshots import snapshot


@pytest.fixture
def keyfile_settings(home: Path) -> Settings:
    """Keys from the key file in home (rotation adds to it)."""
    return load_settings(home=home)


def _users(home: Path) -> set[str]:
    with Store(home) as store:
        return set(store.query("SELECT DISTINCT user_id FROM events")["user_id"].to_list())


def test_rotation_rekeys_everything_and_keeps_ids(
    keyfile_settings: Settings, uci_file: Path
) -> None:
    first = ingest("events", uci_file, "uci-online-retail", keyfile_settings)
    before = _users(keyfile_settings.home)
    with Store(keyfile_settings.home) as store:
        folder = snapshot(store)
        held_before = store.query("SELECT payload FROM quarantine WHERE payload IS NOT NULL")
        outcome = rotate(store, keyfile_settings)
    keys = load_keys(keyfile_settings)
    assert len(keys) == 2 and outcome.generation == 2
    after = _users(keyfile_settings.home)
    assert len(after) == len(before) and not after & before  # every pseudonym changed
    old = Pseudonymiser(keys[:1])
    new = Pseudonymiser(keys)
    assert new.one("17850") in after and old.one("17850") in before
    # payloads and snapshots carry the new pseudonyms, never the old
    with Store(keyfile_settings.home) as store:
        held_after = store.query("SELECT payload FROM quarantine WHERE payload IS NOT NULL")
        assert find_traces(store, old.one("17851")).clean
    assert held_after.height == held_before.height
    text = (folder / "events.parquet").read_bytes()
    assert old.one("17850").encode() not in text
    # the same file again: record ids did not change, so nothing is added
    again = ingest("events", uci_file, "uci-online-retail", keyfile_settings)
    assert again.accepted == 0 and again.duplicates == again.input == first.input
    assert _users(keyfile_settings.home) == after


def test_erasure_and_consent_outlive_a_rotation(keyfile_settings: Settings, uci_file: Path) -> None:
    ingest("events", uci_file, "uci-online-retail", keyfile_settings)
    runner = CliRunner()
    home = str(keyfile_settings.home)
    assert runner.invoke(app, ["--home", home, "erase", "--user", "17850"]).exit_code == 0
    out = runner.invoke(app, ["--home", home, "privacy", "rotate-key", "--json"])
    assert out.exit_code == 0, out.stderr
    assert json.loads(out.stdout)["generation"] == 2
    again = ingest("events", uci_file, "uci-online-retail", keyfile_settings)
    assert again.reasons.get("erased_user", 0) >= 1  # still refused after the rotation
    verify = runner.invoke(app, ["--home", home, "privacy", "verify", "--user", "17850", "--json"])
    assert verify.exit_code == 0 and json.loads(verify.stdout)["clean"]


def test_a_wrong_key_is_refused(settings: Settings, uci_file: Path) -> None:
    ingest("events", uci_file, "uci-online-retail", settings)
    other = load_settings(home=settings.home, secret_key="f0" * 20)
    with pytest.raises(SecretKeyError, match="not the one"):
        ingest("events", uci_file, "uci-online-retail", other)


def test_a_key_added_by_hand_must_be_applied_first(
    keyfile_settings: Settings, uci_file: Path
) -> None:
    ingest("events", uci_file, "uci-online-retail", keyfile_settings)
    path = keyfile_settings.home / KEY_FILE
    path.write_text(path.read_text() + "ab" * 32 + "\n")
    with pytest.raises(KeyRotationPendingError, match="rotate-key"):
        ingest("events", uci_file, "uci-online-retail", keyfile_settings)
    with Store(keyfile_settings.home) as store:
        rotate(store, keyfile_settings)  # applies the pending key; adds none
        assert pseudonymiser_for(store, keyfile_settings).generation == 2


def test_keys_from_the_environment_are_not_rotated_by_aisle(
    settings: Settings, uci_file: Path
) -> None:
    ingest("events", uci_file, "uci-online-retail", settings)
    with Store(settings.home) as store, pytest.raises(SecretKeyError, match="AISLE_SECRET_KEY"):
        rotate(store, settings)
