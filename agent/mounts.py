"""What is mounted where, from ``/proc/self/mountinfo``: the one reader for everything the agent
unmounts (tmpfs volumes, a node's Podman storage)."""

from __future__ import annotations

import os
from pathlib import Path


def unescape_mountinfo(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash in octal (``\\040``)."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and len(field[i + 1 : i + 4]) == 3 and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mount_points(*bases: Path) -> list[Path]:
    """The mount points at or below any of ``bases`` (symlinks resolved, as the kernel names them),
    deepest first, so that unmounting in this order never finds one still covered by another."""
    resolved = [Path(os.path.realpath(b)) for b in bases]
    points = set()
    with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
        for line in f:
            fields = line.split()
            if len(fields) > 4:
                point = Path(unescape_mountinfo(fields[4]))
                if any(point == b or b in point.parents for b in resolved):
                    points.add(point)
    return sorted(points, key=lambda p: len(p.parts), reverse=True)
