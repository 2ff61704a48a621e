"""A node inside a network namespace of the test's own, and an "outside world" namespace beside it.

    ext netns (192.168.213.1/24) ── veth ── node netns (192.168.213.2/24) ── pea0 bridge ── pods

The agent's pod network lives in the node namespace (its bridge, veths and nftables table), so nothing
the tests do touches the machine's own interfaces or rules. Neither namespace has a default route, and
both hold blackhole routes for the pod and service ranges (the node's own pod /24 is more specific and
still wins), so a missing rule fails fast instead of sending a packet out of the machine. Deleting the
namespaces at the end removes the bridge, the veths and the table with them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass

from agent.network.netns import run_in_netns, write_sysctl

NODE_IP = "192.168.213.2"
EXT_IP = "192.168.213.1"
BLACKHOLES = ("10.244.0.0/16", "10.254.0.0/16")


@dataclass(frozen=True)
class NodeNet:
    node: str  # the node namespace's path
    ext: str  # the outside world's
    node_ip: str = NODE_IP
    ext_ip: str = EXT_IP


async def _ip(*args: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        "ip", *args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    _, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {err.decode().strip()}")


@contextlib.asynccontextmanager
async def node_namespace() -> AsyncIterator[NodeNet]:
    tag = secrets.token_hex(3)
    node, ext = f"peatest-node-{tag}", f"peatest-ext-{tag}"
    try:
        for ns in (node, ext):
            await _ip("netns", "add", ns)
            await _ip("-n", ns, "link", "set", "lo", "up")
            for cidr in BLACKHOLES:
                await _ip("-n", ns, "route", "add", "blackhole", cidr)
        await _ip(
            "link",
            "add",
            f"pt{tag}n",
            "netns",
            node,
            "type",
            "veth",
            "peer",
            "name",
            f"pt{tag}x",
            "netns",
            ext,
        )
        for ns, dev, addr in ((node, f"pt{tag}n", NODE_IP), (ext, f"pt{tag}x", EXT_IP)):
            await _ip("-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
            await _ip("-n", ns, "link", "set", dev, "up")
        await run_in_netns(f"/run/netns/{node}", _without_bridge_netfilter)
        yield NodeNet(f"/run/netns/{node}", f"/run/netns/{ext}")
    finally:
        for ns in (node, ext):
            with contextlib.suppress(RuntimeError):
                await _ip("netns", "del", ns)


def _without_bridge_netfilter() -> None:
    """With br_netfilter, bridged replies are un-NATed on the bridge itself; without it (the harder case,
    and the kernel's default) only the agent's hairpin masquerade makes a pod reaching its own node's
    hostPort work. The tests take the harder case."""
    if os.path.exists("/proc/sys/net/bridge/bridge-nf-call-iptables"):
        write_sysctl("net.bridge.bridge-nf-call-iptables", "0")


def _http_get(host: str, port: int, timeout: float) -> str:
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(f"GET / HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


async def http_get(netns: str, host: str, port: int = 80, timeout: float = 2.0) -> str:
    """An HTTP/1.0 GET from inside ``netns``: the whole response, or OSError."""
    return await run_in_netns(netns, _http_get, host, port, timeout)


def _accept_one(host: str, port: int, timeout: float) -> str:
    with socket.create_server((host, port)) as server:
        server.settimeout(timeout)
        conn, (peer, _) = server.accept()
        with conn:
            conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
        return str(peer)


async def accept_one(netns: str, host: str, port: int, timeout: float = 30.0) -> str:
    """Listen inside ``netns``, answer one HTTP request, return the address it came from."""
    return await run_in_netns(netns, _accept_one, host, port, timeout)


async def nft_list(netns: str, table: str = "peapod") -> str:
    """``nft list table ip TABLE`` in ``netns`` ("" if there is no such table)."""
    proc = await asyncio.create_subprocess_exec(
        "nsenter", f"--net={netns}", "nft", "list", "table", "ip", table,
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    out, _ = await proc.communicate()
    return out.decode() if proc.returncode == 0 else ""
