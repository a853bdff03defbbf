"""Serving under load: a real `aisle serve` on loopback and one core, load from this process
on the other core; recommendations, search, event ingest, freshness, a soak with hot swaps.

The issue's targets (2 cores: the server on one, the load generator on the other):
recommendations >= 1,000 requests/s with p99 < 20 ms; search >= 500 requests/s with p99 <
50 ms; event ingest >= 50,000 events/s through batched POSTs; freshness end to end (POST an
event, poll recommendations until they change) p95 < 1 s; a soak at the target rate with zero
errors and no memory growth, and zero failed requests across a hot swap.

How it is measured.

- The home is made by the CLI from real data (`ingest`, `train --model als|popularity
  --promote`, `index build`): the Best Buy catalog and its first N clicks by click time
  (``--uci`` adds UCI Online Retail's purchases and draws the known customers from it).
  The held-out clicks are the future: their queries are searched in click order (repeats
  kept, as shoppers type them; a fifth personalised), their shoppers are the new customers
  (a tenth of recommendation requests), their clicks are posted as events.
- The server is `aisle serve --no-access-log` in a child process pinned to core 0, native
  pools at one thread; the load generator (``http_load``: raw asyncio streams on uvloop,
  keep-alive HTTP/1.1) runs here pinned to core 1. Its own ceiling is measured against a stub
  server that answers every request with fixed bytes, and the server's floor against
  `/healthz`, so every figure can be read against both.
- Throughput: a closed loop (``--connections`` clients, each sending as soon as answered).
  Latency: an open loop at the target rate (requests due at fixed times, latency from when
  each was due, so a stalled server shows as latency); where the closed loop stays under 80%
  of the target, the open loop runs at 70% of what it reached instead and the target fails.
- Events: ``--batches`` POSTs of ``--batch-size`` click events (canonical JSON) from
  ``--senders`` connections at once, each posting its next batch when answered, as a shop's
  collectors do; events/s is all their events over the wall time (the target is judged on
  these). The server imports the POSTs that wait behind a running import as one (group
  commit), so the import's fixed cost (~0.1 s here, whatever its size) is shared. Then the
  same size from one sender in turn (each POST pays that cost alone), and two POSTs of
  ``--large-batch`` (50,000, the most one POST takes).
- Freshness: for each of ``--freshness-users`` known customers, the top recommended item is
  posted as a click, then recommendations are polled every 10 ms until the answer changes.
- Soak: recommendations, search and event posts at fixed rates together (by default 500
  recommendations/s, 10 searches/s and 500 events/s in POSTs of 500: about half the server's
  core, so that it measures stability, not an overload); the server's VmRSS every 2 s; at
  40% `POST /v1/admin/reload`, at 55% `POST /v1/admin/retrain?model=popularity`; failed
  requests counted over the whole soak and within a second of each swap; memory judged on
  the trend after the swaps, in soaks of 2 minutes or more.
- The server runs with a per-key rate limit of 100M a minute: the generator is one caller,
  and the default limit (60,000 a minute) would hold it to 1,000 requests/s. Every run
  records how much of the server's core other processes took (/proc/stat): above 10% a
  verdict is marked SKEWED.
- Where a speed target is missed (or with ``--profile``), the server runs again under
  cProfile, direct calls of the serving layers are timed in it, and where its time goes is
  printed by package.

A hard ``--timeout`` bounds the whole run; the server is always killed at the end. The
default run takes ~4 minutes here (one of them preparing the home), ``--soak`` ~9.

    python benchmarks/serve_load.py [--home PATH] [--clicks 20000] [--uci] [--static-encoder]
        [--seconds 10] [--batches 24] [--senders 4] [--large-batch 50000] [--soak]
        [--soak-seconds S]
        [--profile | --no-profile] [--timeout 1800] [--json]
"""

from __future__ import annotations

import os

os.environ.setdefault("POLARS_MAX_THREADS", "1")  # this process keeps to its one core

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import harness
import machine
import numpy as np
import orjson
import serve_profile
from harness import log
from http_load import (
    Connection,
    Outcomes,
    Request,
    closed_loop,
    cycle,
    new_loop,
    open_loop,
    request,
)
from serve_report import JUDGED_SOAK_S, TARGETS, checks, memory_trend, render
from serve_setup import (
    Others,
    Server,
    Workload,
    aisle_server,
    event_batches,
    free_port,
    prepare_home,
    recommendation_requests,
    run,
    search_requests,
    stub_server,
    summary_of,
    timed,
    workload,
)

