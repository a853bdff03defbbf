"""The serving benchmark's verdicts and report: each target judged on what was measured, the
figures as lines for a person, with the machine they ran on."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import machine
import numpy as np
import serve_profile
from harness import check, verdict_lines

TARGETS = {"recommendations": (1000.0, 20.0), "search": (500.0, 50.0)}  # rate /s, p99 ms
EVENTS_PER_S = 50_000
FRESHNESS_P95_S = 1.0
#: Above this share of the server's core taken by other processes, a figure is marked skewed.
SKEWED = 0.10
#: RSS growth allowed over the soak once settled (after the swaps): the larger of these; and
#: the shortest soak whose memory is judged (a shorter trend is noise).
GROWTH_SHARE, GROWTH_MIB = 0.02, 16.0
JUDGED_SOAK_S = 120.0


def memory_trend(
    samples: Sequence[tuple[float, float]], *, settle_from: float, judged: bool
) -> dict[str, Any]:
    """The server's RSS over the soak: start, end, max, and the trend after ``settle_from``
    seconds (past the warm-up and the swaps, which load a second copy of the models): its
    slope (MiB/min) and the growth it fits over that window, judged against the larger of
    ``GROWTH_SHARE`` and ``GROWTH_MIB`` where the soak is long enough to judge."""
    if len(samples) < 3:
        return {"samples": len(samples), "judged": False}
    times = np.asarray([t for t, _ in samples])
    rss = np.asarray([m for _, m in samples])
    window = times >= settle_from
    figures: dict[str, Any] = {
        "samples": len(samples),
        "start_mib": float(rss[0]),
        "end_mib": float(rss[-1]),
        "max_mib": float(rss.max()),
        "series": [[round(t, 1), round(m, 1)] for t, m in samples],
        "judged": judged and int(window.sum()) >= 5,
    }
    if int(window.sum()) >= 3:
        slope = float(np.polyfit(times[window], rss[window], 1)[0])  # MiB per second
        span = float(times[window][-1] - times[window][0])
        base = float(rss[window][0])
        figures.update(
            {
                "settled_from_s": settle_from,
                "settled_mib": base,
                "slope_mib_per_min": 60 * slope,
                "grown_mib": slope * span,
                "allowed_mib": max(GROWTH_SHARE * base, GROWTH_MIB),
            }
        )
        figures["grows"] = figures["grown_mib"] > figures["allowed_mib"]
    else:
        figures["judged"] = False
    return figures


def skew(run: dict[str, Any]) -> str:
    """A warning where other processes took a share of the server's core during the run."""
    others = run.get("others_on_server_core")
    if others is None or others <= SKEWED:
        return ""
    return f" (SKEWED: other processes took {others:.0%} of the server's core)"


def args_size(events: dict[str, Any]) -> str:
    """The events per batch of an events run."""
    return f"{events['input'] // max(1, events['batches']):,}"


