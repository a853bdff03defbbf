"""Fixtures of the service's tests: one Best Buy home built once, real `aisle serve` processes.

The home is built once per session and never served from: each server runs on its own copy,
so what one module writes (events, products, erasures, retrains) cannot move another's
expectations, and no two processes open the same store.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest

from aisle.storage import Store
from tests.conftest import SHARED_DATA, TEST_SECRET, json_result, run_aisle

#: Clicks (the first by time) the shared home is trained and indexed on.
TRAIN_CLICKS = 4_000
#: How long a server may take to load its models and search index.
READY_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Shop:
    """The pristine home and what the tests need to know about its data."""

    home: Path
    clicks: pl.DataFrame  # the raw training clicks: user, sku, ... (raw customer ids)
    items: list[str]  # catalog item ids, most clicked first

    def busiest_users(self, n: int) -> list[str]:
        """Raw ids of the customers with the most training clicks."""
        counts = self.clicks.group_by("user").len().sort(["len", "user"], descending=[True, False])
        return list(counts["user"].head(n))


@dataclass
class Server:
    """One `aisle serve` process on a free loopback port, with its own home and log."""

    home: Path
    config: Path
    log: Path
    url: str
    process: subprocess.Popen[bytes]
    env: dict[str, str] = field(repr=False)

    def client(self, **headers: str) -> httpx.Client:
        """A client on the server (close it, or use it as a context manager)."""
        return httpx.Client(base_url=self.url, headers=headers, timeout=60.0)

    def stop(self) -> None:
        """Stop the server (idempotent): SIGTERM, then SIGKILL if it hangs."""
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def log_text(self) -> str:
        """Everything the process wrote to stdout and stderr so far."""
        return self.log.read_text(encoding="utf-8", errors="replace")


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def server_env(home: Path, config: Path, **extra: str) -> dict[str, str]:
    """The environment of an aisle process: no AISLE_* of the developer's, the test secret."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AISLE_")}
    env.update(AISLE_HOME=str(home), AISLE_CONFIG=str(config), AISLE_SECRET_KEY=TEST_SECRET,
               PYTHONUNBUFFERED="1", **extra)  # fmt: skip
    return env


def aisle_command(*args: str) -> list[str]:
    """`aisle ARGS...` as a subprocess command of this interpreter."""
    return [sys.executable, "-m", "aisle", *args]


@pytest.fixture(scope="session")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    """The Best Buy catalog and its first clicks by time, trained (popularity, item-kNN, ALS,
    all in production) and indexed for search."""
    clicks = SHARED_DATA / "bestbuy-small-xbox" / "clicks.csv.gz"
    products = SHARED_DATA / "bestbuy-small-xbox" / "products.jsonl.gz"
    if not clicks.is_file() or not products.is_file():
        pytest.skip(f"Best Buy data not found at {clicks.parent} (set AISLE_DATA)")
    folder = tmp_path_factory.mktemp("serving-shop")
    rows = pl.read_csv(clicks, infer_schema=False).with_row_index("_i").sort("click_time", "_i")
    train = rows.drop("_i").head(TRAIN_CLICKS)
    train.write_csv(folder / "train.csv")
    home = folder / "home"
    with pytest.MonkeyPatch.context() as patch:  # session fixtures run before the autouse one
        for name in [n for n in os.environ if n.startswith("AISLE_") and n != "AISLE_DATA"]:
            patch.delenv(name)
        steps: list[tuple[str, ...]] = [
            ("ingest", "products", str(products), "-a", "bestbuy-products"),
            ("ingest", "events", str(folder / "train.csv"), "-a", "bestbuy-clicks"),
            ("train", "--model", "popularity", "--promote"),
            ("train", "--model", "itemknn", "--promote"),
            ("train", "--model", "als", "--param", "iterations=5", "--promote"),
            ("index", "build"),
        ]
        for step in steps:
            json_result(run_aisle(home, *step, "--json"))
    with Store(home, read_only=True) as store:
        catalog = store.query("SELECT item_id FROM catalog_products")["item_id"]
    kept = train.filter(pl.col("sku").is_in(catalog.implode()))
    items = kept.group_by("sku").len().sort(["len", "sku"], descending=[True, False])["sku"]
    yield Shop(home, kept, list(items))