#: Below this share of the target in the closed loop, the open loop runs at ``FALLBACK`` of
#: what the closed loop reached (a queue that only grows measures nothing but the run's length).
REACHABLE, FALLBACK = 0.8, 0.7
HOST = "127.0.0.1"


class OverallTimeoutError(Exception):
    """The run took longer than --timeout."""


# -- phases -------------------------------------------------------------------------------------


def ceiling(
    loop: Any, work: Path, core: int | None, seconds: float, connections: int
) -> dict[str, Any]:
    """The generator against the stub: the most it can send and read."""
    stub = stub_server(work, free_port(), core)
    try:
        stub.wait_ready("/", timeout=30)
        wire = cycle([request("stub", "GET", "/healthz")])
        return timed(
            stub, loop, closed_loop(HOST, stub.port, wire, connections=connections, seconds=seconds)
        )
    finally:
        stub.stop(grace=2)


def speed(
    loop: Any,
    server: Server,
    name: str,
    requests: Sequence[Request],
    *,
    seconds: float,
    connections: int,
) -> dict[str, Any]:
    """Throughput (closed loop), then latency (open loop) at the target rate, or at
    ``FALLBACK`` of the throughput where the target is out of reach."""
    target, _ = TARGETS[name]
    # one stream for both loops: the open loop goes on where the closed one stopped, so a
    # search does not meet the query cache the closed loop has just filled
    stream = cycle(requests)
    log(f"{name}: closed loop, {connections} connections, {seconds:.0f} s")
    closed = timed(
        server,
        loop,
        closed_loop(
            HOST, server.port, stream, connections=connections, seconds=seconds, warmup=2.0
        ),
    )
    reachable = closed["per_second"] >= REACHABLE * target
    rate = target if reachable else FALLBACK * closed["per_second"]
    log(f"{name}: open loop at {rate:,.0f}/s, {seconds:.0f} s")
    opened = timed(
        server,
        loop,
        open_loop(HOST, server.port, stream, rate=rate, seconds=seconds),
        rate=rate,
    )
    return {"closed": closed, "open": opened, "at_target": reachable}


async def post_batches(port: int, batches: Sequence[Request], senders: int = 1) -> dict[str, Any]:
    """POST the batches from ``senders`` connections at once (each sends its next batch when
    answered); events/s over the wall time from the first POST to the last answer."""
    pending = iter(batches)
    seconds: list[float] = []
    counts = {"input": 0, "accepted": 0, "quarantined": 0, "duplicates": 0}
    reasons: dict[str, int] = {}
    failed = 0

    async def sender() -> None:
        nonlocal failed
        connection = Connection(HOST, port)
        try:
            for batch in pending:
                started = time.perf_counter()
                status, body = await asyncio.wait_for(connection.call(batch.wire), 120)
                seconds.append(time.perf_counter() - started)
                if status != 200:
                    failed += 1
                    log(f"events: a batch got {status}: {body[:200]!r}")
                    continue
                answer = orjson.loads(body)
                for key in counts:
                    counts[key] += int(answer[key])
                for reason, n in answer.get("reasons", {}).items():
                    reasons[reason] = reasons.get(reason, 0) + int(n)
        finally:
            connection.close()

    began = time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(senders)))
    wall = time.perf_counter() - began
    steady = seconds[1:] or seconds
    return {
        "batches": len(batches),
        "senders": senders,
        "failed": failed,
        **counts,
        "reasons": reasons,
        "batch_seconds": seconds,
        "seconds": wall,
        "events_per_s": counts["input"] / wall if wall else 0.0,
        "events_per_s_after_first": counts["input"] * len(steady) / len(seconds) / sum(steady)
        if senders == 1 and seconds
        else counts["input"] / wall
        if wall
        else 0.0,
    }


async def event_imports(port: int) -> float:
    """The server's count of event imports so far (several POSTs may share one)."""
    connection = Connection(HOST, port)
    try:
        status, body = await connection.call(request("metrics", "GET", "/metrics").wire)
    finally:
        connection.close()
    if status != 200:
        return float("nan")
    for line in body.decode().splitlines():
        if line.startswith("aisle_event_imports_total "):
            return float(line.split()[1])
    return 0.0


def _items(body: bytes) -> list[str]:
    return [row["item_id"] for row in orjson.loads(body)["items"]]


