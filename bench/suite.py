"""The benchmark suite: every benchmark, one after the other, and one table of their headline figures.

``just bench`` runs it in full (under 15 minutes on a 2-core machine) and writes a new dated section at
the top of ``bench/RESULTS.md``: the machine, the table of headline figures with the issue's goals and
anchors, and each benchmark's whole report (with the command that reproduces it). ``just bench quick``
runs every benchmark in its quick mode (under 2 minutes) and only prints the table, unless
``--results`` names a file.

Each benchmark runs as a child process (its own interpreter, so one's memory or leftover tasks never
colour the next) and ends its output with the line ``bench/summary.py`` defines. The benchmarks run
sequentially: on two cores, two at once would measure each other. One that fails or overruns its time
limit is reported as such and the suite goes on.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import queue
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench_api import cpu_model
from summary import parse

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "RESULTS.md"
INTRO_END = "<!-- suite runs are inserted below this line, newest first -->"


@dataclass(frozen=True)
class Bench:
    """A benchmark script and the time it may take in each mode (seconds; past it, it is stopped)."""

    name: str
    script: str
    limit: float
    quick_limit: float
    title: str


SUITE = [
    Bench("store", "bench_store.py", 200, 25, "store: SQLite beside etcd"),
    Bench("api", "bench_api.py", 150, 25, "API: creates, writes and gets under churn, lists"),
    Bench("watch", "bench_watch.py", 150, 25, "watch fan-out to 1,000 watchers"),
    Bench("scheduler", "bench_scheduler.py", 420, 30, "scheduler: 1,000 hollow nodes, 10,000 pods"),
    Bench("rc", "bench_rc.py", 120, 25, "RC scale-up on hollow nodes, one process"),
    Bench("pods", "bench_pods.py", 180, 30, "pod start on real Podman beside Podman alone"),
    Bench("proxy", "bench_proxy.py", 120, 20, "service proxy on real nftables"),
    Bench("memory", "bench_memory.py", 240, 30, "memory: control plane, agent, hollow node"),
    Bench("dns", "bench_dns.py", 90, 20, "node DNS server"),
    Bench("dashboard", "bench_dashboard.py", 150, 30, "dashboard with 10,000 pods"),
    Bench("load", "bench_load.py", 120, 30, "load: 50 API users mixing writes, lists and watches"),
    Bench("faults", "bench_faults.py", 240, 30, "kill -9 soak: control plane killed mid-creates"),
]


@dataclass
class Outcome:
    bench: Bench
    seconds: float
    returncode: int | None  # None: stopped at its time limit
    output: str
    summary: dict[str, Any] | None


def run_one(bench: Bench, quick: bool) -> Outcome:
    """Run one benchmark, echoing its output as it comes, and keep that output."""
    script = os.path.relpath(HERE / bench.script, ROOT)  # as the reproduce lines print it
    argv = [sys.executable, script] + (["--quick"] if quick else [])
    limit = bench.quick_limit if quick else bench.limit
    print(f"\n=== {bench.name}: {shlex.join(argv)} (limit {limit:.0f} s)", flush=True)
    began = time.monotonic()
    lines: list[str] = []
    with subprocess.Popen(
        argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    ) as proc:
        assert proc.stdout is not None
        code: int | None
        try:
            deadline = began + limit
            for line in _lines_until(proc, deadline):
                lines.append(line)
                print(line, end="", flush=True)
            code = proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            code = None
        finally:
            if proc.poll() is None:
                _stop(proc)
    output = "".join(lines)
    return Outcome(bench, time.monotonic() - began, code, output, parse(output))


def _lines_until(proc: subprocess.Popen[str], deadline: float) -> Iterator[str]:
    """The child's output lines until it closes them or the deadline passes (checked between lines and
    at least once a second through a reader thread)."""
    q: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            q.put(line)
        q.put(None)

    threading.Thread(target=pump, daemon=True).start()
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise subprocess.TimeoutExpired(proc.args, 0)
        try:
            line = q.get(timeout=min(1.0, left))
        except queue.Empty:
            continue
        if line is None:
            return
        yield line


def _stop(proc: subprocess.Popen[str]) -> None:
    """SIGTERM the benchmark's whole session (it may have children: servers, etcd), then SIGKILL."""
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def machine() -> str:
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return (
        f"nproc {os.cpu_count()}, {cpu_model()}, Linux {platform.release()}, "
        f"{platform.python_implementation()} {platform.python_version()}; load average at start {load}"
    )


