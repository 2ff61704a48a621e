"""The hollow runtime: pods without containers, for scale simulation and fast controller tests.

Everything happens in memory and at once: a sandbox is "running" when created, a container "running"
when started. The real agent code (pod workers, status, restarts, deletion) runs on top unchanged.
``crash()`` lets a test make a container die, which arrives as a runtime event like Podman's would.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from controlplane.api.core import ContainerImage, Pod
from controlplane.api.meta import now

from .base import (
    ContainerInfo,
    ContainerSpec,
    ExecResult,
    Runtime,
    RuntimeEvent,
    RuntimeFailure,
    SandboxInfo,
)

if TYPE_CHECKING:
    from ..probes import AnswersNetworkProbes, Target

_ids = itertools.count(1)


class HollowRuntime:
    def __init__(self, node_name: str) -> None:
        self.node_name = node_name
        self.sandboxes: dict[str, SandboxInfo] = {}
        self._events: asyncio.Queue[RuntimeEvent] = asyncio.Queue()
        self.specs: dict[str, ContainerSpec] = {}  # by container id: what the agent asked for
        # Exit codes of commands run by exec (probes, hooks), by the command's first word; 0 otherwise.
        self.exec_codes: dict[str, int] = {}
        self.execs: list[tuple[str, list[str]]] = []  # (container name, command), in order
        # Ports whose httpGet/tcpSocket probes fail (nothing listens in a hollow container); others pass.
        self.closed_ports: set[int] = set()

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        """Like a Podman service going away: the "containers" stay, for the next agent to adopt."""

    async def version(self) -> str:
        return "hollow://0.1"

    async def images(self) -> list[ContainerImage]:
        return [ContainerImage(names=["localhost/hollow:latest"], size_bytes=0)]

    async def ensure_image(self, image: str, pull_policy: str) -> str:
        return "sha256:hollow"

    async def list_sandboxes(self) -> list[SandboxInfo]:
        return list(self.sandboxes.values())

    async def create_sandbox(self, pod: Pod) -> SandboxInfo:
        m = pod.metadata
        sandbox = SandboxInfo(
            uid=m.uid or "",
            namespace=m.namespace or "",
            name=m.name or "",
            id=f"hollow-{next(_ids)}",
            infra_running=True,
            created_at=now(),
        )
        self.sandboxes[sandbox.uid] = sandbox
        return sandbox

    async def remove_sandbox(self, sandbox: SandboxInfo, grace_seconds: int) -> None:
        self.sandboxes.pop(sandbox.uid, None)

    async def create_container(self, sandbox: SandboxInfo, pod: Pod, spec: ContainerSpec) -> ContainerInfo:
        info = ContainerInfo(
            name=spec.container.name,
            id=f"hollow-{next(_ids)}",
            attempt=spec.attempt,
            image=spec.container.image or "",
            image_id="sha256:hollow",
            state="created",
            created_at=now(),
        )
        self.sandboxes[sandbox.uid].containers.append(info)
        self.specs[info.id] = spec
        return info

    async def start_container(self, container: ContainerInfo) -> None:
        container.state = "running"
        container.started_at = now()

    async def stop_container(self, container: ContainerInfo, grace_seconds: int) -> None:
        self._exit(container, 0 if grace_seconds else 137)

    async def remove_container(self, container: ContainerInfo) -> None:
        for sandbox in self.sandboxes.values():
            if container in sandbox.containers:
                sandbox.containers.remove(container)

    async def load_image(self, archive: bytes) -> list[str]:
        return ["localhost/hollow:latest"] if archive else []

    async def exec(
        self, container: ContainerInfo, command: list[str], *, timeout: float | None = None
    ) -> ExecResult:
        if container.state != "running":
            raise RuntimeFailure("RunContainerError", f"container {container.name} is not running")
        self.execs.append((container.name, list(command)))
        return ExecResult(self.exec_codes.get(command[0] if command else "", 0), b"")

    def network_probe(self, target: Target, port: int) -> tuple[bool, str]:
        """An httpGet or tcpSocket probe of a hollow container: it answers unless its port is closed."""
        if target.info.state != "running" or port in self.closed_ports:
            return False, f"dial tcp {target.pod_ip or '127.0.0.1'}:{port}: connect: connection refused"
        return True, ""

    async def events(self) -> AsyncIterator[RuntimeEvent]:
        while True:
            yield await self._events.get()

    def crash(self, pod_uid: str, container: str, exit_code: int = 1) -> None:
        """Make the newest attempt of ``container`` die, as if its process exited."""
        latest = self.sandboxes[pod_uid].latest(container)
        assert latest is not None
        self._exit(latest, exit_code)
        self._events.put_nowait(RuntimeEvent("container-died", pod_uid, container))

    def kill_sandbox(self, pod_uid: str) -> None:
        sandbox = self.sandboxes[pod_uid]
        sandbox.infra_running = False
        for c in sandbox.containers:
            if c.state == "running":
                self._exit(c, 137)
        self._events.put_nowait(RuntimeEvent("sandbox-died", pod_uid))

    @staticmethod
    def _exit(container: ContainerInfo, code: int) -> None:
        container.state = "exited"
        container.exit_code = code
        container.reason = "Completed" if code == 0 else "Error"
        container.finished_at = now()


if TYPE_CHECKING:  # the fake must keep satisfying the protocol the agent is written against.
    _conforms: Runtime = HollowRuntime("")
    _answers: AnswersNetworkProbes = HollowRuntime("")
