"""A multi-node peapod cluster on this one machine, until Ctrl-C: ``just cluster 3`` (root, Podman).

The same test bed the multi-node e2e tests use (``tests/e2e/multinode.py``): a control plane, and N nodes
each in a network namespace of its own on the lab LAN 192.168.77.0/24 (node I at 192.168.77.(10+I)),
with its own Podman service and storage, an agent in this process, a pod bridge and host-gw routes to
the other nodes' pods. It prints the API URL and the admin token; Ctrl-C (or SIGTERM) removes
everything: pods, Podman services and storage, namespaces, bridges and routes.

    nsenter --net=/run/netns/pea-n1-TAG ip route     # a node's routes (proto 112: host-gw)
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shutil
import signal
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo root: tests.e2e.multinode

from tests.e2e.multinode import testbed


async def main(n: int, data_dir: Path) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with testbed(n, data_dir) as lab:
        print(f"API server: {lab.url}   (from pods and node namespaces: {lab.pod_url})")
        print(f"token:      {lab.token}")
        print(f"try:        pea -s {lab.url} --token {lab.token} get nodes -o wide")
        for node in lab.nodes:
            print(f"  {node.name}: {node.ip}  netns {node.netns}  podman unix://{node.podman_socket}")
        print("Ctrl-C tears everything down.", flush=True)
        await stop.wait()
        print("tearing down...", flush=True)


def run() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("nodes", type=int, nargs="?", default=3, help="how many nodes (default 3)")
    parser.add_argument("-v", "--verbose", action="store_true", help="the agents' and control plane's logs")
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(name)s: %(message)s"
    )
    data_dir = Path(tempfile.mkdtemp(prefix="pea-testbed-"))
    try:
        asyncio.run(main(args.nodes, data_dir))
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    run()
