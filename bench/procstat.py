"""What /proc says of a process: its CPU seconds and resident memory, for the benchmarks' figures.

Standard library only: the watch benchmark's watcher processes import this without the project.
"""

from __future__ import annotations

import os
from pathlib import Path


def cpu_seconds(pid: int | str = "self", *, children: bool = False) -> float | None:
    """User + system CPU seconds of a process (with ``children``: plus those of the children it has
    reaped), None if it cannot be read."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # the command name may contain spaces
    ticks = fields[11:15] if children else fields[11:13]
    return sum(int(f) for f in ticks) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int | str = "self") -> float | None:
    """A process's resident set now (VmRSS), in MiB; None if it cannot be read."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        return None
    return None
