"""Service metrics in the Prometheus text format: requests, latency, events, models."""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Final

#: Latency histogram bucket bounds, in seconds.
BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
#: A gauge reading: name (without the aisle_ prefix), labels, value.
Gauge = tuple[str, Mapping[str, str], float]


def _labels(pairs: Mapping[str, str]) -> str:
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in pairs.items())
    return "{" + inner + "}" if inner else ""


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Metrics:
    """Counters and latency histograms kept in memory; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str, int], int] = defaultdict(int)
        self._latency: dict[str, list[int]] = {}
        self._latency_sum: dict[str, float] = defaultdict(float)
        self._counters: dict[tuple[str, tuple[tuple[str, str], ...]], float] = defaultdict(float)

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        """One answered request."""
        with self._lock:
            self._requests[(route, method, status)] += 1
            counts = self._latency.get(route)
            if counts is None:
                counts = self._latency[route] = [0] * (len(BUCKETS) + 1)
            for i, bound in enumerate(BUCKETS):
                if seconds <= bound:
                    counts[i] += 1
                    break
            else:
                counts[-1] += 1
            self._latency_sum[route] += seconds

    def count(self, name: str, amount: float = 1.0, **labels: str) -> None:
        """Add to a counter (``aisle_<name>_total``)."""
        with self._lock:
            self._counters[(name, tuple(sorted(labels.items())))] += amount

    def render(self, gauges: Sequence[Gauge] = ()) -> str:
        """Everything, as Prometheus text (version 0.0.4)."""
        lines = ["# HELP aisle_requests_total Requests answered.",
                 "# TYPE aisle_requests_total counter"]  # fmt: skip
        with self._lock:
            for (route, method, status), n in sorted(self._requests.items()):
                labels = _labels({"route": route, "method": method, "status": str(status)})
                lines.append(f"aisle_requests_total{labels} {n}")
            lines += ["# HELP aisle_request_seconds Request latency.",
                      "# TYPE aisle_request_seconds histogram"]  # fmt: skip
            for route, counts in sorted(self._latency.items()):
                running = 0
                for bound, n in zip([*map(str, BUCKETS), "+Inf"], counts, strict=True):
                    running += n
                    labels = _labels({"route": route, "le": bound})
                    lines.append(f"aisle_request_seconds_bucket{labels} {running}")
                route_label = _labels({"route": route})
                lines.append(f"aisle_request_seconds_sum{route_label} {self._latency_sum[route]}")
                lines.append(f"aisle_request_seconds_count{route_label} {running}")
            names = sorted({name for name, _ in self._counters})
            for name in names:
                lines.append(f"# TYPE aisle_{name}_total counter")
                for (other, pairs), value in sorted(self._counters.items()):
                    if other == name:
                        lines.append(f"aisle_{name}_total{_labels(dict(pairs))} {value:g}")
        typed: set[str] = set()
        for gauge, given, reading in gauges:
            if gauge not in typed:
                typed.add(gauge)
                lines.append(f"# TYPE aisle_{gauge} gauge")
            lines.append(f"aisle_{gauge}{_labels(given)} {reading:g}")
        return "\n".join(lines) + "\n"
