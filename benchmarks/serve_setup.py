"""The serving benchmark's stage: a home made from the real data by the CLI, the workloads
drawn from the clicks held out of it, and ``aisle serve`` as a child process on one core.

The Best Buy clicks are split by click time: the first N train the models and the search
index, the rest are the future (queries to search, clicks to post as events, new shoppers).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import numpy as np
import polars as pl
from http_load import Outcomes, Request, request

#: The pseudonymisation secret of both the import and the server (they must agree).
SECRET = "serve-load-benchmark-secret-0123456789abcdef"
#: Pools of native libraries: one thread each, as on the one core the server gets.
ONE_THREAD = {
    name: "1"
    for name in (
        "OPENBLAS_NUM_THREADS",
        "OMP_NUM_THREADS",
        "MKL_NUM_THREADS",
        "POLARS_MAX_THREADS",
        "RAYON_NUM_THREADS",
    )
}
#: The per-key rate limit the server runs with. The default (600,000 a minute) would hold the
#: one generator, which all arrives as one caller, to 10,000 requests a second.
REQUESTS_PER_MINUTE = 100_000_000
#: Written in a home this benchmark prepared, with what it was prepared from.
MARKER = "serve_load.json"
Log = Callable[[str], None]
T = TypeVar("T")


def environment(home: Path, work: Path) -> dict[str, str]:
    """This process's environment without any AISLE_* setting, plus the benchmark's: the
    home, the secret, no aisle.toml, one thread per native pool."""
    kept = {k: v for k, v in os.environ.items() if not k.startswith("AISLE_")}
    return {
        **kept,
        **ONE_THREAD,
        "AISLE_HOME": str(home),
        "AISLE_SECRET_KEY": SECRET,
        "AISLE_CONFIG": str(work / "no-aisle.toml"),
        "HF_HUB_OFFLINE": "1",
    }


# -- the home -----------------------------------------------------------------------------------


def split_clicks(shared: Path, trained: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Best Buy clicks in click-time order: the first ``trained``, and the rest."""
    clicks = pl.read_csv(shared / "bestbuy-small-xbox" / "clicks.csv.gz", infer_schema=False)
    clicks = clicks.sort("click_time", maintain_order=True)
    return clicks.head(trained), clicks.slice(trained)


def prepare_home(
    home: Path, work: Path, shared: Path, *, trained: int, uci: bool, static: bool, log: Log
) -> dict[str, float]:
    """Import, train and index into ``home`` through the CLI (seconds per step); a home this
    benchmark prepared from the same data is reused as it is."""
    wanted = {"clicks": trained, "uci": uci, "static_encoder": static}
    marker = home / MARKER
    if marker.exists():
        made = json.loads(marker.read_text())
        if made != wanted:
            raise SystemExit(f"{home} was prepared from {made}, not {wanted}: use another --home")
        log(f"reusing the home at {home}")
        return {}
    first, _ = split_clicks(shared, trained)
    clicks_file = work / "train-clicks.csv.gz"
    clicks_file.write_bytes(_gzip_csv(first))
    bestbuy = shared / "bestbuy-small-xbox"
    steps: list[tuple[str, list[str]]] = []
    if uci:
        transactions = shared / "uci-online-retail" / "transactions.csv.gz"
        steps.append(
            ("ingest UCI", ["ingest", "events", str(transactions), "-a", "uci-online-retail"])
        )
    steps += [
        (
            "ingest products",
            ["ingest", "products", str(bestbuy / "products.jsonl.gz"), "-a", "bestbuy-products"],
        ),
        (
            f"ingest {trained:,} clicks",
            ["ingest", "events", str(clicks_file), "-a", "bestbuy-clicks"],
        ),
        ("train als", ["train", "--model", "als", "--promote"]),
        ("train popularity", ["train", "--model", "popularity", "--promote"]),
        ("index build", ["index", "build"]),
    ]
    env = environment(home, work)
    if static:
        env["AISLE_CATALOG__EMBEDDING_MODEL"] = "static"
    seconds = {}
    for name, arguments in steps:
        log(f"  {name} ...")
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "aisle", *arguments, "--json"],
            env=env,
            cwd=work,
            capture_output=True,
            text=True,
            timeout=1200,
            check=False,
        )
        seconds[name] = time.perf_counter() - started
        if done.returncode != 0:
            tail = "\n".join(done.stderr.strip().splitlines()[-8:])
            raise SystemExit(f"`aisle {' '.join(arguments)}` failed ({done.returncode}):\n{tail}")
    marker.write_text(json.dumps(wanted))
    return seconds


def _gzip_csv(frame: pl.DataFrame) -> bytes:
    import gzip

    return gzip.compress(frame.write_csv().encode("utf-8"))


