"""The one line each benchmark ends with, so that ``bench/suite.py`` can collect the headline figures.

Every benchmark prints its full report for people, then, last, one line::

    BENCH-SUMMARY {"bench": "api", "command": "...", "figures": [{"name": ..., "value": ..., ...}]}

The suite runs each benchmark as a child process, keeps its whole output, and reads this line to build
the table of headline figures and goals at the top of ``bench/RESULTS.md``. A benchmark that cannot run
here (no root, no Podman) prints a summary with ``skipped`` set to the reason instead of figures.
"""

from __future__ import annotations

import json
import shlex
import sys
from dataclasses import asdict, dataclass
from typing import Any

MARK = "BENCH-SUMMARY "


@dataclass
class Figure:
    """A headline figure. ``goal`` is the issue's target in words (``"<= 50 ms"``); ``met`` says whether
    this run reached it (None: no goal). ``anchor`` names what it is compared with, if anything."""

    name: str
    value: float | None
    unit: str = ""
    goal: str | None = None
    met: bool | None = None
    anchor: str | None = None


def command(argv: list[str] | None = None) -> str:
    """The command line that reproduces this run, as typed from the repository's root."""
    args = sys.argv if argv is None else argv
    return ".venv/bin/python " + shlex.join(args)


def emit(bench: str, figures: list[Figure], *, cmd: str | None = None, skipped: str | None = None) -> None:
    """Print the summary line (stdout, flushed: the suite may be reading a pipe)."""
    record: dict[str, Any] = {
        "bench": bench,
        "command": cmd or command(),
        "figures": [asdict(f) for f in figures],
    }
    if skipped:
        record["skipped"] = skipped
    print(MARK + json.dumps(record), flush=True)


def parse(output: str) -> dict[str, Any] | None:
    """The last summary line in a benchmark's output, decoded; None if it printed none."""
    found: dict[str, Any] | None = None
    for line in output.splitlines():
        if line.startswith(MARK):
            try:
                found = json.loads(line[len(MARK) :])
            except ValueError:
                continue
    return found
