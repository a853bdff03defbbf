"""The service's parts without HTTP: recent activity and trending (realtime), recommendations
as served with cold start by text (recommend), API keys and rate limits (security), and the
Prometheus text (metrics)."""

from __future__ import annotations

import math
import threading
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import numpy as np
import polars as pl
import pytest
from scipy import sparse

from aisle.config import ApiKeySettings, ServeSettings
from aisle.errors import ConfigError, NotFoundError
from aisle.features.interactions import Interactions
from aisle.models.itemknn import ItemKNN
from aisle.serving import realtime, security
from aisle.serving.live import Live, Served
from aisle.serving.metrics import BUCKETS, Metrics
from aisle.serving.realtime import RECENT_ITEMS, Activity
from aisle.serving.recommend import COLD_SLOT, recommend, similar
from aisle.serving.security import (
    Caller,
    Keys,
    RateLimiter,
    check_bind,
    is_loopback,
    parse_keys,
    presented_key,
)
from tests.serving.conftest import parse_prometheus

T0 = datetime(2026, 3, 1, 10, tzinfo=UTC)


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """Stands in for time.monotonic in realtime and security (and nowhere else)."""
    fake = Clock()
    monkeypatch.setattr(realtime, "time", SimpleNamespace(monotonic=fake))
    monkeypatch.setattr(security, "time", SimpleNamespace(monotonic=fake))
    return fake


def events(*rows: tuple[str, str | None, str, int]) -> pl.DataFrame:
    """Accepted events (user, item, type, minutes after T0)."""
    return pl.DataFrame(
        {
            "user_id": [r[0] for r in rows],
            "item_id": [r[1] for r in rows],
            "type": [r[2] for r in rows],
            "timestamp": [T0 + timedelta(minutes=r[3]) for r in rows],
        },
        schema={
            "user_id": pl.String,
            "item_id": pl.String,
            "type": pl.String,
            "timestamp": pl.Datetime("us", "UTC"),
        },
    )


# -- realtime.Activity ----------------------------------------------------------------------------


def test_recent_items_follow_time_not_arrival_and_skip_what_is_no_taste() -> None:
    activity = Activity()
    activity.record(events(("u1", "b", "click", 5), ("u1", "a", "view", 1),
                           ("u1", None, "search", 2), ("u1", "c", "remove_from_cart", 3),
                           ("u2", "d", "purchase", 4)))  # fmt: skip
    activity.record(events(("u1", "e", "add_to_cart", 9)))
    assert activity.recent("u1") == ["a", "b", "e"]
    assert activity.recent("u2") == ["d"]
    assert activity.recent("nobody") == []
    assert activity.customers == 2
    assert activity.events == 4


def test_a_customers_recent_items_are_capped() -> None:
    activity = Activity()
    activity.record(events(*[("u1", f"i{n}", "view", n) for n in range(RECENT_ITEMS + 50)]))
    recent = activity.recent("u1")
    assert len(recent) == RECENT_ITEMS
    assert recent[-1] == f"i{RECENT_ITEMS + 49}" and recent[0] == "i50"


def test_the_least_recently_active_customers_go_first_beyond_the_cap() -> None:
    activity = Activity(max_customers=2)
    activity.record(events(("u1", "a", "view", 0), ("u2", "b", "view", 1)))
    activity.record(events(("u1", "c", "view", 2)))
    activity.record(events(("u3", "d", "view", 3)))
    assert activity.customers == 2
    assert activity.recent("u2") == []
    assert activity.recent("u1") == ["a", "c"] and activity.recent("u3") == ["d"]
    activity.forget("u1")
    assert activity.recent("u1") == [] and activity.recent("u3") == ["d"]


def test_dropping_until_a_marker_forgets_only_what_a_retrain_saw() -> None:
    activity = Activity()
    activity.record(events(("u1", "a", "view", 0), ("u2", "b", "view", 0)))
    marker = activity.marker()
    activity.record(events(("u1", "c", "click", 1)))
    activity.drop_until(marker)
    assert activity.recent("u1") == ["c"]
    assert activity.recent("u2") == []
    assert activity.customers == 1
    activity.drop_until(activity.marker())
    assert activity.customers == 0


