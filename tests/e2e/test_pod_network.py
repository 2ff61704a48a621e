"""The pod network on real Podman and real netlink: each pod its own IP from the node's podCIDR, reachable
from its node and from other pods, hostPort on the node's address, egress through masquerade, and
nothing left behind (issue 4's "done when").

The node lives in a network namespace of the test's own (``nodenet.py``); the "outside world" is a second
namespace beside it. All traffic stays inside those namespaces and the pods' own.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from pyroute2 import IPRoute

from agent.agent import Agent
from agent.network.bridge import BridgeNetwork, pod_veths
from agent.network.netns import run_in_netns
from agent.runtime.podman import PodmanRuntime
from agent.runtime.podman_service import PodmanService
from controlplane.api import Node, Pod, Service
from controlplane.api.core import ContainerPort, PodIP
from controlplane.client import Client
from controlplane.server.controlplane import ControlPlane

from .cluster import cluster, eventually, get, reasons, running, sh, start_agent
from .cluster import manifest as pod_manifest
from .conftest import NODE, MakePod, busybox
from .nodenet import NodeNet, accept_one, http_get, nft_list, node_namespace

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]


@pytest_asyncio.fixture(loop_scope="session")
async def nodenet() -> AsyncIterator[NodeNet]:
    async with node_namespace() as net:
        yield net


def bridge(tmp_path: Path, net: NodeNet) -> BridgeNetwork:
    return BridgeNetwork(tmp_path / "network", netns=net.node)


def networked(
    service: PodmanService, tmp_path: Path, net: NodeNet, **agent_settings: Any
) -> contextlib.AbstractAsyncContextManager[tuple[Client, Agent, ControlPlane]]:
    """A control plane and an agent whose pod network lives in the test's node namespace."""
    return cluster(service, tmp_path, bridge(tmp_path, net), net.node_ip, **agent_settings)


def web(name: str, text: str, host_port: int | None = None) -> dict[str, object]:
    """busybox httpd on port 80 serving ``text`` (on the node's ``host_port`` too, if given); it first
    prints its eth0 address to the log."""
    script = f"ip -4 -o addr show eth0; echo {text} > /var/www/index.html; exec httpd -f -p 80 -h /var/www"
    ports = [{"containerPort": 80, "hostPort": host_port}] if host_port else []
    return sh(name, script, ports=ports)


async def page(netns: str, host: str, port: int = 80) -> str | None:
    try:
        return await http_get(netns, host, port)
    except OSError:
        return None


async def log_of(runtime: PodmanRuntime, client: Client, agent_workers: object, pod: str, ctr: str) -> str:
    uid = (await get(client, pod)).metadata.uid or ""
    box = await agent_workers._sandbox(uid)  # type: ignore[attr-defined]
    info = box.latest(ctr) if box is not None else None
    return (await runtime.logs(info)).decode(errors="replace") if info is not None else ""


async def test_pods_get_their_own_addresses_and_reach_each_other(
    podman_service: PodmanService, make_pod: MakePod, nodenet: NodeNet, tmp_path: Path
) -> None:
    async with networked(podman_service, tmp_path, nodenet) as (client, agent, _):
        cidr = ipaddress.ip_network((await client.get(Node, NODE)).spec.pod_cidr or "")
        await client.create(pod_manifest("web-a", web("web", "hello-from-a")))
        a = await eventually(lambda: running(client, "web-a"), "pod a running")
        ip_a = a.status.pod_ip or ""
        assert ipaddress.ip_address(ip_a) in cidr and a.status.pod_ips == [PodIP(ip=ip_a)]
        assert "hello-from-a" in await eventually(lambda: page(nodenet.node, ip_a), "the node reaching pod a")

        client_script = (
            f"ip -4 -o addr show eth0; until wget -qO- http://{ip_a}/; do sleep 0.2; done; exec sleep 600"
        )
        await client.create(pod_manifest("web-b", web("web", "hello-from-b"), sh("client", client_script)))
        b = await eventually(lambda: running(client, "web-b"), "pod b running")
        ip_b = b.status.pod_ip or ""
        assert ipaddress.ip_address(ip_b) in cidr and ip_b != ip_a

        runtime = agent.runtime
        assert isinstance(runtime, PodmanRuntime)

        async def fetched() -> str | None:
            text = await log_of(runtime, client, agent.workers, "web-b", "client")
            return text if "hello-from-a" in text else None

        client_log = await eventually(fetched, "pod b's client container fetching pod a's page")
        web_log = await log_of(runtime, client, agent.workers, "web-b", "web")
        # Both containers of pod b see one eth0, with the address the API reports.
        assert f"inet {ip_b}/{cidr.prefixlen}" in client_log and f"inet {ip_b}/{cidr.prefixlen}" in web_log
        # And pod a answers pod b's address too (the other direction, through the node's bridge).
        assert "hello-from-b" in await eventually(lambda: page(nodenet.node, ip_b), "the node reaching b")


