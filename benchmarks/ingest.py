"""Ingest throughput: aisle end to end on UCI Online Retail, a 10x replay, and a pandas baseline.

The targets (issue): the whole UCI Online Retail file ingested, validated and pseudonymised at
>= 200,000 rows/s end to end on the 2-core reference machine with peak RSS <= 2 GiB; a file ten
times larger, made by replaying it with shifted ids and times, keeps the same rate (cost linear
in rows). Side by side, the same checks written with pandas + pandera's pandas backend
(``pandas_baseline.py``) give the baseline, and the script prints the ratio.

Every run is a fresh subprocess of this script (``--child aisle|pandas``) with a fresh store, so
peak RSS is per run and imports are paid alike; the time is taken inside the child around the
import alone (for aisle: the ``ingest()`` call, which opens the store, reads, pseudonymises,
validates, writes, commits and closes), and the child's wall time with interpreter start-up is
reported beside it.

    .venv/bin/python benchmarks/ingest.py                 # table, ratios, PASS/FAIL lines
    .venv/bin/python benchmarks/ingest.py --json          # one JSON object on stdout
    .venv/bin/python benchmarks/ingest.py --repeat 5 --pandas-10x
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from harness import (
    Column,
    check,
    emit_figures,
    log,
    other_load_warning,
    outcome,
    spawn,
    table_header,
    table_row,
    timing_summary,
    verdict_lines,
)
from machine import describe, render
from pandas_baseline import ingest_with_pandas

TARGET_ROWS_PER_SECOND = 200_000
TARGET_PEAK_RSS_MIB = 2048
LINEAR_TOLERANCE = 0.20  # the 10x rate may differ from the 1x rate by this fraction
ADAPTER = "uci-online-retail"
UCI_FILE = Path("uci-online-retail") / "transactions.csv.gz"
# How the 10x file replays the original: copy k shifts every id and time by k steps.
REPLAYS = 10
INVOICE_STEP = 1_000_000
CUSTOMER_STEP = 100_000
DAYS_STEP = 400  # 2010-12 + 9 * 400 days is 2020-10: still in the past
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
FATES = ("input", "accepted", "quarantined", "duplicates")


# --- the data ----------------------------------------------------------------------------------


def find_source() -> Path | None:
    """The shared UCI file: $AISLE_DATA, else ../shared/data (from here or from the repo)."""
    from aisle.datasets import shared_data_dir

    candidates = [shared_data_dir() / UCI_FILE]
    if "AISLE_DATA" not in os.environ:
        candidates.append(Path(__file__).resolve().parents[2] / "shared" / "data" / UCI_FILE)
    return next((path for path in candidates if path.exists()), None)


def build_replay(source: Path, target: Path, copies: int = REPLAYS) -> int:
    """Write ``copies`` replays of ``source`` to ``target`` (gzip CSV, same header); the rows.

    Copy k gets invoice numbers + k * 1,000,000 (the letter prefix, such as the "C" of a
    cancellation, kept), customer ids + k * 100,000 (empty stays empty) and times + k * 400
    days; stock codes are unchanged, so the catalog is the same. Copy 0 is the original.
    """
    import polars as pl

    raw = pl.read_csv(source, infer_schema=False)
    invoice = pl.col("InvoiceNo").str.strip_chars()
    prefix = invoice.str.extract(r"^(\D*)", 1)
    number = invoice.str.extract(r"(\d+)$", 1).cast(pl.Int64, strict=False)
    customer = pl.col("CustomerID").str.strip_chars()
    customer_number = customer.cast(pl.Float64, strict=False).cast(pl.Int64, strict=False)
    stamp = pl.col("InvoiceDate").str.strptime(pl.Datetime("us"), TIME_FORMAT, strict=False)

    def replay(k: int) -> pl.DataFrame:
        if k == 0:
            return raw
        return raw.with_columns(
            pl.coalesce(
                prefix + (number + k * INVOICE_STEP).cast(pl.String), invoice + f"-{k}"
            ).alias("InvoiceNo"),
            pl.when(customer.is_null() | (customer == ""))
            .then(pl.col("CustomerID"))
            .otherwise(
                pl.coalesce(
                    (customer_number + k * CUSTOMER_STEP).cast(pl.String), customer + f"-{k}"
                )
            )
            .alias("CustomerID"),
            pl.coalesce(
                (stamp + pl.duration(days=k * DAYS_STEP)).dt.strftime(TIME_FORMAT),
                pl.col("InvoiceDate"),
            ).alias("InvoiceDate"),
        )

    replayed = pl.concat([replay(k) for k in range(copies)])
    replayed.write_csv(target, compression="gzip", compression_level=6)
    return replayed.height


# --- the children: one import each -----------------------------------------------------------


#: aisle's progress messages, by first word, and the stage each one opens.
AISLE_STAGES = {
    "reading": "read + pseudonymise",
    "building": "catalog",
    "checking": "events: check, write, profile, commit, close",
}


def _stages(started: float, marks: list[tuple[str, float]], finished: float) -> dict[str, float]:
    """Seconds per stage, from the times aisle reported progress at."""
    names = ["open store"] + [AISLE_STAGES.get(m.split()[0], m.split()[0]) for m, _ in marks]
    times = [started, *(t for _, t in marks), finished]
    return {name: times[i + 1] - times[i] for i, name in enumerate(names)}


def aisle_child(source: Path, home: Path) -> dict[str, Any]:
    """One aisle import, end to end, into a fresh store; its figures."""
    from aisle.config import Settings
    from aisle.pipeline import ingest

    settings = Settings(home=home)  # the secret comes from AISLE_SECRET_KEY
    marks: list[tuple[str, float]] = []
    started = time.perf_counter()
    result = ingest(
        "events",
        source,
        ADAPTER,
        settings,
        progress=lambda stage: marks.append((stage, time.perf_counter())),
    )
    seconds = time.perf_counter() - started
    products = result.derived[0] if result.derived else None
    return {
        "seconds": seconds,
        "stages": _stages(started, marks, started + seconds),
        "input": result.input,
        "accepted": result.accepted,
        "quarantined": result.quarantined,
        "duplicates": result.duplicates,
        "reasons": dict(sorted(result.reasons.items())),
        "products": {
            "accepted": products.accepted if products else 0,
            "quarantined": products.quarantined if products else 0,
        },
    }


def run_child(engine: str, source: Path, home: Path) -> None:
    """Entry point of a child: run one import and print its figures as one JSON line."""
    home.mkdir(parents=True, exist_ok=True)
    emit_figures((aisle_child if engine == "aisle" else ingest_with_pandas)(source, home))


# --- the parent: runs, summaries, the report ---------------------------------------------------


def spawn_import(engine: str, source: Path, home: Path, secret: str) -> dict[str, Any]:
    """One import in a fresh interpreter; its figures, with the child's wall time beside them."""
    arguments = ["--child", engine, "--file", str(source), "--home", str(home)]
    run = spawn(Path(__file__).resolve(), arguments, {"AISLE_SECRET_KEY": secret})
    shutil.rmtree(home, ignore_errors=True)
    return {"engine": engine, **run}


