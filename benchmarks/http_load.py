"""A small HTTP/1.1 load generator on asyncio streams: keep-alive connections, a closed loop
for throughput, an open loop (fixed arrival rate) for latency, every outcome kept.

Raw streams rather than an HTTP client library: a request is bytes prepared once, an answer
is a status line, headers and a Content-Length body, so the generator spends its core on
the wire and not on itself (its own ceiling is measured against ``stub``, a server that
answers every request with the same bytes). Latency in the open loop runs from the moment a
request was due, not from when a connection was free to send it: a slow server shows as
latency, not as a lower arrival rate (no coordinated omission).

    python benchmarks/http_load.py stub PORT     # the trivial server, for the ceiling
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np

#: Seconds an answer may take before the request counts as failed.
TIMEOUT = 10.0
#: A connection idle this long (seconds) is replaced before use: uvicorn closes keep-alive
#: connections idle for 5 s, and a request sent as it does would fail (httpx's pool expires
#: them after 5 s the same way).
KEEP_ALIVE = 4.0
#: The open loop's dispatcher wakes this often (seconds) to send what has fallen due.
TICK = 0.0005
STUB_ANSWER = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 15\r\n"
    b'\r\n{"status":"ok"}'
)


@dataclass(frozen=True)
class Request:
    """One request on the wire, prepared once."""

    label: str
    wire: bytes


def request(
    label: str, method: str, target: str, body: bytes = b"", content_type: str = "application/json"
) -> Request:
    """``method target`` with ``body`` as HTTP/1.1 bytes (keep-alive, the default)."""
    head = f"{method} {target} HTTP/1.1\r\nhost: 127.0.0.1\r\nuser-agent: aisle-bench\r\n"
    if body or method in ("POST", "PUT"):
        head += f"content-type: {content_type}\r\ncontent-length: {len(body)}\r\n"
    return Request(label, head.encode("latin-1") + b"\r\n" + body)


class AnswerError(Exception):
    """The server's bytes were not an HTTP/1.1 answer this client reads."""


class Connection:
    """One keep-alive connection: a request, then its answer, in turn."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._used = time.perf_counter()

    async def call(self, wire: bytes) -> tuple[int, bytes]:
        """Send ``wire``; the answer's status and body (the connection opens on first use)."""
        idle = time.perf_counter() - self._used
        if self._reader is not None and (idle > KEEP_ALIVE or self._reader.at_eof()):
            self.close()  # as a pool would: the server may have closed it (its keep-alive ran out)
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        assert self._reader is not None
        self._writer.write(wire)
        if len(wire) > 65536:  # only big bodies can fill the socket buffer
            await self._writer.drain()
        head = await self._reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 "):
            raise AnswerError(f"not an HTTP/1.1 answer: {head[:40]!r}")
        status = int(head[9:12])
        lower = head.lower()
        start = lower.find(b"content-length:")
        if start >= 0:
            end = lower.find(b"\r\n", start)
            body = await self._reader.readexactly(int(lower[start + 15 : end]))
        elif b"transfer-encoding: chunked" in lower:
            body = await self._chunks()
        else:
            raise AnswerError("an answer without a length")
        if b"connection: close" in lower:
            self.close()
        self._used = time.perf_counter()
        return status, body

    async def _chunks(self) -> bytes:
        assert self._reader is not None
        parts = []
        while True:
            size = int((await self._reader.readuntil(b"\r\n")).split(b";")[0], 16)
            parts.append(await self._reader.readexactly(size + 2))
            if size == 0:
                return b"".join(p[:-2] for p in parts)

    def close(self) -> None:
        """Drop the socket (the next call opens a new one)."""
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None


@dataclass
class Outcomes:
    """Every request of a run: when it was due or sent, its latency, its status (0: no
    answer), and why those without an answer failed."""

    label: str
    due: list[float] = field(default_factory=list)
    latency: list[float] = field(default_factory=list)
    status: list[int] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0  # the measured window
    client_cpu_seconds: float = 0.0

    def add(self, due: float, latency: float, status: int) -> None:
        """One outcome."""
        self.due.append(due)
        self.latency.append(latency)
        self.status.append(status)

    def failed(self, start: float = -np.inf, end: float = np.inf) -> int:
        """Requests due in [start, end) that got no answer or a 5xx/4xx."""
        due, status = np.asarray(self.due), np.asarray(self.status)
        inside = (due >= start) & (due < end)
        return int(((status < 200) | (status >= 400))[inside].sum())

    def summary(self) -> dict[str, Any]:
        """Count, rate, failures, statuses and latency percentiles (ms, answered requests)."""
        status = np.asarray(self.status, dtype=np.int64)
        latency = 1000 * np.asarray(self.latency)
        ok = (status >= 200) & (status < 400)
        answered = latency[ok] if ok.any() else np.zeros(1)
        figures: dict[str, Any] = {
            "requests": len(status),
            "per_second": len(status) / self.seconds if self.seconds else 0.0,
            "failed": int((~ok).sum()),
            "statuses": {str(k): int(v) for k, v in Counter(status.tolist()).items()},
            "failures": dict(self.failures),
            "client_cpu_share": self.client_cpu_seconds / self.seconds if self.seconds else 0.0,
        }
        if len(status) and self.client_cpu_seconds:
            figures["client_us_per_request"] = 1e6 * self.client_cpu_seconds / len(status)
        for name, q in (("p50", 50), ("p90", 90), ("p95", 95), ("p99", 99), ("p999", 99.9)):
            figures[f"{name}_ms"] = float(np.percentile(answered, q))
        figures["mean_ms"] = float(answered.mean())
        figures["max_ms"] = float(answered.max())
        return figures


