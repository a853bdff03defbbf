"""Where the server's time goes: aisle's app under cProfile in a child process on the
server's core, loaded by the generator, its time summed by package; and, in the same process
before it serves, the serving layers called directly, to set against a request through HTTP.

The child starts profiling on SIGUSR1 and writes what it gathered on SIGUSR2, so that each
workload gets its own profile. cProfile slows Python code down (a request costs ~1.5x), so
its shares say where the time goes, not how fast the server is.

    python benchmarks/serve_profile.py child PORT INPUTS OUT    # what the parent starts
"""

from __future__ import annotations

import cProfile
import json
import os
import pstats
import re
import signal
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
from http_load import closed_loop, cycle
from serve_setup import Server, Workload, environment, free_port, timed

#: Shares below this are summed as "other" in the report.
SMALL = 0.01
_SITE = re.compile(r"site-packages/([A-Za-z0-9_]+)")
_AISLE = re.compile(r"/aisle/([a-z_]+)")
_STDLIB = re.compile(r"/python3\.\d+/([A-Za-z0-9_]+)")
#: What C functions (filename "~") belong to, by a word in their name.
_NATIVE = {
    "torch": "torch",
    "tantivy": "tantivy",
    "numpy": "numpy",
    "lightgbm": "lightgbm",
    "orjson": "orjson",
    "hashlib": "hashlib",
    "hmac": "hashlib",
    "duckdb": "duckdb",
    "PyDataFrame": "polars",
    "PyLazyFrame": "polars",
    "PySeries": "polars",
    "PyExpr": "polars",
    "usearch": "usearch",
    "select": "select",
    "socket": "socket",
}


# -- in the child -------------------------------------------------------------------------------


def _per_call(function: Callable[[Any], Any], inputs: Sequence[Any]) -> dict[str, float]:
    """Median and mean microseconds of ``function`` over ``inputs`` (after a few warm calls)."""
    for value in inputs[:20]:
        function(value)
    spent = []
    for value in inputs:
        started = time.perf_counter()
        function(value)
        spent.append(time.perf_counter() - started)
    micro = 1e6 * np.asarray(spent)
    return {
        "median_us": float(np.median(micro)),
        "mean_us": float(micro.mean()),
        "calls": len(spent),
    }


def direct_layers(service: Any, users: Sequence[str], queries: Sequence[str]) -> dict[str, Any]:
    """Each layer of a recommendation and of a search, called directly (no HTTP)."""
    from aisle.serving.app import json_response
    from aisle.serving.recommend import recommend
    from aisle.serving.routes import _items
    from aisle.serving.searching import search_page

    pseudonyms = [service.pseudonym(u) for u in users]
    names = [service.model_for("recommendations", p, None)[0] for p in pseudonyms]
    answers = [
        recommend(service.live, service.activity, n, p, 10)
        for n, p in zip(names, pseudonyms, strict=True)
    ]
    rows = [_items(service, a, p, False) for a, p in zip(answers, pseudonyms, strict=True)]

    def whole(user: str) -> Any:
        pseudonym = service.pseudonym(user)
        name, _ = service.model_for("recommendations", pseudonym, None)
        answer = recommend(service.live, service.activity, name, pseudonym, 10)
        items = _items(service, answer, pseudonym, False)
        return json_response(
            {
                "model": answer.model,
                "version": answer.version,
                "source": answer.source,
                "variant": None,
                "items": items,
            }
        )

    def searched(query: str) -> Any:
        return search_page(
            service,
            query,
            user=None,
            filters={},
            facets="",
            sort=None,
            price_min=None,
            price_max=None,
            page=1,
            per_page=10,
            explain=False,
        )

    indexes = list(range(len(users)))
    return {
        "recommendations": {
            "pseudonym (HMAC)": _per_call(service.pseudonym, users),
            "recommend (model + recent + cold)": _per_call(
                lambda i: recommend(service.live, service.activity, names[i], pseudonyms[i], 10),
                indexes,
            ),
            "answer rows (_items)": _per_call(
                lambda i: _items(service, answers[i], pseudonyms[i], False), indexes
            ),
            "JSON response": _per_call(lambda i: json_response({"items": rows[i]}), indexes),
            "all of the above": _per_call(whole, users),
        },
        "search": {"search_page (in click order)": _per_call(searched, queries)},
    }


