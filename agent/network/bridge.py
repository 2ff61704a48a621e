"""The pod network the agent wires itself, as a kubelet's CNI bridge plugin would: one Linux bridge per
node holding the gateway of the node's podCIDR, one veth pair per sandbox (the host end on the bridge,
the other moved into the infra container's network namespace as ``eth0``), addresses from the
``AddressBook``, and the ``peapod`` nftables table (host ports, masquerade) from ``rules``.

Everything is level-based and idempotent, so an agent that restarts, or one that died half-way through
wiring a sandbox, converges: ``attach`` on a sandbox that already holds an address and a veth returns
that address (connectivity untouched), a half-made veth is replaced, ``restore`` releases what belongs
to sandboxes that no longer exist, and the table is always rewritten whole from the address book.

The host end of each veth is named after the sandbox (``pea`` + 11 hex digits of its ID), so it can be
found and removed without any other record. All netlink work runs in threads (``netns.run_in_netns``),
in the node's namespace (``netns``; None for the agent's own) or the pod's.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
import os
import re
import shutil
from pathlib import Path

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from controlplane.api.core import Pod

from ..runtime.base import RuntimeFailure, SandboxInfo
from . import nftables
from .ipam import AddressBook, Allocation, PortMapping, RangeExhausted
from .netns import run_in_netns, write_sysctl
from .rules import TABLE, pod_network_table

log = logging.getLogger(__name__)

DEFAULT_BRIDGE = "pea0"
DEFAULT_CLUSTER_CIDR = "10.244.0.0/16"
POD_INTERFACE = "eth0"
_VETH = re.compile(r"^pea[0-9a-f]{11}$")


def host_veth(sandbox_id: str) -> str:
    """The host end's name: derived from the sandbox, at most 15 characters (IFNAMSIZ - 1)."""
    return "pea" + sandbox_id[:11]


def host_ports(pod: Pod) -> tuple[PortMapping, ...]:
    return tuple(
        PortMapping(p.protocol or "TCP", p.host_port, p.container_port, p.host_ip or "")
        for c in pod.spec.containers
        for p in c.ports or ()
        if p.host_port
    )


class BridgeNetwork:
    def __init__(
        self,
        directory: Path,
        *,
        bridge: str = DEFAULT_BRIDGE,
        cluster_cidr: str = DEFAULT_CLUSTER_CIDR,
        netns: str | None = None,
    ) -> None:
        self.directory = directory
        self.bridge = bridge
        self.cluster_cidr = str(ipaddress.IPv4Network(cluster_cidr, strict=False))  # ValueError if bad
        if not bridge or len(bridge) > 15 or _VETH.match(bridge):
            raise ValueError(f"bad bridge name {bridge!r}: 1-15 characters, not like a pod veth")
        self.netns = netns
        self.book: AddressBook | None = None
        self._lock = asyncio.Lock()  # address book and table: one writer at a time

    # --- Network protocol -----------------------------------------------------------------------

    async def start(self, pod_cidr: str | None) -> None:
        """Create the bridge with its gateway, the sysctls and the table; load the address book."""
        if not pod_cidr:
            raise ValueError("this node has no spec.podCIDR: the API server did not allocate one")
        book = await asyncio.to_thread(AddressBook, self.directory, pod_cidr)
        gateway = f"{book.gateway}/{book.prefixlen}"
        try:
            await run_in_netns(self.netns, _ensure_bridge, self.bridge, gateway)
            async with self._lock:
                self.book = book
                await self._program()
        except (NetlinkError, nftables.NftablesError) as exc:  # e.g. not root: one line, not a traceback
            raise OSError(f"cannot set up the pod network (bridge {self.bridge}): {exc}") from None
        log.info(
            "pod network: bridge %s gateway %s, %d addresses held",
            self.bridge,
            gateway,
            len(book.allocations()),
        )

    async def attach(self, pod: Pod, sandbox: SandboxInfo) -> str | None:
        book = self._book()
        if sandbox.netns is None:
            raise RuntimeFailure("FailedCreatePodSandBox", "the sandbox has no network namespace to wire")
        held = book.get(sandbox.id)
        veth = host_veth(sandbox.id)
        if held is not None and await run_in_netns(self.netns, _veth_on_bridge, veth, self.bridge):
            return held.ip  # adopted after a restart, or already wired
        meta = pod.metadata
        async with self._lock:
            try:
                allocation = await asyncio.to_thread(
                    book.allocate, sandbox.id, meta.uid or "", meta.namespace or "", meta.name or "",
                    host_ports(pod),
                )  # fmt: skip
            except RangeExhausted as exc:
                raise RuntimeFailure(
                    "FailedCreatePodSandBox", f"failed to allocate a pod IP: {exc}"
                ) from None
        try:
            await run_in_netns(self.netns, _add_veth, veth, self.bridge, sandbox.netns)
            await run_in_netns(
                sandbox.netns, _configure_pod_side, f"{allocation.ip}/{book.prefixlen}", str(book.gateway)
            )
            if allocation.host_ports:
                async with self._lock:
                    await self._program()
        except (OSError, NetlinkError, nftables.NftablesError) as exc:
            await self.detach(meta.uid or "", sandbox)
            raise RuntimeFailure(
                "FailedCreatePodSandBox", f"failed to set up the pod network: {exc}"
            ) from None
        return allocation.ip

    async def detach(self, pod_uid: str, sandbox: SandboxInfo) -> None:
        book = self._book()
        await run_in_netns(self.netns, _delete_links, [host_veth(sandbox.id)])
        async with self._lock:
            released = await asyncio.to_thread(book.release, sandbox.id)
            if released is not None and released.host_ports:
                await self._program()

    async def restore(self, sandboxes: list[SandboxInfo]) -> None:
        """After a restart: release what belongs to sandboxes that are gone, remove veths nobody owns,
        and rewrite the table (host ports of the pods that survived keep working)."""
        book = self._book()
        live = {s.id for s in sandboxes}
        async with self._lock:
            gone = [a for a in book.allocations() if a.sandbox not in live]
            for allocation in gone:
                await asyncio.to_thread(book.release, allocation.sandbox)
            keep = {host_veth(s) for s in live}
            stray = [name for name in await run_in_netns(self.netns, pod_veths) if name not in keep]
            await run_in_netns(self.netns, _delete_links, stray)
            await self._program()
        if gone or stray:
            log.info("pod network: released %d addresses, removed %d veths", len(gone), len(stray))

    async def cleanup(self) -> None:
        """``pea agent --cleanup``: remove the table, every veth of ours and the bridge; forget addresses."""
        try:
            await nftables.delete(TABLE, netns=self.netns)
            names = await run_in_netns(self.netns, pod_veths)
            await run_in_netns(self.netns, _delete_links, [*names, self.bridge])
        except (NetlinkError, nftables.NftablesError) as exc:
            raise OSError(f"cannot remove the pod network (bridge {self.bridge}): {exc}") from None
        await asyncio.to_thread(shutil.rmtree, self.directory, True)
        self.book = None

    def allocations(self) -> list[Allocation]:
        return self._book().allocations()

    # --- internals ------------------------------------------------------------------------------

    def _book(self) -> AddressBook:
        if self.book is None:
            raise RuntimeFailure("FailedCreatePodSandBox", "the pod network is not set up yet")
        return self.book

    async def _program(self) -> None:
        book = self._book()
        await nftables.apply(
            pod_network_table(str(book.network), self.cluster_cidr, book.allocations()), self.netns
        )


