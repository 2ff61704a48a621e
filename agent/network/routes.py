"""Routes to other nodes' pods, flannel "host-gw" style: ``PODCIDR via INTERNAL_IP`` for every other node.

With one bridge per node (bridge.py) a pod reaches pods of its own node through the bridge; a pod on
another node is behind that node's address. When the nodes share a link (L2 adjacency) no tunnel is
needed: a plain route per node, ``10.244.2.0/24 via 192.168.77.12``, in the node's own routing table
sends the packet to the right node, which forwards it onto its bridge. Pod source addresses survive
(the egress masquerade in rules.py spares the cluster's pod range), so the receiver sees the real peer.

``HostGatewayRoutes`` keeps those routes in step with the Nodes: an informer marks the set dirty on any
change, and one task recomputes the desired routes from the whole node list (level-based) and applies
the difference, plus a periodic resync that repairs routes someone removed by hand. The routes it makes
carry their own routing protocol number (``RTPROT_PEAPOD``), so it only ever replaces or removes its
own, and an agent that restarts reconciles whatever the previous run left. A node whose InternalIP is
not on a directly connected subnet is skipped with a warning: a gateway must be a neighbour.

The service range gets a route too, ``10.254.0.0/16 dev pea0``, when the agent is told the range: a
connection the node itself opens to a ClusterIP is routed before the proxy's output hook rewrites it, so
on a node without a default route it would fail at ``connect()``. Through the bridge it reaches the
proxy's DNAT (or its reject, for a Service without endpoints) and never leaves the node otherwise.

``desired_routes`` is the pure part (unit-tested); the netlink work runs in threads inside the node's
namespace (``netns.run_in_netns``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from controlplane.api.core import Node
from controlplane.client import Client, Informer
from controlplane.status import internal_ip
from controlplane.tasks import cancel

from .netns import run_in_netns

log = logging.getLogger(__name__)

# rtnetlink protocol number marking our routes (iproute2 shows it as "proto 112"). Unassigned in
# /etc/iproute2/rt_protos (kernel ones are below 20; routing daemons use 42, 99 and 186-192).
RTPROT_PEAPOD = 112
MAIN_TABLE = 254
AF_INET = 2


@dataclass(frozen=True)
class Skipped:
    """A node that gets no route, and why (logged once per change of reason)."""

    node: str
    reason: str


def desired_routes(
    nodes: Iterable[Node], own_node: str, connected: Sequence[str]
) -> tuple[dict[str, str], list[Skipped]]:
    """Pod CIDR -> gateway for every other node that can have a host-gw route, and the nodes skipped.

    ``connected`` are the node's own subnets (CIDRs of its addresses): a gateway must be on one of
    them. Nodes are taken in name order, so a (misconfigured) duplicate podCIDR goes to the same node
    every time."""
    subnets = [ipaddress.IPv4Network(c, strict=False) for c in connected]
    own = next((n for n in nodes if n.metadata.name == own_node), None)
    own_cidr = _network(own.spec.pod_cidr) if own is not None else None
    routes: dict[str, str] = {}
    skipped: list[Skipped] = []
    for node in sorted(nodes, key=lambda n: n.metadata.name or ""):
        name = node.metadata.name or ""
        if name == own_node:
            continue
        cidr = _network(node.spec.pod_cidr)
        if cidr is None:
            continue  # no podCIDR yet (or a bad one): nothing to route
        gateway = _address(internal_ip(node))
        if gateway is None:
            skipped.append(Skipped(name, "no InternalIP address"))
        elif not any(gateway in s for s in subnets):
            skipped.append(Skipped(name, f"InternalIP {gateway} is not on a directly connected subnet"))
        elif own_cidr is not None and cidr.overlaps(own_cidr):
            skipped.append(Skipped(name, f"podCIDR {cidr} overlaps this node's {own_cidr}"))
        elif str(cidr) in routes:
            skipped.append(Skipped(name, f"podCIDR {cidr} is also another node's"))
        else:
            routes[str(cidr)] = str(gateway)
    return routes, skipped


def _network(cidr: str | None) -> ipaddress.IPv4Network | None:
    try:
        return ipaddress.IPv4Network(cidr, strict=False) if cidr else None
    except ValueError:
        return None


def _address(ip: str | None) -> ipaddress.IPv4Address | None:
    try:
        return ipaddress.IPv4Address(ip) if ip else None
    except ValueError:
        return None


class HostGatewayRoutes:
    """Keeps this node's routes to the other nodes' pod CIDRs (see the module docstring)."""

    def __init__(
        self,
        client: Client,
        node_name: str,
        *,
        netns: str | None = None,
        service_cidr: str | None = None,
        bridge: str | None = None,
        resync_interval: float = 30.0,
        retry_delay: float = 2.0,
    ) -> None:
        self.node_name = node_name
        self.netns = netns
        # The service range, routed onto the bridge (see the module docstring); None: not routed.
        self.device_routes = {service_cidr: bridge} if service_cidr and bridge else {}
        self.resync_interval = resync_interval
        self.retry_delay = retry_delay
        self.informer: Informer[Node] = Informer(client, Node)
        self._dirty = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._warned: dict[str, str] = {}
        self.routes: dict[str, str] = {}  # what the last successful sync left in the kernel
        self.synced = asyncio.Event()

    def start(self) -> asyncio.Task[None]:
        self.informer.on_add(lambda _n: self._dirty.set())
        self.informer.on_update(lambda _o, _n: self._dirty.set())
        self.informer.on_delete(lambda _n: self._dirty.set())
        self._task = asyncio.create_task(self._run(), name="host-gw-routes")
        return self._task

    async def stop(self) -> None:
        """Stop watching; the routes stay (pods keep talking while the agent restarts)."""
        await self.informer.stop()
        if self._task is not None:
            await cancel([self._task])
            self._task = None

    async def cleanup(self) -> None:
        """Remove every route of ours (``pea agent --cleanup``)."""
        await run_in_netns(self.netns, sync_routes, {})
        self.routes = {}

    async def sync(self) -> None:
        """Apply the routes the informer's current node list calls for."""
        connected = await run_in_netns(self.netns, connected_subnets)
        routes, skipped = desired_routes(self.informer.items(), self.node_name, connected)
        for s in skipped:
            if self._warned.get(s.node) != s.reason:
                log.warning("host-gw: no route to the pods of node %s: %s", s.node, s.reason)
        self._warned = {s.node: s.reason for s in skipped}
        changed = await run_in_netns(self.netns, sync_routes, routes, self.device_routes)
        for line in changed:
            log.info("host-gw: %s", line)
        self.routes = routes

    async def _run(self) -> None:
        self.informer.start()
        await self.informer.synced.wait()
        while True:
            self._dirty.clear()
            try:
                await self.sync()
                self.synced.set()
                delay = self.resync_interval
            except (OSError, NetlinkError) as exc:
                log.warning("host-gw: cannot sync routes: %s; retrying", exc)
                delay = self.retry_delay
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._dirty.wait(), delay)


