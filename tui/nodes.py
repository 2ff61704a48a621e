"""``pea cordon NODE``, ``pea uncordon NODE`` and ``pea drain NODE``: node maintenance as kubectl does it.

Cordon sets ``spec.unschedulable`` (the scheduler then places nothing new there); uncordon clears it.
Drain cordons, then removes the node's pods: mirror pods are skipped; DaemonSet pods, pods using
emptyDir and pods no controller owns stop the drain unless ``--ignore-daemonsets``,
``--delete-emptydir-data`` or ``--force`` say otherwise (the same checks, in the same words, as
kubectl). The rest are evicted through ``pods/NAME/eviction`` (``--disable-eviction``: deleted), and the
command waits until each is gone, up to ``--timeout``, then prints ``node/NAME drained``.

Everything runs on the caller's event loop; waiting is bounded polling of the pods that remain.
"""

from __future__ import annotations

import argparse
import asyncio
import re
from dataclasses import dataclass, field
from typing import Any, Protocol, TextIO

from controlplane.api.core import Node, Pod
from controlplane.api.registry import for_type
from controlplane.client import ApiError, Client, NotFound, path_for

__all__ = [
    "cordon",
    "drain",
    "parse_duration",
    "run_cordon",
    "run_drain",
    "setup_cordon",
    "setup_drain",
    "uncordon",
]

MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
FINISHED = ("Succeeded", "Failed")
POLL_INTERVAL = 0.2
EVICTION_RETRY = 5.0  # seconds between retries of an eviction refused with 429
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


class DrainError(ValueError):
    """Why a drain stopped: bad input as far as ``pea`` is concerned, printed as one ``error:`` line."""


class CommandContext(Protocol):
    """What these commands need of ``pea``'s per-invocation context (``tui.cli._Context``)."""

    args: argparse.Namespace
    out: TextIO
    err: TextIO

    def client(self) -> Client: ...


def parse_duration(text: str) -> float:
    """A Go duration (``90s``, ``5m``, ``1h30m``, ``500ms``) or plain seconds; 0 means no limit."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    pos, total = 0, 0.0
    for match in _DURATION.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise ValueError(f'invalid duration "{text}": use a number of seconds or e.g. 30s, 5m, 1h')
    return total


def node_name(word: str) -> str:
    kind, sep, name = word.partition("/")
    if not sep:
        return word
    if kind not in ("node", "nodes", "no") or not name:
        raise ValueError(f'"{word}" is not a node: use NODE or node/NODE')
    return name


# --- cordon / uncordon ---------------------------------------------------------------------------


def setup_cordon(p: argparse.ArgumentParser) -> None:
    p.add_argument("node", metavar="NODE | node/NODE")


async def set_unschedulable(client: Client, name: str, unschedulable: bool) -> bool:
    """Cordon or uncordon; False when the node was already that way (nothing written)."""
    node = await client.get(Node, name)
    if bool(node.spec.unschedulable) == unschedulable:
        return False
    await client.patch(Node, name, {"spec": {"unschedulable": True if unschedulable else None}})
    return True


async def run_cordon(args: argparse.Namespace, out: TextIO, client: Client, *, cordon: bool) -> int:
    name = node_name(args.node)
    changed = await set_unschedulable(client, name, cordon)
    verb = "cordoned" if cordon else "uncordoned"
    print(f"node/{name} {verb}" if changed else f"node/{name} already {verb}", file=out)
    return 0


# --- drain ---------------------------------------------------------------------------------------


def setup_drain(p: argparse.ArgumentParser) -> None:
    p.add_argument("node", metavar="NODE | node/NODE")
    p.add_argument("--force", action="store_true", help="also delete pods that no controller manages")
    p.add_argument(
        "--ignore-daemonsets", action="store_true", help="go on when DaemonSet-managed pods are there"
    )
    p.add_argument(
        "--delete-emptydir-data",
        action="store_true",
        help="also delete pods using emptyDir (their data is lost)",
    )
    p.add_argument(
        "--grace-period",
        type=int,
        default=-1,
        metavar="SECONDS",
        help="seconds each pod gets to stop (-1: the pod's own)",
    )
    p.add_argument(
        "--timeout", default="0s", metavar="DURATION", help="give up after this long (0: wait for ever)"
    )
    p.add_argument("--disable-eviction", action="store_true", help="delete pods instead of evicting them")


@dataclass
class _Plan:
    """What drain will do: the pods to remove, what it refuses, what it only warns about."""

    remove: list[Pod] = field(default_factory=list)
    errors: dict[str, list[str]] = field(default_factory=dict)
    warnings: dict[str, list[str]] = field(default_factory=dict)


def _controller(pod: Pod) -> Any:
    return next((r for r in pod.metadata.owner_references or () if r.controller), None)


def plan_drain(pods: list[Pod], args: argparse.Namespace) -> _Plan:
    """kubectl's drain filters, in its order: DaemonSet pods, mirror pods, local storage, no controller."""
    plan = _Plan()
    for pod in pods:
        name = f"{pod.metadata.namespace}/{pod.metadata.name}"
        finished = pod.status.phase in FINISHED
        owner = _controller(pod)
        if owner is not None and owner.kind == "DaemonSet":
            if args.ignore_daemonsets:
                plan.warnings.setdefault("ignoring DaemonSet-managed Pods", []).append(name)
            else:
                plan.errors.setdefault(
                    "cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore)", []
                ).append(name)
            continue
        if MIRROR_ANNOTATION in (pod.metadata.annotations or {}):
            continue
        if not finished and any(v.empty_dir is not None for v in pod.spec.volumes or ()):
            if args.delete_emptydir_data:
                plan.warnings.setdefault("deleting Pods with local storage", []).append(name)
            else:
                plan.errors.setdefault(
                    "cannot delete Pods with local storage (use --delete-emptydir-data to override)", []
                ).append(name)
                continue
        if owner is None and not finished:
            if args.force:
                plan.warnings.setdefault("deleting Pods that declare no controller", []).append(name)
            else:
                plan.errors.setdefault(
                    "cannot delete Pods that declare no controller (use --force to override)", []
                ).append(name)
                continue
        plan.remove.append(pod)
    return plan


