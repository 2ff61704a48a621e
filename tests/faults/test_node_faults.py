"""Node faults on real Podman in the multi-node lab (``tests/e2e/multinode.py``), with figures printed:

* the Podman service SIGKILLed under a running agent: restarted, pods untouched, events work again;
* the agent SIGKILLed (a ``pea agent`` child process inside the node's namespace): its pods keep running,
  and the next agent adopts them with 0 restarts, the same containers, address and readiness;
* a node's link cut (the lab end of its veth down): NotReady within the shortened grace period,
  Endpoints drop its pods, the RC's replacements run elsewhere, and when the link comes back the
  evicted pods are removed from the node: nothing is duplicated.

One lab for the module (its start is the slow part). The control plane's node monitor grace period and
the default NoExecute tolerations are shortened; the pods of the first two tests tolerate the node taints
for ever, so a slow restart on a loaded machine never evicts them. ``node1`` runs its agent as a child
process from the second test on (an in-process agent reaches the API server on loopback, which no link
cut would stop); ``node2`` keeps the lab's in-process agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import msgspec
import pytest
import pytest_asyncio

from controlplane.api import Endpoints, Node, Pod, ReplicationController, Service
from controlplane.client import NotFound
from controlplane.controllers.manager import ControllerSettings
from tests.e2e import multinode
from tests.e2e.cluster import eventually
from tests.e2e.conftest import api_client, podman_missing_reason
from tests.e2e.multinode import LAB_GATEWAY, Lab, LabNode

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

GRACE = 12.0  # the node monitor grace period (Kubernetes: 40-50 s)
TOLERATION = 2  # default tolerationSeconds for the unreachable/not-ready NoExecute taints (Kubernetes: 300)
LEASE = 4  # the child agent's --node-lease-duration-seconds: renewed every second
WAIT = 90.0  # bound of every wait: the machine is loaded
PEA = Path(sys.executable).parent / "pea"
UID_LABEL = "io.peapod.pod.uid"
FOREVER = [  # tolerated without tolerationSeconds: never evicted for these taints
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"},
]


def web(text: str) -> dict[str, Any]:
    """busybox httpd serving ``text`` on port 80, Ready once it answers."""
    return {
        "name": "web",
        "image": "localhost/busybox:latest",
        "command": [
            "sh",
            "-c",
            f"mkdir -p /www && echo {text} > /www/index.html && exec httpd -f -p 80 -h /www",
        ],
        "readinessProbe": {"httpGet": {"path": "/", "port": 80}, "periodSeconds": 1},
    }


def sleeper() -> dict[str, Any]:
    return {"name": "app", "image": "localhost/busybox:latest", "command": ["sleep", "3600"]}


def pod(name: str, node: str, *containers: dict[str, Any], **labels: str) -> Pod:
    body = {
        "metadata": {"name": name, "labels": labels or None},
        "spec": {
            "nodeName": node,
            "terminationGracePeriodSeconds": 1,
            "tolerations": FOREVER,
            "containers": list(containers),
        },
    }
    return msgspec.convert(body, Pod)


def service(name: str, **selector: str) -> Service:
    return msgspec.convert(
        {"metadata": {"name": name}, "spec": {"selector": selector, "ports": [{"port": 80}]}}, Service
    )


def is_ready(p: Pod) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or ())


async def ready_pod(lab: Lab, name: str) -> Pod | None:
    p = await lab.client.get(Pod, name, "default")
    statuses = p.status.container_statuses or []
    running = bool(statuses) and all(s.state and s.state.running for s in statuses)
    return p if p.status.phase == "Running" and running and is_ready(p) else None


def node_ready(node: Node) -> str:
    return next((c.status for c in node.status.conditions or () if c.type == "Ready"), "")


async def podman_containers(node: LabNode, uid: str) -> dict[str, dict[str, Any]]:
    """The pod's containers in the node's Podman (infra included), by id: state, pid and start time."""
    async with api_client(node.podman_socket) as api:
        found = (await api.get("/containers/json", params={"all": "true"})).json() or []
        mine = [c for c in found if (c.get("Labels") or {}).get(UID_LABEL) == uid]
        out = {}
        for c in mine:
            state = (await api.get(f"/containers/{c['Id']}/json")).json()["State"]
            out[c["Id"]] = {"status": state["Status"], "pid": state["Pid"], "started": state["StartedAt"]}
        return out


async def podman_pods(node: LabNode, uid: str) -> list[dict[str, Any]]:
    async with api_client(node.podman_socket) as api:
        pods = (await api.get("/pods/json")).json() or []
    return [p for p in pods if (p.get("Labels") or {}).get(UID_LABEL) == uid]


async def answers(lab: Lab, where: LabNode, url: str, text: str) -> bool:
    with contextlib.suppress(OSError):
        return text in await lab.http_get(where, url)
    return False


# --- a ``pea agent`` child process inside a node's namespace ----------------------------------------


class AgentProcess:
    """``nsenter --net=NODE pea agent``: the node's agent as its own process, reaching the API server the
    way a real node does (through the lab LAN), so that SIGKILL and a cut link mean what they say.
    Same data directory, Podman service and pod network as the lab's in-process agent it replaces."""

    def __init__(self, lab: Lab, node: LabNode, data_dir: Path) -> None:
        self.lab, self.node, self.data_dir = lab, node, data_dir
        self.log_path = data_dir.parent / f"{node.name}-agent.log"
        self.proc: asyncio.subprocess.Process | None = None
        self.starts = 0

    async def start(self) -> None:
        cmd = [
            "nsenter", f"--net={self.node.netns}", str(PEA),
            "-s", self.lab.pod_url, "--token", self.node.token,
            "agent", "--node-name", self.node.name, "--node-ip", self.node.ip,
            "--podman-socket", str(self.node.podman_socket), "--data-dir", str(self.data_dir),
            "--dns-upstream", LAB_GATEWAY, "--node-lease-duration-seconds", str(LEASE),
        ]  # fmt: skip
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                *cmd, stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log
            )
        self.starts += 1

        async def up() -> bool:
            assert self.proc is not None
            if self.proc.returncode is not None:
                raise AssertionError(f"pea agent exited {self.proc.returncode}: {self.log_tail()}")
            return "running; Ctrl-C stops it" in self.log_path.read_bytes()[offset:].decode(errors="replace")

        await eventually(up, f"pea agent of {self.node.name} up", WAIT)

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    async def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()

    async def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.returncode is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 60)
        except TimeoutError:
            proc.kill()
            await proc.wait()


