"""Who may call the service, against a real `aisle serve` with API keys: scopes, both key
headers, keys from the environment, per-key rate limits, the body size limit, keys never
logged, and a server without keys refusing to listen beyond loopback."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.serving.conftest import (
    Server,
    Shop,
    aisle_command,
    error_of,
    free_port,
    parse_prometheus,
    server_env,
)

pytestmark = pytest.mark.integration

KEYS = {
    "shop-front": "front-key-7f3a9c2e41d8",  # read
    "pipeline": "pipe-key-5b1e8d7c3a90",  # ingest
    "operator": "ops-key-2c9f4e6a8b13d5",  # read, ingest, admin
    "trickle": "trickle-key-9d8c7b6a5f4e",  # read, one request a minute
    "env-reader": "env-key-0a1b2c3d4e5f6a",  # read, from AISLE_API_KEYS
}
LIMIT = 65_536
CONFIG = f"""
[serve]
max_body_bytes = {LIMIT}

[[serve.api_keys]]
name = "shop-front"
key = "{KEYS["shop-front"]}"
scopes = ["read"]

[[serve.api_keys]]
name = "pipeline"
key = "{KEYS["pipeline"]}"
scopes = ["ingest"]

[[serve.api_keys]]
name = "operator"
key = "{KEYS["operator"]}"
scopes = ["read", "ingest", "admin"]

