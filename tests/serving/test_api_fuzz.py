"""The API fuzzed against its own OpenAPI document (schemathesis) and with arbitrary JSON
batches (hypothesis): no request, however malformed, gets a server error."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.serving.conftest import Server

pytestmark = pytest.mark.integration

#: Cases per operation; the run covers every operation, positive and negative data.
MAX_EXAMPLES = 12
SEED = 20260301


@pytest.fixture(scope="module")
def server(launch: Any) -> Iterator[Server]:
    running: Server = launch("fuzz")
    yield running
    running.stop()


def test_schemathesis_finds_no_server_error(server: Server, tmp_path: Path) -> None:
    junit = tmp_path / "schemathesis.xml"
    run = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "run", f"{server.url}/openapi.json",
         "--checks", "not_a_server_error", "--max-examples", str(MAX_EXAMPLES),
         "--seed", str(SEED), "--workers", "1", "--generation-database", "none",
         "--request-timeout", "60", "--no-color", "--report", "junit",
         "--report-junit-path", str(junit)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-6000:]
    suites = ElementTree.parse(junit).getroot()
    cases = suites.findall(".//testcase")
    operations = {case.get("name") for case in cases}
    assert len(operations) >= 15, operations  # every route of the document was exercised
    assert not suites.findall(".//failure") and not suites.findall(".//error")
    assert "unhandled" not in server.log_text()
    assert httpx.get(f"{server.url}/readyz", timeout=10).status_code == 200


_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
_fields = st.sampled_from(["event_id", "user_id", "item_id", "type", "timestamp", "value",
                           "price", "session_id", "query", "title", "category_path",
                           "attributes", "aliases", "brand"])  # fmt: skip
_records = st.dictionaries(_fields, _json_values, max_size=6) | _json_values
_batches = st.lists(_records, max_size=4) | _json_values


@settings(max_examples=80, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])  # fmt: skip
@given(batch=_batches, route=st.sampled_from(["POST /v1/events", "PUT /v1/products"]))
def test_any_json_batch_gets_an_answer_never_a_server_error(
    server: Server, batch: Any, route: str
) -> None:
    method, path = route.split(" ")
    response = httpx.request(method, f"{server.url}{path}", json=batch, timeout=60)
    assert response.status_code < 500, (batch, response.text)
    body = response.json()
    if response.status_code == 200:
        assert body["input"] == body["accepted"] + body["quarantined"] + body["duplicates"]
    else:
        assert response.status_code in (400, 422) and body["error"]["field"], body
