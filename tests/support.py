"""Helpers shared by the test suites."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import msgspec
import yaml

from controlplane.api import Event, Pod
from controlplane.api.meta import OwnerReference, TopLevel
from controlplane.client import Client, NotFound
from controlplane.server.controlplane import ControlPlane, Settings


async def eventually(check: Callable[[], Awaitable[Any]], what: str, timeout: float = 15.0) -> Any:
    """Poll ``check`` until it returns something truthy and return that: a bounded wait for a
    condition, never a timing assertion."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await check()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def wait_for(
    probe: Callable[[], Awaitable[Any]], what: str, *, attempts: int = 150, interval: float = 0.1
) -> Any:
    """Poll ``probe`` until it returns something truthy; fail after ``attempts`` polls, saying what."""
    for _ in range(attempts):
        result = await probe()
        if result:
            return result
        await asyncio.sleep(interval)
    raise AssertionError(f"gave up waiting for {what}")


UNREACHABLE = "node.kubernetes.io/unreachable"


def tolerate_unreachable_for(settings: Settings, seconds: int, *, scheduler: bool) -> Settings:
    """``settings`` with the scheduler on or off and DefaultTolerationSeconds admission giving new pods
    ``seconds`` of toleration for an unreachable node."""
    settings.scheduler = scheduler
    settings.default_unreachable_toleration_seconds = seconds
    return settings


def busybox_pod(name: str, node: str | None = None, **spec: Any) -> Pod:
    """A one-container busybox pod named ``name``, bound to ``node`` if given, with extra ``spec`` fields."""
    body: dict[str, Any] = {"containers": [{"name": "c", "image": "busybox"}], **spec}
    if node:
        body["nodeName"] = node
    return msgspec.convert({"metadata": {"name": name}, "spec": body}, Pod)


def owner_ref(
    owner: TopLevel, *, block: bool | None = None, controller: bool | None = None
) -> OwnerReference:
    """A v1 ownerReference to ``owner``."""
    m = owner.metadata  # type: ignore[attr-defined]
    return OwnerReference(
        api_version="v1",
        kind=owner.kind,  # type: ignore[attr-defined]
        name=m.name,
        uid=m.uid,
        block_owner_deletion=block,
        controller=controller,
    )


async def absent(client: Client, cls: type[Any], name: str, namespace: str | None = "default") -> bool:
    """Whether the ``cls`` object ``name`` is gone (404) from ``namespace`` (None: cluster-scoped)."""
    try:
        await client.get(cls, name, namespace)
    except NotFound:
        return True
    return False


def rc_manifest(
    name: str,
    replicas: int,
    selector: dict[str, str],
    containers: list[dict[str, Any]],
    *,
    labels: dict[str, str] | None = None,
    template_labels: dict[str, str] | None = None,
    template_annotations: dict[str, str] | None = None,
    pod_spec: dict[str, Any] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    """A v1 ReplicationController as a plain manifest: ``replicas`` pods of ``containers`` labelled by
    ``selector`` (or ``template_labels``), with optional extra pod ``pod_spec`` and RC ``spec`` fields."""
    metadata: dict[str, Any] = {"name": name}
    if labels:
        metadata["labels"] = labels
    template_metadata: dict[str, Any] = {"labels": dict(template_labels or selector)}
    if template_annotations:
        template_metadata["annotations"] = template_annotations
    return {
        "apiVersion": "v1",
        "kind": "ReplicationController",
        "metadata": metadata,
        "spec": {
            "replicas": replicas,
            "selector": selector,
            "template": {
                "metadata": template_metadata,
                "spec": {**(pod_spec or {}), "containers": containers},
            },
            **spec,
        },
    }


def rc_yaml(manifest: dict[str, Any]) -> str:
    """``manifest`` as YAML for ``kubectl``/``pea`` to read, keys in the order written."""
    return str(yaml.safe_dump(manifest, sort_keys=False))


def free_port() -> int:
    """A loopback port nothing listens on now (for a server a test starts later, or never)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def reasons(client: Client, name: str, namespace: str = "default") -> list[str]:
    """The reasons of the events about the object called ``name``, oldest first."""
    return [
        e.reason
        for e in (await client.list(Event, namespace)).items
        if e.involved_object.name == name and isinstance(e.reason, str)
    ]


async def recorded(client: Client, name: str, *wanted: str, timeout: float = 15.0) -> None:
    """Wait for the pod's events to include every reason in ``wanted`` (the agent posts its events in
    the background, so they may follow the status that prompted them by a moment)."""

    async def there() -> bool:
        found = await reasons(client, name)
        return all(w in found for w in wanted)

    await eventually(there, f"events {', '.join(wanted)} of {name}", timeout)


async def collect(it: AsyncIterator[Any], n: int, timeout: float = 10) -> list[Any]:
    """The first ``n`` items of an async iterator (a watch), within ``timeout`` seconds."""
    out: list[Any] = []

    async def run() -> None:
        async for item in it:
            out.append(item)
            if len(out) >= n:
                return

    await asyncio.wait_for(run(), timeout)
    return out


@contextlib.asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[ControlPlane]:
    """A control plane started on ``settings``, stopped on the way out whatever happened."""
    cp = ControlPlane(settings)
    await cp.start()
    try:
        yield cp
    finally:
        await cp.stop()