def _scope(path: str, query: str) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query.encode(),
        "headers": [(b"host", b"127.0.0.1")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }


def asgi_layers(app: Any, users: Sequence[str]) -> dict[str, Any]:
    """Requests through the ASGI application, no socket and no uvicorn: CPU microseconds per
    request (the framework's share is this minus the direct calls)."""
    import asyncio

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(_message: dict[str, Any]) -> None:
        return None

    async def each(targets: Sequence[tuple[str, str]]) -> None:
        for path, query in targets:
            await app(_scope(path, query), receive, send)

    loop = asyncio.new_event_loop()
    found = {}
    recs = [(f"/v1/users/{quote(u, safe='')}/recommendations", "n=10") for u in users]
    for name, targets in (("/healthz", [("/healthz", "")] * len(users)), ("recommendations", recs)):
        loop.run_until_complete(each(targets[:100]))
        rounds = []
        for _ in range(3):
            cpu = time.process_time()
            loop.run_until_complete(each(targets))
            rounds.append(1e6 * (time.process_time() - cpu) / len(targets))
        found[name] = {"best_us": min(rounds), "rounds_us": rounds}
    loop.close()
    return found


def ingest_layers(service: Any, batch: bytes, singles: Sequence[bytes]) -> dict[str, Any]:
    """A batch of events through ``Service.ingest`` (what POST /v1/events runs in a worker
    thread), timed and profiled; single events timed (their fixed cost is freshness's)."""
    from aisle.domain import RecordKind
    from aisle.serving.service import parse_batch

    def parsed(body: bytes) -> Any:
        return parse_batch(body, "application/json", "POST /v1/events", "events")

    started = time.perf_counter()
    raw = parsed(batch)
    parse_s = time.perf_counter() - started
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    outcome = service.ingest(RecordKind.EVENTS, raw)
    profiler.disable()
    ingest_s = time.perf_counter() - started
    one = []
    for body in singles:
        started = time.perf_counter()
        service.ingest(RecordKind.EVENTS, parsed(body))
        one.append(time.perf_counter() - started)
    stats = pstats.Stats(profiler)
    return {
        "events": outcome.input,
        "accepted": outcome.accepted,
        "parse_s": parse_s,
        "ingest_s": ingest_s,
        "events_per_s": outcome.input / (parse_s + ingest_s),
        "one_event_s": sorted(one),
        **breakdown(stats),
        "stages": stages(stats),
    }


def stages(stats: pstats.Stats, top: int = 14) -> list[dict[str, Any]]:
    """aisle's own functions by cumulative time (the stages of the work), as shares."""
    table: dict[tuple[str, int, str], tuple[Any, ...]] = stats.stats  # type: ignore[attr-defined]
    total = max((row[3] for row in table.values()), default=1.0) or 1.0
    mine = [(key, row) for key, row in table.items() if "/aisle/" in key[0]]
    mine.sort(key=lambda kv: -kv[1][3])
    return [
        {
            "function": f"{Path(f).parent.name}/{Path(f).name}:{line}({name})",
            "share": row[3] / total,
        }
        for (f, line, name), row in mine[:top]
    ]


