"""The real runtime: API pods as Podman pods, driven through the libpod REST API over a unix socket.

Design:

* Only HTTP. Every call is an ``httpx.AsyncClient`` request to ``/v4.0.0/libpod/...`` on the node's Podman
  service socket (see ``podman_service.py``), so nothing blocks the event loop and no Podman library is
  needed. Podman's error bodies (``{"cause", "message", "response"}``) become ``RuntimeFailure`` with a
  Kubernetes-style reason (ErrImagePull, CreateContainerError, RunContainerError...) and Podman's message.
* A sandbox is a Podman pod named ``k8s_<namespace>_<name>_<uid[:8]>`` whose infra container (Podman's own
  catatonit pause image, built offline by Podman) holds the network, IPC and UTS namespaces (PID too with
  ``shareProcessNamespace``). Its network namespace is created with ``netns: {nsmode: "none"}``: it holds
  only ``lo``, and the agent's pod network (``agent.network``) wires it from outside, through
  ``SandboxInfo.netns`` (the infra container's ``/proc/PID/ns/net``). hostNetwork pods use the node's.
* Containers are named ``k8s_<namespace>_<name>_<uid[:8]>_<container>_<attempt>`` and carry the sandbox's
  labels plus the container name and attempt. Podman copies a pod's labels onto its infra container, and
  puts a container's labels into every event's ``Actor.Attributes``: that is how ``events()`` maps a died
  event to an API pod without any lookup (the ``podId`` attribute of died events is empty in Podman 4.3).
* Nothing is ever pulled: images are built locally (``examples/images/build.sh``), and an image missing
  from local storage is an ErrImagePull/ErrImageNeverPull with a message saying so. Short names resolve
  the way Podman resolves them locally (``busybox`` -> ``localhost/busybox:latest``, then
  ``docker.io/library/busybox:latest``) and the container is created from the resolved name.
* Rlimits are always sent explicitly: when a container asks for any rlimit Podman drops the configured
  defaults, and the sandbox forbids Podman's built-in ones.
* Restarts belong to the agent: containers get restart policy "no", and a container whose start fails is
  removed again, so a failed attempt leaves nothing half-created behind.
* Exit reasons: "Completed" for 0, "Error" otherwise, "OOMKilled" when Podman's inspect says so. Podman
  4.3.1 with conmon 2.1.6 on cgroup v1 never does (conmon writes its OOM marker into its working
  directory, where Podman does not look), so there a memory-limit kill shows as exit 137, "Error".
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import re
import signal
from collections.abc import AsyncIterator, Collection, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from controlplane.api.core import Container, ContainerImage, Pod
from controlplane.client.streams import ExecOptions, LogOptions, format_rfc3339
from controlplane.quantity import cpu_millis, memory_bytes

from .base import (
    LABEL_ATTEMPT,
    LABEL_CONTAINER,
    LABEL_NAME,
    LABEL_NAMESPACE,
    LABEL_NODE,
    LABEL_UID,
    ContainerInfo,
    ContainerSpec,
    ContainerStateName,
    ExecResult,
    Runtime,
    RuntimeEvent,
    RuntimeFailure,
    SandboxInfo,
)
from .podman_streams import FrameDemuxer, PodmanExec, open_upgraded, utc_timestamp_prefix

__all__ = ["PodmanRuntime", "format_time", "image_candidates", "pod_sandbox_name"]

log = logging.getLogger(__name__)

API = "/v4.0.0/libpod"
RLIMITS = (("nofile", 10000), ("nproc", 1000))
CPU_PERIOD_US = 100_000
MIN_CPU_QUOTA_US = 1_000  # the kernel refuses a CFS quota below 1 ms
DEFAULT_GRACE = 30
IMAGE_TTL = 2.0  # seconds a listing of the local images answers image lookups

_OK = frozenset({200, 201, 204})
_ZERO_TIMES = ("0001-01-01",)
_TIME_RE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.\d+)?(Z|[+-]\d\d:\d\d)?$")
_HEX64 = re.compile(r"^(?:sha256:)?([0-9a-f]{64})$")


# --- pure helpers (unit-testable without Podman) -----------------------------------------------------


def pod_sandbox_name(pod: Pod) -> str:
    meta = pod.metadata
    return f"k8s_{meta.namespace or 'default'}_{meta.name}_{(meta.uid or '')[:8]}"


def container_name(pod: Pod, container: str, attempt: int) -> str:
    """Unique per pod uid too: a terminating pod and its same-named successor may share a node."""
    meta = pod.metadata
    return f"k8s_{meta.namespace or 'default'}_{meta.name}_{(meta.uid or '')[:8]}_{container}_{attempt}"


def format_time(value: str | int | float | None) -> str | None:
    """Podman's times (RFC 3339 with nanoseconds and any offset, or unix seconds) as Kubernetes writes
    ``metav1.Time``: UTC, whole seconds. Go's zero time and non-positive epochs mean "never"."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        if value <= 0:
            return None
        when = dt.datetime.fromtimestamp(value, dt.UTC)
    else:
        m = _TIME_RE.match(value.strip())
        if m is None or value.startswith(_ZERO_TIMES):
            return None
        zone = m.group(2) or "Z"
        when = dt.datetime.fromisoformat(m.group(1) + ("+00:00" if zone == "Z" else zone))
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def image_candidates(ref: str) -> list[str]:
    """The local names Podman would match for an image reference, most specific first.

    A reference whose first component looks like a registry (has a dot or a port, or is ``localhost``)
    is taken as is; a short name is looked up in ``localhost/`` and then Docker Hub's namespace, where
    ``podman import`` and ``podman load`` put images.
    """
    ref = ref.strip()
    name, at, digest = ref.partition("@")
    last = name.rsplit("/", 1)[-1]
    if at:
        suffix = "@" + digest
        if ":" in last:  # name:tag@digest: the digest decides
            name = name[: name.rfind(":")]
    elif ":" in last:
        suffix = ""
    else:
        suffix = ":latest"
    first, slash, rest = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        if first in ("docker.io", "index.docker.io") and "/" not in rest:
            return [f"docker.io/library/{rest}{suffix}"]
        if first == "index.docker.io":
            return [f"docker.io/{rest}{suffix}"]
        return [name + suffix]
    hub = f"docker.io/{name}" if slash else f"docker.io/library/{name}"
    return [f"localhost/{name}{suffix}", hub + suffix]


