"""The agent's logic on the hollow runtime against a real control plane: registration, heartbeats,
pod lifecycle, restarts with back-off, sandbox re-creation, deletion, adoption, hollow nodes at scale."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, TypeVar

import msgspec
import pytest

from agent.agent import Agent, AgentSettings
from agent.hollow import HOLLOW_MACHINE, HollowNodes
from agent.pods import BackOffPolicy
from agent.runtime.base import RuntimeFailure
from agent.runtime.hollow import HollowRuntime
from controlplane.api import ConfigMap, Event, Lease, Node, ObjectMeta, Pod
from controlplane.client import Client, NotFound
from tests.support import eventually, recorded

T = TypeVar("T")
FAST = BackOffPolicy(initial=0.3, maximum=1.2, reset_after=600)


def settings(name: str = "node-1") -> AgentSettings:
    return AgentSettings(
        listen="127.0.0.1:0",
        node_name=name,
        node_ip="127.0.0.1",
        lease_interval=0.2,
        status_interval=0.5,
        resync_interval=0.5,
        backoff=FAST,
    )


@pytest.fixture
async def node(client: Client) -> AsyncIterator[tuple[Agent, HollowRuntime]]:
    runtime = HollowRuntime("node-1")
    agent = Agent(client, runtime, settings(), machine=HOLLOW_MACHINE)
    await agent.start()
    try:
        yield agent, runtime
    finally:
        await agent.stop()


def pod(name: str, restart: str = "Always", containers: int = 1, **extra: Any) -> Pod:
    spec: dict[str, Any] = {
        "restartPolicy": restart,
        "containers": [{"name": f"c{i}", "image": "busybox"} for i in range(containers)],
        **extra,
    }
    return msgspec.convert({"metadata": {"name": name}, "spec": spec}, Pod)


async def status_of(client: Client, name: str) -> Pod:
    return await client.get(Pod, name, "default")


async def test_registers_a_ready_node_and_renews_its_lease(
    client: Client, node: tuple[Agent, HollowRuntime]
) -> None:
    registered = await client.get(Node, "node-1")
    ready = next(c for c in registered.status.conditions or [] if c.type == "Ready")
    assert ready.status == "True" and ready.last_heartbeat_time
    assert registered.status.capacity == {"cpu": "4", "memory": "16777216Ki", "pods": "110"}
    assert registered.status.node_info is not None
    assert registered.status.node_info.container_runtime_version == "hollow://0.1"
    assert registered.status.node_info.kubelet_version.startswith("v1.")
    assert registered.spec.pod_cidr == "10.244.0.0/24"
    first = await client.get(Lease, "node-1", "kube-node-lease")

    async def renewed() -> bool:
        lease = await client.get(Lease, "node-1", "kube-node-lease")
        return lease.spec.renew_time != first.spec.renew_time

    await eventually(renewed, "a lease renewal")
    assert first.spec.holder_identity == "node-1"


async def test_pod_runs_and_reports_status_and_events(
    client: Client, node: tuple[Agent, HollowRuntime]
) -> None:
    await client.create(pod("web", containers=2))

    async def running() -> Pod | None:
        p = await status_of(client, "web")
        return p if p.status.phase == "Running" else None

    p = await eventually(running, "web Running")
    assert p.spec.node_name == "node-1" and p.status.host_ip == "127.0.0.1"
    statuses = p.status.container_statuses or []
    assert [s.name for s in statuses] == ["c0", "c1"]
    assert all(s.ready and s.restart_count == 0 and s.state and s.state.running for s in statuses)
    conditions = {c.type: c.status for c in p.status.conditions or []}
    assert conditions["Ready"] == "True" and conditions["ContainersReady"] == "True"
    await recorded(client, "web", "Scheduled", "Pulled", "Created", "Started")

    async def both_created() -> list[Event] | None:  # the agent posts events in the background
        found = [e for e in (await client.list(Event, "default")).items if e.reason == "Created"]
        return found if len(found) >= 2 else None

    created = await eventually(both_created, "Created events of both containers")
    assert sorted(e.involved_object.field_path or "" for e in created) == [
        "spec.containers{c0}",
        "spec.containers{c1}",
    ]
    assert all(e.count == 1 for e in created)


async def test_crash_restarts_with_growing_back_off(
    client: Client, node: tuple[Agent, HollowRuntime]
) -> None:
    _, runtime = node
    made = await client.create(pod("crashy"))
    uid = made.metadata.uid or ""
    await eventually(lambda: _phase(client, "crashy", "Running"), "crashy Running")
    await eventually(lambda: _has_container(runtime, uid), "container created")
    runtime.crash(uid, "c0", 2)

    async def restarted(n: int) -> Pod | None:
        p = await status_of(client, "crashy")
        s = (p.status.container_statuses or [None])[0]
        return p if s is not None and s.restart_count >= n and s.state and s.state.running else None

    p = await eventually(lambda: restarted(1), "restart 1")
    last = p.status.container_statuses[0].last_state  # type: ignore[index]
    assert last is not None and last.terminated is not None and last.terminated.exit_code == 2
    # Crash again at once: now it waits in CrashLoopBackOff with a doubled delay.
    runtime.crash(uid, "c0", 2)

    async def backing_off() -> str | None:
        s = (await status_of(client, "crashy")).status.container_statuses[0]  # type: ignore[index]
        waiting = s.state.waiting if s.state else None
        return waiting.message if waiting and waiting.reason == "CrashLoopBackOff" else None

    # As the kubelet does: the first restart is immediate, the next waits 0.3 s, then 0.6 s...
    message = await eventually(backing_off, "CrashLoopBackOff")
    assert "back-off 0.3s restarting failed container=c0" in message
    await eventually(lambda: restarted(2), "restart 2")
    runtime.crash(uid, "c0", 2)

    async def longer() -> str | None:
        text = await backing_off()
        return text if text and "back-off 0.6s" in text else None

    await eventually(longer, "a doubled back-off")
    await eventually(lambda: restarted(3), "restart 3")
    await recorded(client, "crashy", "BackOff")


async def test_dead_infra_container_recreates_the_sandbox(
    client: Client, node: tuple[Agent, HollowRuntime]
) -> None:
    _, runtime = node
    made = await client.create(pod("boxed"))
    uid = made.metadata.uid or ""
    await eventually(lambda: _phase(client, "boxed", "Running"), "Running")
    old_id = runtime.sandboxes[uid].id
    runtime.kill_sandbox(uid)

    async def recreated() -> bool:
        box = runtime.sandboxes.get(uid)
        return box is not None and box.id != old_id and box.infra_running

    await eventually(recreated, "a new sandbox")

    async def running_again() -> bool:
        s = (await status_of(client, "boxed")).status.container_statuses or []
        return (
            bool(s) and s[0].restart_count == 1 and s[0].state is not None and s[0].state.running is not None
        )

    await eventually(running_again, "running again with restartCount 1")
    await recorded(client, "boxed", "SandboxChanged")


async def test_delete_finishes_after_stopping(client: Client, node: tuple[Agent, HollowRuntime]) -> None:
    _, runtime = node
    made = await client.create(pod("gone"))
    await eventually(lambda: _phase(client, "gone", "Running"), "Running")
    await client.delete(Pod, "gone", "default")

    async def deleted() -> bool:
        try:
            await status_of(client, "gone")
        except NotFound:
            return True
        return False

    await eventually(deleted, "the agent to finish the deletion")
    assert made.metadata.uid not in runtime.sandboxes
    await recorded(client, "gone", "Killing")


@pytest.mark.parametrize(("code", "phase"), [(0, "Succeeded"), (1, "Failed")])
async def test_restart_never_ends_in_a_terminal_phase(
    client: Client, node: tuple[Agent, HollowRuntime], code: int, phase: str
) -> None:
    _, runtime = node
    made = await client.create(pod(f"once-{code}", restart="Never"))
    uid = made.metadata.uid or ""
    await eventually(lambda: _phase(client, f"once-{code}", "Running"), "Running")
    runtime.crash(uid, "c0", code)
    p = await eventually(lambda: _phase(client, f"once-{code}", phase), phase)
    term = p.status.container_statuses[0].state.terminated  # type: ignore[index,union-attr]
    assert term is not None and term.exit_code == code
    assert len(runtime.sandboxes[uid].containers) == 1  # never restarted


async def test_env_from_config_maps_and_fields(client: Client, node: tuple[Agent, HollowRuntime]) -> None:
    _, runtime = node
    env = [
        {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}},
        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "GREETING", "value": "hello $(POD)"},
    ]
    made = await client.create(
        msgspec.convert(
            {
                "metadata": {"name": "envy"},
                "spec": {"containers": [{"name": "c", "image": "busybox", "env": env}]},
            },
            Pod,
        )
    )

    async def config_error() -> str | None:
        s = (await status_of(client, "envy")).status.container_statuses or []
        waiting = s[0].state.waiting if s and s[0].state else None
        return waiting.message if waiting and waiting.reason == "CreateContainerConfigError" else None

    assert await eventually(config_error, "CreateContainerConfigError") == 'configmap "settings" not found'
    await client.create(ConfigMap(metadata=ObjectMeta(name="settings"), data={"mode": "fast"}))
    await eventually(lambda: _phase(client, "envy", "Running"), "Running once the configmap exists")
    spec = next(iter(runtime.specs.values()))
    own = {k: v for k, v in spec.env.items() if not k.startswith("KUBERNETES_")}  # service vars aside
    assert own == {"MODE": "fast", "POD": "envy", "NODE": "node-1", "GREETING": "hello envy"}
    assert made.metadata.uid in runtime.sandboxes


async def test_restarted_agent_adopts_running_pods(client: Client) -> None:
    runtime = HollowRuntime("node-1")
    first = Agent(client, runtime, settings(), machine=HOLLOW_MACHINE)
    await first.start()
    made = await client.create(pod("keeper"))
    uid = made.metadata.uid or ""
    await eventually(lambda: _phase(client, "keeper", "Running"), "Running")
    ids = [c.id for c in runtime.sandboxes[uid].containers]
    await first.stop()
    # While the agent is down: one pod is deleted for good, another is created.
    await client.create(pod("newcomer"))
    second = Agent(client, runtime, settings(), machine=HOLLOW_MACHINE)
    await second.start()
    try:
        await eventually(lambda: _phase(client, "newcomer", "Running"), "the pod created meanwhile")
        assert [c.id for c in runtime.sandboxes[uid].containers] == ids
        assert (await status_of(client, "keeper")).status.container_statuses[0].restart_count == 0  # type: ignore[index]
    finally:
        await second.stop()


async def test_hollow_nodes_at_scale(client: Client) -> None:
    nodes = HollowNodes(client, 100, lease_interval=5, status_interval=20, backoff=FAST)
    await nodes.start()
    try:
        listed = (await client.list(Node)).items
        ready = [
            n
            for n in listed
            if any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or [])
        ]
        assert len(ready) == 100
        assert len({n.spec.pod_cidr for n in listed}) == 100
        for i in range(30):
            await client.create(pod(f"p{i}"))

        async def all_running() -> list[Pod] | None:
            pods = (await client.list(Pod, "default")).items
            ok = [p for p in pods if p.status.phase == "Running"]
            return pods if len(ok) == 30 else None

        pods = await eventually(all_running, "30 pods Running on hollow nodes", timeout=60)
        assert len({p.spec.node_name for p in pods}) >= 10  # spread over many nodes
    finally:
        await nodes.stop()


async def _phase(client: Client, name: str, phase: str) -> Pod | None:
    p = await status_of(client, name)
    return p if p.status.phase == phase else None


async def _has_container(runtime: HollowRuntime, uid: str) -> bool:
    box = runtime.sandboxes.get(uid)
    return box is not None and any(c.state == "running" for c in box.containers)


async def test_image_load_reaches_the_agent(
    client: Client, node: tuple[Agent, HollowRuntime], controlplane: Any, tmp_path: Any
) -> None:
    import io

    from tui.cli import run

    registered = await client.get(Node, "node-1")
    address = (registered.metadata.annotations or {}).get("peapod.io/agent-address", "")
    assert address.startswith("127.0.0.1:")
    assert registered.status.daemon_endpoints is not None
    assert registered.status.daemon_endpoints.kubelet_endpoint is not None
    assert str(registered.status.daemon_endpoints.kubelet_endpoint.port) == address.rsplit(":", 1)[1]
    archive = tmp_path / "img.tar"
    archive.write_bytes(b"not empty")
    out, err = io.StringIO(), io.StringIO()
    code = await run(["image", "load", str(archive), "--node", "node-1", "-s", controlplane.url], out, err)
    assert code == 0, err.getvalue()
    assert out.getvalue().strip() == "node/node-1: loaded localhost/hollow:latest"
    code = await run(["image", "load", str(tmp_path / "missing.tar"), "-s", controlplane.url], out, err)
    assert code == 1 and 'the path "' in err.getvalue()


class RecordingNetwork:
    """A stand-in for the pod network: hands out one address (after ``failures`` failed attempts) and notes
    what it was asked to do."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.pod_cidr: str | None = None
        self.attached: list[str] = []  # sandbox IDs
        self.detached: list[str] = []
        self.restored: list[list[str]] = []

    async def start(self, pod_cidr: str | None) -> None:
        self.pod_cidr = pod_cidr

    async def attach(self, pod: Pod, sandbox: Any) -> str | None:
        if self.failures:
            self.failures -= 1
            raise RuntimeFailure("FailedCreatePodSandBox", "failed to set up the pod network: no bridge")
        self.attached.append(sandbox.id)
        return "10.244.0.7"

    async def detach(self, pod_uid: str, sandbox: Any) -> None:
        self.detached.append(sandbox.id)

    async def restore(self, sandboxes: list[Any]) -> None:
        self.restored.append([s.id for s in sandboxes])


