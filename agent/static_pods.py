"""Static pods: the pods of a folder on this node (``pea agent --pod-manifests DIR``), like the kubelet's
staticPodPath, and their mirror pods in the API.

``StaticPods`` is the file source. Each ``*.yaml``/``*.yml``/``*.json`` file of the folder holds one Pod;
the source turns it into the pod the workers run: named ``NAME-NODE`` (the kubelet's naming, so the
mirror pod and the static pod share one key), namespace ``default`` unless set, bound to this node, its
uid a hash of the file's content and the node's name. An edit therefore gives a new uid (the workers
stop the old sandbox and start the new one), and an unchanged file after an agent restart keeps its uid
(the running sandbox is adopted). The folder is watched with ``watchfiles`` (debounced) and rescanned
whole on any change and after every quiet ``rescan`` seconds: level-based, so a missed or coalesced
event costs at most one rescan. A file that fails to parse is logged once (one line: file and error)
and the pod it held before keeps running; two files naming one pod: the later (by name) is the error.

Static pods need no API server: they run whether or not the control plane was ever reached. Their
status is kept here (the workers report it to ``report``) and, once the API is reachable, ``MirrorPods``
keeps one mirror pod per static pod: created bound to the node, owned by the Node object (as the
kubelet does, so the garbage collector removes it with its node and no replication controller adopts
it), annotated ``kubernetes.io/config.mirror: HASH``, its status the static pod's. A deleted mirror is
recreated, a stale one (an older hash, or its file gone) is deleted; the static pod never stops
because of anything done to its mirror.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import logging
from collections.abc import Callable
from pathlib import Path

import msgspec
import watchfiles

from controlplane.api.core import Node, Pod, PodStatus
from controlplane.api.meta import ObjectMeta, OwnerReference, now
from controlplane.client import Client, Conflict, Informer, NotFound, key_of
from controlplane.client.manifests import EXTENSIONS, ManifestError, ignored, parse
from controlplane.controllers.workqueue import WorkQueue, run_workers
from controlplane.tasks import cancel

from .status import same_status

log = logging.getLogger(__name__)

CONFIG_SOURCE = "kubernetes.io/config.source"
CONFIG_HASH = "kubernetes.io/config.hash"
CONFIG_SEEN = "kubernetes.io/config.seen"
CONFIG_MIRROR = "kubernetes.io/config.mirror"


def is_static(pod: Pod) -> bool:
    """A pod of this node's folder (not of the API)."""
    return (pod.metadata.annotations or {}).get(CONFIG_SOURCE) == "file"


def is_mirror(pod: Pod) -> bool:
    """An API pod standing for a static pod: never run by an agent."""
    return CONFIG_MIRROR in (pod.metadata.annotations or {})


def config_hash(text: str, node_name: str) -> str:
    """The static pod's uid and config hash: its file's content and the node (32 hex digits, as the
    kubelet's)."""
    return hashlib.sha256(f"{node_name}\n{text}".encode()).hexdigest()[:32]


def static_pod(text: str, source: str, node_name: str) -> Pod:
    """The pod a static pod file stands for; ManifestError (one line naming the file) if it is not one
    valid Pod."""
    manifests = parse(text, source)
    if len(manifests) != 1 or manifests[0].kind != "Pod":
        found = ", ".join(m.kind or "?" for m in manifests) or "nothing"
        raise ManifestError(f"{source}: a static pod file holds exactly one Pod, found {found}")
    obj = copy.deepcopy(manifests[0].object)
    meta = obj.setdefault("metadata", {})
    if not isinstance(meta.get("name"), str) or not meta["name"]:
        raise ManifestError(f"{source}: the Pod has no metadata.name")
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        raise ManifestError(f"{source}: the Pod has no spec")
    digest = config_hash(text, node_name)
    for field in ("resourceVersion", "generateName", "creationTimestamp", "deletionTimestamp"):
        meta.pop(field, None)
    meta["name"] = f"{meta['name']}-{node_name}"
    meta["namespace"] = meta.get("namespace") or "default"
    meta["uid"] = digest
    meta["annotations"] = {
        **(meta.get("annotations") or {}),
        CONFIG_SOURCE: "file",
        CONFIG_HASH: digest,
        CONFIG_SEEN: now(),
    }
    spec["nodeName"] = node_name
    obj.pop("status", None)
    try:
        pod = msgspec.convert(obj, Pod)
    except msgspec.ValidationError as exc:
        raise ManifestError(f"{source}: not a valid Pod: {exc}") from None
    if not pod.spec.containers:
        raise ManifestError(f"{source}: the Pod has no containers")
    pod.status = PodStatus(phase="Pending")
    return pod


