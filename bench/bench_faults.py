"""kill -9 soak: several SIGKILLs of the control plane in a row during creates from many clients.

The longer version of ``tests/faults/test_controlplane_crash.py`` (same scenario,
:func:`tests.faults.crash.run_crash`): ``--total`` ConfigMap creates from ``--clients`` clients, with
``--watchers`` watchers following them, and ``--kills`` SIGKILLs of the ``pea controlplane`` child
spread evenly over the run, each followed by a restart on the same data directory. Reported: creates
acknowledged before each kill, creates in flight (and how many of them had been committed), acknowledged
creates lost (goal 0), torn or stray objects, watch duplicates and gaps (goal 0), restart times, and the
SQLite integrity check after each kill. Default 5,000 creates, 16 clients, 4 watchers, 5 kills (about
20 s here); ``--quick`` 1,000 creates, 8 clients, 2 watchers, 2 kills (about 15 s).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from summary import Figure, emit  # noqa: E402

from tests.faults.crash import CrashResult, run_crash  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--total", type=int, default=5000, help="ConfigMaps created in all (default 5,000)")
    p.add_argument("--clients", type=int, default=16, help="concurrent creating clients (default 16)")
    p.add_argument("--watchers", type=int, default=4, help="watchers following the creates (default 4)")
    p.add_argument("--kills", type=int, default=5, help="SIGKILLs of the control plane (default 5)")
    p.add_argument("--quick", action="store_true", help="1,000 creates, 8 clients, 2 watchers, 2 kills")
    args = p.parse_args(argv)
    if args.quick:
        args.total, args.clients, args.watchers, args.kills = 1000, 8, 2, 2
    return args


def reproduce(args: argparse.Namespace) -> str:
    if args.quick:
        return ".venv/bin/python bench/bench_faults.py --quick"
    return (
        f".venv/bin/python bench/bench_faults.py --total {args.total} --clients {args.clients} "
        f"--watchers {args.watchers} --kills {args.kills}"
    )


def report(result: CrashResult, args: argparse.Namespace, load: tuple[float, float, float]) -> None:
    print(f"machine   nproc {os.cpu_count()}, load average at start {[round(x, 2) for x in load]}")
    print(f"command   {reproduce(args)}")
    print(
        f"run       {result.kills} kill -9 during {result.total} creates, {result.clients} clients, "
        f"{result.watchers} watchers, {result.seconds:.1f} s"
    )
    for n, (acked, flight, committed, restart) in enumerate(
        zip(
            result.acked_at_kill,
            result.in_flight,
            result.in_flight_committed,
            result.restart_seconds,
            strict=True,
        )
    ):
        print(
            f"kill {n + 1:<4} acknowledged {acked:>6}, in flight {flight:>3} ({committed} committed), "
            f"integrity {result.integrity[n]}, restart to ready {restart:.2f} s"
        )
    print(
        f"writes    lost {result.lost}, torn {result.torn}, stray {result.stray}, acknowledged late "
        f"{result.acked_late}, final {result.final} of {result.total}"
    )
    print(
        f"watches   duplicates {result.duplicates}, gaps {result.gaps}, out of order {result.out_of_order}, "
        f"reconnects {result.reconnects}"
    )
    for err in (result.client_errors + result.watch_errors)[:10]:
        print(f"error     {err}")
    print(f"verdict   {'every promise kept' if result.ok() else 'FAILED'}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not (0 < args.total <= 100_000 and 0 < args.clients <= 256 and 0 <= args.watchers <= 64):
        print("bounds: total <= 100000, clients <= 256, watchers <= 64")
        return 2
    if not 0 < args.kills <= 50:
        print("bounds: 1 <= kills <= 50")
        return 2
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="peapod-bench-faults-") as tmp:
        result = asyncio.run(
            run_crash(
                Path(tmp), total=args.total, clients=args.clients, watchers=args.watchers, kills=args.kills
            )
        )
    report(result, args, load)
    emit(
        "faults",
        [
            Figure(
                "kill -9 survived",
                float(result.kills) if result.ok() else 0.0,
                "",
                f"{args.kills}",
                result.ok(),
            ),
            Figure("acknowledged writes lost", float(result.lost), "", "0", result.lost == 0),
            Figure(
                "watch gaps + duplicates",
                float(result.gaps + result.duplicates),
                "",
                "0",
                result.gaps + result.duplicates == 0,
            ),
            Figure("restart to ready, worst", round(max(result.restart_seconds, default=0.0), 2), "s"),
        ],
        cmd=reproduce(args),
    )
    return 0 if result.ok() else 1


if __name__ == "__main__":
    sys.exit(main())
