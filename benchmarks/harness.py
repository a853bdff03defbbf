"""How a benchmark runs: a child process per run, medians of the runs, tables and verdicts."""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from machine import cpu_busy_seconds

#: A larger share of the CPU taken by other processes during a run skews its timings.
OTHER_LOAD_WARNING = 0.10


def log(message: str) -> None:
    """Progress for the person watching, on stderr, so that stdout stays the report."""
    print(message, file=sys.stderr, flush=True)


def shared_data(*needed: str) -> Path | None:
    """The shared datasets' folder (``AISLE_DATA``, by default ../shared/data), or None, said
    on stderr, where any of ``needed`` (paths inside it) is missing."""
    shared = Path(os.environ.get("AISLE_DATA", "../shared/data"))
    missing = [name for name in needed if not (shared / name).exists()]
    if missing:
        print(f"shared datasets not found at {shared}: {', '.join(missing)} (set AISLE_DATA)",
              file=sys.stderr)  # fmt: skip
        return None
    return shared


def peak_rss_mib() -> float:
    """This process's peak resident memory so far, in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux counts KiB


# --- the child ---------------------------------------------------------------------------------


def emit_figures(figures: dict[str, Any]) -> None:
    """In a child: print its figures, with its peak RSS, as the JSON line the parent reads."""
    figures["peak_rss_mib"] = peak_rss_mib()
    print(json.dumps(figures))


# --- the parent --------------------------------------------------------------------------------


def spawn(script: Path, arguments: Sequence[str], env: Mapping[str, str]) -> dict[str, Any]:
    """Run ``script`` in a fresh interpreter, its environment plus ``env``; its figures.

    The figures are the last line of the child's stdout (see ``emit_figures``), beside the
    child's wall time, its user + system CPU and the share of the machine's CPU that other
    processes took meanwhile. A child that fails gives ``ok: False`` and the end of its stderr.
    """
    command = [sys.executable, str(script), *arguments]
    busy_before, children_before = cpu_busy_seconds(), resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        command, env={**os.environ, **env}, capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - started
    busy_after, children_after = cpu_busy_seconds(), resource.getrusage(resource.RUSAGE_CHILDREN)
    child_cpu = (children_after.ru_utime - children_before.ru_utime) + (
        children_after.ru_stime - children_before.ru_stime
    )
    # CPU that other processes took while the child ran, as a share of what the machine had
    other_load = None
    if busy_before is not None and busy_after is not None:
        other = max(0.0, busy_after - busy_before - child_cpu)
        other_load = other / (wall * (os.cpu_count() or 1))
    if done.returncode != 0:
        why = (
            f"killed by signal {-done.returncode}"
            if done.returncode < 0
            else (f"exit {done.returncode}")
        )
        if done.returncode == -9:
            why += " (out of memory?)"
        tail = " | ".join(done.stderr.strip().splitlines()[-3:])
        return {"ok": False, "error": f"{why}: {tail}", "wall_seconds": wall}
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    return {
        "ok": True,
        "wall_seconds": wall,
        "child_cpu_seconds": child_cpu,
        "other_load": other_load,
        **figures,
    }


def outcome(run: Mapping[str, Any]) -> str:
    """One run in a few words, for the progress log: its seconds, or why it failed."""
    return f"{run['seconds']:.2f} s" if run["ok"] else str(run["error"])


def timing_summary(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Medians over ``runs`` (successful ones, at least one); min and max of the seconds."""
    seconds = [r["seconds"] for r in runs]
    return {
        "median_seconds": statistics.median(seconds),
        "min_seconds": min(seconds),
        "max_seconds": max(seconds),
        "median_wall_seconds": statistics.median(r["wall_seconds"] for r in runs),
        "peak_rss_mib": max(r["peak_rss_mib"] for r in runs),
        "seconds": seconds,
        "median_cpu_seconds": statistics.median(r["child_cpu_seconds"] for r in runs),
        "stages": {
            name: statistics.median(r["stages"].get(name, 0.0) for r in runs)
            for name in runs[0].get("stages", {})
        },
        "other_load": max((r["other_load"] or 0.0) for r in runs),
    }


# --- the report --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    """One column of a fixed-width table: its title, the key of its value, its format."""

    title: str
    key: str
    width: int
    spec: str = ""  # what follows alignment and width in a format spec: ",", ".2f", ".0%"
    left: bool = False

    @property
    def align(self) -> str:
        """The alignment character of a format spec."""
        return "<" if self.left else ">"


def table_header(columns: Sequence[Column]) -> list[str]:
    """The titles and a rule under them."""
    header = " ".join(f"{c.title:{c.align}{c.width}}" for c in columns)
    return [header, "-" * len(header)]


def table_row(columns: Sequence[Column], row: Mapping[str, Any]) -> str:
    """One row: each column's value, formatted."""
    return " ".join(f"{row[c.key]:{c.align}{c.width}{c.spec}}" for c in columns)


def other_load_warning(summaries: Iterable[Mapping[str, Any]]) -> str | None:
    """A warning when other processes took more than ``OTHER_LOAD_WARNING`` of the CPU."""
    busiest = max((s.get("other_load", 0.0) for s in summaries), default=0.0)
    if busiest <= OTHER_LOAD_WARNING:
        return None
    return (
        f"WARNING: other processes took up to {busiest:.0%} of the CPU during the runs; "
        "the timings are skewed, rerun on an idle machine"
    )


def check(target: str, passed: bool, figure: str) -> dict[str, Any]:
    """A verdict against a target, with the figure it was judged on."""
    return {"target": target, "pass": passed, "figure": figure}


def verdict_lines(checks: Iterable[Mapping[str, Any]]) -> list[str]:
    """One PASS or FAIL line per check."""
    return [f"{'PASS' if c['pass'] else 'FAIL'}  {c['target']}: {c['figure']}" for c in checks]