@pytest.fixture(scope="session")
def launch(shop: Shop, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Server]]:
    """Start a server on a copy of the shop: ``launch(name, toml="", **env)``. Each module
    stops its own; whatever is still running at the end of the session is stopped here."""
    started: list[Server] = []

    def start(name: str, toml: str = "", **extra_env: str) -> Server:
        folder = tmp_path_factory.mktemp(f"serve-{name}")
        home = folder / "home"
        shutil.copytree(shop.home, home)
        config = folder / "aisle.toml"
        if toml:
            config.write_text(toml, encoding="utf-8")
        port = free_port()
        env = server_env(home, config, **extra_env)
        log = folder / "server.log"
        with log.open("wb") as sink:
            process = subprocess.Popen(aisle_command("serve", "--port", str(port)), env=env,
                                       stdout=sink, stderr=subprocess.STDOUT)  # fmt: skip
        server = Server(home, config, log, f"http://127.0.0.1:{port}", process, env)
        started.append(server)
        _wait_until_ready(server)
        return server

    yield start
    for server in started:
        server.stop()


def _wait_until_ready(server: Server) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(f"aisle serve exited with {server.process.returncode}:\n"
                        f"{server.log_text()[-3000:]}")  # fmt: skip
        try:
            if httpx.get(f"{server.url}/readyz", timeout=5.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    server.stop()
    pytest.fail(f"aisle serve not ready after {READY_TIMEOUT_S:.0f}s:\n{server.log_text()[-3000:]}")


def error_of(response: httpx.Response) -> dict[str, Any]:
    """The error object of a JSON error answer (asserting the one shape)."""
    assert response.headers["content-type"].startswith("application/json"), response.text
    body = response.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert isinstance(error.get("code"), str) and isinstance(error.get("message"), str), body
    return error


#: A sample line of the Prometheus text format: name, optional {labels}, value.
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(?:,|$)')
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse_prometheus(text: str) -> Samples:
    """Samples of a Prometheus text exposition (version 0.0.4), checked strictly: every
    line a comment or a sample, each family typed once before its samples, labels
    well-formed, values numbers, histogram buckets cumulative and ending at the count."""
    assert text.endswith("\n")
    samples: Samples = {}
    typed: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, family, kind = line.split(" ", 3)
            assert family not in typed, f"{family} typed twice"
            assert kind in {"counter", "gauge", "histogram", "summary", "untyped"}, line
            typed[family] = kind
            continue
        if line.startswith("# HELP ") or not line:
            continue
        match = _SAMPLE.match(line)
        assert match, f"not a sample: {line!r}"
        name, inner, value = match.groups()
        labels: list[tuple[str, str]] = _LABEL.findall(inner or "")
        assert ",".join(f'{k}="{v}"' for k, v in labels) == (inner or ""), f"bad labels: {line!r}"
        family = re.sub(r"_(bucket|sum|count)$", "", name)
        assert name in typed or family in typed, f"sample before its TYPE: {line!r}"
        key = (name, tuple(sorted(labels)))
        assert key not in samples, f"sample repeated: {line!r}"
        samples[key] = float(value)
    for family in (f for f, kind in typed.items() if kind == "histogram"):
        for (counted, series), count in samples.items():
            if counted != f"{family}_count":
                continue
            buckets = sorted(
                (float(dict(other)["le"]), value)
                for (other_name, other), value in samples.items()
                if other_name == f"{family}_bucket"
                and tuple(p for p in other if p[0] != "le") == series
            )
            values = [value for _, value in buckets]
            assert values == sorted(values), f"{family} buckets not cumulative"
            assert buckets[-1] == (float("inf"), count), f"{family} +Inf bucket != count"
    return samples