def checks(figures: dict[str, Any]) -> list[dict[str, Any]]:
    """A verdict per target, on what was measured."""
    found = []
    for name, (rate, p99) in TARGETS.items():
        if name not in figures:
            continue
        part = figures[name]
        opened, closed = part["open"], part["closed"]
        kept_up = opened["per_second"] >= 0.98 * opened["rate"]
        passed = part["at_target"] and kept_up and opened["failed"] == 0 and opened["p99_ms"] < p99
        found.append(
            check(
                f"{name} >= {rate:,.0f}/s with p99 < {p99:.0f} ms",
                passed,
                f"closed loop {closed['per_second']:,.0f}/s; open loop at {opened['rate']:,.0f}/s: "
                f"p99 {opened['p99_ms']:.1f} ms, {opened['failed']} failed"
                + (skew(opened) or skew(closed)),
            )
        )
    if "events" in figures:
        events = figures["events"]
        found.append(
            check(
                f"event ingest >= {EVENTS_PER_S:,}/s",
                events["events_per_s"] >= EVENTS_PER_S and events["failed"] == 0,
                f"{events['events_per_s']:,.0f} events/s in batches of {args_size(events)} "
                f"from {events.get('senders', 1)} senders"
                + (
                    f"; {figures['events_one_sender']['events_per_s']:,.0f}/s from one"
                    if "events_one_sender" in figures
                    else ""
                )
                + (
                    f"; {figures['events_large']['events_per_s']:,.0f}/s in batches of "
                    f"{args_size(figures['events_large'])}"
                    if "events_large" in figures
                    else ""
                )
                + skew(events),
            )
        )
    if "freshness" in figures:
        fresh = figures["freshness"]["changed_s"]
        found.append(
            check(
                f"freshness p95 < {FRESHNESS_P95_S:.0f} s",
                fresh.get("count", 0) > 0
                and fresh["p95"] < FRESHNESS_P95_S
                and figures["freshness"]["never_changed"] == 0,
                f"p95 {fresh.get('p95', float('nan')):.3f} s",
            )
        )
    if "soak" in figures:
        soaked = figures["soak"]
        found.append(
            check(
                "soak: zero errors",
                soaked["failed"] == 0 and figures.get("server_log", {}).get("errors", 0) == 0,
                f"{soaked['failed']} failed requests, "
                f"{figures.get('server_log', {}).get('errors', 0)} error lines in the server log",
            )
        )
        memory = soaked["memory"]
        if memory.get("judged"):
            found.append(
                check(
                    "soak: no memory growth (fitted over the soak after the swaps, within the "
                    f"larger of {GROWTH_SHARE:.0%} and {GROWTH_MIB:.0f} MiB)",
                    not memory["grows"],
                    f"{memory['grown_mib']:+.1f} MiB from {memory['settled_from_s']:.0f} s "
                    f"(allowed {memory['allowed_mib']:.0f}), slope "
                    f"{memory['slope_mib_per_min']:+.2f} MiB/min",
                )
            )
        around = sum(s["failed_around"] for s in soaked["swaps"])
        statuses = [s["status"] for s in soaked["swaps"]]
        found.append(
            check(
                "hot swap: zero failed requests",
                around == 0 and statuses == [200, 200] and soaked["failed"] == 0,
                f"{around} failed within 1 s of the swaps; swap answers {statuses}",
            )
        )
    return found


# -- the report ---------------------------------------------------------------------------------


def _run_line(name: str, f: dict[str, Any]) -> str:
    cpu = f.get("server_cpu_ms_per_request")
    busy = f.get("server_cpu_share")
    others = f.get("others_on_server_core")
    extra = f", server CPU {busy:.0%}" if busy is not None else ""
    extra += f", others {others:.0%} of its core" if others is not None else ""
    extra += f" ({cpu:.2f} ms/request)" if cpu is not None else ""
    return (
        f"  {name:<24}{f['per_second']:>9,.0f}/s  p50 {f['p50_ms']:6.2f}  p99 "
        f"{f['p99_ms']:6.2f}  max {f['max_ms']:7.1f} ms  failed {f['failed']}, generator "
        f"CPU {f['client_cpu_share']:.0%}{extra}"
    )