def child(port: int, inputs: Path, out: Path) -> None:
    """Serve aisle's app on ``port`` with profiling switched by SIGUSR1 / SIGUSR2."""
    import logging

    import uvicorn

    from aisle.config import load_settings
    from aisle.search.index import QUERIES_DIR, current_version
    from aisle.search.past_queries import load_query_vectors
    from aisle.serving.app import create_app
    from aisle.serving.service import Service

    logging.getLogger("aisle.access").setLevel(logging.WARNING)
    service = Service(load_settings())
    app = create_app(service)
    given = json.loads(inputs.read_text())
    layers = direct_layers(service, given["users"], given["queries"])
    layers["asgi"] = asgi_layers(app, given["users"])
    layers["events"] = ingest_layers(
        service, given["batch"].encode(), [b.encode() for b in given["singles"]]
    )
    if service.live.engine is not None:  # the HTTP run starts as the main run's server does
        service.live.engine.clear_caches()
        load_query_vectors(
            service.live.engine, current_version(service.settings.home) / QUERIES_DIR
        )
    (out / "layers.json").write_text(json.dumps(layers))
    state: dict[str, Any] = {"profiler": None, "written": 0}

    def start(_signal: int, _frame: Any) -> None:
        state["profiler"] = cProfile.Profile()
        state["profiler"].enable()

    def write(_signal: int, _frame: Any) -> None:
        profiler = state["profiler"]
        if profiler is None:
            return
        profiler.disable()
        state["written"] += 1
        profiler.dump_stats(out / f"profile-{state['written']}.prof")
        state["profiler"] = None

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, write)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, access_log=False, log_level="warning")
    uvicorn.Server(config).run()


# -- in the parent ------------------------------------------------------------------------------


def package(filename: str, name: str) -> str:
    """What a profiled function belongs to: a site package, a part of aisle, the standard
    library, or the native code its name points at."""
    if filename == "~":
        return next((f"native: {v}" for k, v in _NATIVE.items() if k in name), "native: other")
    if found := _AISLE.search(filename):
        return f"aisle.{found.group(1).removesuffix('.py')}"
    if found := _SITE.search(filename):
        return found.group(1)
    if found := _STDLIB.search(filename):
        return f"stdlib: {found.group(1)}"
    return "other"


def breakdown(stats: pstats.Stats, top: int = 12) -> dict[str, Any]:
    """Own time by package (shares of the profiled time) and the costliest functions."""
    table: dict[tuple[str, int, str], tuple[Any, ...]] = stats.stats  # type: ignore[attr-defined]
    total = sum(row[2] for row in table.values()) or 1.0
    packages: dict[str, float] = {}
    for (filename, _line, name), row in table.items():
        key = package(filename, name)
        packages[key] = packages.get(key, 0.0) + row[2]
    shares = dict(sorted(((k, v / total) for k, v in packages.items()), key=lambda kv: -kv[1]))
    costly = sorted(table.items(), key=lambda kv: -kv[1][2])[:top]
    functions = [
        {
            "function": f"{Path(f).name}:{line}({name})" if f != "~" else name,
            "own_share": row[2] / total,
            "calls": row[1],
        }
        for (f, line, name), row in costly
    ]
    return {"profiled_s": total, "packages": shares, "functions": functions}


def _wait_for(path: Path, seconds: float = 30.0) -> None:
    deadline = time.perf_counter() + seconds
    while not path.exists() and time.perf_counter() < deadline:
        time.sleep(0.1)
    time.sleep(0.3)  # written, not only created