async def test_host_port_answers_on_the_node_and_pods_reach_out_masqueraded(
    podman_service: PodmanService, make_pod: MakePod, nodenet: NodeNet, tmp_path: Path
) -> None:
    async with networked(podman_service, tmp_path, nodenet) as (client, agent, _):
        await client.create(pod_manifest("hp", web("web", "hello-hostport", 8080)))
        pod = await eventually(lambda: running(client, "hp"), "the hostPort pod running")
        ip = pod.status.pod_ip
        assert f"tcp dport 8080 dnat to {ip}:80" in await nft_list(nodenet.node)
        # From outside the node, at the node's address; from the node itself, at localhost.
        assert "hello-hostport" in await eventually(
            lambda: page(nodenet.ext, nodenet.node_ip, 8080), "the hostPort from outside the node"
        )
        assert "hello-hostport" in (await page(nodenet.node, "127.0.0.1", 8080) or "")
        assert "hello-hostport" in (await page(nodenet.node, nodenet.node_ip, 8080) or "")

        # Another pod: the node's hostPort from inside the cluster (hairpin), then the outside world,
        # which has no route to pod addresses and so answers only because the request is masqueraded.
        outside = asyncio.create_task(accept_one(nodenet.ext, nodenet.ext_ip, 9000))
        script = (
            f"until wget -qO- http://{nodenet.node_ip}:8080/; do sleep 0.2; done; "
            f"until wget -qO- http://{nodenet.ext_ip}:9000/; do sleep 0.2; done; exec sleep 600"
        )
        await client.create(pod_manifest("out", sh("app", script)))
        seen_from = await asyncio.wait_for(outside, 60)
        assert seen_from == nodenet.node_ip
        runtime = agent.runtime
        assert isinstance(runtime, PodmanRuntime)
        assert "hello-hostport" in await log_of(runtime, client, agent.workers, "out", "app")

        await client.delete(Pod, "hp", "default")

        async def rule_gone() -> bool:
            return "dport 8080" not in await nft_list(nodenet.node)

        await eventually(rule_gone, "the hostPort rule to go with its pod")
        assert await page(nodenet.ext, nodenet.node_ip, 8080) is None


