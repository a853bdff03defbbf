"""Which machine a benchmark ran on: CPU, cores, memory, Python, library versions, thread knobs.

Shared by every script in ``benchmarks/`` so that each prints its figures with the machine that
produced them (STYLE.md, habit 10). Linux files are read where present; elsewhere the fields
say "unknown" rather than failing.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

#: Distributions whose versions change benchmark figures.
LIBRARIES = ("aisle", "polars", "duckdb", "pandas", "pandera", "numpy", "pyarrow", "torch",
             "lightgbm", "tantivy", "usearch")  # fmt: skip
#: Environment variables that cap or pin the threads of the native libraries.
THREAD_VARIABLES = (
    "POLARS_MAX_THREADS",
    "RAYON_NUM_THREADS",
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)
_MIB = 1024 * 1024


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text()
    except OSError:
        return None


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else what the platform module says."""
    text = _read("/proc/cpuinfo") or ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Hardware", "cpu model"):
            return value.strip()
    return platform.processor() or "unknown"


def memory_total_mib() -> int | None:
    """Physical memory (MemTotal of /proc/meminfo) in MiB."""
    text = _read("/proc/meminfo") or ""
    for line in text.splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024  # the file counts kB
    return None


def cgroup_limits() -> dict[str, Any]:
    """CPU and memory limits of the container (cgroup v2), when it sets any."""
    limits: dict[str, Any] = {}
    cpu = (_read("/sys/fs/cgroup/cpu.max") or "").split()
    if len(cpu) == 2 and cpu[0] != "max":
        limits["cpus"] = round(int(cpu[0]) / int(cpu[1]), 2)
    memory = (_read("/sys/fs/cgroup/memory.max") or "").strip()
    if memory.isdigit():
        limits["memory_mib"] = int(memory) // _MIB
    return limits


def library_versions(names: tuple[str, ...] = LIBRARIES) -> dict[str, str]:
    """Installed version of each distribution ("absent" when it is not installed)."""
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def load_average() -> list[float] | None:
    """1, 5 and 15-minute load averages: other work on the machine skews every timing."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def cpu_busy_seconds() -> float | None:
    """CPU seconds spent busy by all cores since boot (/proc/stat), for measuring other work."""
    fields = (_read("/proc/stat") or "").split("\n", 1)[0].split()
    if len(fields) < 8 or fields[0] != "cpu":
        return None
    user, nice, system, _idle, _iowait, irq, softirq = (int(x) for x in fields[1:8])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def cpu_busy_share(seconds: float = 0.5) -> float | None:
    """Share of all cores' time spent busy over the next ``seconds`` (the load right now;
    the load average lags by a minute)."""
    before = cpu_busy_seconds()
    time.sleep(seconds)
    after = cpu_busy_seconds()
    if before is None or after is None:
        return None
    return (after - before) / (seconds * (os.cpu_count() or 1))


def busy(info: dict[str, Any], threshold: float = 0.10) -> bool:
    """True when other work held more than ``threshold`` of the CPU at ``describe()`` time."""
    share = info.get("busy_share")
    return share is not None and share > threshold


def describe() -> dict[str, Any]:
    """Everything about this machine that a benchmark figure depends on, as one JSON object."""
    affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": len(affinity) if affinity is not None else os.cpu_count(),
        "memory_mib": memory_total_mib(),
        "cgroup": cgroup_limits(),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "libraries": library_versions(),
        "threads_env": {k: os.environ[k] for k in THREAD_VARIABLES if k in os.environ},
        "load_average": load_average(),
        "busy_share": cpu_busy_share(),
    }


def render(info: dict[str, Any]) -> str:
    """``describe()`` as a few human lines, for the head of a benchmark's output."""
    memory = info["memory_mib"]
    memory_text = f"{memory / 1024:.1f} GiB" if memory else "unknown"
    cores = f"{info['cores']} cores"
    if info["cores_usable"] != info["cores"]:
        cores += f" ({info['cores_usable']} usable)"
    limits = info["cgroup"]
    if limits:
        cores += ", cgroup " + ", ".join(f"{k}={v}" for k, v in limits.items())
    libraries = ", ".join(f"{k} {v}" for k, v in info["libraries"].items())
    threads = ", ".join(f"{k}={v}" for k, v in info["threads_env"].items()) or "none set"
    load = info.get("load_average")
    load_text = " / ".join(f"{x:.2f}" for x in load) + " (1/5/15 min)" if load else "unknown"
    if info.get("busy_share") is not None:
        load_text += f", CPU busy now {info['busy_share']:.0%}"
    if busy(info):
        load_text += "  WARNING: the machine is busy; timings are skewed"
    return "\n".join(
        [
            f"machine:   {info['cpu']}, {cores}, {memory_text} memory",
            f"python:    {info['implementation']} {info['python']} on {info['platform']}",
            f"libraries: {libraries}",
            f"threads:   {threads}",
            f"load:      {load_text}",
        ]
    )


if __name__ == "__main__":
    print(render(describe()))
