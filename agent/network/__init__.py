"""The pod network: what the agent does so each pod has its own IP, like a kubelet calling a CNI plugin.

``Network`` is the seam the pod workers see: ``attach`` wires a new sandbox and returns the pod's IP,
``detach`` undoes it before the sandbox goes, ``start`` sets the node up once its podCIDR is known and
``restore`` reconciles with the sandboxes that survived an agent restart. ``BridgeNetwork`` (bridge.py)
is the real one, built on pyroute2: a bridge holding the podCIDR's gateway, a veth into each pod's
namespace, addresses kept in the agent's data directory (ipam.py), and one nftables table for host ports
and masquerade (rules.py, written through nftables.py). ``NoNetwork`` leaves pods with only their
loopback (hollow nodes, or ``pea agent --network none``).

Modules: ``netns`` (run netlink work in a thread inside a namespace), ``nftables`` (the only module that
speaks nftables netlink), ``ipam``, ``rules``, ``bridge``.
"""

from __future__ import annotations

from typing import Protocol

from controlplane.api.core import Pod

from ..runtime.base import SandboxInfo


class Network(Protocol):
    async def start(self, pod_cidr: str | None) -> None:
        """Prepare the node (bridge, sysctls, table) once the API server has given it a podCIDR."""

    async def attach(self, pod: Pod, sandbox: SandboxInfo) -> str | None:
        """Wire a sandbox into the pod network (idempotent); returns the pod's IP (None: no pod network)."""

    async def detach(self, pod_uid: str, sandbox: SandboxInfo) -> None:
        """Undo ``attach`` before the sandbox goes (release the address, remove the veth)."""

    async def restore(self, sandboxes: list[SandboxInfo]) -> None:
        """After a restart: release what belongs to sandboxes that no longer exist."""


class NoNetwork:
    """No pod network, no pod IP: containers of one pod reach each other on 127.0.0.1, nothing else."""

    async def start(self, pod_cidr: str | None) -> None:
        return None

    async def attach(self, pod: Pod, sandbox: SandboxInfo) -> str | None:
        return None

    async def detach(self, pod_uid: str, sandbox: SandboxInfo) -> None:
        return None

    async def restore(self, sandboxes: list[SandboxInfo]) -> None:
        return None