def profile(
    loop: Any,
    home: Path,
    work: Path,
    core: int | None,
    plan: Workload,
    *,
    seconds: float,
    connections: int,
) -> dict[str, Any]:
    """Profiles of recommendations and search through HTTP, and the direct layer timings."""
    from serve_setup import event_batches, recommendation_requests, search_requests

    out = work / "profile"
    out.mkdir(exist_ok=True)
    users = plan.known_users[:1800] + plan.new_users[:200]
    queries = plan.queries[:1000]
    inputs = work / "profile-inputs.json"
    tag = f"profile-{int(time.time())}"
    batch = event_batches(plan, 5_000, 1, tag)[0].wire.split(b"\r\n\r\n", 1)[1].decode()
    singles = [
        json.dumps(
            [
                {
                    "event_id": f"serve-load-{tag}-one-{n}",
                    "user_id": user,
                    "item_id": plan.future["sku"][n],
                    "type": "click",
                    "timestamp": datetime.now(UTC).isoformat(),
                }
            ]
        )
        for n, user in enumerate(plan.known_users[:5])
    ]
    inputs.write_text(
        json.dumps({"users": users, "queries": queries, "batch": batch, "singles": singles})
    )
    port = free_port()
    command = [sys.executable, str(Path(__file__)), "child", str(port), str(inputs), str(out)]
    server = Server(
        command,
        environment(home, work),
        cwd=work,
        log_file=work / "profile-server.log",
        port=port,
        core=core,
    )
    figures: dict[str, Any] = {}
    try:
        server.wait_ready()
        figures["direct_layers"] = json.loads((out / "layers.json").read_text())
        workloads = {
            "recommendations": recommendation_requests(plan, 20_000),
            "search": search_requests(plan, len(plan.queries)),
        }
        for number, (name, requests) in enumerate(workloads.items(), start=1):
            os.kill(server.pid, signal.SIGUSR1)
            figures[name] = {
                "run": timed(
                    server,
                    loop,
                    closed_loop(
                        "127.0.0.1",
                        port,
                        cycle(requests),
                        connections=connections,
                        seconds=seconds,
                        warmup=0.0,
                    ),
                )
            }
            os.kill(server.pid, signal.SIGUSR2)
            written = out / f"profile-{number}.prof"
            _wait_for(written)
            figures[name].update(breakdown(pstats.Stats(str(written))))
    finally:
        server.stop()
    return figures


def _packages(packages: dict[str, float]) -> str:
    shown = {k: v for k, v in packages.items() if v >= SMALL}
    rest = 1.0 - sum(shown.values())
    return ", ".join(f"{k} {v:.0%}" for k, v in shown.items()) + f", the rest {rest:.0%}"


def _functions(functions: list[dict[str, Any]], count: int = 8) -> str:
    return "; ".join(f"{f['function']} {f['own_share']:.0%}" for f in functions[:count])


def render(figures: dict[str, Any]) -> list[str]:
    """The profile as report lines."""
    lines = ["where the server's time goes (cProfile, own time; a profiled request is slower)"]
    layers = figures.get("direct_layers", {})
    for name in ("recommendations", "search"):
        if name not in figures:
            continue
        part = figures[name]
        run = part["run"]
        http_ms = run.get("server_cpu_ms_per_request")
        lines.append(
            f"  {name}: {run['per_second']:,.0f}/s profiled"
            + (f", server CPU {http_ms:.2f} ms per request through HTTP" if http_ms else "")
        )
        for layer, timing in layers.get(name, {}).items():
            lines.append(
                f"    direct: {layer:<36} median {timing['median_us']:8.1f} us, mean "
                f"{timing['mean_us']:8.1f} us (unprofiled)"
            )
        asgi = layers.get("asgi", {})
        if name == "recommendations" and asgi:
            lines.append(
                "    through the ASGI app, no socket (CPU per request, unprofiled): "
                + ", ".join(f"{k} {v['best_us']:.0f} us" for k, v in asgi.items())
            )
        lines.append("    by package: " + _packages(part["packages"]))
        lines.append("    costliest functions (own time): " + _functions(part["functions"]))
    events = layers.get("events")
    if events:
        one = events["one_event_s"]
        lines += [
            f"  events, direct Service.ingest of {events['events']:,} (no HTTP): parse "
            f"{events['parse_s']:.3f} s + ingest {events['ingest_s']:.3f} s (profiled) = "
            f"{events['events_per_s']:,.0f} events/s; one event alone "
            f"{1000 * one[len(one) // 2]:.0f} ms (median of {len(one)})",
            "    by package: " + _packages(events["packages"]),
            "    costliest functions (own time): " + _functions(events["functions"]),
            "    aisle's stages (cumulative share): "
            + "; ".join(f"{f['function']} {f['share']:.0%}" for f in events["stages"]),
        ]
    return lines


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "child":
        child(int(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]))
    else:
        print(__doc__)