def test_trending_weighs_purchases_over_clicks_and_excludes_on_request() -> None:
    activity = Activity()
    activity.record(events(("u1", "bought", "purchase", 0), ("u2", "clicked", "click", 0),
                           ("u3", "clicked", "click", 1), ("u4", "carted", "add_to_cart", 1),
                           ("u5", "searched", "search", 1)))  # fmt: skip
    assert activity.trending(10) == [("bought", 5.0), ("carted", 3.0), ("clicked", 2.0)]
    assert [i for i, _ in activity.trending(2)] == ["bought", "carted"]
    assert [i for i, _ in activity.trending(10, exclude={"bought", "x"})] == ["carted", "clicked"]
    assert Activity().trending(5) == []


def test_trending_decays_with_its_half_life(clock: Clock) -> None:
    activity = Activity(half_life_hours=1.0)
    activity.record(events(("u1", "old", "purchase", 0)))
    clock.now += 3_600
    activity.record(events(("u2", "new", "click", 1)))
    scores = dict(activity.trending(5))
    assert scores["old"] == pytest.approx(2.5)
    assert scores["new"] == pytest.approx(1.0)


def test_concurrent_recording_loses_nothing() -> None:
    activity = Activity()

    def shopper(n: int) -> None:
        for k in range(20):
            activity.record(events((f"u{n}", f"i{k}", "view", k)))

    threads = [threading.Thread(target=shopper, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert activity.events == 160
    assert all(activity.recent(f"u{n}") == [f"i{k}" for k in range(20)] for n in range(8))
    assert dict(activity.trending(20)) == {f"i{k}": pytest.approx(8.0) for k in range(20)}


# -- recommend ------------------------------------------------------------------------------------

ITEMS = ["a0", "a1", "a2", "b0", "b1", "b2"]
BASKETS = {"u0": ["a0", "a1"], "u1": ["a0", "a1", "a2"], "u2": ["b0", "b1"],
           "u3": ["b1", "b2"], "u4": ["b0", "b2"]}  # fmt: skip


def _model() -> ItemKNN:
    users = sorted(BASKETS)
    rows = [users.index(u) for u, basket in BASKETS.items() for _ in basket]
    columns = [ITEMS.index(i) for basket in BASKETS.values() for i in basket]
    matrix = sparse.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, columns)),
                               shape=(len(users), len(ITEMS)))  # fmt: skip
    data = Interactions(users, list(ITEMS), matrix, log=None)  # type: ignore[arg-type]
    return ItemKNN(neighbours=10).fit(data)


def _engine(removed: tuple[str, ...] = ()) -> Any:
    """The search engine's side that recommendations read: text vectors by catalog column.
    Items a* point one way, b* another; two products the model never saw: one close to the
    b* items, one unlike anything."""
    catalog = [*ITEMS, "new-near-b", "new-alone"]
    a, b, c = np.eye(3)
    near = b + 0.1 * a
    rows = [a, a, a, b, b, b, near / np.linalg.norm(near), c]
    return SimpleNamespace(
        vectors=np.asarray(rows, dtype=np.float32),
        position={item: n for n, item in enumerate(catalog)},
        catalog=SimpleNamespace(item_ids=catalog),
        removed=np.asarray([item in removed for item in catalog]),
    )


def _live(engine: Any = None) -> Live:
    served = Served("itemknn", 3, _model(), T0)
    return Live(models={"itemknn": served}, engine=engine)


def test_a_known_customer_with_nothing_new_is_answered_by_the_model() -> None:
    answer = recommend(_live(), Activity(), "itemknn", "u2", 3)
    assert (answer.model, answer.version, answer.source) == ("itemknn", 3, "model")
    assert answer.items[0].item_id == "b2"  # the one b* item u2 lacks
    assert not {"b0", "b1"} & {r.item_id for r in answer.items}