async def test_a_recreated_sandbox_is_wired_again(
    podman_service: PodmanService,
    podman_api: httpx.AsyncClient,
    make_pod: MakePod,
    nodenet: NodeNet,
    tmp_path: Path,
) -> None:
    network = bridge(tmp_path, nodenet)
    async with cluster(podman_service, tmp_path, network, nodenet.node_ip) as (client, agent, _):
        await client.create(pod_manifest("phoenix", web("web", "risen")))
        before = await eventually(lambda: running(client, "phoenix"), "running")
        box = await agent.workers._sandbox(before.metadata.uid or "")
        assert box is not None
        inspect = (await podman_api.get(f"/pods/{box.id}/json")).json()
        await podman_api.post(f"/containers/{inspect['InfraContainerID']}/kill", params={"signal": "KILL"})

        async def rewired() -> Pod | None:
            pod = await running(client, "phoenix", restarts=1)
            now = await agent.workers._sandbox(before.metadata.uid or "")
            return (
                pod
                if pod is not None and now is not None and now.id != box.id and pod.status.pod_ip
                else None
            )

        after = await eventually(rewired, "the pod running in a new, wired sandbox")
        ip = after.status.pod_ip or ""
        assert "risen" in await eventually(lambda: page(nodenet.node, ip), "the new address answering")
        assert "SandboxChanged" in await reasons(client, "phoenix")
        # The old sandbox's address and veth are gone: one of each, the new one's.
        assert [a.ip for a in network.allocations()] == [ip]
        assert len(await run_in_netns(nodenet.node, pod_veths)) == 1

        # A sandbox removed behind the agent's back: a new one, and the old address is given back.
        second = await agent.workers._sandbox(before.metadata.uid or "")
        assert second is not None
        await podman_api.delete(f"/pods/{second.id}", params={"force": "true"})

        async def replaced() -> Pod | None:
            pod = await running(client, "phoenix")
            now = await agent.workers._sandbox(before.metadata.uid or "")
            fresh = pod is not None and now is not None and now.id != second.id and pod.status.pod_ip != ip
            return pod if fresh else None

        third = await eventually(replaced, "the pod running in a third sandbox with a new address")
        assert [a.ip for a in network.allocations()] == [third.status.pod_ip]
        assert len(await run_in_netns(nodenet.node, pod_veths)) == 1


async def test_agent_restart_keeps_addresses_and_connectivity(
    podman_service: PodmanService, make_pod: MakePod, nodenet: NodeNet, tmp_path: Path
) -> None:
    async with networked(podman_service, tmp_path, nodenet) as (client, agent, _):
        await client.create(pod_manifest("steady", web("web", "still-here", 8081)))
        before = await eventually(lambda: running(client, "steady"), "running")
        ip = before.status.pod_ip or ""
        await agent.stop()
        # Pods keep their network while no agent runs...
        assert "still-here" in (await page(nodenet.node, ip) or "")
        second_network = bridge(tmp_path, nodenet)
        second = start_agent(client, podman_service, second_network, nodenet.node_ip, tmp_path / "agent")
        await second.start()
        try:
            # ...and the next agent adopts them without re-wiring: same address, same veth, same rules.
            await asyncio.sleep(1.5)  # a few resyncs of the new agent
            after = await get(client, "steady")
            assert after.status.pod_ip == ip
            assert [a.ip for a in second_network.allocations()] == [ip]
            assert len(await run_in_netns(nodenet.node, pod_veths)) == 1
            assert "still-here" in (await page(nodenet.node, ip) or "")
            assert "still-here" in (await page(nodenet.ext, nodenet.node_ip, 8081) or "")
            await client.create(pod_manifest("newcomer", web("web", "new")))
            new = await eventually(lambda: running(client, "newcomer"), "a new pod after the restart")
            assert new.status.pod_ip not in (None, ip)
        finally:
            await second.stop()