def _summary(groups: dict[str, list[str]]) -> str:
    return "; ".join(f"{what}: {', '.join(names)}" for what, names in groups.items())


async def evict(client: Client, pod: Pod, grace: int | None) -> None:
    """POST the policy/v1 Eviction for ``pod`` (the API server deletes it gracefully)."""
    m = pod.metadata
    options: dict[str, Any] = {"apiVersion": "v1", "kind": "DeleteOptions"}
    if grace is not None:
        options["gracePeriodSeconds"] = grace
    body = {
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": m.name, "namespace": m.namespace},
        "deleteOptions": options,
    }
    await client.request("POST", path_for(for_type(Pod), m.namespace, m.name, "eviction"), body=body)


async def _remove(
    client: Client, pod: Pod, args: argparse.Namespace, err: TextIO, deadline: float | None
) -> bool:
    """Evict (or delete) one pod, retrying while the server says 429; False if it was already gone."""
    grace = None if args.grace_period < 0 else args.grace_period
    m = pod.metadata
    loop = asyncio.get_running_loop()
    while True:
        try:
            if args.disable_eviction:
                await client.delete(Pod, m.name or "", m.namespace, grace_period_seconds=grace, uid=m.uid)
            else:
                await evict(client, pod, grace)
            return True
        except NotFound:
            return False
        except ApiError as exc:
            if exc.status.code != 429 or (deadline is not None and loop.time() + EVICTION_RETRY > deadline):
                raise
            print(
                f'error when evicting pods/"{m.name}" -n "{m.namespace}" (will retry after 5s): '
                f"{exc.status.message}",
                file=err,
            )
            await asyncio.sleep(EVICTION_RETRY)


async def _gone(client: Client, pod: Pod) -> bool:
    try:
        current = await client.get(Pod, pod.metadata.name or "", pod.metadata.namespace)
    except NotFound:
        return True
    return current.metadata.uid != pod.metadata.uid  # replaced by a new pod of the same name


async def run_drain(args: argparse.Namespace, out: TextIO, err: TextIO, client: Client) -> int:
    name = node_name(args.node)
    timeout = parse_duration(args.timeout)
    changed = await set_unschedulable(client, name, True)
    print(f"node/{name} cordoned" if changed else f"node/{name} already cordoned", file=out)
    out.flush()
    pods = (await client.list_all(Pod, None, field_selector=f"spec.nodeName={name}")).items
    plan = plan_drain(pods, args)
    if plan.errors:
        raise DrainError(f'unable to drain node "{name}": {_summary(plan.errors)}')
    if plan.warnings:
        print(f"Warning: {_summary(plan.warnings)}", file=err)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout if timeout > 0 else None
    using = "evicting" if not args.disable_eviction else "deleting"
    done = "evicted" if not args.disable_eviction else "deleted"
    pending: list[Pod] = []
    for pod in plan.remove:
        print(f"{using} pod {pod.metadata.namespace}/{pod.metadata.name}", file=out)
        out.flush()
        if await _remove(client, pod, args, err, deadline):
            pending.append(pod)
        else:
            print(f"pod/{pod.metadata.name} {done}", file=out)
    while pending:
        still = []
        for pod in pending:
            if await _gone(client, pod):
                print(f"pod/{pod.metadata.name} {done}", file=out)
                out.flush()
            else:
                still.append(pod)
        pending = still
        if not pending:
            break
        if deadline is not None and loop.time() >= deadline:
            names = ", ".join(f"{p.metadata.namespace}/{p.metadata.name}" for p in pending)
            raise DrainError(
                f'unable to drain node "{name}": global timeout reached: {args.timeout} '
                f"(still terminating: {names})"
            )
        await asyncio.sleep(POLL_INTERVAL)
    print(f"node/{name} drained", file=out)
    return 0


# --- entry points for ``pea`` ----------------------------------------------------------------------


async def cordon(ctx: CommandContext) -> int:
    async with ctx.client() as client:
        return await run_cordon(ctx.args, ctx.out, client, cordon=True)


async def uncordon(ctx: CommandContext) -> int:
    async with ctx.client() as client:
        return await run_cordon(ctx.args, ctx.out, client, cordon=False)


async def drain(ctx: CommandContext) -> int:
    async with ctx.client() as client:
        return await run_drain(ctx.args, ctx.out, ctx.err, client)
