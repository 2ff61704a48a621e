"""The pod network seam: what the agent does to give a sandbox its address (part 2 wires it with
pyroute2: a bridge holding the node's podCIDR gateway, a veth into the pod's network namespace).

Until then the ``NoNetwork`` placeholder leaves each pod with only its loopback, which is what Podman's
``nsmode: none`` sandbox has: containers of one pod reach each other on 127.0.0.1, nothing else.
"""

from __future__ import annotations

from typing import Protocol

from controlplane.api.core import Pod

from ..runtime.base import SandboxInfo


class Network(Protocol):
    async def attach(self, pod: Pod, sandbox: SandboxInfo) -> str | None:
        """Wire a new sandbox into the pod network; returns the pod's IP (None: no pod network)."""

    async def detach(self, pod_uid: str, sandbox: SandboxInfo) -> None:
        """Undo ``attach`` before the sandbox goes (release the address, remove the veth)."""


class NoNetwork:
    """Part 1's placeholder: no pod network, no pod IP."""

    async def attach(self, pod: Pod, sandbox: SandboxInfo) -> str | None:
        return None

    async def detach(self, pod_uid: str, sandbox: SandboxInfo) -> None:
        return None