def test_recent_behaviour_and_the_pages_item_are_history() -> None:
    activity = Activity()
    activity.record(events(("u2", "a0", "click", 0)))
    answer = recommend(_live(), activity, "itemknn", "u2", 6)
    assert answer.source == "history"
    # the trained b0, b1 and the recent a0 together: a1 and b2 tie, a2 after; none of the three
    assert [r.item_id for r in answer.items] == ["a1", "b2", "a2"]
    stranger = recommend(_live(), Activity(), "itemknn", "stranger", 2, context="b0")
    assert stranger.source == "history"
    assert {r.item_id for r in stranger.items} == {"b1", "b2"}


def test_no_history_or_no_model_falls_back_to_trending() -> None:
    activity = Activity()
    assert recommend(_live(), activity, "itemknn", "stranger", 5).items == []
    activity.record(events(("u9", "b1", "purchase", 0), ("u8", "a2", "click", 0)))
    answer = recommend(_live(), activity, "itemknn", "stranger", 5)
    assert answer.source == "trending" and answer.version == 3
    assert [r.item_id for r in answer.items] == ["b1", "a2"]
    unserved = recommend(_live(), activity, "sasrec", "u2", 5)
    assert (unserved.source, unserved.version, unserved.model) == ("trending", None, "sasrec")
    # only items the model never saw: trending, without them
    activity.record(events(("newbie", "zz-unknown", "view", 1)))
    unknown = recommend(_live(), activity, "itemknn", "newbie", 5)
    assert unknown.source == "trending" and "zz-unknown" not in [r.item_id for r in unknown.items]


def test_a_new_product_close_in_text_takes_one_slot() -> None:
    answer = recommend(_live(_engine()), Activity(), "itemknn", "u2", 4)
    found = [r.item_id for r in answer.items]
    assert len(found) == 4
    assert answer.cold == ["new-near-b"] and found.index("new-near-b") <= COLD_SLOT
    assert "new-alone" not in found
    # a customer of a* items: no new product is close enough
    assert recommend(_live(_engine()), Activity(), "itemknn", "u0", 4).cold == []
    # a removed product is not offered
    gone = recommend(_live(_engine(removed=("new-near-b",))), Activity(), "itemknn", "u2", 4)
    assert gone.cold == [] and "new-near-b" not in [r.item_id for r in gone.items]
    # nor one the customer already has
    seen = recommend(_live(_engine()), Activity(), "itemknn", "u2", 4, context="new-near-b")
    assert "new-near-b" not in [r.item_id for r in seen.items]


def test_similar_items_from_the_model_or_by_text_for_a_new_product() -> None:
    live = _live(_engine(removed=("b2",)))
    known = similar(live, "itemknn", "a0", 2)
    assert known.source == "model" and known.items[0].item_id == "a1"
    fresh = similar(live, "itemknn", "new-near-b", 10)
    assert fresh.source == "text" and fresh.version == 3
    found = [r.item_id for r in fresh.items]
    assert found[:2] == ["b0", "b1"] and "b2" not in found and "new-near-b" not in found
    assert len(found) == 6  # every other product that is on sale
    assert [r.score for r in fresh.items] == sorted((r.score for r in fresh.items), reverse=True)
    with pytest.raises(NotFoundError):
        similar(live, "itemknn", "no-such", 3)
    with pytest.raises(NotFoundError):
        similar(_live(_engine(removed=("new-alone",))), "itemknn", "new-alone", 3)
    with pytest.raises(NotFoundError):
        similar(_live(), "itemknn", "new-near-b", 3)  # no engine: nothing to match by text


# -- security -------------------------------------------------------------------------------------