async def _attempt(
    connection: Connection, wire: bytes, timeout: float, outcomes: Outcomes
) -> tuple[int, bytes]:
    try:
        return await asyncio.wait_for(connection.call(wire), timeout)
    except (
        TimeoutError,
        OSError,
        asyncio.IncompleteReadError,
        asyncio.LimitOverrunError,
        AnswerError,
        ValueError,
    ) as error:
        outcomes.failures[type(error).__name__] += 1
        connection.close()
        return 0, b""


Answered = Callable[[Request, int, bytes], None]


async def closed_loop(
    host: str,
    port: int,
    requests: Iterator[Request],
    *,
    connections: int,
    seconds: float,
    warmup: float = 1.0,
    label: str = "",
    answered: Answered | None = None,
) -> Outcomes:
    """``connections`` clients, each sending its next request as soon as the last is answered,
    for ``warmup`` + ``seconds``; only the last ``seconds`` count."""
    outcomes = Outcomes(label)
    started = time.perf_counter()
    counted_from, end = started + warmup, started + warmup + seconds

    async def client() -> None:
        connection = Connection(host, port)
        try:
            while (sent := time.perf_counter()) < end:
                wanted = next(requests)
                status, body = await _attempt(connection, wanted.wire, TIMEOUT, outcomes)
                if answered is not None:
                    answered(wanted, status, body)
                if sent >= counted_from:
                    outcomes.add(sent, time.perf_counter() - sent, status)
        finally:
            connection.close()

    cpu = time.process_time()
    await asyncio.gather(*(client() for _ in range(connections)))
    outcomes.seconds = time.perf_counter() - counted_from
    outcomes.client_cpu_seconds = (time.process_time() - cpu) * seconds / (warmup + seconds)
    return outcomes


async def open_loop(
    host: str,
    port: int,
    requests: Iterator[Request],
    *,
    rate: float,
    seconds: float,
    connections: int = 64,
    label: str = "",
    timeout: float = TIMEOUT,
    answered: Answered | None = None,
    measure_cpu: bool = True,
) -> Outcomes:
    """Requests due at a fixed ``rate`` per second for ``seconds``, sent on up to
    ``connections`` connections; latency counts from when each was due."""
    outcomes = Outcomes(label)
    due: asyncio.Queue[tuple[float, Request] | None] = asyncio.Queue()
    started = time.perf_counter()

    async def dispatcher() -> None:
        sent = 0
        total = int(rate * seconds)
        while sent < total:
            now = time.perf_counter()
            falling = min(total, int((now - started) * rate) + 1)
            for number in range(sent, falling):
                due.put_nowait((started + number / rate, next(requests)))
            sent = falling
            await asyncio.sleep(max(0.0, started + sent / rate - time.perf_counter(), TICK))
        for _ in range(connections):
            due.put_nowait(None)

    async def client() -> None:
        connection = Connection(host, port)
        try:
            while (item := await due.get()) is not None:
                when, wanted = item
                status, body = await _attempt(connection, wanted.wire, timeout, outcomes)
                if answered is not None:
                    answered(wanted, status, body)
                outcomes.add(when, time.perf_counter() - when, status)
        finally:
            connection.close()

    cpu = time.process_time()
    await asyncio.gather(dispatcher(), *(client() for _ in range(connections)))
    outcomes.seconds = max(seconds, time.perf_counter() - started)
    if measure_cpu:
        outcomes.client_cpu_seconds = time.process_time() - cpu
    return outcomes


def cycle(requests: Iterable[Request]) -> Iterator[Request]:
    """The requests over and over, in order."""
    return itertools.cycle(list(requests))


def new_loop() -> asyncio.AbstractEventLoop:
    """uvloop's event loop where it is installed (as uvicorn uses), else asyncio's."""
    try:
        import uvloop

        return uvloop.new_event_loop()
    except ImportError:
        return asyncio.new_event_loop()


# -- the stub: the generator's own ceiling ------------------------------------------------------


class _Stub(asyncio.Protocol):
    """Answers each request (headers, then Content-Length bytes) with the same bytes."""

    def __init__(self) -> None:
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        answers = 0
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head = self.buffer[:end].lower()
            start = head.find(b"content-length:")
            length = (
                int(
                    head[
                        start + 15 : head.find(b"\r\n", start)
                        if head.find(b"\r\n", start) >= 0
                        else len(head)
                    ]
                )
                if start >= 0
                else 0
            )
            if len(self.buffer) < end + 4 + length:
                break
            self.buffer = self.buffer[end + 4 + length :]
            answers += 1
        if answers and self.transport is not None:
            self.transport.write(STUB_ANSWER * answers)


def run_stub(port: int) -> None:
    """Serve the stub on loopback until killed."""
    loop = new_loop()
    server = loop.run_until_complete(loop.create_server(_Stub, "127.0.0.1", port))
    with contextlib.suppress(KeyboardInterrupt):
        loop.run_forever()
    server.close()


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "stub":
        run_stub(int(sys.argv[2]))
    else:
        print(__doc__)
