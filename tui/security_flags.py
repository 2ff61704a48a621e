"""The API server's pod security and rate-limit flags, shared by ``pea controlplane`` and ``pea up``.

Both build a control plane; the flags and how they become :class:`Settings` fields live here once. Bad
values are refused by argparse with its one-line usage error, before anything starts.
"""

from __future__ import annotations

import argparse
from typing import Any

from controlplane.server.admission import normalise_host_path
from controlplane.server.ratelimit import DEFAULT_BURST, DEFAULT_RATE


def _host_path_prefix(value: str) -> str:
    norm = normalise_host_path(value)
    if norm is None:
        raise argparse.ArgumentTypeError(f'"{value}" is not an absolute path without ".."')
    return norm


def _non_negative_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f'"{value}" is not a number') from None
    if not number >= 0 or number == float("inf"):
        raise argparse.ArgumentTypeError(f'"{value}" must be 0 (off) or more')
    return number


def _non_negative_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f'"{value}" is not a whole number') from None
    if number < 0:
        raise argparse.ArgumentTypeError(f'"{value}" must be 0 (off) or more')
    return number


def security_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("pod security and rate limits")
    g.add_argument(
        "--allow-host-path",
        action="append",
        default=[],
        type=_host_path_prefix,
        metavar="PREFIX",
        help="let pods' hostPath volumes use paths under PREFIX (repeatable; by default only the data "
        "directory's host-paths/ folder)",
    )
    g.add_argument(
        "--allow-privileged",
        action="store_true",
        help="let pods run privileged containers and add any capability (they own the node)",
    )
    g.add_argument(
        "--allow-host-namespaces",
        action="store_true",
        help="let pods use hostNetwork, hostPID and hostIPC",
    )
    g.add_argument(
        "--max-requests-per-second",
        type=_non_negative_float,
        default=DEFAULT_RATE,
        metavar="N",
        help=f"requests a second each user (not the admin) may send, sustained; 0 = no limit "
        f"(default {DEFAULT_RATE:g})",
    )
    g.add_argument(
        "--max-request-burst",
        type=_non_negative_int,
        default=DEFAULT_BURST,
        metavar="N",
        help=f"and at once; over the limit the server answers 429 with Retry-After (default {DEFAULT_BURST})",
    )


def security_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The :class:`~controlplane.server.controlplane.Settings` fields the flags set."""
    return {
        "allowed_host_paths": tuple(args.allow_host_path),
        "allow_privileged": args.allow_privileged,
        "allow_host_namespaces": args.allow_host_namespaces,
        "max_requests_per_second": args.max_requests_per_second,
        "max_request_burst": args.max_request_burst,
    }
