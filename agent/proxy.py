"""The agent's service proxy (our kube-proxy): keeps the ``peapod-proxy`` nftables table in step with the
cluster's Services and Endpoints.

Concurrency model: two informers (Services, Endpoints; all namespaces; the agent's, shared with its pod
workers and DNS server, when it passes them) only mark the proxy dirty; one sync task waits for that
mark, sleeps a short debounce so a burst of changes (a rollout touching many Endpoints) costs one sync,
then computes the whole table from the informers' caches (pure, ``proxy_rules``) and, when it differs
from the last table written, sends the kernel only the difference (``nftables.update``: the chains of
changed services, the map elements of added and removed ones, the chains of removed ones; one atomic
batch). So the table is still level-based -- computed whole from what the API says now -- while a change
to one service's Endpoints costs a few netlink messages, not a rewrite. The safety net is a full rewrite
(``nftables.apply``): on start, and after any failed write (the kernel's table is then not known to be
the last one written), retried after a back-off.

Netlink work runs in threads (``nftables``, conntrack flushing), never on the loop. UDP endpoints that
disappear have their conntrack entries removed after the new table is in place, so datagrams stop
following a DNAT to an endpoint that is gone. ``stop`` leaves the table in place (traffic keeps flowing
while the agent is down, like kube-proxy); ``cleanup`` removes it.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time

from controlplane.api.core import Endpoints, Service
from controlplane.client import Client, Informer
from controlplane.tasks import cancel

from .network import nftables
from .network.netns import run_in_netns, write_sysctl
from .network.proxy_rules import TABLE, proxy_table, service_ports, udp_endpoints

log = logging.getLogger(__name__)


class ServiceProxy:
    def __init__(
        self,
        client: Client,
        node_name: str,
        cluster_cidr: str,
        *,
        pod_cidr: str | None = None,
        netns: str | None = None,
        services: Informer[Service] | None = None,
        endpoints: Informer[Endpoints] | None = None,
        local_dns: tuple[str, int] | None = None,
        debounce: float = 0.05,
        retry_delay: float = 1.0,
    ) -> None:
        self.node_name = node_name
        self.cluster_cidr = cluster_cidr
        self.pod_cidr = (
            pod_cidr  # this node's; its pods reaching each other through a Service are masqueraded
        )
        self.netns = netns
        self.debounce = debounce
        self.retry_delay = retry_delay
        # The agent's Services informer when it has one (pods' service env vars need it too).
        self.owns_services = services is None
        self.services: Informer[Service] = services or Informer(client, Service)
        self.owns_endpoints = endpoints is None  # the agent's, shared with its DNS server, when given
        self.endpoints: Informer[Endpoints] = endpoints or Informer(client, Endpoints)
        self.local_dns = local_dns  # this node's DNS server: kube-dns's one endpoint (proxy_rules)
        self.last: nftables.Table | None = None  # the table as last written; None: rewrite it whole
        self.syncs = 0  # tables written (not counting unchanged recomputations)
        self.full_syncs = 0  # of which whole rewrites (the rest sent only the difference)
        self.last_sync_seconds = 0.0  # compute + write of the last written table
        self._udp: set[tuple[str, int]] = set()
        self._dirty = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Set ``route_localnet`` (localhost node ports), sync the informers, write the table once, then
        follow changes."""
        await run_in_netns(self.netns, write_sysctl, "net.ipv4.conf.all.route_localnet", "1")
        owned = {id(self.services): self.owns_services, id(self.endpoints): self.owns_endpoints}
        for informer in (self.services, self.endpoints):
            informer.on_add(lambda _obj: self._dirty.set())
            informer.on_update(lambda _old, _new: self._dirty.set())
            informer.on_delete(lambda _obj: self._dirty.set())
            if owned[id(informer)]:  # a shared one is started by its owner
                self._tasks.append(informer.start())
        await self.services.wait_synced()
        await self.endpoints.wait_synced()
        self._dirty.clear()
        try:
            await self.sync()
        except nftables.NftablesError as e:
            log.error("service proxy: first sync failed: %s; retrying", e)
            self._dirty.set()
        self._tasks.append(asyncio.create_task(self._run(), name="service-proxy"))

    async def stop(self) -> None:
        """Stop following changes; the table stays (see the module docstring)."""
        if self.owns_services:
            await self.services.stop()
        if self.owns_endpoints:
            await self.endpoints.stop()
        await cancel(self._tasks)
        self._tasks.clear()

    async def cleanup(self) -> bool:
        """Remove the proxy's table; True if it was there."""
        return await nftables.delete(TABLE, netns=self.netns)

    def compute(self) -> tuple[nftables.Table, set[tuple[str, int]]]:
        """The table the caches ask for now, and the UDP endpoints it sends to."""
        ports = service_ports(self.services.items(), self.endpoints.cache, self.local_dns)
        return proxy_table(ports, self.node_name, self.cluster_cidr, self.pod_cidr), udp_endpoints(ports)

    async def sync(self) -> bool:
        """Write the table if it changed (only the difference, unless there is no trusted last table);
        True if it was written. After a failure the next sync rewrites the whole table."""
        started = time.perf_counter()
        table, udp = self.compute()
        if table == self.last:
            return False
        last, self.last = self.last, None  # unknown until the write succeeds
        if last is None:
            await nftables.apply(table, self.netns)
            self.full_syncs += 1
        elif await nftables.update(last, table, self.netns) < 0:
            self.full_syncs += 1  # a base chain or a set was redefined: it rewrote the table
        self.last = table
        self.syncs += 1
        self.last_sync_seconds = time.perf_counter() - started
        gone, self._udp = self._udp - udp, udp
        if gone:
            try:
                await run_in_netns(self.netns, flush_udp_conntrack, sorted(gone))
            except Exception as e:  # stale entries expire on their own (udp timeout); not fatal
                log.warning("service proxy: flushing conntrack of %d UDP endpoints failed: %s", len(gone), e)
        return True

    async def _run(self) -> None:
        while True:
            await self._dirty.wait()
            await asyncio.sleep(self.debounce)  # coalesce a burst of changes into one sync
            self._dirty.clear()
            try:
                await self.sync()
            except nftables.NftablesError as e:
                log.error("service proxy: table not written: %s; retrying", e)
                await asyncio.sleep(self.retry_delay)
                self._dirty.set()


def flush_udp_conntrack(endpoints: list[tuple[str, int]]) -> int:
    """Delete the conntrack entries whose replies come from these UDP endpoints (ip, port); returns how
    many. Blocking: run it in a thread (``run_in_netns``)."""
    from pyroute2 import Conntrack
    from pyroute2.netlink.nfnetlink.nfctsocket import NFCTAttrTuple

    deleted = 0
    ct = Conntrack()
    try:
        for ip, port in endpoints:
            reply = NFCTAttrTuple(saddr=ip, proto=socket.IPPROTO_UDP, sport=port)
            for entry in list(ct.dump_entries(tuple_reply=reply)):
                ct.delete(entry)
                deleted += 1
    finally:
        ct.close()
    return deleted