def _signal_number(name: str | None) -> int:
    if not name:
        return int(signal.SIGTERM)
    upper = name.upper()
    try:
        return int(signal.Signals[upper if upper.startswith("SIG") else "SIG" + upper])
    except KeyError:
        raise RuntimeFailure("CreateContainerError", f"unknown stop signal {name!r}") from None


def container_state(podman_state: str) -> ContainerStateName:
    """Podman has more states than the agent cares about; fold them into the four it knows."""
    s = podman_state.lower()
    if s in ("created", "configured", "initialized"):
        return "created"
    if s in ("running", "paused", "stopping"):
        return "running"
    if s in ("exited", "stopped"):
        return "exited"
    return "unknown"


def exit_reason(exit_code: int, oom_killed: bool) -> str:
    if oom_killed:
        return "OOMKilled"
    return "Completed" if exit_code == 0 else "Error"


def build_container_body(
    sandbox: SandboxInfo,
    pod: Pod,
    spec: ContainerSpec,
    image: str,
    node_name: str,
    *,
    allow_privileged: bool = False,
) -> dict[str, Any]:
    """The libpod SpecGenerator for one container. Separate from the HTTP call so it can be unit-tested.

    A privileged container is refused unless the node allows them, as the kubelet's
    ``--allow-privileged`` once did: it is root on the node."""
    c: Container = spec.container
    if c.security_context and c.security_context.privileged and not allow_privileged:
        raise RuntimeFailure(
            "CreateContainerConfigError",
            "privileged containers are not allowed on this node (pea agent --allow-privileged)",
        )
    labels = _sandbox_labels(pod, node_name)
    labels[LABEL_CONTAINER] = c.name
    labels[LABEL_ATTEMPT] = str(spec.attempt)
    grace = pod.spec.termination_grace_period_seconds
    body: dict[str, Any] = {
        "name": container_name(pod, c.name, spec.attempt),
        "pod": sandbox.id,
        "image": image,
        "labels": labels,
        "env": dict(spec.env),
        "restart_policy": "no",
        "stop_signal": _signal_number(c.lifecycle.stop_signal if c.lifecycle else None),
        "stop_timeout": DEFAULT_GRACE if grace is None else max(0, grace),
        "r_limits": [{"type": t, "soft": n, "hard": n} for t, n in RLIMITS],
        "terminal": bool(c.tty),
        "stdin": bool(c.stdin),
    }
    # Kubernetes: command replaces ENTRYPOINT and drops the image's CMD; args replace CMD. Podman's
    # SpecGenerator has the same rule for entrypoint/command, so the fields map one to one.
    if c.command:
        body["entrypoint"] = list(c.command)
    if c.args:
        body["command"] = list(c.args)
    if c.working_dir:
        body["work_dir"] = c.working_dir
    if spec.mounts:
        # Volumes, prepared on the node by the agent (agent/volumes.py), as plain bind mounts; a file
        # source (the pod's /etc/hosts, a subPath file) is bound as a file. Podman leaves out its own
        # /etc/hosts when a mount is there already.
        body["mounts"] = [
            {"destination": m.destination, "source": m.source, "type": "bind",
             "options": ["rbind", "ro" if m.read_only else "rw"]}
            for m in spec.mounts
        ]  # fmt: skip
    resources = _resources(c)
    if resources:
        body["resource_limits"] = resources
    sc, psc = c.security_context, pod.spec.security_context
    uid = sc.run_as_user if sc and sc.run_as_user is not None else (psc.run_as_user if psc else None)
    gid = sc.run_as_group if sc and sc.run_as_group is not None else (psc.run_as_group if psc else None)
    if uid is not None:
        body["user"] = f"{uid}:{gid}" if gid is not None else str(uid)
    elif gid is not None:
        body["user"] = f"0:{gid}"
    if sc is not None:
        if sc.privileged:
            body["privileged"] = True
        if sc.read_only_root_filesystem:
            body["read_only_filesystem"] = True
        if sc.capabilities and sc.capabilities.add:
            body["cap_add"] = list(sc.capabilities.add)
        if sc.capabilities and sc.capabilities.drop:
            body["cap_drop"] = list(sc.capabilities.drop)
    return body