# -- the workloads ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    """Who asks and what: real shoppers and queries, future clicks to post."""

    known_users: list[str]  # in the training clicks (or UCI customers with --uci)
    new_users: list[str]  # only in the held-out clicks: unknown to every model
    queries: list[str]  # held-out queries in click order, repeats kept (as shoppers type)
    future: pl.DataFrame  # held-out clicks: user, sku, click_time


def workload(shared: Path, trained: int, *, uci: bool) -> Workload:
    """The workload of a home prepared with ``trained`` clicks."""
    first, rest = split_clicks(shared, trained)
    known = first["user"].unique().sort().to_list()
    if uci:
        retail = pl.read_csv(
            shared / "uci-online-retail" / "transactions.csv.gz",
            columns=["CustomerID"],
            infer_schema=False,
        )
        known = retail["CustomerID"].drop_nulls().unique().sort().to_list()
    seen = set(first["user"].to_list())
    new = sorted({u for u in rest["user"].to_list() if u not in seen})
    queries = [q for q in rest["query"].to_list() if q and q.strip()]
    return Workload(known, new, queries, rest.select("user", "sku", "click_time"))


def recommendation_requests(
    work: Workload, count: int, *, new_share: float = 0.1, seed: int = 7
) -> list[Request]:
    """GET recommendations (n=10) for known shoppers and a share of new ones, shuffled."""
    rng = random.Random(seed)
    requests = []
    for _ in range(count):
        pool = work.new_users if rng.random() < new_share else work.known_users
        user = quote(rng.choice(pool), safe="")
        requests.append(request("recommendations", "GET", f"/v1/users/{user}/recommendations?n=10"))
    return requests


def search_requests(
    work: Workload, count: int, *, personal_share: float = 0.2, seed: int = 11
) -> list[Request]:
    """GET search for the held-out queries in click order, a share personalised."""
    rng = random.Random(seed)
    requests = []
    for query in work.queries[:count]:
        target = f"/v1/search?q={quote(query, safe='')}"
        if rng.random() < personal_share:
            target += f"&user={quote(rng.choice(work.known_users), safe='')}"
        requests.append(request("search", "GET", target))
    return requests


#: Weeks the held-out clicks are moved by, one per pass, across every batch this process makes.
_WEEKS = itertools.count()


