"""Pod status from what the runtime reports: phase, conditions and containerStatuses, as the kubelet
computes them (``getPhase`` and friends), so ``kubectl get``/``describe`` read what they expect.

Pure functions over the API pod, the sandbox and the agent's per-container notes (a waiting reason such
as CrashLoopBackOff or ErrImagePull that Podman cannot know about).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import msgspec

from controlplane.api.core import (
    Container,
    ContainerState,
    ContainerStateRunning,
    ContainerStateTerminated,
    ContainerStateWaiting,
    ContainerStatus,
    Pod,
    PodCondition,
    PodIP,
    PodStatus,
)
from controlplane.api.meta import now
from controlplane.status import condition

from .runtime.base import ContainerInfo, SandboxInfo


@dataclass
class Waiting:
    """Why a container is not running although it should be (shown as state.waiting)."""

    reason: str
    message: str = ""


def terminated(info: ContainerInfo) -> ContainerStateTerminated:
    return ContainerStateTerminated(
        exit_code=info.exit_code or 0,
        reason=info.reason or ("Completed" if not info.exit_code else "Error"),
        started_at=info.started_at,
        finished_at=info.finished_at,
        container_id=f"podman://{info.id}",
    )


def container_status(
    name: str,
    image: str,
    latest: ContainerInfo | None,
    previous: ContainerInfo | None,
    waiting: Waiting | None,
    restarts: int,
    ready: bool = True,
    started: bool = True,
) -> ContainerStatus:
    """``ready``/``started``: what the readiness and startup probes say while the container runs."""
    status = ContainerStatus(name=name, image=image, restart_count=restarts, ready=False, started=False)
    if previous is not None and previous.state == "exited":
        status.last_state = ContainerState(terminated=terminated(previous))
    if latest is not None:
        status.container_id = f"podman://{latest.id}"
        status.image_id = latest.image_id
    if waiting is not None:
        status.state = ContainerState(
            waiting=ContainerStateWaiting(reason=waiting.reason, message=waiting.message or None)
        )
        if latest is not None and latest.state == "exited":
            status.last_state = ContainerState(terminated=terminated(latest))
    elif latest is None or latest.state == "created":
        status.state = ContainerState(waiting=ContainerStateWaiting(reason="ContainerCreating"))
    elif latest.state == "running":
        status.state = ContainerState(running=ContainerStateRunning(started_at=latest.started_at))
        status.ready = ready
        status.started = started
    else:
        status.state = ContainerState(terminated=terminated(latest))
    return status


def init_done(statuses: list[ContainerStatus]) -> bool:
    """Every init container has run to completion (exit 0)."""
    return all(s.state and s.state.terminated and s.state.terminated.exit_code == 0 for s in statuses)


def init_failed(pod: Pod, statuses: list[ContainerStatus]) -> bool:
    """An init container failed and will not be retried (restartPolicy Never): the pod has failed."""
    if (pod.spec.restart_policy or "Always") != "Never":
        return False
    return any(s.state and s.state.terminated and s.state.terminated.exit_code != 0 for s in statuses)


def phase(pod: Pod, statuses: list[ContainerStatus], init: list[ContainerStatus] | None = None) -> str:
    """Kubernetes' getPhase: Pending while initializing and until every container has run; then by
    restartPolicy."""
    policy = pod.spec.restart_policy or "Always"
    if init:
        if init_failed(pod, init):
            return "Failed"
        if not init_done(init):
            return "Pending"
    running = waiting = succeeded = failed = 0
    for s in statuses:
        state = s.state or ContainerState()
        if state.running is not None:
            running += 1
        elif state.terminated is not None:
            if state.terminated.exit_code == 0:
                succeeded += 1
            else:
                failed += 1
        elif s.last_state is not None and s.last_state.terminated is not None:
            # Waiting to be restarted after having run: it counts as what it last did.
            if s.last_state.terminated.exit_code == 0:
                succeeded += 1
            else:
                failed += 1
        else:
            waiting += 1
    if waiting:
        return "Pending"
    if running:
        return "Running"
    if not statuses:
        return "Pending"
    if policy == "Always":
        return "Running"
    if policy == "OnFailure":
        return "Running" if failed else "Succeeded"
    return "Failed" if failed else "Succeeded"


def _condition(old: PodStatus, kind: str, value: bool, reason: str | None = None) -> PodCondition:
    status = "True" if value else "False"
    previous = condition(old.conditions, kind)
    since = previous.last_transition_time if previous is not None and previous.status == status else now()
    return PodCondition(
        type=kind, status=status, last_transition_time=since, reason=None if value else reason
    )


def pod_status(
    pod: Pod,
    sandbox: SandboxInfo | None,
    waiting: Mapping[str, Waiting],
    restarts: Mapping[str, int],
    previous: Mapping[str, ContainerInfo],
    host_ip: str,
    ready: Mapping[str, bool] | None = None,
    started: Mapping[str, bool] | None = None,
) -> PodStatus:
    """``ready``/``started``: probe results by container name (absent: no probe, so True)."""
    old = pod.status
    ready = ready or {}
    started = started or {}

    def status_of(c: Container) -> ContainerStatus:
        latest = sandbox.latest(c.name) if sandbox is not None else None
        return container_status(
            c.name, c.image or "", latest, previous.get(c.name), waiting.get(c.name), restarts.get(c.name, 0),
            ready.get(c.name, True), started.get(c.name, True),
        )  # fmt: skip

    init = [status_of(c) for c in pod.spec.init_containers or ()]
    for s in init:
        s.ready = bool(s.state and s.state.terminated and s.state.terminated.exit_code == 0)
    initialized = init_done(init)
    statuses = [status_of(c) for c in pod.spec.containers]
    if not initialized:
        for s in statuses:
            if (
                s.state is not None
                and s.state.waiting is not None
                and s.state.waiting.reason == "ContainerCreating"
            ):
                s.state.waiting.reason = "PodInitializing"
    current = phase(pod, statuses, init)
    all_ready = bool(statuses) and all(s.ready for s in statuses)
    conditions = [
        _condition(old, "PodReadyToStartContainers", sandbox is not None and sandbox.infra_running),
        _condition(old, "Initialized", initialized, "ContainersNotInitialized"),
        _condition(old, "Ready", all_ready and current == "Running", "ContainersNotReady"),
        _condition(old, "ContainersReady", all_ready, "ContainersNotReady"),
        _condition(old, "PodScheduled", True),
    ]
    if not initialized:
        pending = [s.name for s in init if not s.ready]
        conditions[1].message = f"containers with incomplete status: [{' '.join(pending)}]"
    not_ready = [s.name for s in statuses if not s.ready]
    if not_ready:
        message = f"containers with unready status: [{' '.join(not_ready)}]"
        for cond in conditions[2:4]:
            cond.message = message
    ip = sandbox.ip if sandbox is not None else None
    return PodStatus(
        phase=current,
        conditions=conditions,
        host_ip=host_ip,
        host_ips=[PodIP(ip=host_ip)],
        pod_ip=ip,
        pod_ips=[PodIP(ip=ip)] if ip else None,
        start_time=old.start_time or now(),
        init_container_statuses=init or None,
        container_statuses=statuses,
        qos_class=old.qos_class,
    )


def same_status(a: PodStatus, b: PodStatus) -> bool:
    """Equal but for timestamps that only say when we looked."""
    return _strip(a) == _strip(b)


def _strip(s: PodStatus) -> PodStatus:
    copy = msgspec.structs.replace(s, start_time=None)
    copy.conditions = [msgspec.structs.replace(c, last_probe_time=None) for c in s.conditions or ()]
    return copy
