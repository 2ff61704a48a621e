"""Node registration and heartbeats: the Node object this agent owns, and its Lease.

Registration creates the Node (or adopts the existing one after a restart) with what the machine has:
capacity and allocatable cpu, memory and pods, addresses, nodeInfo and the images in its runtime (a new
Node carries its status from the start; an adopted one gets it written).
Heartbeats are cheap Lease renewals every ``lease_interval`` seconds (kube-node-lease/NAME); the heavier
Node status write (the Ready condition's lastHeartbeatTime) happens at least every ``status_interval``
seconds, or at once when something in the status changed.

A heartbeat that does not finish within ``beat_timeout`` is abandoned (its connection with it), like the
kubelet's heartbeat client with its timeout: after a network cut, a request stuck on a dead connection
would otherwise wait for TCP's retransmission back-off, minutes, and the node would stay NotReady long
after the network is back. The first heartbeat that succeeds after failures writes the status at once
(the node lifecycle controller has marked the node Unknown meanwhile) and calls ``on_reconnected`` (the
agent then re-opens its watches, which may hang on dead connections the same way).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import platform
import socket
from collections.abc import Callable
from dataclasses import dataclass

import msgspec

from controlplane.api.coordination import Lease, LeaseSpec
from controlplane.api.core import (
    ContainerImage,
    DaemonEndpoint,
    Node,
    NodeAddress,
    NodeCondition,
    NodeDaemonEndpoints,
    NodeStatus,
    NodeSystemInfo,
)
from controlplane.api.meta import ObjectMeta, now, now_micro
from controlplane.client import Client, Conflict, NotFound
from controlplane.server.discovery import KUBE_MAJOR, KUBE_MINOR, PEAPOD_VERSION
from controlplane.status import condition
from controlplane.tasks import cancel

log = logging.getLogger(__name__)

LEASE_NAMESPACE = "kube-node-lease"
AGENT_ADDRESS = "peapod.io/agent-address"  # where `pea image load` (and later logs, exec) reach the agent
KUBELET_VERSION = f"v{KUBE_MAJOR}.{KUBE_MINOR}.0-peapod.{PEAPOD_VERSION}"


@dataclass(frozen=True)
class MachineInfo:
    """What the node reports about the machine it runs on."""

    cpus: int
    memory_bytes: int
    kernel: str
    os_image: str
    architecture: str
    machine_id: str
    boot_id: str

    @classmethod
    def detect(cls) -> MachineInfo:
        return cls(
            cpus=os.cpu_count() or 1,
            memory_bytes=_meminfo_total(),
            kernel=platform.release(),
            os_image=_os_image(),
            architecture={"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine()),
            machine_id=_read("/etc/machine-id"),
            boot_id=_read("/proc/sys/kernel/random/boot_id"),
        )


def _read(path: str) -> str:
    try:
        with open(path) as fh:
            return fh.read().strip()
    except OSError:
        return ""


def _meminfo_total() -> int:
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


def _os_image() -> str:
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip('"')
    return platform.system()


def default_node_ip() -> str:
    """The address other machines would use to reach this one (no packet is sent)."""
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("192.0.2.1", 9))  # TEST-NET-1: never routed anywhere; connect() only picks a source
        return str(s.getsockname()[0])
    return "127.0.0.1"


class NodeHeartbeat:
    def __init__(
        self,
        client: Client,
        name: str,
        *,
        node_ip: str,
        machine: MachineInfo,
        runtime_version: str,
        max_pods: int = 110,
        lease_interval: float = 10.0,
        status_interval: float = 40.0,
        lease_duration: int = 40,
        labels: dict[str, str] | None = None,
    ) -> None:
        self.client = client
        self.name = name
        self.node_ip = node_ip
        self.machine = machine
        self.runtime_version = runtime_version
        self.max_pods = max_pods
        self.lease_interval = lease_interval
        self.status_interval = status_interval
        self.lease_duration = lease_duration
        self.labels = labels or {}
        self.images: list[ContainerImage] = []
        self.agent_address: str | None = None  # host:port of the agent's own endpoint
        self.node: Node | None = None
        # Why the container runtime cannot be used (None: it answers); Ready is False meanwhile.
        self.runtime_down: str | None = None
        self.last_status = 0.0  # the event loop's time of the last status write
        # A heartbeat taking longer is abandoned (the kubelet's heartbeat client has the same timeout).
        self.beat_timeout = max(lease_interval, 5.0)
        self.failures = 0  # heartbeats failed in a row
        self.on_reconnected: Callable[[], None] | None = None  # after failures, on the first success
        self._task: asyncio.Task[None] | None = None

    def status(self, *, heartbeat: str) -> NodeStatus:
        capacity: dict[str, str | int | float] = {
            "cpu": str(self.machine.cpus),
            "memory": f"{self.machine.memory_bytes // 1024}Ki",
            "pods": str(self.max_pods),
        }
        ready = NodeCondition(
            type="Ready",
            status="True",
            reason="KubeletReady",
            message="peapod agent is posting ready status",
            last_heartbeat_time=heartbeat,
            last_transition_time=heartbeat,
        )
        if self.runtime_down is not None:  # the kubelet's words for the same state
            ready.status, ready.reason = "False", "KubeletNotReady"
            ready.message = f"container runtime is down: {self.runtime_down}"
        previous = self._condition("Ready")
        if previous is not None and previous.status == ready.status and previous.last_transition_time:
            ready.last_transition_time = previous.last_transition_time
        return NodeStatus(
            capacity=capacity,
            allocatable=dict(capacity),
            conditions=[ready],
            addresses=[
                NodeAddress(type="InternalIP", address=self.node_ip),
                NodeAddress(type="Hostname", address=self.name),
            ],
            node_info=NodeSystemInfo(
                machine_id=self.machine.machine_id,
                system_uuid=self.machine.machine_id,
                boot_id=self.machine.boot_id,
                kernel_version=self.machine.kernel,
                os_image=self.machine.os_image,
                container_runtime_version=self.runtime_version,
                kubelet_version=KUBELET_VERSION,
                kube_proxy_version=KUBELET_VERSION,
                operating_system="linux",
                architecture=self.machine.architecture,
            ),
            images=self.images or None,
            daemon_endpoints=NodeDaemonEndpoints(kubelet_endpoint=DaemonEndpoint(port=self._agent_port())),
        )

    def _agent_port(self) -> int:
        return int(self.agent_address.rsplit(":", 1)[1]) if self.agent_address else 0

    def _condition(self, kind: str) -> NodeCondition | None:
        if self.node is None:
            return None
        return condition(self.node.status.conditions, kind)

    async def register(self) -> Node:
        """Create the Node, or take over the existing one (an agent restart); then write its status."""
        labels = {
            "kubernetes.io/hostname": self.name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": self.machine.architecture,
            **self.labels,
        }
        annotations = {AGENT_ADDRESS: self.agent_address} if self.agent_address else None
        stamp = now()
        node = Node(
            metadata=ObjectMeta(name=self.name, labels=labels, annotations=annotations),
            status=self.status(heartbeat=stamp),
        )
        try:
            self.node = await self.client.create(node)
            created = True
        except Conflict:
            created = False
            existing = await self.client.get(Node, self.name)
            merged = dict(existing.metadata.labels or {})
            merged.update(labels)
            current = (existing.metadata.annotations or {}).get(AGENT_ADDRESS)
            if merged != existing.metadata.labels or current != self.agent_address:
                patch = {"metadata": {"labels": merged, "annotations": {AGENT_ADDRESS: self.agent_address}}}
                existing = await self.client.patch(Node, self.name, patch)
            self.node = existing
        if created:  # the Node was created with this status (the API keeps a Node's status on create)
            self.last_status = asyncio.get_running_loop().time()
        else:
            await self.post_status()
        await self.renew_lease(new=created)
        return self.node

    async def post_status(self) -> None:
        assert self.node is not None
        status = self.status(heartbeat=now())
        body = {"status": _builtins(status)}
        self.node = await self.client.patch(Node, self.name, body, subresource="status")
        self.last_status = asyncio.get_running_loop().time()

    async def renew_lease(self, *, new: bool = False) -> None:
        """Renew the node's Lease, creating it if missing. ``new``: a Node just created has none yet, so
        try the create first (saves a 404 per node when a thousand register at once)."""
        stamp = now_micro()
        if new and await self._create_lease(stamp):
            return
        try:
            await self.client.patch(
                Lease, self.name, {"spec": {"holderIdentity": self.name, "renewTime": stamp}}, LEASE_NAMESPACE
            )
        except NotFound:
            await self._create_lease(stamp)

    async def _create_lease(self, stamp: str) -> bool:
        """Create the Lease; False if one exists already."""
        lease = Lease(
            metadata=ObjectMeta(name=self.name, namespace=LEASE_NAMESPACE),
            spec=LeaseSpec(
                holder_identity=self.name,
                lease_duration_seconds=self.lease_duration,
                renew_time=stamp,
                acquire_time=stamp,
            ),
        )
        try:
            await self.client.create(lease)
        except Conflict:
            return False
        return True

    async def beat(self, *, status: bool = False) -> None:
        """One heartbeat: renew the Lease, and write the status too once ``status_interval`` has passed
        since the last (a little early rather than a whole lease interval late), or when ``status``."""
        await self.renew_lease()
        elapsed = asyncio.get_running_loop().time() - self.last_status
        if status or elapsed >= self.status_interval - self.lease_interval / 2:
            await self.post_status()

    def start(self) -> asyncio.Task[None]:
        self._task = asyncio.create_task(self._run(), name=f"heartbeat-{self.name}")
        return self._task

    async def stop(self) -> None:
        await cancel(self._task)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.lease_interval)
            try:
                # After failures the status goes too: the node lifecycle controller may have marked the
                # node Unknown meanwhile, and only this node's own status write makes it Ready again.
                await asyncio.wait_for(self.beat(status=self.failures > 0), self.beat_timeout)
            except Exception as exc:
                # One warning per outage; the rest at debug level.
                level = logging.WARNING if self.failures == 0 else logging.DEBUG
                reason = str(exc) or f"no answer within {self.beat_timeout:g}s"
                log.log(level, "node %s heartbeat failed: %s; retrying", self.name, reason)
                self.failures += 1
                continue
            if self.failures:
                log.warning("node %s: heartbeats succeed again after %d failures", self.name, self.failures)
                self.failures = 0
                if self.on_reconnected is not None:
                    self.on_reconnected()


def _builtins(status: NodeStatus) -> dict[str, object]:
    return msgspec.to_builtins(status)
