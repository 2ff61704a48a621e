"""The container runtime seam: what the agent needs from Podman (or from the hollow fake).

The agent's pod workers see only this protocol. A *sandbox* is one API pod made real: a Podman pod whose
infra container holds the network, IPC and UTS namespaces, plus the app containers that join it. Every
object the runtime creates carries labels naming the API pod (namespace, name, uid) and, for
containers, the container name and restart attempt, so that a restarted agent can find and adopt what
is running, and garbage-collect what no longer has an API pod.

Restarts follow the kubelet: a container that died is never started again; a new one is created with
``attempt + 1``, so the restart count survives an agent restart (it is in the labels).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

from controlplane.api.core import Container, ContainerImage, Pod

ContainerStateName = Literal["created", "running", "exited", "unknown"]

LABEL_UID = "io.peapod.pod.uid"
LABEL_NAME = "io.peapod.pod.name"
LABEL_NAMESPACE = "io.peapod.pod.namespace"
LABEL_CONTAINER = "io.peapod.container.name"
LABEL_ATTEMPT = "io.peapod.container.attempt"
LABEL_NODE = "io.peapod.node"


class RuntimeFailure(Exception):
    """A runtime operation failed; ``reason`` is what the pod status shows (e.g. ErrImagePull)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass
class ContainerInfo:
    name: str  # the API container name
    id: str
    attempt: int
    image: str
    image_id: str = ""
    state: ContainerStateName = "unknown"
    exit_code: int | None = None
    reason: str | None = None  # "Completed", "Error", "OOMKilled"
    started_at: str | None = None  # RFC 3339
    finished_at: str | None = None
    created_at: str | None = None


@dataclass
class SandboxInfo:
    uid: str
    namespace: str
    name: str
    id: str
    infra_running: bool
    created_at: str | None = None
    ip: str | None = None
    # The infra container's network namespace (``/proc/PID/ns/net``), which the pod network wires.
    netns: str | None = None
    # Every container of the sandbox, all attempts: the agent picks the newest attempt per name.
    containers: list[ContainerInfo] = field(default_factory=list)

    def latest(self, container: str) -> ContainerInfo | None:
        mine = [c for c in self.containers if c.name == container]
        return max(mine, key=lambda c: c.attempt) if mine else None


@dataclass(frozen=True)
class RuntimeEvent:
    """A change the runtime noticed by itself (a container died, a sandbox vanished)."""

    type: Literal["container-died", "container-started", "sandbox-died", "sandbox-removed"]
    pod_uid: str
    container: str | None = None


@dataclass(frozen=True)
class Mount:
    """A host path (a pod volume's directory or file, prepared by the agent) seen inside a container."""

    source: str
    destination: str
    read_only: bool = False
    sub_path: str = ""  # already applied to ``source`` by the agent; kept for messages


@dataclass
class ContainerSpec:
    """Everything needed to create one container, resolved by the agent (env values, attempt, mounts)."""

    container: Container
    env: Mapping[str, str]
    attempt: int
    init: bool = False
    mounts: list[Mount] = field(default_factory=list)


@dataclass(frozen=True)
class ExecResult:
    """A command run to completion inside a container (probes, hooks)."""

    exit_code: int
    output: bytes  # stdout and stderr interleaved, at most what the caller asked to keep


class Runtime(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def version(self) -> str:
        """As ``nodeInfo.containerRuntimeVersion`` shows it, e.g. ``podman://4.3.1``."""

    async def images(self) -> list[ContainerImage]: ...

    async def ensure_image(self, image: str, pull_policy: str) -> str:
        """The image's ID if present; otherwise RuntimeFailure("ErrImagePull"/"ErrImageNeverPull", ...)."""

    async def list_sandboxes(self) -> list[SandboxInfo]:
        """Every sandbox this agent made (by label), with all their containers."""

    async def create_sandbox(self, pod: Pod) -> SandboxInfo:
        """Create and start the Podman pod (infra container running) for ``pod``."""

    async def remove_sandbox(self, sandbox: SandboxInfo, grace_seconds: int) -> None:
        """Stop (SIGTERM, then SIGKILL after the grace) and remove the sandbox and its containers."""

    async def create_container(
        self, sandbox: SandboxInfo, pod: Pod, spec: ContainerSpec
    ) -> ContainerInfo: ...

    async def start_container(self, container: ContainerInfo) -> None: ...

    async def stop_container(self, container: ContainerInfo, grace_seconds: int) -> None: ...

    async def remove_container(self, container: ContainerInfo) -> None: ...

    async def exec(
        self, container: ContainerInfo, command: list[str], *, timeout: float | None = None
    ) -> ExecResult:
        """Run ``command`` in the running container and wait for it (probes and hooks). A command that
        cannot start is RuntimeFailure; one still running after ``timeout`` seconds is killed and
        reported as RuntimeFailure("Timeout", ...)."""

    async def load_image(self, archive: bytes) -> list[str]:
        """Load a ``podman save``/``docker save`` archive; returns the names it brought."""

    def events(self) -> AsyncIterator[RuntimeEvent]:
        """Container deaths and sandbox removals as they happen (Podman's event stream), forever."""