async def freshness(
    port: int, users: Sequence[str], tag: str, *, poll: float = 0.01, give_up: float = 5.0
) -> dict[str, Any]:
    """Seconds from POSTing a click on each customer's top item to recommendations that
    differ, polled every ``poll`` seconds (``give_up`` counts as the time of one that never
    changed)."""
    reader, writer = Connection(HOST, port), Connection(HOST, port)
    changed, posted, never, unusable = [], [], 0, 0
    try:
        for number, user in enumerate(users):
            ask = request("fresh", "GET", f"/v1/users/{quote(user, safe='')}/recommendations?n=10")
            status, body = await reader.call(ask.wire)
            before = _items(body) if status == 200 else []
            if not before:
                unusable += 1
                continue
            event = [
                {
                    "event_id": f"serve-load-fresh-{tag}-{number}",
                    "user_id": user,
                    "item_id": before[0],
                    "type": "click",
                    "timestamp": datetime.now(UTC).isoformat(),
                }
            ]
            post = request("fresh", "POST", "/v1/events", orjson.dumps(event))
            started = time.perf_counter()
            status, body = await writer.call(post.wire)
            posted.append(time.perf_counter() - started)
            if status != 200 or orjson.loads(body)["accepted"] != 1:
                unusable += 1
                log(f"freshness: the event was not accepted: {body[:300]!r}")
                continue
            while True:
                status, body = await reader.call(ask.wire)
                elapsed = time.perf_counter() - started
                if status == 200 and _items(body) != before:
                    changed.append(elapsed)
                    break
                if elapsed > give_up:
                    never += 1
                    changed.append(give_up)
                    break
                await asyncio.sleep(poll)
    finally:
        reader.close()
        writer.close()
    return {
        "users": len(users),
        "changed_s": summary_of(changed),
        "never_changed": never,
        "unusable": unusable,
        "post_s": summary_of(posted),
    }


async def _swap(
    port: int, path: str, at: float, started: float, record: list[dict[str, Any]]
) -> None:
    await asyncio.sleep(max(0.0, started + at - time.perf_counter()))
    connection = Connection(HOST, port)
    begin = time.perf_counter()
    try:
        status, body = await asyncio.wait_for(
            connection.call(request("admin", "POST", path).wire), 600
        )
    finally:
        connection.close()
    end = time.perf_counter()
    answer = orjson.loads(body) if body else {}
    record.append(
        {
            "path": path,
            "status": status,
            "begin": begin,
            "end": end,
            "seconds": end - begin,
            "at_s": begin - started,
            "models": answer.get("models"),
            "promoted": [o.get("promoted") for o in answer.get("outcomes", [])],
        }
    )


def soak(
    loop: Any, server: Server, work: Workload, args: argparse.Namespace, tag: str
) -> dict[str, Any]:
    """Recommendations, search and event posts at fixed rates together, with the server's
    memory sampled and two hot swaps in the middle."""
    seconds = args.soak_seconds
    posts_per_s = args.soak_events / args.soak_batch
    recs = cycle(recommendation_requests(work, 20_000, seed=23))
    searches = cycle(search_requests(work, len(work.queries), seed=29))
    posts: Iterator[Request] = iter(
        event_batches(work, args.soak_batch, int(posts_per_s * seconds) + 2, f"{tag}-soak")
    )
    samples: list[tuple[float, float]] = []
    swaps: list[dict[str, Any]] = []
    started = time.perf_counter()

    async def sample() -> None:
        while time.perf_counter() - started < seconds:
            rss = server.rss_mib()
            if rss is not None:
                samples.append((time.perf_counter() - started, rss))
            await asyncio.sleep(2.0)

    async def together() -> list[Outcomes]:
        streams = [
            open_loop(
                HOST,
                server.port,
                recs,
                rate=args.soak_recommendations,
                seconds=seconds,
                label="recommendations",
                measure_cpu=False,
            ),
            open_loop(
                HOST,
                server.port,
                searches,
                rate=args.soak_search,
                seconds=seconds,
                connections=8,
                label="search",
                measure_cpu=False,
            ),
            open_loop(
                HOST,
                server.port,
                posts,
                rate=posts_per_s,
                seconds=seconds,
                connections=4,
                label="events",
                timeout=60,
                measure_cpu=False,
            ),
        ]
        tasks = [
            sample(),
            _swap(server.port, "/v1/admin/reload", 0.40 * seconds, started, swaps),
            _swap(
                server.port, "/v1/admin/retrain?model=popularity", 0.55 * seconds, started, swaps
            ),
        ]
        results = await asyncio.gather(*streams, *tasks)
        return [r for r in results if isinstance(r, Outcomes)]

    others = Others(server)
    cpu, client_cpu, wall = server.cpu_seconds(), time.process_time(), time.perf_counter()
    streams = run(loop, together())
    wall = time.perf_counter() - wall
    after = server.cpu_seconds()
    figures: dict[str, Any] = {
        "seconds": seconds,
        "rates": {
            "recommendations": args.soak_recommendations,
            "search": args.soak_search,
            "events": args.soak_events,
            "event_batch": args.soak_batch,
        },
        "server_cpu_share": (after - cpu) / wall if cpu is not None and after else None,
        "client_cpu_share": (time.process_time() - client_cpu) / wall,
        "others_on_server_core": others.share(),
        "streams": {o.label: o.summary() for o in streams},
        "failed": sum(o.failed() for o in streams),
    }
    for swap in swaps:
        window = (swap["begin"] - 1.0, swap["end"] + 1.0)
        swap["failed_around"] = sum(o.failed(*window) for o in streams)
        recs_outcomes = next(o for o in streams if o.label == "recommendations")
        due = np.asarray(recs_outcomes.due)
        inside = (due >= window[0]) & (due < window[1])
        latency = 1000 * np.asarray(recs_outcomes.latency)[inside]
        swap["recommendations_p99_ms_around"] = (
            float(np.percentile(latency, 99)) if latency.size else None
        )
        swap.pop("begin")
        swap.pop("end")
    figures["swaps"] = swaps
    swapped = max((s["at_s"] + s["seconds"] for s in swaps), default=0.0)
    figures["memory"] = memory_trend(
        samples, settle_from=max(0.2 * seconds, swapped + 10.0), judged=seconds >= JUDGED_SOAK_S
    )
    return figures