def test_keys_from_the_environment_parse_or_say_what_is_wrong() -> None:
    keys = parse_keys(" front:k-0123456789abcdef:read , ops:k-fedcba9876543210:read+admin+ingest,")
    assert [(k.name, k.scopes) for k in keys] == [("front", ["read"]),
                                                  ("ops", ["read", "admin", "ingest"])]  # fmt: skip
    assert keys[0].key.get_secret_value() == "k-0123456789abcdef"
    assert parse_keys("") == []
    for bad, words in [("front:k-0123456789abcdef", "name:key:scope"),
                       (":k-0123456789abcdef:read", "name:key:scope"),
                       ("front:k-0123456789abcdef:root", "scopes must be among"),
                       ("front:k-0123456789abcdef:", "scopes must be among")]:  # fmt: skip
        with pytest.raises(ConfigError, match=words):
            parse_keys(bad)


def _settings(
    *keys: tuple[str, str, list[str], int | None], per_minute: int = 600
) -> ServeSettings:
    given = [ApiKeySettings.model_validate({"name": n, "key": k, "scopes": s,
                                            "requests_per_minute": r}) for n, k, s, r in keys]  # fmt: skip
    return ServeSettings(api_keys=given, requests_per_minute=per_minute)


def test_keys_identify_callers_by_digest_and_refuse_short_ones() -> None:
    secret = "s3cret-key-0123456789"
    keys = Keys(_settings(("front", secret, ["read"], None), ("slow", "x" * 16, ["read"], 5)),
                environment="env:e-0123456789abcdef:ingest")  # fmt: skip
    assert not keys.open
    assert keys.identify(secret) == Caller("front", frozenset({"read"}), 600)
    assert keys.identify("x" * 16) == Caller("slow", frozenset({"read"}), 5)
    assert keys.identify("e-0123456789abcdef") == Caller("env", frozenset({"ingest"}), 600)
    assert keys.identify("s3cret-key-012345678") is None
    assert keys.identify(None) is None and keys.identify("") is None
    assert secret not in repr(vars(keys))  # only digests are kept
    with pytest.raises(ConfigError, match="shorter than 16"):
        Keys(_settings(("front", "short", ["read"], None)), environment="")


def test_without_keys_anyone_is_the_development_caller() -> None:
    keys = Keys(_settings(per_minute=42), environment="")
    assert keys.open
    caller = keys.identify(None)
    assert caller is not None and caller.scopes == frozenset({"read", "ingest", "admin"})
    assert caller.per_minute == 42 and caller.name == "development"


def test_a_key_is_read_from_bearer_or_x_api_key() -> None:
    assert presented_key("Bearer abc", None) == "abc"
    assert presented_key("bearer  abc ", "other") == "abc"
    assert presented_key("Basic abc", "other") == "other"
    assert presented_key("Bearer ", " spaced ") == "spaced"
    assert presented_key(None, None) is None


