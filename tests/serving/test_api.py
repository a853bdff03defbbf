"""The /v1 API end to end against a real `aisle serve` on the Best Buy slice: search,
recommendations that follow each event, products live in search at once, idempotent batches,
malformed requests, hot swaps under load, an A/B test, metrics, erasure and a clean log.

Tests run in file order; the last two read what the server left behind after it stops.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from aisle.config import ExperimentSettings, load_settings
from aisle.privacy.rotation import pseudonymiser_for
from aisle.serving.experiments import assign
from aisle.storage import Store
from tests.conftest import TEST_SECRET, json_result, run_aisle
from tests.serving.conftest import Server, Shop, error_of, parse_prometheus

pytestmark = pytest.mark.integration

# Every retrain passes the gate (tolerance 1 on NDCG in [0, 1]), so a retrain always swaps a
# new version in; and half the customers get item-kNN instead of ALS.
CONFIG = """
[serve]
gate_tolerance = 1.0

[experiments.recs]
surface = "recommendations"

[experiments.recs.variants.control]
model = "als"

[experiments.recs.variants.neighbours]
model = "itemknn"
"""
VARIANT_MODELS = {"control": "als", "neighbours": "itemknn"}

#: Raw customer ids this module sends: none may reach the server's log.
RAW_IDS: set[str] = set()


def raw_id(prefix: str) -> str:
    """A fresh raw customer id, remembered for the log check."""
    found = f"{prefix}-{uuid.uuid4().hex[:12]}"
    RAW_IDS.add(found)
    return found


def click(user: str, item: str, **extra: Any) -> dict[str, Any]:
    """A click event happening now."""
    return {"user_id": user, "item_id": item, "type": "click",
            "timestamp": datetime.now(UTC).isoformat(), **extra}  # fmt: skip


@pytest.fixture(scope="module")
def server(launch: Any) -> Iterator[Server]:
    running: Server = launch("api", CONFIG)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def api(server: Server) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


def recommendations(api: httpx.Client, user: str, **params: Any) -> dict[str, Any]:
    response = api.get(f"/v1/users/{user}/recommendations", params=params)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def item_ids(answer: dict[str, Any]) -> list[str]:
    return [row["item_id"] for row in answer["items"]]


def test_health_readiness_and_the_openapi_document(api: httpx.Client) -> None:
    assert api.get("/healthz").json() == {"status": "ok"}
    ready = api.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready"
    assert ready.json()["models"] == {"als": 1, "itemknn": 1, "popularity": 1}
    assert ready.json()["search_index"]
    spec = api.get("/openapi.json").json()
    assert spec["openapi"].startswith("3.")
    assert {"/v1/events", "/v1/search", "/v1/products/{item_id}", "/v1/users/{user_id}",
            "/v1/users/{user_id}/recommendations", "/v1/items/{item_id}/similar",
            "/v1/admin/reload", "/v1/admin/retrain", "/metrics"} <= set(spec["paths"])  # fmt: skip
    events = spec["paths"]["/v1/events"]["post"]["requestBody"]["content"]
    assert {"application/json", "application/x-ndjson"} <= set(events)


def test_search_reads_the_index_and_personalises_without_echoing_the_customer(
    api: httpx.Client, shop: Shop
) -> None:
    found = api.get("/v1/search", params={"q": "halo", "per_page": 5, "facets": "category"})
    assert found.status_code == 200, found.text
    page = found.json()
    assert page["total"] > 0 and 0 < len(page["hits"]) <= 5
    assert "Halo" in page["hits"][0]["title"]
    assert page["facets"]["category"]
    user = shop.busiest_users(1)[0]
    RAW_IDS.add(user)
    personal = api.get("/v1/search", params={"q": "halo", "user": user, "explain": "true"})
    assert personal.status_code == 200, personal.text
    assert personal.json()["personalised"] is True
    assert personal.json()["hits"][0]["why"]
    assert user not in personal.text
    suggested = api.get("/v1/suggest", params={"q": "gea"}).json()["suggestions"]
    assert suggested and suggested[0]["text"].startswith("gea")


def test_each_answer_names_its_variant_and_the_split_is_deterministic(
    api: httpx.Client, shop: Shop
) -> None:
    users = [raw_id("ab") for _ in range(30)]
    seen: dict[str, str] = {}
    for user in users:
        answer = recommendations(api, user, n=5)
        variant = answer["variant"]
        assert variant["experiment"] == "recs" and variant["name"] in VARIANT_MODELS
        assert answer["model"] == VARIANT_MODELS[variant["name"]]
        assert answer["version"] == 1
        seen[user] = variant["name"]
    for user in users:  # the same customer stays in the same arm
        assert recommendations(api, user, n=5)["variant"]["name"] == seen[user]
    assert set(seen.values()) == set(VARIANT_MODELS)  # 30 customers: both arms (p ~ 2e-9)
    # the arm is a pure function of the pseudonym: this process, not the server, agrees
    settings = load_settings(home=shop.home, secret_key=TEST_SECRET)
    with Store(shop.home, read_only=True) as store:
        pseudonymiser = pseudonymiser_for(store, settings)
    experiment = ExperimentSettings.model_validate(
        {"variants": {name: {"model": model} for name, model in VARIANT_MODELS.items()}}
    )
    for user in users:
        assert assign("recs", experiment, pseudonymiser.one(user)) == seen[user]
    overridden = recommendations(api, users[0], model="popularity")
    assert overridden["model"] == "popularity" and overridden["variant"] is None


def test_an_event_changes_that_customers_recommendations_within_a_second(
    api: httpx.Client, shop: Shop
) -> None:
    user = shop.busiest_users(2)[1]
    RAW_IDS.add(user)
    before = recommendations(api, user)
    assert before["source"] == "model" and before["items"]
    explained = recommendations(api, user, explain="true")
    assert item_ids(explained) == item_ids(before)
    assert all(row["because"]["kind"] for row in explained["items"])
    assert any(row["because"]["items"] for row in explained["items"])
    assert user not in json.dumps(explained)
    clicked = set(shop.clicks.filter(shop.clicks["user"] == user)["sku"])
    new_item = next(i for i in reversed(shop.items) if i not in clicked and i not in
                    item_ids(before))  # fmt: skip
    posted = api.post("/v1/events", json=[click(user, new_item)])
    assert posted.json()["accepted"] == 1, posted.text
    accepted_at = time.monotonic()
    after = recommendations(api, user)
    while item_ids(after) == item_ids(before) and time.monotonic() - accepted_at < 1.0:
        after = recommendations(api, user)
    assert time.monotonic() - accepted_at < 1.0
    assert after["source"] == "history"
    assert item_ids(after) != item_ids(before)
    assert new_item not in item_ids(after)


def test_a_new_customer_is_recommended_from_their_first_click(
    api: httpx.Client, shop: Shop
) -> None:
    user = raw_id("newcomer")
    first = recommendations(api, user)
    assert first["source"] == "trending"
    item = shop.items[0]
    assert api.post("/v1/events", json=[click(user, item)]).json()["accepted"] == 1
    answer = recommendations(api, user)
    assert answer["source"] == "history" and len(answer["items"]) == 10
    assert item not in item_ids(answer)
    assert all(row["title"] for row in answer["items"])
    # the page's item alone is history enough, for anyone
    context = recommendations(api, raw_id("visitor"), item=item, model="itemknn")
    assert context["source"] == "history" and item not in item_ids(context)


def test_a_batch_keeps_the_good_events_and_reports_the_rest(api: httpx.Client, shop: Shop) -> None:
    user = raw_id("batch")
    batch = [
        click(user, shop.items[1]),
        {
            "user_id": user,
            "item_id": shop.items[2],
            "type": "teleport",
            "timestamp": datetime.now(UTC).isoformat(),
        },
        click(user, "no-such-sku"),
        "not an object",
        {**click(user, shop.items[3]), "timestamp": "yesterday-ish"},
        click(user, shop.items[4]),
    ]
    response = api.post("/v1/events", json={"events": batch})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["input"] == 6 and answer["accepted"] == 2 and answer["quarantined"] == 4
    assert answer["input"] == answer["accepted"] + answer["quarantined"] + answer["duplicates"]
    reasons = {row["index"]: row["reasons"] for row in answer["rejected"]}
    assert set(reasons) == {2, 3, 4, 5}
    assert "bad_event_type" in reasons[2]
    assert "unknown_item" in reasons[3]
    assert "malformed_row" in reasons[4]
    assert "bad_timestamp" in reasons[5]
    assert user not in response.text
    # NDJSON is the same batch, one record a line
    lines = "\n".join(json.dumps(click(user, item)) for item in shop.items[5:7])
    ndjson = api.post("/v1/events", content=lines,
                      headers={"content-type": "application/x-ndjson"})  # fmt: skip
    assert ndjson.status_code == 200 and ndjson.json()["accepted"] == 2, ndjson.text


def test_replayed_events_are_duplicates(api: httpx.Client, shop: Shop) -> None:
    user = raw_id("replay")
    batch = [click(user, item, event_id=f"{user}-{n}") for n, item in enumerate(shop.items[:5])]
    first = api.post("/v1/events", json=batch).json()
    assert (first["accepted"], first["duplicates"]) == (5, 0), first
    again = api.post("/v1/events", json=batch).json()
    assert (again["input"], again["accepted"], again["duplicates"]) == (5, 0, 5), again


def test_events_posted_at_once_are_imported_together_and_answered_apart(
    api: httpx.Client, server: Server, shop: Shop
) -> None:
    before = parse_prometheus(api.get("/metrics").text)
    senders, size = 6, 200
    batches = []
    for n in range(senders):
        users = [raw_id(f"together{n}") for _ in range(50)]  # 4 clicks each: no bot
        batch: list[Any] = [click(users[k % 50], shop.items[k // 50]) for k in range(size)]
        batch.insert(n + 1, click(users[0], f"no-such-sku-{n}"))  # position n + 2 of its body
        batches.append(batch)
    answers: dict[int, httpx.Response] = {}
    start = threading.Barrier(senders)

    def send(n: int) -> None:
        with server.client() as client:
            start.wait(10)
            answers[n] = client.post("/v1/events", json=batches[n])

    threads = [threading.Thread(target=send, args=(n,)) for n in range(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for n in range(senders):
        assert answers[n].status_code == 200, answers[n].text
        answer = answers[n].json()
        assert (answer["input"], answer["accepted"], answer["quarantined"]) == (size + 1, size, 1)
        assert answer["rejected"] == [{"index": n + 2, "reasons": ["unknown_item"],
                                       "detail": "field 'item_id': not in the catalog (held)"}]  # fmt: skip
    after = parse_prometheus(api.get("/metrics").text)
    posts = after[("aisle_event_posts_total", ())] - before.get(("aisle_event_posts_total", ()), 0)
    imports = after[("aisle_event_imports_total", ())] - before.get(
        ("aisle_event_imports_total", ()), 0
    )
    assert posts == senders and 1 <= imports < senders  # some of them went in together
    accepted = ("aisle_events_total", (("fate", "accepted"),))
    assert after[accepted] - before.get(accepted, 0) == senders * size


@pytest.mark.parametrize(
    ("route", "kwargs", "status", "field"),
    [
        ("GET /v1/search", {}, 422, "q"),
        ("GET /v1/search", {"params": {"q": "halo", "per_page": 0}}, 422, "per_page"),
        ("GET /v1/search", {"params": {"q": "halo", "price_min": "cheap"}}, 422, "price_min"),
        ("GET /v1/search", {"params": {"q": "halo", "filter": "brand"}}, 400, "filter"),
        ("GET /v1/users/someone/recommendations", {"params": {"n": 0}}, 422, "n"),
        ("GET /v1/users/someone/recommendations", {"params": {"n": "ten"}}, 422, "n"),
        ("GET /v1/items/1234/similar", {"params": {"n": 999}}, 422, "n"),
        ("POST /v1/events", {"content": b"{not json"}, 400, "events"),
        ("POST /v1/events", {"content": b"   "}, 400, "events"),
        ("POST /v1/events", {"json": {"events": 5}}, 400, "events"),
        ("POST /v1/events", {"json": []}, 400, "events"),
        ("POST /v1/events", {"json": [[1, 2], 3]}, 400, "events"),
        ("PUT /v1/products/new-1", {"content": b"[1]"}, 400, "body"),
        ("PUT /v1/products/new-1", {"content": b"{oops"}, 400, "body"),
        ("PUT /v1/products", {"json": {"items": []}}, 400, "products"),
        ("POST /v1/products/delete", {"json": {}}, 422, "item_ids"),
        ("POST /v1/products/delete", {"json": {"item_ids": []}}, 422, "item_ids"),
        ("POST /v1/products/delete", {"content": b"nope"}, 422, "request"),
    ],
)  # fmt: skip
def test_a_malformed_request_gets_a_4xx_naming_the_field(
    api: httpx.Client, route: str, kwargs: dict[str, Any], status: int, field: str
) -> None:
    method, path = route.split(" ")
    response = api.request(method, path, **kwargs)
    assert response.status_code == status, response.text
    assert error_of(response)["field"] == field


@pytest.mark.parametrize(
    ("route", "body", "field"),
    [
        ("POST /v1/events", [{"user_id": "u", "item_id": ["a"], "type": "click",
                              "timestamp": "2026-01-01T00:00:00Z"}], "item_id"),
        ("PUT /v1/products/new-1", {"title": ["a", "list"]}, "title"),
    ],
)  # fmt: skip
def test_an_array_where_a_value_belongs_quarantines_the_record(
    api: httpx.Client, route: str, body: Any, field: str
) -> None:
    method, path = route.split(" ")
    answer = api.request(method, path, json=body)
    assert answer.status_code == 200, answer.text
    outcome = answer.json()
    assert (outcome["input"], outcome["accepted"], outcome["quarantined"]) == (1, 0, 1)
    assert "bad_type" in outcome["rejected"][0]["reasons"]
    assert f"'{field}'" in outcome["rejected"][0]["detail"]


def test_unknown_things_are_json_404s_and_bad_methods_405(api: httpx.Client) -> None:
    assert error_of(api.get("/v1/nowhere"))["code"] == "not_found"
    assert api.get("/v1/items/no-such-item/similar").status_code == 404
    assert error_of(api.get("/v1/items/no-such-item/similar"))["code"] == "not_found"
    bad_sort = api.get("/v1/search", params={"q": "halo", "sort": "colour"})
    assert bad_sort.status_code == 400 and error_of(bad_sort)["code"] == "bad_search"
    wrong = api.patch("/v1/events")
    assert wrong.status_code == 405 and error_of(wrong)["code"] == "not_allowed"


def _search_ids(api: httpx.Client, query: str) -> list[str]:
    response = api.get("/v1/search", params={"q": query, "per_page": 5})
    assert response.status_code == 200, response.text
    return [hit["item_id"] for hit in response.json()["hits"]]


def test_a_new_product_is_searchable_and_similar_at_once_and_removal_takes_it_out(
    api: httpx.Client,
) -> None:
    item = f"zx-{uuid.uuid4().hex[:8]}"
    product = {"title": "Zorblax Quantum Racer - Xbox 360", "brand": "Zorblax Studios",
               "description": "Arcade racing game with quantum boost and split-screen races.",
               "category_path": ["Video Games", "Xbox 360 Games", "Racing"],
               "price": 29.99}  # fmt: skip
    put = api.put(f"/v1/products/{item}", json=product)
    assert put.status_code == 200 and put.json()["accepted"] == 1, put.text
    added_at = time.monotonic()
    assert _search_ids(api, "zorblax quantum racer")[0] == item
    similar = api.get(f"/v1/items/{item}/similar", params={"n": 5})
    assert time.monotonic() - added_at < 1.0
    assert similar.status_code == 200, similar.text
    answer = similar.json()
    assert answer["source"] == "text" and len(answer["items"]) == 5
    assert item not in item_ids(answer)
    assert all(row["title"] for row in answer["items"])
    # a change is what search answers next (the brand still finds it)
    changed = api.put(f"/v1/products/{item}", json={**product, "title": "Glimmerwing Racer"})
    assert changed.json()["accepted"] == 1, changed.text
    hits = api.get("/v1/search", params={"q": "zorblax"}).json()["hits"]
    assert [(h["item_id"], h["title"]) for h in hits[:1]] == [(item, "Glimmerwing Racer")]
    # taken off sale: gone from search and from similar items
    removed = api.delete(f"/v1/products/{item}")
    assert removed.json() == {"removed": [item], "unknown": []}
    assert item not in _search_ids(api, "zorblax quantum racer")
    assert api.get(f"/v1/items/{item}/similar").status_code == 404
    again = api.post("/v1/products/delete", json={"item_ids": [item, "never-sold"]})
    assert again.json() == {"removed": [], "unknown": [item, "never-sold"]}


def test_reload_and_retrain_under_load_fail_no_request_and_move_the_version(
    api: httpx.Client, server: Server, shop: Shop
) -> None:
    users = shop.busiest_users(5)
    fresh = raw_id("fresh")
    assert api.post("/v1/events", json=[click(fresh, shop.items[0])]).json()["accepted"] == 1
    answers: list[tuple[int, int]] = []
    failures: list[str] = []
    stop = threading.Event()

    def hammer() -> None:
        with server.client() as client:
            n = 0
            while not stop.is_set():
                user = users[n % len(users)]
                params = {"model": "popularity"} if n % 2 == 0 else {}
                n += 1
                try:
                    response = client.get(f"/v1/users/{user}/recommendations", params=params)
                except httpx.HTTPError as error:
                    failures.append(repr(error))
                    continue
                if response.status_code != 200 or not response.json()["items"]:
                    failures.append(f"{response.status_code} {response.text[:200]}")
                elif params:
                    answers.append((response.status_code, response.json()["version"]))

    thread = threading.Thread(target=hammer)
    thread.start()
    try:
        time.sleep(0.3)
        for _ in range(3):
            reloaded = api.post("/v1/admin/reload")
            assert reloaded.status_code == 200, reloaded.text
            retrained = api.post("/v1/admin/retrain", params={"model": "popularity"})
            assert retrained.status_code == 200, retrained.text
            assert retrained.json()["outcomes"][0]["promoted"] is True, retrained.text
        time.sleep(0.3)
    finally:
        stop.set()
        thread.join(timeout=60)
    assert not failures, failures[:5]
    versions = [version for _, version in answers]
    assert len(versions) > 10
    assert versions[0] == 1 and versions[-1] == 4
    assert versions == sorted(versions)  # a swapped-in version never goes back
    assert api.get("/readyz").json()["models"]["popularity"] == 4
    # regression: a retrain of popularity alone dropped every customer's recent items, though
    # ALS had not learnt them
    assert recommendations(api, fresh, model="als")["source"] == "history"


def test_metrics_are_prometheus_text_counting_requests(api: httpx.Client) -> None:
    for _ in range(3):
        api.get("/v1/search", params={"q": "kinect"})
    response = api.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = parse_prometheus(response.text)
    searched = samples[("aisle_requests_total",
                        (("method", "GET"), ("route", "/v1/search"), ("status", "200")))]  # fmt: skip
    assert searched >= 5
    assert samples[("aisle_request_seconds_count", (("route", "/v1/search"),))] >= searched
    assert samples[("aisle_events_total", (("fate", "accepted"),))] >= 10
    assert samples[("aisle_model_version", (("model", "popularity"),))] == 4
    assert samples[("aisle_searchable_products", ())] == 437
    # no customer id or path with one in any label
    assert not any("/v1/users/" in v and "{user_id}" not in v
                   for _, labels in samples for _, v in labels)  # fmt: skip


def test_erasure_leaves_no_trace_once_the_server_stops(
    api: httpx.Client, server: Server, shop: Shop
) -> None:
    trained = shop.busiest_users(3)[2]
    newcomer = raw_id("erase")
    RAW_IDS.add(trained)
    assert recommendations(api, trained, model="als")["source"] == "model"
    assert (
        api.post(
            "/v1/events", json=[click(newcomer, shop.items[0]), click(trained, shop.items[-1])]
        ).json()["accepted"]
        == 2
    )
    recommendations(api, newcomer)  # an exposure in the experiment, to be erased too
    for user in (trained, newcomer):
        erased = api.delete(f"/v1/users/{user}")
        assert erased.status_code == 200, erased.text
        assert user not in erased.text
    # out of the models in service and of recent activity at once (a named model: no exposure)
    after = recommendations(api, trained, model="als")
    assert after["source"] == "trending"
    assert recommendations(api, newcomer, model="itemknn")["source"] == "trending"
    server.stop()
    for user in (trained, newcomer):
        traces = json_result(run_aisle(server.home, "privacy", "verify", "--user", user,
                                       "--json"))  # fmt: skip
        assert traces["clean"] is True, traces


def test_no_raw_customer_id_reaches_the_log(server: Server) -> None:
    server.stop()
    log = server.log_text()
    assert "aisle.access GET /v1/users/{user_id}/recommendations 200" in log
    assert "unhandled" not in log
    assert len(RAW_IDS) > 30
    leaked = sorted(raw for raw in RAW_IDS if raw in log)
    assert not leaked, leaked