# --- netlink work, run in threads inside the right namespace ---------------------------------------


def _ensure_bridge(bridge: str, gateway: str) -> None:
    write_sysctl("net.ipv4.ip_forward", "1")
    with IPRoute() as ipr:
        if not ipr.link_lookup(ifname=bridge):
            with contextlib.suppress(NetlinkError):  # made meanwhile by another agent start: fine
                ipr.link("add", ifname=bridge, kind="bridge")
        index = ipr.link_lookup(ifname=bridge)[0]
        address, prefixlen = gateway.split("/")
        current = {(a.get_attr("IFA_ADDRESS"), a["prefixlen"]) for a in ipr.get_addr(index=index, family=2)}
        for old, length in current - {(address, int(prefixlen))}:  # the bridge is ours: a stale gateway
            ipr.addr("del", index=index, address=old, prefixlen=length)
        if (address, int(prefixlen)) not in current:
            ipr.addr("add", index=index, address=address, prefixlen=int(prefixlen))
        ipr.link("set", index=index, state="up")
    # localhost:hostPort is DNATed to a pod behind the bridge; the kernel drops 127/8 sources on
    # non-loopback devices unless route_localnet is set (the masquerade in rules.py rewrites them).
    write_sysctl(f"net.ipv4.conf.{bridge}.route_localnet", "1")


def _veth_on_bridge(veth: str, bridge: str) -> bool:
    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=veth)
        bridges = ipr.link_lookup(ifname=bridge)
        if not found or not bridges:
            return False
        link = ipr.get_links(found[0])[0]
        return bool(link.get_attr("IFLA_MASTER") == bridges[0])


def _add_veth(veth: str, bridge: str, pod_netns: str) -> None:
    """The pair, its pod end created straight inside the pod's namespace as eth0."""
    fd = os.open(pod_netns, os.O_RDONLY | os.O_CLOEXEC)
    try:
        with IPRoute() as ipr:
            for index in ipr.link_lookup(ifname=veth):  # left by an attempt that did not finish
                ipr.link("del", index=index)
            ipr.link("add", ifname=veth, kind="veth", peer={"ifname": POD_INTERFACE, "net_ns_fd": fd})
            index = ipr.link_lookup(ifname=veth)[0]
            ipr.link("set", index=index, master=ipr.link_lookup(ifname=bridge)[0], state="up")
            # Hairpin: a pod reaching its own Service may be DNATed back to itself, and the bridge
            # must then send the frame out of the port it came in on (the kubelet sets it too).
            ipr.brport("set", index=index, mode=1)
    finally:
        os.close(fd)


def _configure_pod_side(address: str, gateway: str) -> None:
    ip, prefixlen = address.split("/")
    with IPRoute() as ipr:
        ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
        index = ipr.link_lookup(ifname=POD_INTERFACE)[0]
        ipr.addr("replace", index=index, address=ip, prefixlen=int(prefixlen))
        ipr.link("set", index=index, state="up")
        ipr.route("replace", dst="0.0.0.0/0", gateway=gateway, oif=index)


def pod_veths() -> list[str]:
    """The host ends of every pod's veth in the calling thread's namespace."""
    with IPRoute() as ipr:
        names = [link.get_attr("IFLA_IFNAME") for link in ipr.get_links()]
    return [n for n in names if n and _VETH.match(n)]


def _delete_links(names: list[str]) -> None:
    with IPRoute() as ipr:
        for name in names:
            for index in ipr.link_lookup(ifname=name):
                try:
                    ipr.link("del", index=index)
                except NetlinkError as exc:
                    if exc.code != errno.ENODEV:  # gone with its peer's namespace meanwhile
                        raise