def test_the_rate_limit_is_a_token_bucket_per_caller(clock: Clock) -> None:
    limiter = RateLimiter()
    fast = Caller("fast", frozenset({"read"}), 60)  # a request a second, bursts of ten
    assert [limiter.allow(fast) for _ in range(10)] == [0.0] * 10
    wait = limiter.allow(fast)
    assert wait == pytest.approx(1.0)
    clock.now += 1.0
    assert limiter.allow(fast) == 0.0
    assert limiter.allow(fast) > 0
    slow = Caller("slow", frozenset({"read"}), 1)  # its own bucket, one request a minute
    assert limiter.allow(slow) == 0.0
    assert limiter.allow(slow) == pytest.approx(60.0)
    clock.now += 30.0
    assert limiter.allow(slow) == pytest.approx(30.0)
    clock.now += 30.0
    assert limiter.allow(slow) == 0.0


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("localhost", True), ("127.0.0.1", True), ("127.8.9.10", True), ("::1", True),
     ("0.0.0.0", False), ("::", False), ("192.168.1.20", False), ("shop.example", False)],
)  # fmt: skip
def test_only_loopback_is_open_to_a_server_without_keys(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
    open_keys = Keys(_settings(), environment="")
    if loopback:
        check_bind(host, open_keys)
    else:
        with pytest.raises(ConfigError, match="AISLE_API_KEYS"):
            check_bind(host, open_keys)
    check_bind(host, Keys(_settings(("ops", "k" * 16, ["admin"], None)), environment=""))


# -- metrics --------------------------------------------------------------------------------------


def test_metrics_render_as_prometheus_text() -> None:
    metrics = Metrics()
    metrics.observe("/v1/search", "GET", 200, 0.003)
    metrics.observe("/v1/search", "GET", 200, 0.2)
    metrics.observe("/v1/search", "GET", 422, 20.0)
    metrics.observe("unmatched", "GET", 404, 0.0001)
    metrics.count("events", 7, fate="accepted")
    metrics.count("events", 2, fate="quarantined")
    metrics.count("events", 3, fate="accepted")
    gauges = [("model_version", {"model": "als"}, 4.0), ("model_version", {"model": "knn"}, 2.0),
              ("model_swaps", {}, 1.0)]  # fmt: skip
    samples = parse_prometheus(metrics.render(gauges))
    ok = (("method", "GET"), ("route", "/v1/search"), ("status", "200"))
    assert samples[("aisle_requests_total", ok)] == 2
    assert samples[("aisle_request_seconds_count", (("route", "/v1/search"),))] == 3
    assert samples[("aisle_request_seconds_sum", (("route", "/v1/search"),))] == pytest.approx(
        20.203
    )
    bucket = "aisle_request_seconds_bucket"
    assert samples[(bucket, (("le", "0.0025"), ("route", "/v1/search")))] == 0
    assert samples[(bucket, (("le", "0.005"), ("route", "/v1/search")))] == 1
    assert samples[(bucket, (("le", "0.25"), ("route", "/v1/search")))] == 2
    assert samples[(bucket, (("le", str(BUCKETS[-1])), ("route", "/v1/search")))] == 2
    assert samples[(bucket, (("le", "+Inf"), ("route", "/v1/search")))] == 3
    assert samples[("aisle_events_total", (("fate", "accepted"),))] == 10
    assert samples[("aisle_model_version", (("model", "als"),))] == 4
    assert samples[("aisle_model_swaps", ())] == 1


def test_metric_labels_are_escaped() -> None:
    metrics = Metrics()
    metrics.count("odd", 1, label='say "hi"\\\nbye')
    samples = parse_prometheus(metrics.render())
    assert samples[("aisle_odd_total", (("label", 'say \\"hi\\"\\\\\\nbye'),))] == 1


def test_metrics_count_every_request_from_many_threads() -> None:
    metrics = Metrics()

    def answer() -> None:
        for _ in range(500):
            metrics.observe("/v1/search", "GET", 200, 0.01)

    threads = [threading.Thread(target=answer) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    samples = parse_prometheus(metrics.render())
    key = (("method", "GET"), ("route", "/v1/search"), ("status", "200"))
    assert samples[("aisle_requests_total", key)] == 3_000
    assert math.isclose(samples[("aisle_request_seconds_sum", (("route", "/v1/search"),))], 30.0)


@pytest.mark.parametrize(
    "text",
    [
        "aisle_x_total 1\n",  # a sample before its TYPE
        "# TYPE aisle_x counter\naisle_x 1",  # no final newline
        "# TYPE aisle_x counter\naisle_x{a=b} 1\n",  # an unquoted label
        "# TYPE aisle_x counter\naisle_x one\n",  # not a number
        "# TYPE aisle_x counter\n# TYPE aisle_x counter\naisle_x 1\n",  # typed twice
        '# TYPE aisle_s histogram\naisle_s_bucket{le="1"} 2\naisle_s_bucket{le="+Inf"} 1\n'
        "aisle_s_count 1\n",  # buckets not cumulative
    ],
)
def test_the_prometheus_reader_of_these_tests_is_strict(text: str) -> None:
    with pytest.raises((AssertionError, ValueError)):
        parse_prometheus(text)