#: The keys of a summary after its engine, file, runs and failures, in the report's order.
SUMMARY_KEYS = (
    "rows",
    "median_seconds",
    "min_seconds",
    "max_seconds",
    "rows_per_second",
    "median_wall_seconds",
    "peak_rss_mib",
    "fates",
    "reasons",
    "products",
    "seconds",
    "median_cpu_seconds",
    "stages",
    "other_load",
)


def summarise(engine: str, label: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median, min and max of the runs of one engine on one file."""
    ok = [r for r in runs if r["ok"]]
    summary: dict[str, Any] = {
        "engine": engine,
        "file": label,
        "runs": len(ok),
        "failed": [r["error"] for r in runs if not r["ok"]],
    }
    if not ok:
        return summary
    timing = timing_summary(ok)
    first = ok[0]
    figures = {
        **timing,
        "rows": first["input"],
        "rows_per_second": first["input"] / timing["median_seconds"],
        "fates": {k: first[k] for k in FATES},
        "reasons": first["reasons"],
        "products": first["products"],
    }
    summary.update((key, figures[key]) for key in SUMMARY_KEYS)
    return summary


def evaluate(results: dict[str, dict[str, Any]]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The ratios and the PASS/FAIL verdicts against the issue's targets."""
    aisle, pandas = results.get("aisle 1x", {}), results.get("pandas 1x", {})
    aisle_10x = results.get("aisle 10x", {})
    ratios: dict[str, Any] = {}
    checks: list[dict[str, Any]] = []
    if "rows_per_second" in aisle:
        rate = aisle["rows_per_second"]
        checks.append(
            check(
                f"aisle 1x >= {TARGET_ROWS_PER_SECOND:,} rows/s",
                rate >= TARGET_ROWS_PER_SECOND,
                f"{rate:,.0f} rows/s",
            )
        )
        rss = aisle["peak_rss_mib"]
        checks.append(
            check(
                f"aisle 1x peak RSS <= {TARGET_PEAK_RSS_MIB:,} MiB",
                rss <= TARGET_PEAK_RSS_MIB,
                f"{rss:,.0f} MiB",
            )
        )
    if "rows_per_second" in aisle and "rows_per_second" in pandas:
        ratios["aisle_over_pandas_speed"] = pandas["median_seconds"] / aisle["median_seconds"]
    if "rows_per_second" in aisle and "rows_per_second" in aisle_10x:
        linear = aisle_10x["rows_per_second"] / aisle["rows_per_second"]
        ratios["rate_10x_over_1x"] = linear
        ratios["rss_10x_over_1x"] = aisle_10x["peak_rss_mib"] / aisle["peak_rss_mib"]
        # seconds = fixed + rows / marginal rate, through the two medians
        per_row = (aisle_10x["median_seconds"] - aisle["median_seconds"]) / (
            aisle_10x["rows"] - aisle["rows"]
        )
        ratios["fixed_seconds"] = aisle["median_seconds"] - per_row * aisle["rows"]
        ratios["marginal_rows_per_second"] = 1 / per_row if per_row > 0 else None
        checks.append(
            check(
                f"aisle 10x rate within {LINEAR_TOLERANCE:.0%} of 1x",
                abs(linear - 1) <= LINEAR_TOLERANCE,
                f"10x/1x = {linear:.2f}",
            )
        )
    for label, summary in results.items():
        if summary.get("failed"):
            checks.append(
                check(f"{label}: every run completes", False, "; ".join(summary["failed"]))
            )
    return ratios, checks


def fate_differences(left: dict[str, Any], right: dict[str, Any]) -> list[tuple[str, int, int]]:
    """(name, left, right) for every fate and reason count of two summaries."""
    rows = [(k, left["fates"][k], right["fates"][k]) for k in FATES]
    for reason in sorted(set(left["reasons"]) | set(right["reasons"])):
        rows.append(
            (f"  {reason}", left["reasons"].get(reason, 0), right["reasons"].get(reason, 0))
        )
    for k in ("accepted", "quarantined"):
        rows.append((f"products {k}", left["products"][k], right["products"][k]))
    return rows


#: The table of the report: one row per engine and file.
TABLE = (
    Column("engine", "engine", 7, left=True),
    Column("file", "file", 4, left=True),
    Column("rows", "rows", 10, ","),
    Column("runs", "runs", 4),
    Column("median s", "median_seconds", 9, ".2f"),
    Column("min s", "min_seconds", 7, ".2f"),
    Column("max s", "max_seconds", 7, ".2f"),
    Column("rows/s", "rows_per_second", 9, ",.0f"),
    Column("wall s", "median_wall_seconds", 7, ".2f"),
    Column("cpu s", "median_cpu_seconds", 6, ".2f"),
    Column("peak RSS MiB", "peak_rss_mib", 12, ",.0f"),
    Column("other", "other_load", 5, ".0%"),
)


def render_report(report: dict[str, Any]) -> str:
    """The human form: machine, data, table, fates side by side, ratios, verdicts."""
    lines = [render(report["machine"]), ""]
    data = report["data"]
    lines.append(
        f"data:      {data['source']} ({data['rows_1x']:,} rows, "
        f"{data['bytes_1x'] / 2**20:.1f} MiB gzip)"
    )
    if data.get("rows_10x"):
        lines.append(
            f"           10x replay: {data['rows_10x']:,} rows, "
            f"{data['bytes_10x'] / 2**20:.1f} MiB gzip, built in "
            f"{data['build_seconds_10x']:.1f} s (not timed in any run)"
        )
    lines += ["", *table_header(TABLE)]
    for summary in report["results"].values():
        if summary["runs"]:
            lines.append(table_row(TABLE, summary))
        else:  # the engine and the file, then why
            lines.append(f"{table_row(TABLE[:2], summary)} failed: " + "; ".join(summary["failed"]))
    lines.append(
        "(s: the import alone, timed in the child; wall s: the child process, start-up "
        "and imports included;\n cpu s: the child's user + system CPU; other: the largest share "
        "of the machine's CPU that other processes took during a run)"
    )
    for label, summary in report["results"].items():
        if summary.get("stages"):
            parts = ", ".join(f"{k} {v:.2f}" for k, v in summary["stages"].items())
            lines.append(f"{label} stages (median s): {parts}")
    warning = other_load_warning(report["results"].values())
    if warning:
        lines.append(warning)
    for note in report["notes"]:
        lines.append(f"note: {note}")
    results = report["results"]
    pairs = [
        ("aisle 1x", "pandas 1x", "aisle", "pandas", "fates, 1x"),
        ("aisle 1x", "aisle 10x", "aisle 1x x10", "aisle 10x", "fates, 10x"),
    ]
    for left_key, right_key, left_name, right_name, title in pairs:
        left, right = results.get(left_key, {}), results.get(right_key, {})
        if "fates" not in left or "fates" not in right:
            continue
        scale = 10 if right_key.endswith("10x") else 1
        lines += ["", f"{title:<22} {left_name:>12} {right_name:>12} {'difference':>11}"]
        for name, a, b in fate_differences(left, right):
            expected = a if name.startswith("products") else a * scale
            lines.append(f"{name:<22} {expected:>12,} {b:>12,} {b - expected:>+11,}")
    ratios = report["ratios"]
    lines.append("")
    if "aisle_over_pandas_speed" in ratios:
        lines.append(
            f"speed aisle / pandas+pandera (1x, median to median): "
            f"{ratios['aisle_over_pandas_speed']:.2f}x"
        )
    if "rate_10x_over_1x" in ratios:
        lines.append(
            f"rate 10x / rate 1x (aisle): {ratios['rate_10x_over_1x']:.2f}   "
            f"peak RSS 10x / 1x: {ratios['rss_10x_over_1x']:.2f}"
        )
        if ratios.get("marginal_rows_per_second"):
            lines.append(
                f"aisle cost fitted through 1x and 10x: {ratios['fixed_seconds']:.2f} s fixed "
                f"per import + rows at {ratios['marginal_rows_per_second']:,.0f} rows/s"
            )
    lines += ["", *verdict_lines(report["checks"])]
    return "\n".join(lines)


def benchmark(args: argparse.Namespace, source: Path) -> dict[str, Any]:
    """Every run the options ask for; the report as one JSON-ready object."""
    machine = describe()  # before the runs, so its load average is other work's alone
    secret = secrets.token_hex(32)
    results: dict[str, dict[str, Any]] = {}
    notes: list[str] = []
    data: dict[str, Any] = {"source": str(source), "bytes_1x": source.stat().st_size}
    with tempfile.TemporaryDirectory(prefix="aisle-bench-") as scratch:
        work = Path(scratch)
        runs: dict[str, list[dict[str, Any]]] = {"aisle": [], "pandas": []}
        for i in range(args.repeat):  # interleaved, so a drift of the machine hits both
            for engine, engine_runs in runs.items():
                run = spawn_import(engine, source, work / f"{engine}-1x-{i}", secret)
                engine_runs.append(run)
                log(f"{engine} 1x run {i + 1}/{args.repeat}: {outcome(run)}")
        for engine, engine_runs in runs.items():
            results[f"{engine} 1x"] = summarise(engine, "1x", engine_runs)
        data["rows_1x"] = results["aisle 1x"].get("rows") or results["pandas 1x"].get("rows")
        if args.repeat_10x > 0:
            replay = work / "transactions-10x.csv.gz"
            started = time.perf_counter()
            log(f"building the {REPLAYS}x replay ...")
            data["rows_10x"] = build_replay(source, replay)
            data["build_seconds_10x"] = time.perf_counter() - started
            data["bytes_10x"] = replay.stat().st_size
            engines = ["aisle", "pandas"] if args.pandas_10x else ["aisle"]
            for engine in engines:
                engine_runs = []
                for i in range(args.repeat_10x):
                    run = spawn_import(engine, replay, work / f"{engine}-10x-{i}", secret)
                    engine_runs.append(run)
                    log(f"{engine} 10x run {i + 1}/{args.repeat_10x}: {outcome(run)}")
                results[f"{engine} 10x"] = summarise(engine, "10x", engine_runs)
            pandas_1x = results["pandas 1x"].get("median_seconds")
            if not args.pandas_10x and pandas_1x:
                notes.append(
                    f"pandas skipped on 10x: about {pandas_1x * REPLAYS * args.repeat_10x:.0f} s "
                    "at its 1x rate; pass --pandas-10x to run it"
                )
        else:
            notes.append("10x replay skipped (--repeat-10x 0)")
    ratios, checks = evaluate(results)
    return {
        "machine": machine,
        "data": data,
        "results": results,
        "ratios": ratios,
        "checks": checks,
        "notes": notes,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per engine on the 1x file")
    parser.add_argument(
        "--repeat-10x",
        type=int,
        default=1,
        help="aisle runs on the 10x replay (0 skips the replay)",
    )
    parser.add_argument(
        "--pandas-10x",
        action="store_true",
        help="run the pandas baseline on the 10x replay too (slow)",
    )
    parser.add_argument("--data", type=Path, help="the UCI file (default: the shared copy)")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target fails")
    parser.add_argument("--child", choices=["aisle", "pandas"], help=argparse.SUPPRESS)
    parser.add_argument("--file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--home", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.repeat_10x < 0:
        parser.error("--repeat must be at least 1 and --repeat-10x at least 0")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (or, with --child, one import of it)."""
    args = parse_args(argv)
    if args.child:
        run_child(args.child, args.file, args.home)
        return 0
    source = args.data or find_source()
    if source is None or not source.exists():
        where = args.data or f"$AISLE_DATA or ../shared/data, under {UCI_FILE}"
        log(
            f"ingest benchmark: the UCI Online Retail file is absent ({where}); "
            "set AISLE_DATA to the folder that holds uci-online-retail/ or pass --data FILE"
        )
        return 2
    report = benchmark(args, source)
    print(json.dumps(report, indent=2) if args.json else render_report(report))
    failed = any(not check["pass"] for check in report["checks"])
    return 1 if args.strict and failed else 0


if __name__ == "__main__":
    sys.exit(main())
