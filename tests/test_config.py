"""Settings: one tree, every setting documented in aisle.example.toml and overridable by env."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from pydantic import BaseModel

from aisle.config import QualitySettings, Settings, load_settings
from tests.conftest import REPO

EXAMPLE = REPO / "aisle.example.toml"


def _leaves(model: type[BaseModel], prefix: str = "") -> set[str]:
    names: set[str] = set()
    for name, field in model.model_fields.items():
        kind = field.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            names |= _leaves(kind, f"{prefix}{name}.")
        else:
            names.add(f"{prefix}{name}")
    return names


def test_the_example_file_documents_every_setting() -> None:
    text = EXAMPLE.read_text()
    missing = [
        leaf
        for leaf in sorted(_leaves(Settings))
        if leaf.split(".")[-1] not in text and leaf != "adapters"
    ]
    assert not missing, f"settings missing from aisle.example.toml: {missing}"


def test_the_example_file_loads_and_equals_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AISLE_CONFIG", str(EXAMPLE))
    from_file = load_settings()
    assert from_file.quality == QualitySettings()
    assert tomllib.loads(EXAMPLE.read_text())["home"] == "var"


def test_environment_overrides_file_and_defaults(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "aisle.toml"
    config.write_text('home = "from-file"\n[quality]\nmax_price = 10.0\nbot_max_per_day = 5\n')
    monkeypatch.setenv("AISLE_CONFIG", str(config))
    monkeypatch.setenv("AISLE_QUALITY__MAX_PRICE", "20000")
    monkeypatch.setenv("AISLE_HOME", str(tmp_path / "from-env"))
    settings = load_settings()
    assert settings.quality.max_price == 20000.0  # env beats the file
    assert settings.quality.bot_max_per_day == 5  # the file beats the default
    assert settings.home == tmp_path / "from-env"
    assert load_settings(home=tmp_path / "explicit").home == tmp_path / "explicit"