def _wanted(path: Path) -> bool:
    return path.name.endswith(EXTENSIONS) and not ignored(path.name) and path.is_file()


def _read_folder(directory: Path) -> dict[str, str | OSError]:
    """Every manifest file of the folder (not its subfolders): its text, or why it could not be read."""
    out: dict[str, str | OSError] = {}
    try:
        paths = sorted(p for p in directory.iterdir() if _wanted(p))
    except OSError as exc:
        log.error("static pods: cannot read %s: %s", directory, exc)
        return out
    for path in paths:
        try:
            out[str(path)] = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            out[str(path)] = OSError(str(exc))
    return out


class StaticPods:
    """The file source: ``get(key)`` is the pod the folder asks for; ``on_change(key)`` is called when a
    key's pod appears, changes (new uid) or goes."""

    def __init__(
        self,
        directory: Path,
        node_name: str,
        on_change: Callable[[str], None],
        *,
        debounce_ms: int = 200,
        rescan: float = 2.0,
    ) -> None:
        self.directory = directory
        self.rescan = rescan
        self.node_name = node_name
        self.on_change = on_change
        self.debounce_ms = debounce_ms
        self.pods: dict[str, Pod] = {}
        self.errors: dict[str, str] = {}  # file -> its last parse error, while it has one
        self.on_status: Callable[[str], None] | None = None  # a pod's status changed (the mirror follows)
        self._files: dict[str, str] = {}  # file -> the key of the pod it holds
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    def get(self, key: str) -> Pod | None:
        return self.pods.get(key)

    async def load(self) -> None:
        """Read the folder now (before the workers start, so sandboxes of static pods are adopted)."""
        async with self._lock:
            texts = await asyncio.to_thread(_read_folder, self.directory)
            self._apply(texts)

    def start(self) -> asyncio.Task[None]:
        self._task = asyncio.create_task(self._watch(), name=f"static-pods-{self.node_name}")
        return self._task

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None

    async def report(self, pod: Pod) -> None:
        """The workers computed a new status for a static pod: keep it (and let the mirror follow)."""
        key = key_of(pod)
        current = self.pods.get(key)
        if current is None or current.metadata.uid != pod.metadata.uid:
            return  # replaced or removed meanwhile
        self.pods[key] = Pod(metadata=current.metadata, spec=current.spec, status=pod.status)
        if self.on_status is not None:
            self.on_status(key)

    async def _watch(self) -> None:
        while True:
            try:
                # Quiet periods yield too (an empty set): a rescan then covers a change made before the
                # watch was in place, or one the watch missed.
                async for _ in watchfiles.awatch(
                    self.directory,
                    debounce=self.debounce_ms,
                    recursive=False,
                    watch_filter=None,
                    rust_timeout=int(self.rescan * 1000),
                    yield_on_timeout=True,
                ):
                    await self.load()
            except Exception as exc:  # the folder vanished or cannot be watched: keep trying
                log.warning("static pods: watching %s failed: %s; retrying", self.directory, exc)
            await asyncio.sleep(1.0)
            await self.load()

    def _apply(self, texts: dict[str, str | OSError]) -> None:
        pods: dict[str, Pod] = {}
        files: dict[str, str] = {}
        errors: dict[str, str] = {}
        for path, text in texts.items():
            try:
                if isinstance(text, OSError):
                    raise ManifestError(f"{path}: cannot read: {text}")
                pod = static_pod(text, path, self.node_name)
                key = key_of(pod)
                if key in pods:
                    other = next(f for f, k in files.items() if k == key)
                    raise ManifestError(f"{path}: pod {key} is already defined in {other}")
            except ManifestError as exc:
                errors[path] = str(exc)
                if self.errors.get(path) != str(exc):
                    log.error("static pod file %s", exc)
                old = self._files.get(path)
                if old is not None and old in self.pods and old not in pods:
                    pods[old] = self.pods[old]  # a broken file leaves its running pod alone
                    files[path] = old
                continue
            previous = self.pods.get(key)
            if previous is not None and previous.metadata.uid == pod.metadata.uid:
                pod = previous  # unchanged: keep its status and when it was first seen
            elif previous is None:
                log.info("static pod %s from %s (uid %s)", key, path, pod.metadata.uid)
            else:
                log.info("static pod %s changed in %s: new uid %s", key, path, pod.metadata.uid)
            pods[key] = pod
            files[path] = key
        changed = {
            key
            for key in set(pods) | set(self.pods)
            if key not in pods
            or key not in self.pods
            or pods[key].metadata.uid != self.pods[key].metadata.uid
        }
        for key in changed - set(pods):
            log.info("static pod %s removed: its file is gone", key)
        self.pods, self._files, self.errors = pods, files, errors
        for key in sorted(changed):
            self.on_change(key)