# -- the run ------------------------------------------------------------------------------------


def cores() -> tuple[int | None, int | None]:
    """(the server's core, the generator's core), or no pinning with fewer than two."""
    usable = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(usable) < 2:
        log("fewer than two usable cores: the server and the generator are not pinned")
        return None, None
    return usable[0], usable[1]


def measure(args: argparse.Namespace, shared: Path, work: Path, figures: dict[str, Any]) -> None:
    """Every phase, into ``figures`` (so that what ran is kept when a later phase fails)."""
    home = args.home or work / "home"
    home.mkdir(parents=True, exist_ok=True)
    log(f"preparing the home at {home}")
    figures["setup_s"] = prepare_home(
        home, work, shared, trained=args.clicks, uci=args.uci, static=args.static_encoder, log=log
    )
    plan = workload(shared, args.clicks, uci=args.uci)
    figures["workload"] = {
        "known_users": len(plan.known_users),
        "new_users": len(plan.new_users),
        "held_out_queries": len(plan.queries),
        "distinct_queries": len(set(plan.queries)),
        "held_out_clicks": plan.future.height,
    }
    server_core, client_core = cores()
    if client_core is not None:
        os.sched_setaffinity(0, {client_core})
    figures["cores"] = {"server": server_core, "generator": client_core}
    loop = new_loop()
    tag = str(int(time.time()))
    log("the generator's ceiling (stub server)")
    figures["ceiling"] = ceiling(loop, work, server_core, 5.0, args.connections)
    server = aisle_server(home, work, free_port(), server_core)
    try:
        figures["server_ready_s"] = server.wait_ready()
        figures["rss_ready_mib"] = server.rss_mib()
        log("healthz")
        figures["healthz"] = timed(
            server,
            loop,
            closed_loop(
                HOST,
                server.port,
                cycle([request("healthz", "GET", "/healthz")]),
                connections=args.connections,
                seconds=5.0,
            ),
        )
        recs = recommendation_requests(plan, 20_000)
        figures["recommendations"] = speed(
            loop,
            server,
            "recommendations",
            recs,
            seconds=args.seconds,
            connections=args.connections,
        )
        searches = search_requests(plan, len(plan.queries))
        figures["search"] = speed(
            loop, server, "search", searches, seconds=args.seconds, connections=args.connections
        )
        log(f"events: {args.batches} batches of {args.batch_size:,} from {args.senders} senders")
        batches = event_batches(plan, args.batch_size, args.batches, tag)
        others = Others(server)
        before = run(loop, event_imports(server.port))
        figures["events"] = run(loop, post_batches(server.port, batches, args.senders))
        figures["events"]["others_on_server_core"] = others.share()
        imports = run(loop, event_imports(server.port)) - before
        figures["events"]["imports"] = imports
        log(f"events: {args.batches} POSTs went in {imports:.0f} imports")
        log(f"events: 6 batches of {args.batch_size:,} from one sender, in turn")
        others = Others(server)
        alone = event_batches(plan, args.batch_size, 6, f"{tag}-alone")
        figures["events_one_sender"] = run(loop, post_batches(server.port, alone))
        figures["events_one_sender"]["others_on_server_core"] = others.share()
        if args.large_batch:
            log(f"events: 2 batches of {args.large_batch:,}")
            others = Others(server)
            large = event_batches(plan, args.large_batch, 2, f"{tag}-large")
            figures["events_large"] = run(loop, post_batches(server.port, large))
            figures["events_large"]["others_on_server_core"] = others.share()
        log(f"freshness: {args.freshness_users} customers")
        chosen = np.random.default_rng(5).choice(
            len(plan.known_users), args.freshness_users, replace=False
        )
        users = [plan.known_users[i] for i in chosen]
        figures["freshness"] = run(loop, freshness(server.port, users, tag))
        figures["rss_before_soak_mib"] = server.rss_mib()
        log(f"soak: {args.soak_seconds:.0f} s")
        figures["soak"] = soak(loop, server, plan, args, tag)
        figures["rss_end_mib"] = server.rss_mib()
    finally:
        figures["server_exit"] = server.stop()
        text = server.log_file.read_text(errors="replace")
        figures["server_log"] = {
            "errors": sum("ERROR" in line or "Traceback" in line for line in text.splitlines()),
            "access_lines": text.count("aisle.access"),
            "tail": text.strip().splitlines()[-5:],
        }
    missed = [c["target"] for c in checks(figures) if not c["pass"] and "/s" in c["target"]]
    if args.profile or (missed and not args.no_profile):
        log("profiling the server (cProfile) and timing its layers directly")
        figures["profile"] = serve_profile.profile(
            loop,
            home,
            work,
            server_core,
            plan,
            seconds=min(args.seconds, 8.0),
            connections=args.connections,
        )