[[serve.api_keys]]
name = "trickle"
key = "{KEYS["trickle"]}"
scopes = ["read"]
requests_per_minute = 1
"""


@pytest.fixture(scope="module")
def server(launch: Any) -> Iterator[Server]:
    running: Server = launch("keys", CONFIG,
                             AISLE_API_KEYS=f"env-reader:{KEYS['env-reader']}:read")  # fmt: skip
    yield running
    running.stop()


def bearer(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[name]}"}


def event(shop: Shop) -> list[dict[str, Any]]:
    return [{"user_id": "keyed-shopper", "item_id": shop.items[0], "type": "view",
             "timestamp": datetime.now(UTC).isoformat()}]  # fmt: skip


def test_health_readiness_and_the_document_need_no_key(server: Server) -> None:
    with server.client() as anonymous:
        assert anonymous.get("/healthz").status_code == 200
        assert anonymous.get("/readyz").status_code == 200
        assert anonymous.get("/openapi.json").status_code == 200


def test_every_v1_route_refuses_a_request_without_a_valid_key(server: Server) -> None:
    with server.client() as anonymous:
        spec = anonymous.get("/openapi.json").json()
        routes = [(method.upper(), path.replace("{user_id}", "u1").replace("{item_id}", "i1"))
                  for path, operations in spec["paths"].items() if path.startswith("/v1/")
                  for method in operations]  # fmt: skip
        assert len(routes) >= 12
        for headers in ({}, {"Authorization": "Bearer not-a-key-at-all-0000"},
                        {"X-API-Key": "not-a-key-at-all-0000"},
                        {"Authorization": f"Basic {KEYS['operator']}"}):  # fmt: skip
            for method, path in routes:
                response = anonymous.request(method, path, headers=headers)
                assert response.status_code == 401, (method, path, response.text)
                assert error_of(response)["code"] == "unauthorised"
                assert response.headers["www-authenticate"] == "Bearer"
        assert anonymous.get("/metrics").status_code == 401


@pytest.mark.parametrize(
    ("key", "route", "allowed"),
    [
        ("shop-front", "GET /v1/users/keyed-shopper/recommendations", True),
        ("shop-front", "GET /v1/search?q=halo", True),
        ("shop-front", "POST /v1/events", False),
        ("shop-front", "POST /v1/admin/reload", False),
        ("shop-front", "GET /metrics", False),
        ("env-reader", "GET /v1/suggest?q=hal", True),
        ("env-reader", "DELETE /v1/products/nothing", False),
        ("pipeline", "POST /v1/events", True),
        ("pipeline", "GET /v1/search?q=halo", False),
        ("pipeline", "DELETE /v1/users/keyed-shopper", False),
        ("operator", "POST /v1/admin/reload", True),
        ("operator", "GET /metrics", True),
        ("operator", "DELETE /v1/users/keyed-shopper", True),
    ],
)
def test_a_key_does_what_its_scopes_allow_and_nothing_else(
    server: Server, shop: Shop, key: str, route: str, allowed: bool
) -> None:
    method, path = route.split(" ")
    body = event(shop) if path == "/v1/events" else None
    for headers in (bearer(key), {"X-API-Key": KEYS[key]}):  # both ways of presenting it
        with server.client(**headers) as client:
            response = client.request(method, path, json=body)
        if allowed:
            assert response.status_code == 200, response.text
        else:
            assert response.status_code == 403, response.text
            error = error_of(response)
            assert error["code"] == "forbidden" and key in error["message"]
            assert KEYS[key] not in response.text


def test_a_key_over_its_rate_limit_gets_429_with_retry_after(server: Server) -> None:
    with server.client(**bearer("trickle")) as trickle:
        assert trickle.get("/v1/suggest", params={"q": "hal"}).status_code == 200
        refused = trickle.get("/v1/suggest", params={"q": "hal"})
    assert refused.status_code == 429
    assert error_of(refused)["code"] == "rate_limited"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    with server.client(**bearer("shop-front")) as other:  # the limit is per key
        assert other.get("/v1/suggest", params={"q": "hal"}).status_code == 200


def test_a_body_over_the_limit_gets_413_and_the_server_carries_on(
    server: Server, shop: Shop
) -> None:
    big = b"[" + b",".join([b'{"user_id": "x", "type": "view"}'] * 3_000) + b"]"
    assert len(big) > LIMIT
    with server.client(**bearer("operator")) as client:
        declared = client.post("/v1/events", content=big)
        assert declared.status_code == 413
        assert error_of(declared)["code"] == "too_large"

        def chunks() -> Iterator[bytes]:  # no content-length: counted as it arrives
            for start in range(0, len(big), 8_192):
                yield big[start : start + 8_192]

        streamed = client.post("/v1/events", content=chunks())
        assert streamed.status_code == 413
        assert error_of(streamed)["code"] == "too_large"
        assert client.post("/v1/events", json=event(shop)).status_code == 200
        metrics = client.get("/metrics").text
    refusals = [value for (name, labels), value in parse_prometheus(metrics).items()
                if name == "aisle_requests_total" and ("status", "413") in labels]  # fmt: skip
    assert sum(refusals) == 2


def test_the_log_names_keys_never_their_secrets(server: Server) -> None:
    with server.client(**bearer("shop-front")) as client:
        assert client.get("/v1/search", params={"q": "kinect"}).status_code == 200
    time.sleep(0.2)
    log = server.log_text()
    assert "key=shop-front" in log and "key=operator" in log
    assert not [name for name, secret in KEYS.items() if secret in log]
    assert "keyed-shopper" not in log
    assert "unhandled" not in log


def _refused(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`aisle serve` that must stop before it loads anything (so any home will do)."""
    environment = server_env(home, home / "no-such.toml", **env)
    return subprocess.run(aisle_command("serve", "--port", str(free_port()), *args),
                          env=environment, capture_output=True, text=True, timeout=90,
                          check=False)  # fmt: skip


def test_without_keys_the_server_refuses_to_listen_beyond_loopback(home: Path) -> None:
    started = time.monotonic()
    refused = _refused(home, "--host", "0.0.0.0")
    assert refused.returncode == 2, (refused.stdout, refused.stderr)
    assert time.monotonic() - started < 60
    assert "AISLE_API_KEYS" in refused.stdout + refused.stderr
    assert "loopback" in refused.stdout + refused.stderr


def test_a_short_or_badly_scoped_key_stops_the_server_at_once(home: Path) -> None:
    short = _refused(home, AISLE_API_KEYS="ci:tooshort:read")
    assert short.returncode == 2 and "shorter than 16" in short.stdout + short.stderr
    assert "tooshort" not in short.stdout + short.stderr
    scoped = _refused(home, AISLE_API_KEYS=f"ci:{'k' * 20}:read+root")
    assert scoped.returncode == 2 and "scopes must be among" in scoped.stdout + scoped.stderr