# --- netlink work, run in threads inside the node's namespace --------------------------------------


def connected_subnets() -> list[str]:
    """The IPv4 subnets of the namespace's own addresses (loopback aside)."""
    with IPRoute() as ipr:
        found = set()
        for msg in ipr.get_addr(family=AF_INET):
            address = msg.get_attr("IFA_ADDRESS")
            network = ipaddress.IPv4Interface(f"{address}/{msg['prefixlen']}").network
            if not network.is_loopback:
                found.add(str(network))
    return sorted(found)


def owned_routes() -> dict[str, str]:
    """Our routes in the main table: destination CIDR -> gateway."""
    with IPRoute() as ipr:
        return {
            f"{r.get_attr('RTA_DST')}/{r['dst_len']}": r.get_attr("RTA_GATEWAY") or ""
            for r in ipr.get_routes(family=AF_INET, table=MAIN_TABLE)
            if r["proto"] == RTPROT_PEAPOD and r.get_attr("RTA_DST")
        }


def sync_routes(desired: dict[str, str], devices: dict[str, str] | None = None) -> list[str]:
    """Make our routes exactly ``desired`` (CIDR -> gateway) plus ``devices`` (CIDR -> interface name);
    routes of others are never touched, and a destination someone else already routes is left to
    them. Returns what changed, for the log."""
    changed = []
    with IPRoute() as ipr:
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
        desired = dict(desired) | {cidr: f"dev {name}" for cidr, name in (devices or {}).items()}
        ours: dict[str, str] = {}
        foreign: set[str] = set()
        for r in ipr.get_routes(family=AF_INET, table=MAIN_TABLE):
            dst = r.get_attr("RTA_DST")
            if dst is None:
                continue
            cidr = f"{dst}/{r['dst_len']}"
            if r["proto"] == RTPROT_PEAPOD:
                gateway = r.get_attr("RTA_GATEWAY")
                ours[cidr] = gateway or f"dev {names.get(r.get_attr('RTA_OIF'), '?')}"
            else:
                foreign.add(cidr)
        for cidr in sorted(set(ours) - set(desired)):
            with contextlib.suppress(NetlinkError):  # gone meanwhile
                ipr.route("del", dst=cidr, proto=RTPROT_PEAPOD, table=MAIN_TABLE)
            changed.append(f"removed {cidr} {ours[cidr]}")
        for cidr, gateway in sorted(desired.items()):
            if ours.get(cidr) == gateway:
                continue
            if cidr in foreign and cidr not in ours:
                log.warning("host-gw: %s is already routed by someone else; leaving it", cidr)
                continue
            if gateway.startswith("dev "):
                found = ipr.link_lookup(ifname=gateway.removeprefix("dev "))
                if not found:
                    continue  # the bridge is not there (yet): the next sync adds it
                ipr.route("replace", dst=cidr, oif=found[0], proto=RTPROT_PEAPOD, table=MAIN_TABLE)
                changed.append(f"{cidr} {gateway}")
            else:
                ipr.route("replace", dst=cidr, gateway=gateway, proto=RTPROT_PEAPOD, table=MAIN_TABLE)
                changed.append(f"{cidr} via {gateway}")
    return changed