def _timeout(_signal: int, _frame: Any) -> None:
    raise OverallTimeoutError("the run passed --timeout")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--home", type=Path, help="prepare (or reuse) the home here")
    parser.add_argument("--clicks", type=int, default=20_000, help="Best Buy clicks trained on")
    parser.add_argument("--uci", action="store_true", help="also UCI Online Retail purchases")
    parser.add_argument(
        "--static-encoder",
        action="store_true",
        help="index with the static (model2vec) encoder, not MiniLM",
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="each timed run")
    parser.add_argument("--connections", type=int, default=16, help="closed-loop clients")
    parser.add_argument("--batches", type=int, default=24)
    parser.add_argument("--senders", type=int, default=4, help="connections posting events")
    parser.add_argument("--batch-size", type=int, default=5_000)
    parser.add_argument("--large-batch", type=int, default=50_000, help="0: skip that run")
    parser.add_argument("--freshness-users", type=int, default=30)
    parser.add_argument("--soak", action="store_true", help="the 5-minute soak")
    parser.add_argument("--soak-seconds", type=float, help="[300 with --soak, else 30]")
    parser.add_argument("--soak-recommendations", type=float, default=500.0, help="per second")
    parser.add_argument("--soak-search", type=float, default=10.0, help="per second")
    parser.add_argument("--soak-events", type=float, default=500.0, help="per second")
    parser.add_argument("--soak-batch", type=int, default=500, help="events per POST")
    parser.add_argument("--profile", action="store_true", help="profile even if targets pass")
    parser.add_argument("--no-profile", action="store_true", help="never profile")
    parser.add_argument("--timeout", type=int, default=1800, help="hard limit, seconds")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args(argv)
    if args.soak_seconds is None:
        args.soak_seconds = 300.0 if args.soak else 30.0
    shared = harness.shared_data("bestbuy-small-xbox/clicks.csv.gz")
    if shared is None:
        return 2
    shared = shared.resolve()
    if args.home is not None:
        args.home = args.home.resolve()
    signal.signal(signal.SIGALRM, _timeout)
    signal.alarm(args.timeout)
    figures: dict[str, Any] = {
        "machine": machine.describe(),
        "command": " ".join(
            ["python", "benchmarks/serve_load.py", *(sys.argv[1:] if argv is None else argv)]
        ),
    }
    failure = None
    try:
        with tempfile.TemporaryDirectory(prefix="serve-load-") as folder:
            measure(args, shared, Path(folder), figures)
    except (OverallTimeoutError, SystemExit, OSError, ValueError, KeyError) as error:
        failure = f"{type(error).__name__}: {error}"
        log(f"the run stopped: {failure}")
    finally:
        signal.alarm(0)
    with contextlib.suppress(OSError):
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
    figures["machine_after"] = machine.describe()
    verdicts = checks(figures)
    figures["checks"] = verdicts
    figures["stopped"] = failure
    if args.json:
        print(json.dumps(figures, default=str))
    else:
        print(render(figures, verdicts))
        if failure:
            print(f"\nthe run stopped early: {failure}")
    return 1 if failure else 0


if __name__ == "__main__":
    sys.exit(main())
