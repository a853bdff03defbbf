"""Ingesting from an http URL served by a real server on the loopback interface."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from aisle.config import load_settings
from aisle.errors import InputError
from aisle.pipeline import ingest
from tests.conftest import TEST_SECRET

pytestmark = pytest.mark.integration


@pytest.fixture
def server(tmp_path: Path, uci_file: Path) -> Iterator[str]:
    """A static file server on 127.0.0.1 holding the small retail file."""
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "retail.csv").write_bytes(uci_file.read_bytes())
    handler = functools.partial(
        http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / "www")
    )
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_a_url_imports_like_the_file(server: str, tmp_path: Path, uci_file: Path) -> None:
    settings = load_settings(home=tmp_path / "home", secret_key=TEST_SECRET)
    remote = ingest("events", f"{server}/retail.csv", "uci-online-retail", settings)
    local = ingest(
        "events",
        uci_file,
        "uci-online-retail",
        load_settings(home=tmp_path / "other", secret_key=TEST_SECRET),
    )
    assert (remote.input, remote.accepted, remote.quarantined, remote.duplicates) == (
        local.input,
        local.accepted,
        local.quarantined,
        local.duplicates,
    )
    again = ingest("events", f"{server}/retail.csv", "uci-online-retail", settings)
    assert again.accepted == 0 and again.duplicates == again.input
    # the download held raw customer ids: it never lands under home
    assert not [p for p in settings.home.rglob("*") if p.name.startswith("retail")]


def test_a_missing_url_is_a_clear_error(server: str, tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path / "home", secret_key=TEST_SECRET)
    with pytest.raises(InputError, match="404"):
        ingest("events", f"{server}/nope.csv", "uci-online-retail", settings)