async def test_the_network_seam_gives_pods_their_ip(client: Client) -> None:
    network = RecordingNetwork(failures=1)
    runtime = HollowRuntime("node-1")
    agent = Agent(client, runtime, settings(), machine=HOLLOW_MACHINE, network=network)
    await agent.start()
    try:
        assert network.pod_cidr == "10.244.0.0/24" and network.restored == [[]]
        await client.create(pod("addressed"))
        running = await eventually(lambda: _phase(client, "addressed", "Running"), "Running")
        assert running.status.pod_ip == "10.244.0.7"
        assert [ip.ip for ip in running.status.pod_ips or []] == ["10.244.0.7"]
        # The failed attempt left the sandbox waiting, explained, and the retry wired that same sandbox.
        await recorded(client, "addressed", "FailedCreatePodSandBox")
        sandboxes = await runtime.list_sandboxes()
        assert [s.id for s in sandboxes] == network.attached
        await client.delete(Pod, "addressed", "default")

        async def detached() -> bool:
            return network.detached == network.attached

        await eventually(detached, "the network to be detached before the sandbox goes")
    finally:
        await agent.stop()


async def test_a_restarted_agent_attaches_adopted_sandboxes_again(client: Client) -> None:
    """The network's attach is idempotent; the new agent asks it once per adopted sandbox (to learn the
    address) and never re-creates the sandbox."""
    runtime = HollowRuntime("node-1")
    first = Agent(client, runtime, settings(), machine=HOLLOW_MACHINE, network=RecordingNetwork())
    await first.start()
    await client.create(pod("kept"))
    await eventually(lambda: _phase(client, "kept", "Running"), "Running")
    await first.stop()
    network = RecordingNetwork()
    second = Agent(client, runtime, settings(), machine=HOLLOW_MACHINE, network=network)
    await second.start()
    try:
        sandboxes = [s.id for s in await runtime.list_sandboxes()]
        assert network.restored == [sandboxes] and len(sandboxes) == 1

        async def attached() -> bool:
            return network.attached == sandboxes

        await eventually(attached, "the adopted sandbox to be attached again")
        assert (await status_of(client, "kept")).status.pod_ip == "10.244.0.7"
    finally:
        await second.stop()