def render(figures: dict[str, Any], verdicts: list[dict[str, Any]]) -> str:
    lines = [machine.render(figures["machine"]), f"command:   {figures['command']}"]
    setup = figures.get("setup_s") or {}
    if setup:
        lines.append("home:      " + ", ".join(f"{k} {v:.1f} s" for k, v in setup.items()))
    if "workload" in figures:
        w = figures["workload"]
        lines.append(
            f"workload:  {w['known_users']:,} known customers, {w['new_users']:,} new; "
            f"{w['held_out_queries']:,} held-out queries ({w['distinct_queries']:,} "
            f"distinct); {w['held_out_clicks']:,} held-out clicks"
        )
    if "cores" in figures:
        lines.append(
            f"cores:     server {figures['cores']['server']}, generator "
            f"{figures['cores']['generator']}; server ready in "
            f"{figures.get('server_ready_s', float('nan')):.1f} s, RSS "
            f"{figures.get('rss_ready_mib') or 0:,.0f} MiB"
        )
    lines.append("\nruns (per second = answered; latency ms)")
    for key, name in (("ceiling", "generator ceiling (stub)"), ("healthz", "aisle /healthz")):
        if key in figures:
            lines.append(_run_line(name, figures[key]))
    cost = figures.get("ceiling", {}).get("client_us_per_request")
    if cost:
        lines.append(
            f"  (the generator spends {cost:.0f} us of CPU per request: up to "
            f"~{1e6 / cost:,.0f} requests/s on its core, whatever the server)"
        )
    for name in TARGETS:
        if name in figures:
            part = figures[name]
            lines.append(_run_line(f"{name}, closed", part["closed"]))
            label = f"{name}, open @{part['open']['rate']:,.0f}"
            lines.append(_run_line(label, part["open"]))
    for key in ("events", "events_one_sender", "events_large"):
        if key not in figures:
            continue
        e = figures[key]
        size = e["input"] // max(1, e["batches"])
        label = f"events, {e['batches']} x {size:,} / {e.get('senders', 1)}"
        lines.append(
            f"  {label:<24}{e['events_per_s']:>9,.0f} events/s "
            f"({e['events_per_s_after_first']:,.0f}/s after the "
            f"first); {e['accepted']:,} accepted, {e['quarantined']:,} quarantined "
            f"{e['reasons'] or ''}, {e['duplicates']:,} duplicates; batch seconds "
            f"{', '.join(f'{s:.2f}' for s in e['batch_seconds'])}; others "
            f"{e.get('others_on_server_core') or 0:.0%} of the server's core"
        )
    if "freshness" in figures:
        f = figures["freshness"]
        c, p = f["changed_s"], f["post_s"]
        lines.append(
            f"  freshness               {c.get('count', 0)} customers: changed after p50 "
            f"{c.get('p50', float('nan')):.3f} s, p95 {c.get('p95', float('nan')):.3f} "
            f"s, max {c.get('max', float('nan')):.3f} s; never {f['never_changed']}; "
            f"the POST itself p50 {p.get('p50', float('nan')) * 1000:.1f} ms"
        )
    if "soak" in figures:
        s = figures["soak"]
        r = s["rates"]
        lines.append(
            f"\nsoak {s['seconds']:.0f} s at {r['recommendations']:,.0f} recommendations/s"
            f", {r['search']:,.0f} searches/s, {r['events']:,.0f} events/s (batches of "
            f"{r['event_batch']}); server CPU {s['server_cpu_share'] or 0:.0%}, "
            f"generator {s['client_cpu_share']:.0%}, others "
            f"{s['others_on_server_core'] or 0:.0%} of the server's core; {s['failed']} failed"
        )
        for label, summary in s["streams"].items():
            lines.append(_run_line(label, summary))
        for swap in s["swaps"]:
            lines.append(
                f"  swap {swap['path']} at {swap['at_s']:.0f} s: {swap['status']} in "
                f"{swap['seconds']:.2f} s, promoted {swap['promoted'] or '-'}, "
                f"{swap['failed_around']} failed within 1 s, recommendations p99 "
                f"{swap['recommendations_p99_ms_around'] or float('nan'):.1f} ms "
                "around it"
            )
        m = s["memory"]
        if "start_mib" in m:
            line = (
                f"  server RSS: start {m['start_mib']:,.0f} MiB, end {m['end_mib']:,.0f}, max "
                f"{m['max_mib']:,.0f} ({m['samples']} samples)"
            )
            if "slope_mib_per_min" in m:
                line += (
                    f"; from {m['settled_from_s']:.0f} s (after the swaps): "
                    f"{m['settled_mib']:,.0f} MiB, slope {m['slope_mib_per_min']:+.2f} MiB/min, "
                    f"fitted growth {m['grown_mib']:+.1f} MiB"
                )
            if not m["judged"]:
                line += f"; not judged (soak under {JUDGED_SOAK_S:.0f} s)"
            lines.append(line)
    log_info = figures.get("server_log")
    if log_info:
        lines.append(
            f"\nserver log: {log_info['errors']} error lines, "
            f"{log_info['access_lines']} access-log lines"
        )
    if "profile" in figures:
        lines += ["", *serve_profile.render(figures["profile"])]
    lines += ["", *verdict_lines(verdicts)]
    after = figures.get("machine_after")
    if after:
        lines.append(
            f"\nload after the run: {' / '.join(map(str, after['load_average'] or []))}"
            f" (1/5/15 min), CPU busy now {after['busy_share'] or 0:.0%}"
        )
    return "\n".join(lines)
