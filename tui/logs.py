"""``pea logs POD [-c C] [-f] [--tail N] [-p] [--since 5m | --since-time T] [--timestamps]``: a
container's output, streamed as it arrives (``-f`` follows it until the container ends or Ctrl-C).

As with kubectl, a pod of several containers without ``-c`` shows its default container (the
``kubectl.kubernetes.io/default-container`` annotation, else the first) and says so on stderr.
"""

from __future__ import annotations

import argparse
from typing import TextIO

from controlplane.api.core import Pod
from controlplane.client import Client
from controlplane.client.streams import since_seconds_for

from .terminal import ByteWriter

__all__ = ["default_container", "pod_name", "run_logs", "setup_logs"]

DEFAULT_CONTAINER = "kubectl.kubernetes.io/default-container"
_POD_WORDS = ("pod", "pods", "po")


def setup_logs(p: argparse.ArgumentParser) -> None:
    p.add_argument("pod", metavar="POD | pod/POD")
    p.add_argument("-c", "--container", help="the container (default: the pod's default container)")
    p.add_argument("-f", "--follow", action="store_true", help="keep streaming until the container ends")
    p.add_argument("-p", "--previous", action="store_true", help="the previous attempt of the container")
    p.add_argument("--tail", type=int, default=-1, metavar="N", help="the last N lines only (-1: all)")
    p.add_argument("--since", metavar="DURATION", help="only lines newer than this, e.g. 10s, 5m, 1h")
    p.add_argument("--since-time", metavar="RFC3339", help="only lines after this time")
    p.add_argument("--timestamps", action="store_true", help="start each line with its time")
    p.add_argument("--limit-bytes", type=int, default=0, metavar="N", help="stop after N bytes (0: no limit)")


def pod_name(word: str, command: str) -> str:
    """``NAME`` or ``pod/NAME``; anything else is a usage error."""
    kind, sep, name = word.partition("/")
    if not sep:
        return word
    if kind.lower() not in _POD_WORDS or not name:
        raise ValueError(f'pea {command} takes a pod: POD or pod/POD, got "{word}"')
    return name


def choose_container(pod: Pod) -> str | None:
    """kubectl's default: the ``kubectl.kubernetes.io/default-container`` annotation, else the first."""
    names = [c.name for c in pod.spec.containers or []]
    wanted = (pod.metadata.annotations or {}).get(DEFAULT_CONTAINER)
    return wanted if wanted in names else (names[0] if names else None)


def default_container(pod: Pod, err: TextIO) -> str | None:
    """kubectl's choice for a pod of several containers, announced on stderr; None: let the server pick."""
    names = [c.name for c in pod.spec.containers or []]
    if len(names) <= 1:
        return None
    chosen = choose_container(pod)
    if (pod.metadata.annotations or {}).get(DEFAULT_CONTAINER) is None:
        print(f'Defaulted container "{chosen}" out of: {", ".join(names)}', file=err)
    return chosen


async def run_logs(args: argparse.Namespace, out: TextIO, err: TextIO, client: Client, namespace: str) -> int:
    name = pod_name(args.pod, "logs")
    if args.since and args.since_time:
        raise ValueError("at most one of `sinceTime` or `sinceSeconds` may be specified")
    since_seconds = since_seconds_for(args.since) if args.since else None
    container = args.container
    if container is None:
        container = default_container(await client.get(Pod, name, namespace), err)
    writer = ByteWriter(out)
    try:
        async for chunk in client.logs(
            name,
            namespace,
            container=container,
            follow=args.follow,
            previous=args.previous,
            timestamps=args.timestamps,
            tail_lines=None if args.tail == -1 else args.tail,
            since_seconds=since_seconds,
            since_time=args.since_time,
            limit_bytes=args.limit_bytes or None,
        ):
            writer.write(chunk)
    finally:
        writer.close()
    return 0