@dataclass
class FaultLab:
    lab: Lab
    tmp: Path
    agents: dict[str, AgentProcess] = field(default_factory=dict)

    async def child_agent(self, name: str) -> AgentProcess:
        """The node's agent as a child process (the lab's in-process one stopped first), started once."""
        if name in self.agents:
            return self.agents[name]
        node = self.lab.node(name)
        if node.agent is not None:
            await node.agent.stop()
            node.agent = None
        agent = self.agents[name] = AgentProcess(self.lab, node, self.tmp / name)
        await agent.start()
        return agent


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def faults(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[FaultLab]:
    reason = podman_missing_reason()
    if reason is not None:
        pytest.skip(reason)
    tmp = tmp_path_factory.mktemp("nodefaults")
    settings: dict[str, object] = {
        "controller": ControllerSettings(node_monitor_period=1.0, node_monitor_grace_period=GRACE),
        "default_unreachable_toleration_seconds": TOLERATION,
        "default_not_ready_toleration_seconds": TOLERATION,
    }
    async with multinode.testbed(2, tmp, settings=settings) as lab:
        bed = FaultLab(lab, tmp)
        try:
            yield bed
        finally:
            for agent in bed.agents.values():
                await agent.stop()


# --- the tests ------------------------------------------------------------------------------------


async def test_podman_service_killed_is_restarted_and_the_agent_carries_on(faults: FaultLab) -> None:
    lab = faults.lab
    node = lab.node("node2")
    assert node.agent is not None
    await lab.client.create(pod("steady", "node2", web("steady")))
    before = await eventually(lambda: ready_pod(lab, "steady"), "steady Running and Ready", WAIT)
    status = (before.status.container_statuses or [])[0]
    old_pid = node.service.pid
    assert old_pid is not None and node.service.restarts == 0

    started = time.monotonic()
    os.kill(old_pid, signal.SIGKILL)
    saw_down = await node.agent.check_runtime(timeout=5.0) is False  # asked at once: the service is gone
    down_node = await lab.client.get(Node, "node2")  # a figure, not asserted: the restart may be faster
    down_message = next((c.message for c in down_node.status.conditions or () if c.type == "Ready"), "")

    async def back() -> bool:
        return node.service.running and node.service.restarts == 1 and node.service.pid != old_pid

    await eventually(back, "the Podman service restarted", WAIT)
    service_back = time.monotonic() - started
    assert await node.agent.check_runtime(timeout=10.0)
    ready = await eventually(
        lambda: _node_ready_true(lab, "node2"), "node2 Ready again after the runtime came back", WAIT
    )
    assert "container runtime is down" not in (ready or "")
    # The pod was never touched: same container, no restart, still Ready, still answering.
    after = await eventually(lambda: ready_pod(lab, "steady"), "steady still Running and Ready", WAIT)
    now = (after.status.container_statuses or [])[0]
    assert (now.container_id, now.restart_count) == (status.container_id, 0)
    assert await answers(lab, node, f"http://{after.status.pod_ip}/", "steady")

    # A pod created afterwards starts; a container killed afterwards is restarted (events flow again).
    await lab.client.create(pod("later", "node2", sleeper()))
    await eventually(lambda: ready_pod(lab, "later"), "a pod created after the restart", WAIT)
    killed = time.monotonic()
    async with api_client(node.podman_socket) as api:
        cid = (now.container_id or "").removeprefix("podman://")
        r = await api.post(f"/containers/{cid}/kill", params={"signal": "KILL"})
        assert r.status_code in (200, 204), r.text

    async def restarted() -> Pod | None:
        p = await ready_pod(lab, "steady")
        return p if p and (p.status.container_statuses or [])[0].restart_count == 1 else None

    await eventually(restarted, "the killed container restarted", WAIT)
    print(
        f"\npodman service SIGKILLed: agent saw the runtime down: {saw_down} (node2 Ready: "
        f"{down_message!r}); service back after "
        f"{service_back:.1f} s (restarts={node.service.restarts}); steady: restartCount 0, same container; "
        f"container killed afterwards restarted after {time.monotonic() - killed:.1f} s; "
        f"load {os.getloadavg()[0]:.1f}"
    )
    for name in ("steady", "later"):
        await lab.client.delete(Pod, name, "default", grace_period_seconds=0)


async def _node_ready_true(lab: Lab, name: str) -> str | None:
    n = await lab.client.get(Node, name)
    ready = next((c for c in n.status.conditions or () if c.type == "Ready"), None)
    return (ready.message or "ok") if ready is not None and ready.status == "True" else None


async def test_agent_sigkill_pods_keep_running_and_are_adopted(faults: FaultLab) -> None:
    lab = faults.lab
    node, other = lab.node("node1"), lab.node("node2")
    agent = await faults.child_agent("node1")
    await lab.client.create(service("keep", app="keep"))
    await lab.client.create(pod("keep-web", "node1", web("kept"), app="keep"))
    await lab.client.create(pod("keep-sleep", "node1", sleeper()))
    names = ("keep-web", "keep-sleep")
    before: dict[str, Pod] = {}
    for n in names:
        before[n] = await eventually(partial(ready_pod, lab, n), f"{n} Running and Ready", WAIT)
    cluster_ip = (await lab.client.get(Service, "keep", "default")).spec.cluster_ip
    assert await eventually(
        lambda: answers(lab, other, f"http://{cluster_ip}/", "kept"), "the Service answering", WAIT
    )
    containers = {n: await podman_containers(node, p.metadata.uid or "") for n, p in before.items()}
    assert all(len(c) == 2 for c in containers.values()), containers  # infra + app

    await agent.kill()
    # Nothing happens to the pods: Podman's, not the agent's.
    for n, p in before.items():
        assert await podman_containers(node, p.metadata.uid or "") == containers[n]
    ip = before["keep-web"].status.pod_ip
    assert await answers(lab, node, f"http://{ip}/", "kept")
    assert await answers(lab, other, f"http://{cluster_ip}/", "kept")

    restarted = time.monotonic()
    await agent.start()

    async def adopted() -> dict[str, Pod] | None:
        node_obj = await lab.client.get(Node, "node1")
        if node_ready(node_obj) != "True":
            return None
        pods = {n: await lab.client.get(Pod, n, "default") for n in names}
        return pods if all(p.status.phase == "Running" and is_ready(p) for p in pods.values()) else None

    await eventually(adopted, "the restarted agent reporting its pods", WAIT)
    await asyncio.sleep(3.0)  # a few resyncs of the new agent: whatever it would redo, it has done by now
    after = {n: await lab.client.get(Pod, n, "default") for n in names}
    for n in names:
        old, new = before[n], after[n]
        assert new.metadata.uid == old.metadata.uid and is_ready(new) and new.status.phase == "Running"
        assert new.status.pod_ip == old.status.pod_ip
        olds, news = old.status.container_statuses or [], new.status.container_statuses or []
        assert [(s.container_id, s.restart_count) for s in news] == [(s.container_id, 0) for s in olds]
        assert [s.state.running.started_at for s in news if s.state and s.state.running] == [
            s.state.running.started_at for s in olds if s.state and s.state.running
        ]
        assert await podman_containers(node, old.metadata.uid or "") == containers[n]  # same PIDs, starts
        assert len(await podman_pods(node, old.metadata.uid or "")) == 1  # no second sandbox
    assert await answers(lab, node, f"http://{ip}/", "kept")
    assert await answers(lab, other, f"http://{cluster_ip}/", "kept")
    assert "removing sandbox" not in agent.log_tail()
    print(
        f"\nagent SIGKILLed and restarted: {len(names)} pods adopted after "
        f"{time.monotonic() - restarted:.1f} s; "
        f"checked: same container ids, restartCount 0, same startedAt and Podman PIDs/start times, Ready, "
        f"podIP {ip} unchanged, 1 sandbox each, answering at its IP and via ClusterIP {cluster_ip}; "
        f"load {os.getloadavg()[0]:.1f}"
    )
    for n in names:
        await lab.client.delete(Pod, n, "default", grace_period_seconds=0)
    await lab.client.delete(Service, "keep", "default")


async def _link(lab: Lab, index: int, state: str) -> None:
    """The lab end of node ``index``'s veth up or down (``multinode._plug_node`` names it)."""
    tag = lab.lab.rsplit("-", 1)[1]
    code, out = await lab.exec_in(lab.lab, "ip", "link", "set", f"pl{tag}{index}", state)
    assert code == 0, out


async def rc_pods(lab: Lab) -> list[Pod]:
    return list((await lab.client.list(Pod, "default", label_selector="app=cut")).items)


async def test_node_cut_off_goes_not_ready_and_comes_back_without_duplicates(faults: FaultLab) -> None:
    lab = faults.lab
    node1 = lab.node("node1")
    await faults.child_agent("node1")
    # Every first replica on node1 (node2 cordoned), then two more wherever the scheduler likes.
    await lab.client.patch(Node, "node2", {"spec": {"unschedulable": True}})
    await lab.client.create(service("cut", app="cut"))
    rc = {
        "metadata": {"name": "cut"},
        "spec": {
            "replicas": 2,
            "selector": {"app": "cut"},
            "template": {
                "metadata": {"labels": {"app": "cut"}},
                "spec": {"terminationGracePeriodSeconds": 1, "containers": [web("cut")]},
            },
        },
    }
    await lab.client.create(msgspec.convert(rc, ReplicationController))

    async def running_ready(count: int) -> list[Pod] | None:
        pods = [p for p in await rc_pods(lab) if p.metadata.deletion_timestamp is None]
        ok = [p for p in pods if p.status.phase == "Running" and is_ready(p)]
        return ok if len(ok) == count == len(pods) else None

    first = await eventually(lambda: running_ready(2), "2 replicas on node1", WAIT)
    assert {p.spec.node_name for p in first} == {"node1"}
    await lab.client.patch(Node, "node2", {"spec": {"unschedulable": False}})
    await lab.client.patch(ReplicationController, "cut", {"spec": {"replicas": 4}}, "default")
    spread = await eventually(lambda: running_ready(4), "4 replicas Running and Ready", WAIT)
    on_node1 = {p.metadata.name or "": p.metadata.uid or "" for p in spread if p.spec.node_name == "node1"}
    print(f"\nreplicas per node: {sorted(p.spec.node_name or '' for p in spread)}")

    async def endpoints() -> tuple[set[str], set[str]]:
        ep = await lab.client.get(Endpoints, "cut", "default")
        ready = {a.target_ref.name or "" for s in ep.subsets or () for a in s.addresses or () if a.target_ref}
        unready = {
            a.target_ref.name or ""
            for s in ep.subsets or ()
            for a in s.not_ready_addresses or ()
            if a.target_ref
        }
        return ready, unready

    async def all_endpoints() -> bool:
        return len((await endpoints())[0]) == 4

    await eventually(all_endpoints, "4 ready endpoints", WAIT)

    cut = time.monotonic()
    await _link(lab, 1, "down")
    try:

        async def unknown() -> bool:
            return node_ready(await lab.client.get(Node, "node1")) == "Unknown"

        await eventually(unknown, "node1 Ready=Unknown", WAIT)
        not_ready_after = time.monotonic() - cut

        async def dropped() -> bool:
            return not (await endpoints())[0] & set(on_node1)

        await eventually(dropped, "node1's pods out of the ready endpoints", WAIT)
        dropped_after = time.monotonic() - cut

        async def replaced() -> list[Pod] | None:
            live = [p for p in await rc_pods(lab) if p.metadata.deletion_timestamp is None]
            ok = [
                p for p in live if p.spec.node_name == "node2" and p.status.phase == "Running" and is_ready(p)
            ]
            return ok if len(ok) == 4 == len(live) else None

        await eventually(replaced, "4 replicas Running and Ready on node2", WAIT)
        replaced_after = time.monotonic() - cut

        async def moved() -> bool:
            ready, _ = await endpoints()
            return len(ready) == 4 and not ready & set(on_node1)

        await eventually(moved, "the 4 replacements in the ready endpoints", WAIT)
        cluster_ip = (await lab.client.get(Service, "cut", "default")).spec.cluster_ip
        assert await answers(lab, lab.node("node2"), f"http://{cluster_ip}/", "cut")
    finally:
        await _link(lab, 1, "up")
    back = time.monotonic()

    async def ready_again() -> bool:
        return node_ready(await lab.client.get(Node, "node1")) == "True"

    await eventually(ready_again, "node1 Ready again", WAIT)
    ready_after = time.monotonic() - back

    async def evicted_gone() -> bool:
        for name in on_node1:
            with contextlib.suppress(NotFound):
                await lab.client.get(Pod, name, "default")
                return False
        return True

    await eventually(evicted_gone, "the evicted pods finished by node1's agent", WAIT)
    cleaned_after = time.monotonic() - back
    for uid in on_node1.values():
        assert await podman_pods(node1, uid) == []
        assert await podman_containers(node1, uid) == {}
    pods = await rc_pods(lab)
    names = [p.metadata.name for p in pods]
    assert len(names) == len(set(names)) == 4
    assert all(p.status.phase == "Running" and p.metadata.deletion_timestamp is None for p in pods)
    print(
        f"\nnode1 cut off: Ready=Unknown after {not_ready_after:.1f} s (grace {GRACE:g} s), out of the "
        f"endpoints after {dropped_after:.1f} s, {len(on_node1)} replacements Running on node2 after "
        f"{replaced_after:.1f} s; link back: Ready after {ready_after:.1f} s, evicted pods removed from "
        f"node1 after {cleaned_after:.1f} s; {len(pods)} Running pods, no duplicates; "
        f"load {os.getloadavg()[0]:.1f}"
    )