class MirrorPods:
    """One mirror pod in the API per static pod, with its status; run once the API is reachable."""

    def __init__(
        self,
        client: Client,
        static: StaticPods,
        informer: Informer[Pod],
        node: Callable[[], Node | None],
        *,
        resync_interval: float = 10.0,
    ) -> None:
        self.client = client
        self.static = static
        self.informer = informer
        self.node = node
        self.resync_interval = resync_interval
        self.queue = WorkQueue()
        self._tasks: list[asyncio.Task[None]] = []

    def enqueue(self, key: str) -> None:
        self.queue.add(key)

    def start(self) -> None:
        self.static.on_status = self.enqueue
        self.informer.on_add(self._seen)
        self.informer.on_update(lambda _old, new: self._seen(new))
        self.informer.on_delete(self._seen)
        name = f"mirror-pods-{self.static.node_name}"
        self._tasks.append(asyncio.create_task(run_workers(self.queue, self.sync, 1, name), name=name))
        self._tasks.append(asyncio.create_task(self._resync(), name=f"{name}-resync"))
        self._everything()

    async def stop(self) -> None:
        self.static.on_status = None
        self.queue.shutdown()
        await cancel(self._tasks)
        self._tasks.clear()

    def _seen(self, pod: Pod) -> None:
        key = key_of(pod)
        if key in self.static.pods or is_mirror(pod):
            self.enqueue(key)

    def _everything(self) -> None:
        for key in self.static.pods:
            self.enqueue(key)
        for pod in self.informer.items():
            if is_mirror(pod):
                self.enqueue(key_of(pod))

    async def _resync(self) -> None:
        while True:
            await asyncio.sleep(self.resync_interval)
            self._everything()

    async def sync(self, key: str) -> None:
        """Bring the key's mirror in line with its static pod: delete a stale or deleted one, create a
        missing one, copy the status."""
        static = self.static.get(key)
        mirror = self.informer.get(key)
        if mirror is not None and not is_mirror(mirror):
            if static is not None:
                log.warning("static pod %s has no mirror: an API pod of that name exists", key)
            return
        want = (static.metadata.annotations or {}).get(CONFIG_HASH) if static is not None else None
        if mirror is not None and (
            mirror.metadata.deletion_timestamp is not None
            or (mirror.metadata.annotations or {}).get(CONFIG_MIRROR) != want
        ):
            try:
                await self.client.delete(
                    Pod, mirror.metadata.name or "", mirror.metadata.namespace,
                    grace_period_seconds=0, uid=mirror.metadata.uid,
                )  # fmt: skip
            except NotFound:
                pass
            except Conflict:  # already a newer one: its event brings the key back
                return
            mirror = None
        if static is None:
            return
        if mirror is None:
            await self._create(static)
            return
        if not same_status(static.status, mirror.status):
            fresh = Pod(metadata=mirror.metadata, spec=mirror.spec, status=static.status)
            try:
                await self.client.replace_status(fresh)
            except Conflict:
                self.queue.add_after(key, 0.2)  # a newer mirror: retried with it
            except NotFound:
                self.enqueue(key)

    async def _create(self, static: Pod) -> None:
        node = self.node()
        if node is None:
            raise RuntimeError("the Node is not registered yet")
        meta = static.metadata
        digest = (meta.annotations or {}).get(CONFIG_HASH, "")
        mirror = Pod(
            metadata=ObjectMeta(
                name=meta.name,
                namespace=meta.namespace,
                labels=meta.labels,
                annotations={**(meta.annotations or {}), CONFIG_MIRROR: digest},
                owner_references=[
                    OwnerReference(
                        api_version="v1",
                        kind="Node",
                        name=node.metadata.name or "",
                        uid=node.metadata.uid or "",
                        controller=True,
                    )
                ],
            ),
            spec=static.spec,
        )
        try:
            created = await self.client.create(mirror)
        except Conflict:
            return  # one exists already (the informer has not seen it yet): its event brings the key back
        log.info("mirror pod %s created for static pod uid %s", key_of(created), meta.uid)
        if not same_status(static.status, created.status):
            fresh = Pod(metadata=created.metadata, spec=created.spec, status=static.status)
            try:
                await self.client.replace_status(fresh)
            except (Conflict, NotFound):
                self.enqueue(key_of(created))