async def test_create_delete_cycles_leave_nothing_behind(
    runtime: PodmanRuntime, make_pod: MakePod, nodenet: NodeNet, tmp_path: Path
) -> None:
    """300 sandboxes wired and unwired, four at a time: never one address twice at once, and afterwards
    no veth, no address record and no host-port rule left."""
    network = bridge(tmp_path, nodenet)
    await network.start("10.244.9.0/24")
    held: dict[str, str] = {}
    seen: list[str] = []
    lanes, per_lane = 4, 75

    async def lane(n: int) -> None:
        for i in range(per_lane):
            pod = make_pod(
                f"cycle-{n}-{i}",
                busybox("app", "sleep", "600", ports=[ContainerPort(container_port=80, host_port=9000 + n)]),
            )
            sandbox = await runtime.create_sandbox(pod)
            try:
                ip = await network.attach(pod, sandbox)
                assert ip is not None and ip not in held.values(), f"{ip} handed out twice at once"
                held[sandbox.id] = ip
                seen.append(ip)
            finally:
                held.pop(sandbox.id, None)
                await network.detach(pod.metadata.uid or "", sandbox)
                await runtime.remove_sandbox(sandbox, 0)

    started = time.perf_counter()
    await asyncio.gather(*(lane(n) for n in range(lanes)))
    elapsed = time.perf_counter() - started
    print(f"\n{lanes * per_lane} sandbox create+wire+unwire+remove cycles in {elapsed:.1f} s")
    assert len(seen) == lanes * per_lane and len(set(seen)) > 200  # round-robin through the /24
    assert network.allocations() == []
    assert [p.name for p in (tmp_path / "network").iterdir()] == ["last_reserved_ip"]
    assert await run_in_netns(nodenet.node, pod_veths) == []
    table = await nft_list(nodenet.node)
    assert "masquerade" in table and "dnat to" not in table
    assert [s for s in await runtime.list_sandboxes() if s.name.startswith("cycle-")] == []


async def test_pea_agent_cleanup_removes_the_pod_network(
    runtime: PodmanRuntime, make_pod: MakePod, nodenet: NodeNet, tmp_path: Path
) -> None:
    data_dir = tmp_path / "agent"
    network = BridgeNetwork(data_dir / "network", netns=nodenet.node)
    await network.start("10.244.5.0/24")
    pod = make_pod(
        "leftover", busybox("app", "sleep", "600", ports=[ContainerPort(container_port=80, host_port=8082)])
    )
    await network.attach(pod, await runtime.create_sandbox(pod))
    assert "dport 8082" in await nft_list(nodenet.node)
    assert len(await run_in_netns(nodenet.node, pod_veths)) == 1

    pea = Path(sys.executable).parent / "pea"
    proc = await asyncio.create_subprocess_exec(
        "nsenter", f"--net={nodenet.node}", str(pea), "agent", "--cleanup", "--node-name", "leftover-node",
        "--data-dir", str(data_dir), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert "pod network of leftover-node removed" in out.decode()
    assert await nft_list(nodenet.node) == ""
    assert await run_in_netns(nodenet.node, pod_veths) == []
    assert not await run_in_netns(nodenet.node, link_exists, "pea0")
    assert not (data_dir / "network").exists()


def link_exists(name: str) -> bool:
    """Through netlink: /sys/class/net shows the namespace sysfs was mounted in, not the thread's."""
    with IPRoute() as ipr:
        return bool(ipr.link_lookup(ifname=name))


async def test_without_the_proxy_pods_ask_the_nodes_dns_server_directly(
    podman_service: PodmanService, make_pod: MakePod, nodenet: NodeNet, tmp_path: Path
) -> None:
    """No proxy sends the kube-dns address anywhere, so ClusterFirst pods get the node's own DNS server
    (the bridge gateway) as their nameserver, and it answers cluster names."""
    async with networked(podman_service, tmp_path, nodenet, proxy=False) as (client, agent, _):
        assert agent.proxy is None and agent.dns is not None
        cidr = ipaddress.ip_network((await client.get(Node, NODE)).spec.pod_cidr or "")
        gateway = str(next(cidr.hosts()))
        await client.create(pod_manifest("asker", sh("app", "exec sleep 600")))
        await eventually(lambda: running(client, "asker"), "the pod running")
        conf = await client.exec_output("asker", ["cat", "/etc/resolv.conf"])
        assert f"nameserver {gateway}\n" in conf.stdout.decode()
        kubernetes = await client.get(Service, "kubernetes", "default")
        answer = await client.exec_output("asker", ["nslookup", "kubernetes.default.svc.cluster.local"])
        assert kubernetes.spec.cluster_ip and kubernetes.spec.cluster_ip in answer.stdout.decode()
