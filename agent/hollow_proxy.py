"""The service proxy of every hollow node in a process: the real rule computation, netlink faked.

A real node runs ``ServiceProxy``: informers mark it dirty, a debounced sync computes the table from the
caches (``proxy_rules``) and sends the kernel the difference. A thousand of those in one process would
cost a thousand informer callbacks per Endpoints change and a thousand computations of the same
Services. Here ONE Services and ONE Endpoints informer (the hollow nodes' shared ones) mark ONE proxy
dirty; its debounced sync computes the service ports and the node-independent part of the table once
(``shared_rules``, memoized per service port, so only changed services are rebuilt), then each node's
own table (``node_table``: its pod CIDR, its externalTrafficPolicy Local chains), which it "writes" to
its ``FakeNftables``. Each node still ends up with exactly the table ``ServiceProxy`` would compute for it;
an unchanged table is not written (the comparison is mostly identity checks, the chains being shared).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from controlplane.api.core import Endpoints, Service
from controlplane.client import Informer
from controlplane.tasks import cancel

from .fake_nftables import OUTSIDE, FakeNftables
from .network.proxy_rules import ServicePort, node_table, service_ports, shared_rules

log = logging.getLogger(__name__)


@dataclass
class HollowProxy:
    """One hollow node's proxy: its facts and where its table goes."""

    node_name: str
    node_ip: str
    pod_cidr: str | None
    nftables: FakeNftables = field(default_factory=FakeNftables)

    def route(
        self, daddr: str, port: int, protocol: str = "TCP", *, source: str = OUTSIDE
    ) -> set[tuple[str, int]] | str | None:
        """Where this node would send a new connection from ``source`` to ``daddr:port`` (see
        ``FakeNftables.route``)."""
        return self.nftables.route(daddr, port, protocol, local=(self.node_ip, "127.0.0.1"), source=source)


class HollowProxies:
    def __init__(
        self,
        services: Informer[Service],
        endpoints: Informer[Endpoints],
        cluster_cidr: str,
        *,
        debounce: float = 0.05,
        record: int = 0,
    ) -> None:
        """``services``/``endpoints``: shared informers, started by the caller. ``record``: batches each
        node's fake nftables keeps (tests)."""
        self.services = services
        self.endpoints = endpoints
        self.cluster_cidr = cluster_cidr
        self.debounce = debounce
        self.record = record
        self.nodes: dict[str, HollowProxy] = {}
        self.syncs = 0  # computations that found something to do
        self.tables_written = 0
        self.last_sync_seconds = 0.0
        self._ports: list[ServicePort] | None = None
        self._fresh: set[str] = set()  # nodes added since the last sync: they have no table yet
        self._dirty = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def add(self, node_name: str, node_ip: str, pod_cidr: str | None) -> HollowProxy:
        """A node's proxy, whose table is written at the next sync."""
        proxy = HollowProxy(node_name, node_ip, pod_cidr, FakeNftables(record=self.record))
        self.nodes[node_name] = proxy
        self._fresh.add(node_name)
        self._dirty.set()
        return proxy

    def start(self) -> None:
        """Follow the informers (whose callbacks only mark the proxy dirty)."""
        for informer in (self.services, self.endpoints):
            informer.on_add(lambda _obj: self._dirty.set())
            informer.on_update(lambda _old, _new: self._dirty.set())
            informer.on_delete(lambda _obj: self._dirty.set())
        self._dirty.set()
        self._task = asyncio.create_task(self._run(), name="hollow-proxy")

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None

    def sync(self) -> int:
        """Compute and write every node's table if its inputs changed; the number of tables written."""
        started = time.perf_counter()
        ports = service_ports(self.services.items(), self.endpoints.cache)
        if ports == self._ports:
            names = [n for n in self._fresh if n in self.nodes]
        else:
            names = list(self.nodes)
        self._fresh.clear()
        self._ports = ports
        if not names:
            return 0
        shared = shared_rules(ports, self.cluster_cidr)
        written = 0
        for name in names:
            proxy = self.nodes[name]
            written += proxy.nftables.write(node_table(shared, proxy.node_name, proxy.pod_cidr))
        self.syncs += 1
        self.tables_written += written
        self.last_sync_seconds = time.perf_counter() - started
        return written

    async def _run(self) -> None:
        while True:
            await self._dirty.wait()
            await asyncio.sleep(self.debounce)  # coalesce a burst of changes into one sync
            self._dirty.clear()
            try:
                self.sync()
            except Exception:  # a bug here must not stop the hollow nodes' proxies for good
                log.exception("hollow proxy: sync failed")