def _value(figure: dict[str, Any]) -> str:
    value = figure.get("value")
    if value is None:
        return "—"
    unit = figure.get("unit") or ""
    if unit == "bool":
        return "yes" if value else "no"
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}".rstrip("0").rstrip(".")
    return f"{text} {unit}".strip()


def _status(outcome: Outcome) -> str:
    if outcome.returncode is None:
        return "stopped at its time limit"
    if outcome.summary and outcome.summary.get("skipped"):
        return f"skipped: {outcome.summary['skipped']}"
    if outcome.returncode != 0:
        return f"failed (exit {outcome.returncode})"
    if outcome.summary is None:
        return "no summary line"
    return "ok"


def table(outcomes: list[Outcome]) -> list[str]:
    rows = [
        "| benchmark | figure | value | goal | met | anchor |",
        "|---|---|---:|---|---|---|",
    ]
    for o in outcomes:
        figures = (o.summary or {}).get("figures") or []
        if not figures:
            rows.append(f"| {o.bench.name} | ({_status(o)}) | | | | |")
            continue
        for f in figures:
            met = {True: "**yes**", False: "**no**", None: ""}[f.get("met")]
            anchor = (f.get("anchor") or "").replace("|", "\\|")
            rows.append(
                f"| {o.bench.name} | {f['name']} | {_value(f)} | {f.get('goal') or ''} | {met} | {anchor} |"
            )
    return rows


def section(outcomes: list[Outcome], command: str, started: str, info: str, seconds: float) -> str:
    out = [
        f"## {started}: suite run (`{command}`, {seconds / 60:.1f} min)",
        "",
        f"Machine: {info}.",
        "",
        *table(outcomes),
        "",
        "| benchmark | status | time | command |",
        "|---|---|---:|---|",
    ]
    for o in outcomes:
        cmd = (o.summary or {}).get("command") or f".venv/bin/python bench/{o.bench.script}"
        out.append(f"| {o.bench.name} | {_status(o)} | {o.seconds:.0f} s | `{cmd}` |")
    out.append("")
    for o in outcomes:
        report = re.sub(r"^BENCH-SUMMARY .*\n?", "", o.output, flags=re.M).rstrip()
        out += [
            f"<details><summary>{o.bench.name}: {o.bench.title} ({_status(o)})</summary>",
            "",
            "```text",
            report[-20_000:] if report else "(no output)",
            "```",
            "",
            "</details>",
            "",
        ]
    return "\n".join(out)


def insert(results: Path, text: str) -> None:
    """Put a run at the top of the results file (after its introduction), keeping every earlier run."""
    old = results.read_text() if results.exists() else f"# Benchmark results\n\n{INTRO_END}\n"
    if INTRO_END not in old:
        head, sep, rest = old.partition("\n## ")
        old = f"{head.rstrip()}\n\n{INTRO_END}\n" + (f"\n## {rest}" if sep else "")
    head, _, rest = old.partition(INTRO_END)
    results.write_text(f"{head}{INTRO_END}\n\n{text.rstrip()}\n\n{rest.lstrip()}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="suite.py", description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("mode", nargs="?", choices=["full", "quick"], default="full")
    p.add_argument("--only", help="comma-separated benchmark names (default: all)")
    p.add_argument(
        "--results",
        type=Path,
        help="file to insert the run into (default: bench/RESULTS.md for a full run, none for quick)",
    )
    args = p.parse_args(argv)
    quick = args.mode == "quick"
    names = [b.name for b in SUITE]
    chosen = SUITE
    if args.only:
        wanted = [n.strip() for n in args.only.split(",") if n.strip()]
        if unknown := [n for n in wanted if n not in names]:
            p.error(f"unknown benchmark {', '.join(unknown)} (known: {', '.join(names)})")
        chosen = [b for b in SUITE if b.name in wanted]
    started = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    info = machine()
    began = time.monotonic()
    outcomes = [run_one(b, quick) for b in chosen]
    seconds = time.monotonic() - began
    print(f"\n=== suite ({args.mode}) finished in {seconds / 60:.1f} min; {info}\n")
    print("\n".join(table(outcomes)))
    results = args.results or (None if quick else RESULTS)
    if results is not None:
        command = "just bench quick" if quick else "just bench"
        if args.only:
            command = f"just bench {args.mode} --only {args.only}"
        insert(results, section(outcomes, command, started, info, seconds))
        print(f"\nwritten to {results}")
    bad = [o.bench.name for o in outcomes if _status(o) != "ok" and not _status(o).startswith("skipped")]
    if bad:
        print(f"not ok: {', '.join(bad)}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
