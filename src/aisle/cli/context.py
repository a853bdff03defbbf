"""What every command shares: settings, the console, JSON output, typed-error handling."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console

from aisle.config import Settings, load_settings
from aisle.errors import AisleError

console = Console(stderr=True)
T = TypeVar("T")

_state: dict[str, Path | None] = {"home": None}


def set_home(home: Path | None) -> None:
    """Remember the global --home option."""
    _state["home"] = home


def settings() -> Settings:
    """Settings with the global --home applied over aisle.toml and AISLE_* variables."""
    home = _state["home"]
    return load_settings(home=home) if home is not None else load_settings()


def emit_json(payload: dict[str, Any]) -> None:
    """One JSON object on stdout: what scripts and monitors read."""
    sys.stdout.write(json.dumps(payload, default=str, ensure_ascii=False) + "\n")


@contextmanager
def friendly_errors() -> Iterator[None]:
    """Typed errors become one red line and exit code 2, never a traceback."""
    try:
        yield
    except AisleError as error:
        console.print(f"[red]error:[/red] {error}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from error


def guarded(function: Callable[..., T]) -> Callable[..., T]:
    """Decorator form of friendly_errors, for command functions."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        with friendly_errors():
            return function(*args, **kwargs)

    return wrapper