def _resources(c: Container) -> dict[str, Any]:
    """Limits as OCI LinuxResources: cpu limit -> CFS quota per 100 ms period, cpu request -> shares
    (the kubelet's 1024 per core, at least 2), memory limit -> bytes."""
    limits = (c.resources.limits if c.resources else None) or {}
    requests = (c.resources.requests if c.resources else None) or {}
    out: dict[str, Any] = {}
    cpu: dict[str, int] = {}
    try:
        if "cpu" in limits:
            cpu["quota"] = max(MIN_CPU_QUOTA_US, cpu_millis(limits["cpu"]) * CPU_PERIOD_US // 1000)
            cpu["period"] = CPU_PERIOD_US
        cpu_request = requests.get("cpu", limits.get("cpu"))
        if cpu_request is not None:
            cpu["shares"] = max(2, cpu_millis(cpu_request) * 1024 // 1000)
        if "memory" in limits:
            out["memory"] = {"limit": memory_bytes(limits["memory"])}
    except ValueError as err:
        raise RuntimeFailure("CreateContainerConfigError", f"invalid resource quantity: {err}") from err
    if cpu:
        out["cpu"] = cpu
    return out


def _sandbox_labels(pod: Pod, node_name: str) -> dict[str, str]:
    meta = pod.metadata
    return {
        LABEL_UID: meta.uid or "",
        LABEL_NAME: meta.name or "",
        LABEL_NAMESPACE: meta.namespace or "default",
        LABEL_NODE: node_name,
    }


def _error_message(r: httpx.Response) -> str:
    """Podman's own words: the ``message`` of its JSON error body, else the raw body."""
    try:
        data = r.json()
    except ValueError:
        data = None
    if isinstance(data, dict) and data.get("message"):
        return str(data["message"])
    text = r.text.strip()
    return text or f"HTTP {r.status_code}"


def _event_nanos(ev: dict[str, Any]) -> int:
    """The event's time in nanoseconds (0 when absent or malformed: such events are never deduplicated)."""
    for key, scale in (("timeNano", 1), ("time", 1_000_000_000)):
        value = ev.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return int(value) * scale
    return 0


def _find_image(image: str, images: list[dict[str, Any]]) -> tuple[str, str] | None:
    """(local name, ``sha256:<id>``) of ``image`` in libpod's image list, or None."""
    m = _HEX64.match(image)
    if m is not None:
        for img in images:
            if img.get("Id") == m.group(1):
                names = img.get("Names") or []
                return (names[0] if names else m.group(1)), "sha256:" + m.group(1)
    for candidate in image_candidates(image):
        for img in images:
            known = (img.get("Names") or []) + (img.get("RepoTags") or []) + (img.get("RepoDigests") or [])
            if candidate in known:
                return candidate, "sha256:" + str(img.get("Id"))
    return None


def _retrieve(task: asyncio.Task[Any]) -> None:
    """A shared request's failure reaches the callers that wait for it; none may be left (cancelled)."""
    if not task.cancelled():
        task.exception()


def _demux_logs(raw: bytes) -> bytes:
    """Podman's logs endpoint frames each chunk Docker-style: 1 byte stream, 3 zero, 4 byte length."""
    out, i = bytearray(), 0
    while i + 8 <= len(raw) and raw[i] in (0, 1, 2) and raw[i + 1 : i + 4] == b"\0\0\0":
        size = int.from_bytes(raw[i + 4 : i + 8], "big")
        out += raw[i + 8 : i + 8 + size]
        i += 8 + size
    return bytes(out) + raw[i:]


class PodmanRuntime:
    """``Runtime`` for real pods, against one node's Podman service socket."""

    def __init__(
        self, socket_path: Path, node_name: str, *, timeout: float = 30.0, allow_privileged: bool = False
    ) -> None:
        self.socket_path = Path(socket_path)
        self.node_name = node_name
        self.timeout = timeout
        self.allow_privileged = allow_privileged
        self._client = httpx.AsyncClient(
            transport=httpx.AsyncHTTPTransport(uds=str(self.socket_path)),
            base_url="http://podman" + API,
            timeout=timeout,
        )
        # Exited containers never change again, so their inspect-only details are fetched once.
        self._exited: dict[str, tuple[bool, str | None]] = {}
        # The local image list, shared by the lookups of ``image_ttl`` seconds (see ``_list_images``).
        self.image_ttl = IMAGE_TTL
        self._images: tuple[list[dict[str, Any]], float] | None = None  # and when it was asked for
        self._images_loading: tuple[asyncio.Task[list[dict[str, Any]]], float] | None = None

    # --- plumbing -------------------------------------------------------------------------------

    async def _call(
        self,
        method: str,
        path: str,
        *,
        reason: str,
        what: str,
        params: Mapping[str, str | int] | None = None,
        body: Any = None,
        content: bytes | None = None,
        accept: Collection[int] = (),
        timeout: float | None = None,
    ) -> httpx.Response:
        """One API request; anything but 2xx (or a status in ``accept``) is a RuntimeFailure."""
        try:
            r = await self._client.request(
                method,
                path,
                params=params,
                json=body,
                content=content,
                headers={"Content-Type": "application/x-tar"} if content is not None else None,
                timeout=self.timeout if timeout is None else timeout,
            )
        except httpx.TransportError as err:
            raise RuntimeFailure(
                "RuntimeUnavailable", f"{what}: cannot reach Podman at {self.socket_path}: {err!r}"
            ) from err
        if r.status_code in _OK or r.status_code in accept:
            return r
        raise RuntimeFailure(reason, f"{what}: {_error_message(r)}")

    async def start(self) -> None:
        """Fail early, with a clear message, when the service is not there."""
        await self._call("GET", "/_ping", reason="RuntimeUnavailable", what="ping Podman")

    async def close(self) -> None:
        await self._client.aclose()

    async def version(self) -> str:
        r = await self._call("GET", "/version", reason="RuntimeUnavailable", what="Podman version")
        return f"podman://{r.json().get('Version', 'unknown')}"

    # --- images ---------------------------------------------------------------------------------

    async def load_image(self, archive: bytes) -> list[str]:
        """Load an image archive (``podman save``/``docker save``): how images reach a node without a
        registry."""
        r = await self._call(
            "POST",
            "/images/load",
            reason="ImageLoadError",
            what="load image",
            content=archive,
            timeout=max(self.timeout, 300),
        )
        self.forget_images()
        return [str(n) for n in r.json().get("Names") or []]

    async def save_image(self, image: str) -> bytes:
        """The image as a ``docker save`` archive (for ``pea image load`` elsewhere, and tests)."""
        r = await self._call(
            "GET",
            f"/images/{image}/get",
            reason="ImageInspectError",
            what="save image",
            params={"format": "docker-archive"},
            timeout=max(self.timeout, 300),
        )
        return r.content

    async def _list_images(self, newer_than: float | None = None) -> tuple[list[dict[str, Any]], float]:
        """The local images and the loop time they were asked for. A list younger than ``image_ttl`` is
        reused, and callers that ask while one is on its way share it: every container start looks its
        image up (twice: ``ensure_image``, then ``create_container``), and a burst of starts would
        otherwise list the same images again and again. ``newer_than``: only a list asked for at or
        after that time will do (a lookup that missed checks again before saying ErrImagePull)."""
        loop = asyncio.get_running_loop()
        if newer_than is None:
            newer_than = loop.time() - self.image_ttl
        if self._images is not None and self._images[1] >= newer_than:
            return self._images
        loading = self._images_loading
        if loading is None or loading[1] < newer_than:
            loading = (loop.create_task(self._fetch_images(), name="podman-images"), loop.time())
            loading[0].add_done_callback(_retrieve)
            self._images_loading = loading
        images = await asyncio.shield(loading[0])
        return images, loading[1]

    async def _fetch_images(self) -> list[dict[str, Any]]:
        asked = asyncio.get_running_loop().time()
        try:
            r = await self._call("GET", "/images/json", reason="ImageInspectError", what="list images")
        finally:
            if self._images_loading is not None and self._images_loading[0] is asyncio.current_task():
                self._images_loading = None
        images = list(r.json() or [])
        if self._images is None or self._images[1] <= asked:
            self._images = (images, asked)
        return images

    def forget_images(self) -> None:
        """The next lookup lists the images again (one was loaded, or a create said one is gone)."""
        self._images = None

    async def images(self) -> list[ContainerImage]:
        out = []
        images, _ = await self._list_images(asyncio.get_running_loop().time())
        for img in images:
            names = list(dict.fromkeys([*(img.get("RepoDigests") or []), *(img.get("Names") or [])]))
            out.append(ContainerImage(names=names or None, size_bytes=int(img.get("Size") or 0)))
        return out

    async def resolve_image(self, image: str) -> tuple[str, str] | None:
        """(local name, ``sha256:<id>``) of the image ``image`` names, or None when it is not here.
        A miss is always checked against a list asked for after this call: an image made a moment ago
        is found."""
        asked = asyncio.get_running_loop().time()
        images, when = await self._list_images()
        found = _find_image(image, images)
        if found is None and when < asked:
            images, _ = await self._list_images(asked)
            found = _find_image(image, images)
        return found

    async def ensure_image(self, image: str, pull_policy: str) -> str:
        """Local images only: with no registry reachable, "Always" also means "use what is here"."""
        found = await self.resolve_image(image)
        if found is None:
            raise self._missing_image(image, pull_policy)
        return found[1]

    def _missing_image(self, image: str, pull_policy: str) -> RuntimeFailure:
        if pull_policy == "Never":
            return RuntimeFailure(
                "ErrImageNeverPull",
                f'Container image "{image}" is not present with pull policy of Never',
            )
        tried = ", ".join(image_candidates(image))
        return RuntimeFailure(
            "ErrImagePull",
            f'image "{image}" is not present on node {self.node_name} (looked for {tried}) and no registry '
            "is configured, so it cannot be pulled; build or load it into the node's Podman storage "
            "(see examples/images/build.sh)",
        )

    # --- sandboxes ------------------------------------------------------------------------------

    async def create_sandbox(self, pod: Pod) -> SandboxInfo:
        meta = pod.metadata
        if not meta.uid or not meta.name:
            raise RuntimeFailure("FailedCreatePodSandBox", "pod has no uid or name")
        name = pod_sandbox_name(pod)
        shared = ["net", "ipc", "uts"]
        if pod.spec.share_process_namespace:
            shared.append("pid")
        body = {
            "name": name,
            "labels": _sandbox_labels(pod, self.node_name),
            "hostname": (pod.spec.hostname or meta.name)[:63].rstrip("-."),  # the kubelet's truncation
            "shared_namespaces": shared,
            # The agent wires the pod's own namespace (agent.network); hostNetwork pods share the node's.
            "netns": {"nsmode": "host" if pod.spec.host_network else "none"},
            "infra_name": f"{name}_infra",
            # Keep the sandbox when every app container has exited (restartPolicy Never/OnFailure).
            "exit_policy": "continue",
        }
        what = f"create sandbox {name}"
        r = await self._call(
            "POST", "/pods/create", body=body, reason="FailedCreatePodSandBox", what=what, accept=(409,)
        )
        created = r.status_code != 409
        if not created:
            # Left over from an agent that died between create and start: adopt it if it is this pod's.
            existing = await self._inspect_pod(name)
            if existing is None or (existing.get("Labels") or {}).get(LABEL_UID) != meta.uid:
                raise RuntimeFailure("FailedCreatePodSandBox", f"{what}: {_error_message(r)}")
        try:
            await self._call(
                "POST", f"/pods/{name}/start", reason="FailedCreatePodSandBox", what=f"start sandbox {name}",
                accept=(304,),
            )  # fmt: skip
        except RuntimeFailure:
            if created:
                await self._force_remove_pod(name)
            raise
        for sandbox in await self._sandboxes(name):
            if sandbox.uid == meta.uid:
                return sandbox
        raise RuntimeFailure("FailedCreatePodSandBox", f"{what}: the pod vanished right after it was started")

    async def _inspect_pod(self, name: str) -> dict[str, Any] | None:
        r = await self._call(
            "GET", f"/pods/{name}/json", reason="RuntimeError", what=f"inspect pod {name}", accept=(404,)
        )
        return None if r.status_code == 404 else dict(r.json())

    async def _force_remove_pod(self, name: str) -> None:
        with contextlib.suppress(RuntimeFailure):
            await self._call(
                "DELETE", f"/pods/{name}", params={"force": "true"}, reason="KillPodSandboxError",
                what=f"remove sandbox {name}", accept=(404,), timeout=self.timeout + 30,
            )  # fmt: skip

    async def list_sandboxes(self) -> list[SandboxInfo]:
        return await self._sandboxes(None)

    async def pod_sandboxes(self, namespace: str, name: str) -> list[SandboxInfo]:
        """The sandboxes of one API pod name (every uid: a deleted pod's may linger beside its successor's).

        What a pod worker needs at the start of a sync. Filtered by label inside libpod, which then
        takes the locks of this pod's containers only: listing every sandbox of the node in each sync
        made concurrent pod starts wait on each other's container locks."""
        return await self._sandboxes(None, [f"{LABEL_NAMESPACE}={namespace}", f"{LABEL_NAME}={name}"])

    async def _sandboxes(self, pod_name: str | None, match: list[str] | None = None) -> list[SandboxInfo]:
        """Two list calls (pods, containers) filtered by our node label (and the ``match`` labels, all
        of which must match), and by one Podman pod name if given."""
        label = [f"{LABEL_NODE}={self.node_name}", *(match or ())]
        pod_filter: dict[str, list[str]] = {"label": label}
        ctr_filter: dict[str, list[str]] = {"label": label}
        if pod_name is not None:
            pod_filter["name"] = [pod_name]
            ctr_filter["pod"] = [pod_name]
        pods_r, ctrs_r = await asyncio.gather(
            self._call("GET", "/pods/json", params={"filters": json.dumps(pod_filter)}, reason="RuntimeError",
                       what="list sandboxes"),
            self._call("GET", "/containers/json", params={"all": "true", "filters": json.dumps(ctr_filter)},
                       reason="RuntimeError", what="list containers"),
        )  # fmt: skip
        pods: list[dict[str, Any]] = list(pods_r.json() or [])
        ctrs: list[dict[str, Any]] = list(ctrs_r.json() or [])
        await self._fill_exited(ctrs)
        by_pod: dict[str, list[dict[str, Any]]] = {}
        for c in ctrs:
            by_pod.setdefault(str(c.get("Pod") or ""), []).append(c)
        sandboxes = []
        for p in pods:
            labels = p.get("Labels") or {}
            uid = labels.get(LABEL_UID)
            if not uid:
                continue
            members = by_pod.get(str(p.get("Id")), [])
            infra_id = p.get("InfraId") or ""
            infra = next((c for c in members if c.get("Id") == infra_id), None)
            infra_state = infra.get("State") if infra is not None else None
            infra_pid = int(infra.get("Pid") or 0) if infra is not None else 0
            if infra_state is None:  # the infra container may lack our labels if made by hand
                infra_state = next(
                    (c.get("Status") for c in p.get("Containers") or [] if c.get("Id") == infra_id), None
                )
            sandboxes.append(
                SandboxInfo(
                    uid=uid,
                    namespace=labels.get(LABEL_NAMESPACE, ""),
                    name=labels.get(LABEL_NAME, ""),
                    id=str(p.get("Id")),
                    infra_running=str(infra_state or "").lower() == "running",
                    netns=f"/proc/{infra_pid}/ns/net" if infra_pid else None,
                    created_at=format_time(p.get("Created")),
                    containers=[
                        info
                        for c in members
                        if c.get("Id") != infra_id and not c.get("IsInfra")
                        for info in [self._container_info(c)]
                        if info is not None
                    ],
                )
            )
        if pod_name is None and not match:
            live = {str(c.get("Id")) for c in ctrs}
            for gone in set(self._exited) - live:
                del self._exited[gone]
        return sandboxes

    async def _fill_exited(self, ctrs: list[dict[str, Any]]) -> None:
        """The list endpoint lacks OOMKilled and gives FinishedAt in seconds: inspect newly exited ones."""
        todo = [
            str(c.get("Id"))
            for c in ctrs
            if container_state(str(c.get("State", ""))) == "exited" and str(c.get("Id")) not in self._exited
        ]

        async def one(cid: str) -> None:
            try:
                r = await self._call(
                    "GET",
                    f"/containers/{cid}/json",
                    reason="RuntimeError",
                    what="inspect container",
                    accept=(404,),
                )
            except RuntimeFailure as exc:
                if "no such container" in exc.message:
                    return  # removed between the list and the inspect (Podman says 500, not 404)
                raise
            if r.status_code == 404:
                return
            state = r.json().get("State") or {}
            self._exited[cid] = (bool(state.get("OOMKilled")), format_time(state.get("FinishedAt")))

        await asyncio.gather(*(one(cid) for cid in todo))

    def _container_info(self, c: dict[str, Any]) -> ContainerInfo | None:
        labels = c.get("Labels") or {}
        name = labels.get(LABEL_CONTAINER)
        if not name:
            return None
        try:
            attempt = int(labels.get(LABEL_ATTEMPT, "0"))
        except ValueError:
            attempt = 0
        cid = str(c.get("Id"))
        state = container_state(str(c.get("State", "")))
        info = ContainerInfo(
            name=name,
            id=cid,
            attempt=attempt,
            image=str(c.get("Image") or ""),
            image_id="sha256:" + str(c.get("ImageID")) if c.get("ImageID") else "",
            state=state,
            created_at=format_time(c.get("Created")),
            started_at=format_time(c.get("StartedAt")),
        )
        if state == "exited":
            oom, finished = self._exited.get(cid, (False, None))
            info.exit_code = int(c.get("ExitCode") or 0)
            info.reason = exit_reason(info.exit_code, oom)
            info.finished_at = finished or format_time(c.get("ExitedAt"))
        return info

    async def remove_sandbox(self, sandbox: SandboxInfo, grace_seconds: int) -> None:
        """App containers get their grace in parallel, then the pod (with its infra) is force-removed."""
        r = await self._call(
            "GET", f"/pods/{sandbox.id}/json", reason="KillPodSandboxError",
            what=f"inspect sandbox {sandbox.namespace}/{sandbox.name}", accept=(404,),
        )  # fmt: skip
        if r.status_code == 404:
            return
        data = r.json()
        for c in data.get("Containers") or []:  # their exit details are of no use once the pod is gone
            self._exited.pop(str(c.get("Id")), None)
        infra = data.get("InfraContainerID")
        running = [
            c["Id"]
            for c in data.get("Containers") or []
            if c.get("Id") != infra and container_state(str(c.get("State", ""))) == "running"
        ]
        await asyncio.gather(*(self._stop(cid, grace_seconds) for cid in running), return_exceptions=True)
        await self._call(
            "DELETE", f"/pods/{sandbox.id}", params={"force": "true"}, reason="KillPodSandboxError",
            what=f"remove sandbox {sandbox.namespace}/{sandbox.name}", accept=(404,),
            timeout=self.timeout + 30,
        )  # fmt: skip

    # --- containers -----------------------------------------------------------------------------

    async def create_container(self, sandbox: SandboxInfo, pod: Pod, spec: ContainerSpec) -> ContainerInfo:
        c = spec.container
        if not c.image:
            raise RuntimeFailure("CreateContainerConfigError", f"container {c.name} has no image")
        found = await self.resolve_image(c.image)
        if found is None:
            raise self._missing_image(c.image, c.image_pull_policy or "IfNotPresent")
        image, image_id = found
        body = build_container_body(
            sandbox, pod, spec, image, self.node_name, allow_privileged=self.allow_privileged
        )
        try:
            r = await self._call(
                "POST", "/containers/create", body=body, reason="CreateContainerError",
                what=f"create container {c.name} of pod {pod.metadata.namespace}/{pod.metadata.name}",
            )  # fmt: skip
        except RuntimeFailure:
            self.forget_images()  # perhaps the image went since it was listed
            raise
        cid = str(r.json().get("Id"))
        return ContainerInfo(
            name=c.name,
            id=cid,
            attempt=spec.attempt,
            image=image,
            image_id=image_id,
            state="created",
            created_at=format_time(dt.datetime.now(dt.UTC).timestamp()),
        )

    async def start_container(self, container: ContainerInfo) -> None:
        """A start that fails (bad command, bad rlimit...) removes the container, so no attempt lingers
        half-made; the failure carries the runtime's explanation."""
        try:
            await self._call(
                "POST", f"/containers/{container.id}/start", reason="RunContainerError",
                what=f"start container {container.name}", accept=(304,),
            )  # fmt: skip
        except RuntimeFailure as err:
            if err.reason != "RuntimeUnavailable":
                await self.remove_container(container)
            raise

    async def _stop(self, cid: str, grace_seconds: int) -> None:
        await self._call(
            "POST", f"/containers/{cid}/stop", params={"timeout": max(0, grace_seconds)},
            reason="KillContainerError", what=f"stop container {cid[:12]}", accept=(304, 404),
            timeout=self.timeout + max(0, grace_seconds),
        )  # fmt: skip

    async def stop_container(self, container: ContainerInfo, grace_seconds: int) -> None:
        """Podman sends the stop signal (SIGTERM), waits the grace, then SIGKILLs."""
        await self._stop(container.id, grace_seconds)

    async def remove_container(self, container: ContainerInfo) -> None:
        await self._call(
            "DELETE", f"/containers/{container.id}", params={"force": "true", "timeout": 0},
            reason="RemoveContainerError", what=f"remove container {container.name}", accept=(404,),
        )  # fmt: skip
        self._exited.pop(container.id, None)

    async def logs(self, container: ContainerInfo | str, *, tail: int | None = None) -> bytes:
        """stdout and stderr interleaved, as ``kubectl logs`` shows them."""
        cid = container if isinstance(container, str) else container.id
        params: dict[str, str | int] = {"stdout": "true", "stderr": "true"}
        if tail is not None:
            params["tail"] = tail
        r = await self._call("GET", f"/containers/{cid}/logs", params=params, reason="RuntimeError",
                             what=f"logs of container {cid[:12]}")  # fmt: skip
        return _demux_logs(r.content)

    # --- exec -----------------------------------------------------------------------------------

    async def exec(
        self, container: ContainerInfo, command: list[str], *, timeout: float | None = None
    ) -> ExecResult:
        """Create an exec session, run it attached (the answer streams until the command exits), then
        read its exit code. A timeout kills the session's process by closing the stream; Podman 4.3
        keeps the process running then, so it is reported, as the kubelet does, as a failure."""
        what = f"exec in container {container.id[:12]}"
        r = await self._call(
            "POST", f"/containers/{container.id}/exec", reason="RunContainerError", what=what,
            body={"Cmd": list(command), "AttachStdout": True, "AttachStderr": True, "Tty": False},
        )  # fmt: skip
        session = r.json()["Id"]
        try:
            r = await self._client.post(
                f"/exec/{session}/start", json={"Detach": False, "Tty": False},
                timeout=self.timeout if timeout is None else timeout,
            )  # fmt: skip
        except httpx.TimeoutException:
            raise RuntimeFailure("Timeout", f"command timed out after {timeout:g}s") from None
        except httpx.TransportError as err:
            raise RuntimeFailure("RuntimeUnavailable", f"{what}: {err!r}") from err
        if r.status_code not in _OK:
            raise RuntimeFailure("RunContainerError", f"{what}: {_error_message(r)}")
        output = _demux_logs(r.content)
        info = await self._call("GET", f"/exec/{session}/json", reason="RunContainerError", what=what)
        code = info.json().get("ExitCode")
        return ExecResult(int(code) if code is not None else -1, output)

    # --- streaming logs and interactive exec (kubectl logs -f, kubectl exec; see podman_streams.py) ---

    async def stream_logs(self, container_id: str, options: LogOptions) -> AsyncIterator[bytes]:
        """The container's output, chunk by chunk as Podman sends it (stdout and stderr in the order of
        its log file), following it until the container exits if asked. Podman sends no answer at all
        before the first line, so the request happens when iteration starts, and the caller checks
        the container beforehand. ``limitBytes`` is the caller's. Each stream has a connection of its
        own, outside the runtime's pool: followers, however many, never hold up the pod workers."""
        params: dict[str, str | int] = {"stdout": "true", "stderr": "true"}
        if options.follow:
            params["follow"] = "true"
        if options.tail_lines is not None:
            params["tail"] = options.tail_lines
        since = options.since()
        if since is not None:
            params["since"] = format_rfc3339(since)
        if options.timestamps:
            params["timestamps"] = "true"
        what = f"logs of container {container_id[:12]}"
        own = httpx.AsyncClient(
            transport=httpx.AsyncHTTPTransport(uds=str(self.socket_path)), base_url="http://podman" + API
        )
        try:
            async with own, own.stream(
                "GET", f"/containers/{container_id}/logs", params=params,
                timeout=httpx.Timeout(None, connect=5.0),
            ) as r:  # fmt: skip
                if r.status_code not in _OK:
                    await r.aread()
                    raise RuntimeFailure("RuntimeError", f"{what}: {_error_message(r)}")
                demux = FrameDemuxer()
                async for chunk in r.aiter_raw():
                    frames = [payload for _, payload in demux.feed(chunk)]
                    if options.timestamps:
                        frames = [utc_timestamp_prefix(f) for f in frames]
                    if frames:
                        yield b"".join(frames)
                rest = b"".join(payload for _, payload in demux.flush())
                if rest:
                    yield rest
        except httpx.TransportError as err:
            raise RuntimeFailure("RuntimeUnavailable", f"{what}: {err!r}") from err

    async def open_exec(self, container_id: str, options: ExecOptions) -> PodmanExec:
        """Start ``options.command`` in the container attached to a hijacked connection (stdin only if
        asked, a terminal if asked); the caller reads, writes and finally closes the session."""
        what = f"exec in container {container_id[:12]}"
        r = await self._call(
            "POST", f"/containers/{container_id}/exec", reason="RunContainerError", what=what,
            body={"Cmd": list(options.command), "AttachStdin": options.stdin, "AttachStdout": options.stdout,
                  "AttachStderr": options.stderr, "Tty": options.tty},
        )  # fmt: skip
        session = str(r.json()["Id"])
        reader, writer = await open_upgraded(
            self.socket_path, f"{API}/exec/{session}/start", {"Detach": False, "Tty": options.tty},
            timeout=self.timeout,
        )  # fmt: skip

        async def resize(width: int, height: int) -> None:
            await self._call("POST", f"/exec/{session}/resize", params={"h": height, "w": width},
                             reason="RuntimeError", what=f"resize {what}")  # fmt: skip

        async def inspect() -> dict[str, Any]:
            info = await self._call("GET", f"/exec/{session}/json", reason="RunContainerError", what=what)
            data = info.json()
            return data if isinstance(data, dict) else {}

        return PodmanExec(session, reader, writer, tty=options.tty, resize=resize, inspect=inspect)

    # --- events ---------------------------------------------------------------------------------

    def _event(self, ev: dict[str, Any]) -> RuntimeEvent | None:
        """Our pods' deaths and removals; everything else (other nodes, other actions) is None."""
        if ev.get("Type") != "container":
            return None
        action = ev.get("Action") or ev.get("status")
        attrs = (ev.get("Actor") or {}).get("Attributes") or {}
        uid = attrs.get(LABEL_UID)
        if not uid or attrs.get(LABEL_NODE) != self.node_name:
            return None
        container = attrs.get(LABEL_CONTAINER)
        if action == "died":
            if container:
                return RuntimeEvent("container-died", uid, container)
            return RuntimeEvent("sandbox-died", uid)
        if action == "remove" and not container:
            return RuntimeEvent("sandbox-removed", uid)
        return None

    async def events(self) -> AsyncIterator[RuntimeEvent]:
        """Podman's event stream, reconnecting (from where it broke off) whenever it ends or fails."""
        # From the second the caller started listening, not from whenever the connection comes up, so a
        # death right after ``events()`` is called is not lost; replayed duplicates are dropped via ``seen``.
        since = int(dt.datetime.now(dt.UTC).timestamp())
        seen: set[tuple[str, str, int]] = set()
        delay = 0.2
        broken = False  # one warning per outage, not one per retry
        while True:
            params = {"stream": "true", "filters": json.dumps({"type": ["container"]}), "since": str(since)}
            try:
                async with self._client.stream(
                    "GET", "/events", params=params, timeout=httpx.Timeout(None, connect=5.0)
                ) as r:
                    if r.status_code != 200:
                        await r.aread()
                        raise RuntimeFailure("RuntimeError", f"event stream: {_error_message(r)}")
                    delay = 0.2
                    if broken:
                        log.info("podman event stream back (replaying since %d)", since)
                        broken = False
                    async for line in r.aiter_lines():
                        try:
                            ev = json.loads(line)
                        except ValueError:
                            continue
                        if not isinstance(ev, dict):
                            continue
                        nano = _event_nanos(ev)
                        key = (str(ev.get("id")), str(ev.get("Action")), nano)
                        if key in seen:
                            continue  # replayed after a reconnect
                        seen.add(key)
                        if nano:
                            second = nano // 1_000_000_000
                            if second > since:
                                since = second
                                seen = {k for k in seen if k[2] // 1_000_000_000 >= second}
                        out = self._event(ev)
                        if out is not None:
                            yield out
            except (httpx.HTTPError, RuntimeFailure) as err:
                log.log(
                    logging.DEBUG if broken else logging.WARNING,
                    "podman event stream broke (%r); reconnecting in %.1fs",
                    err,
                    delay,
                )
                broken = True
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


if TYPE_CHECKING:  # PodmanRuntime must keep satisfying the protocol the agent is written against.
    _conforms: Runtime = PodmanRuntime(Path(), "")