def event_batches(work: Workload, size: int, count: int, tag: str) -> list[Request]:
    """``count`` POSTs of ``size`` click events (a JSON array of canonical records) made from
    the held-out clicks; each pass over them is moved a week later than any before it, with
    fresh event ids, so that no event duplicates another, exactly or nearly (the run's
    ``tag`` and a minute offset from the clock keep reruns on one home apart)."""
    needed = size * count
    passes = -(-needed // work.future.height)
    frames = []
    offset = timedelta(minutes=int(time.time()) % 100_000)  # reruns on a home: other minutes
    for number in (next(_WEEKS) for _ in range(passes)):
        moved = pl.col("click_time").str.to_datetime("%Y-%m-%d %H:%M:%S%.f", strict=False)
        frames.append(
            work.future.with_row_index("row")
            .select(
                pl.format("serve-load-{}-{}-{}", pl.lit(tag), pl.lit(number), "row").alias(
                    "event_id"
                ),
                pl.col("user").alias("user_id"),
                pl.col("sku").alias("item_id"),
                pl.lit("click").alias("type"),
                (moved + offset + timedelta(days=7 * number))
                .dt.strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
                .alias("timestamp"),
            )
            .drop_nulls()
        )
    events = pl.concat(frames).head(needed)
    return [
        request("events", "POST", "/v1/events", events.slice(start, size).write_json().encode())
        for start in range(0, events.height, size)
    ]


# -- the server ---------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def pinned(command: Sequence[str], core: int | None) -> list[str]:
    """``command`` run on ``core`` only, every thread it starts included (None: anywhere)."""
    if core is None:
        return list(command)
    if shutil.which("taskset") is None:
        raise SystemExit("taskset (util-linux) is needed to pin the server to one core")
    return ["taskset", "-c", str(core), *command]


class Server:
    """A child process serving on loopback, killed (its whole group) when done."""

    def __init__(
        self,
        command: Sequence[str],
        env: dict[str, str],
        *,
        cwd: Path,
        log_file: Path,
        port: int,
        core: int | None,
    ) -> None:
        self.port = port
        self.core = core
        self.log_file = log_file
        self._log = log_file.open("wb")
        self.process = subprocess.Popen(
            pinned(command, core),
            env=env,
            cwd=cwd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        """The serving process."""
        return self.process.pid

    def wait_ready(self, path: str = "/readyz", timeout: float = 300.0) -> float:
        """Seconds until ``path`` answers 200; SystemExit when the child dies or is late."""
        started = time.perf_counter()
        while time.perf_counter() - started < timeout:
            if self.process.poll() is not None:
                raise SystemExit(f"the server exited ({self.process.returncode}):\n{self.tail()}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock,
            ):
                sock.sendall(f"GET {path} HTTP/1.1\r\nhost: x\r\n\r\n".encode())
                if sock.recv(64).startswith(b"HTTP/1.1 200"):
                    return time.perf_counter() - started
            time.sleep(0.25)
        raise SystemExit(f"the server was not ready after {timeout:.0f} s:\n{self.tail()}")

    def rss_mib(self) -> float | None:
        """The server's resident memory (VmRSS), MiB."""
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            return None
        return None

    def cpu_seconds(self) -> float | None:
        """User + system CPU the server has used so far (all its threads)."""
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def tail(self, lines: int = 15) -> str:
        """The end of the server's output."""
        self._log.flush()
        text = self.log_file.read_text(errors="replace").strip().splitlines()
        return "\n".join(text[-lines:])

    def stop(self, grace: float = 20.0) -> int | None:
        """Interrupt (a graceful shutdown), then kill the group; the exit code."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(grace)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)
        self._log.close()
        return self.process.returncode


def aisle_server(
    home: Path,
    work: Path,
    port: int,
    core: int | None,
    *,
    extra_env: dict[str, str] | None = None,
) -> Server:
    """``aisle serve --no-access-log`` on ``port``, pinned to ``core``."""
    serve = [
        "--home",
        str(home),
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
    ]
    command = [sys.executable, "-m", "aisle"]
    env = {**environment(home, work), "AISLE_SERVE__REQUESTS_PER_MINUTE": str(REQUESTS_PER_MINUTE)}
    env.update(extra_env or {})
    return Server(
        [*command, *serve],
        env,
        cwd=work,
        log_file=work / f"server-{port}.log",
        port=port,
        core=core,
    )


def stub_server(work: Path, port: int, core: int | None) -> Server:
    """The trivial server of ``http_load`` (the generator's ceiling)."""
    script = Path(__file__).with_name("http_load.py")
    return Server(
        [sys.executable, str(script), "stub", str(port)],
        dict(os.environ),
        cwd=work,
        log_file=work / f"stub-{port}.log",
        port=port,
        core=core,
    )


def summary_of(values: Sequence[float]) -> dict[str, Any]:
    """Count, p50, p95 and max of some seconds."""
    if not values:
        return {"count": 0}
    array = np.asarray(values, dtype=np.float64)
    return {
        "count": len(array),
        "p50": float(np.percentile(array, 50)),
        "p95": float(np.percentile(array, 95)),
        "max": float(array.max()),
    }


# -- measuring ----------------------------------------------------------------------------------


def run(loop: asyncio.AbstractEventLoop, work: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on the generator's loop."""
    return loop.run_until_complete(work)


def core_busy_seconds(core: int | None) -> float | None:
    """CPU seconds ``core`` has spent busy since boot (/proc/stat), all processes."""
    if core is None:
        return None
    prefix = f"cpu{core} "
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith(prefix):
            user, nice, system, _idle, _iowait, irq, softirq = (int(x) for x in line.split()[1:8])
            return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")
    return None


class Others:
    """How much of the server's core other processes took while something ran: a share
    above a few percent means the figures are skewed."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.core_before = core_busy_seconds(server.core)
        self.server_before = server.cpu_seconds()
        self.wall = time.perf_counter()

    def share(self) -> float | None:
        """Others' share of the server's core since this was made."""
        core, mine = core_busy_seconds(self.server.core), self.server.cpu_seconds()
        wall = time.perf_counter() - self.wall
        if None in (core, mine, self.core_before, self.server_before) or wall <= 0:
            return None
        assert core is not None and mine is not None
        assert self.core_before is not None and self.server_before is not None
        return max(0.0, (core - self.core_before) - (mine - self.server_before)) / wall


def timed(
    server: Server,
    loop: asyncio.AbstractEventLoop,
    work: Coroutine[Any, Any, Outcomes],
    **extra: Any,
) -> dict[str, Any]:
    """Run one load; its summary with the server's CPU share and CPU per answered request
    (read from /proc around the run)."""
    others = Others(server)
    before, wall = server.cpu_seconds(), time.perf_counter()
    outcomes = run(loop, work)
    wall = time.perf_counter() - wall
    after = server.cpu_seconds()
    figures = {**outcomes.summary(), **extra, "others_on_server_core": others.share()}
    if before is not None and after is not None and wall > 0:
        figures["server_cpu_share"] = (after - before) / wall
        if figures["per_second"]:
            figures["server_cpu_ms_per_request"] = (
                1000 * (after - before) / wall / figures["per_second"]
            )
    return figures
