"""Pods' /etc/resolv.conf: the kubelet's content for each dnsPolicy (pure: merging, de-duplication,
limits, hostNetwork), and what an agent on the hollow runtime mounts into a started container, with the
MissingClusterDNS event when it has no cluster DNS."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from agent.agent import Agent
from agent.hollow import HOLLOW_MACHINE
from agent.runtime.base import ContainerSpec, Mount
from agent.runtime.hollow import HollowRuntime
from agent.volumes import DNSConfig, VolumeManager, parse_resolv_conf, pod_dns, uses_node_resolv_conf
from controlplane.api import Event, Pod
from controlplane.client import Client
from controlplane.server.controlplane import Settings
from tests.agent.test_agent_hollow import settings as agent_settings
from tests.support import eventually

NODE = DNSConfig(["192.168.1.1", "192.168.1.2"], ["corp.example", "cluster.local"], ["rotate", "ndots:1"])
CLUSTER = ["10.254.0.10"]


def make_pod(namespace: str = "team", **spec: Any) -> Pod:
    body = {
        "metadata": {"name": "web", "namespace": namespace, "uid": str(uuid.uuid4())},
        "spec": {"containers": [{"name": "app", "image": "busybox"}], **spec},
    }
    return msgspec.convert(body, Pod)


def content(pod: Pod, cluster_dns: list[str] = CLUSTER, node: DNSConfig | None = NODE) -> str:
    return pod_dns(pod, cluster_dns, "cluster.local", node).config.render()


# --- the node's file --------------------------------------------------------------------------------


def test_parse_node_resolv_conf() -> None:
    text = (
        "# generated\n"
        "nameserver 10.0.0.2\n"
        "search old.example\n"
        "; another comment\n"
        "nameserver 10.0.0.3 # trailing\n"
        "search a.example. . b.example\n"
        "options edns0\n"
        "options timeout:2 attempts:3\n"
        "sortlist 130.155.160.0/255.255.240.0\n"
    )
    assert parse_resolv_conf(text) == DNSConfig(
        ["10.0.0.2", "10.0.0.3"], ["a.example", "b.example"], ["edns0", "timeout:2", "attempts:3"]
    )


# --- ClusterFirst -----------------------------------------------------------------------------------


def test_cluster_first() -> None:
    dns = pod_dns(make_pod(), CLUSTER, "cluster.local", NODE)
    assert dns.policy == "ClusterFirst" and dns.events == []
    # The node's search domains follow the cluster's (cluster.local once); its options are not used.
    assert dns.config.render() == (
        "search team.svc.cluster.local svc.cluster.local cluster.local corp.example\n"
        "nameserver 10.254.0.10\n"
        "options ndots:5\n"
    )
    assert content(make_pod(dnsPolicy="ClusterFirst")) == dns.config.render()


def test_cluster_first_merges_dns_config() -> None:
    pod = make_pod(
        dnsConfig={
            "nameservers": ["10.254.0.10", "1.1.1.1"],
            "searches": ["corp.example", "extra.example"],
            "options": [
                {"name": "ndots", "value": "2"},
                {"name": "edns0"},
                {"name": "timeout", "value": "1"},
            ],
        }
    )
    assert content(pod) == (
        "search team.svc.cluster.local svc.cluster.local cluster.local corp.example extra.example\n"
        "nameserver 10.254.0.10\n"
        "nameserver 1.1.1.1\n"
        "options ndots:2 edns0 timeout:1\n"
    )


def test_several_cluster_dns_servers_and_no_cluster_domain() -> None:
    dns = pod_dns(make_pod(), ["10.254.0.10", "10.254.0.11"], "", NODE)
    assert dns.config == DNSConfig(
        ["10.254.0.10", "10.254.0.11"], ["corp.example", "cluster.local"], ["ndots:5"]
    )


def test_missing_cluster_dns_falls_back_to_default() -> None:
    dns = pod_dns(make_pod(), [], "cluster.local", NODE)
    assert dns.policy == "Default"
    assert dns.events == [
        (
            "MissingClusterDNS",
            'pod: "web". kubelet does not have ClusterDNS IP configured and cannot create Pod using '
            '"ClusterFirst" policy. Falling back to "Default" policy.',
        )
    ]
    assert dns.config == NODE


# --- Default and None -------------------------------------------------------------------------------


def test_default_is_the_nodes_file_plus_dns_config() -> None:
    assert content(make_pod(dnsPolicy="Default")) == (
        "search corp.example cluster.local\n"
        "nameserver 192.168.1.1\n"
        "nameserver 192.168.1.2\n"
        "options rotate ndots:1\n"
    )
    pod = make_pod(
        dnsPolicy="Default",
        dnsConfig={"nameservers": ["192.168.1.2", "8.8.8.8"], "options": [{"name": "rotate", "value": "x"}]},
    )
    dns = pod_dns(pod, CLUSTER, "cluster.local", NODE)
    assert dns.config == DNSConfig(
        ["192.168.1.1", "192.168.1.2", "8.8.8.8"], ["corp.example", "cluster.local"], ["rotate:x", "ndots:1"]
    )
    assert dns.events == []


def test_default_without_a_node_file_disables_lookups() -> None:
    assert content(make_pod(dnsPolicy="Default"), node=None) == "search .\nnameserver 127.0.0.1\n"


def test_none_is_only_dns_config() -> None:
    pod = make_pod(
        dnsPolicy="None",
        dnsConfig={
            "nameservers": ["1.1.1.1"],
            "searches": ["a.example"],
            "options": [{"name": "ndots", "value": "3"}],
        },
    )
    dns = pod_dns(pod, CLUSTER, "cluster.local", NODE)
    assert dns.policy == "None"
    assert dns.config.render() == "search a.example\nnameserver 1.1.1.1\noptions ndots:3\n"


# --- hostNetwork --------------------------------------------------------------------------------------


def test_host_network_variants() -> None:
    plain = make_pod(hostNetwork=True)  # ClusterFirst on the node's network acts as Default
    dns = pod_dns(plain, CLUSTER, "cluster.local", NODE)
    assert dns.policy == "Default" and dns.config == NODE and dns.events == []
    assert uses_node_resolv_conf(plain, dns)  # Podman gives it the node's file as is

    with_host_net = make_pod(hostNetwork=True, dnsPolicy="ClusterFirstWithHostNet")
    dns = pod_dns(with_host_net, CLUSTER, "cluster.local", NODE)
    assert dns.policy == "ClusterFirst" and dns.config.nameservers == CLUSTER
    assert not uses_node_resolv_conf(with_host_net, dns)

    extra = make_pod(hostNetwork=True, dnsConfig={"searches": ["x.example"]})
    dns = pod_dns(extra, CLUSTER, "cluster.local", NODE)
    assert dns.config.searches == ["corp.example", "cluster.local", "x.example"]
    assert not uses_node_resolv_conf(extra, dns)  # something to add: a managed file

    # ClusterFirstWithHostNet without cluster DNS: the event, then the node's settings.
    dns = pod_dns(with_host_net, [], "cluster.local", NODE)
    assert dns.policy == "Default" and [e[0] for e in dns.events] == ["MissingClusterDNS"]


# --- limits -------------------------------------------------------------------------------------------


def test_nameserver_limit() -> None:
    pod = make_pod(dnsConfig={"nameservers": ["1.1.1.1", "2.2.2.2", "3.3.3.3"]})
    dns = pod_dns(pod, CLUSTER, "cluster.local", NODE)
    assert dns.config.nameservers == ["10.254.0.10", "1.1.1.1", "2.2.2.2"]
    assert dns.events == [
        (
            "DNSConfigForming",
            "Nameserver limits were exceeded, some nameservers have been omitted, the applied nameserver "
            "line is: 10.254.0.10 1.1.1.1 2.2.2.2",
        )
    ]


def test_search_limits() -> None:
    many = [f"d{i}.example" for i in range(40)]
    dns = pod_dns(make_pod(dnsConfig={"searches": many}), CLUSTER, "cluster.local", NODE)
    assert len(dns.config.searches) == 32 and dns.config.searches[:4] == [
        "team.svc.cluster.local", "svc.cluster.local", "cluster.local", "corp.example"
    ]  # fmt: skip
    assert [reason for reason, _ in dns.events] == ["DNSConfigForming"]
    assert dns.events[0][1].startswith("Search Line limits were exceeded")

    too_long = "a" * 254
    only = {"nameservers": ["1.1.1.1"], "searches": [too_long, "ok"]}
    dns = pod_dns(make_pod(dnsPolicy="None", dnsConfig=only), CLUSTER, "cluster.local", NODE)
    assert dns.config.searches == ["ok"] and dns.events

    long_ones = [f"{i:02d}" + "x" * 68 for i in range(32)]  # 32 x 70 chars + spaces: 2271 > 2048
    dns = pod_dns(make_pod(dnsPolicy="None", dnsConfig={"nameservers": ["1.1.1.1"], "searches": long_ones}),
                  CLUSTER, "cluster.local", NODE)  # fmt: skip
    assert dns.config.searches == long_ones[:28]  # cut from the end until the line fits
    assert len(" ".join(dns.config.searches)) <= 2048 and dns.events


def test_duplicates_are_dropped() -> None:
    pod = make_pod(dnsPolicy="Default", dnsConfig={"searches": ["corp.example", "corp.example", "b.example"]})
    assert pod_dns(pod, CLUSTER, "cluster.local", NODE).config.searches == [
        "corp.example", "cluster.local", "b.example"
    ]  # fmt: skip


# --- on an agent ----------------------------------------------------------------------------------


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The control plane lets pods use hostNetwork (refused by default): one test pod does."""
    settings.allow_host_namespaces = True
    return settings


@pytest.fixture
def node_resolv(tmp_path: Path) -> Path:
    path = tmp_path / "node-resolv.conf"
    path.write_text("nameserver 192.168.1.1\nsearch corp.example\noptions rotate\n")
    return path


@contextlib.asynccontextmanager
async def running_agent(
    client: Client, tmp_path: Path, node_resolv: Path, cluster_dns: list[str]
) -> AsyncIterator[tuple[HollowRuntime, VolumeManager]]:
    """An agent on the hollow runtime with a VolumeManager, so its pods get resolv.conf files."""
    runtime = HollowRuntime("node-1")
    config = agent_settings()
    config.cluster_dns = cluster_dns
    config.resolv_conf = str(node_resolv)
    volumes = VolumeManager(tmp_path / "pods", client)
    agent = Agent(client, runtime, config, machine=HOLLOW_MACHINE, volumes=volumes)
    await agent.start()
    try:
        yield runtime, volumes
    finally:
        await agent.stop()


async def started_spec(runtime: HollowRuntime, uid: str) -> ContainerSpec:
    async def spec() -> ContainerSpec | None:
        sandbox = runtime.sandboxes.get(uid)
        if sandbox is None or not sandbox.containers:
            return None
        return runtime.specs.get(sandbox.containers[0].id)

    got: ContainerSpec = await eventually(spec, "a started container")
    return got


def agent_pod(name: str, **spec: Any) -> Pod:
    body = {
        "metadata": {"name": name},
        "spec": {"nodeName": "node-1", "containers": [{"name": "app", "image": "busybox"}], **spec},
    }
    return msgspec.convert(body, Pod)


async def test_container_mounts_the_pods_resolv_conf(
    client: Client, tmp_path: Path, node_resolv: Path
) -> None:
    async with running_agent(client, tmp_path, node_resolv, ["10.254.0.10"]) as (runtime, volumes):
        pod = await client.create(agent_pod("web"), "default")
        uid = pod.metadata.uid or ""
        spec = await started_spec(runtime, uid)
        path = volumes.resolv_conf_path(uid)
        assert Mount(str(path), "/etc/resolv.conf") in spec.mounts
        assert path.read_text() == (
            "search default.svc.cluster.local svc.cluster.local cluster.local corp.example\n"
            "nameserver 10.254.0.10\n"
            "options ndots:5\n"
        )

        # hostNetwork on the Default policy: the node's own file, nothing managed or mounted.
        host = await client.create(agent_pod("host", hostNetwork=True), "default")
        spec = await started_spec(runtime, host.metadata.uid or "")
        assert all(m.destination != "/etc/resolv.conf" for m in spec.mounts)
        assert not volumes.resolv_conf_path(host.metadata.uid or "").exists()


async def test_missing_cluster_dns_event(client: Client, tmp_path: Path, node_resolv: Path) -> None:
    async with running_agent(client, tmp_path, node_resolv, []) as (runtime, volumes):
        pod = await client.create(agent_pod("lonely"), "default")
        uid = pod.metadata.uid or ""
        await started_spec(runtime, uid)
        assert volumes.resolv_conf_path(uid).read_text() == (
            "search corp.example\nnameserver 192.168.1.1\noptions rotate\n"
        )

        async def warned() -> list[Event] | None:
            events = [
                e for e in (await client.list(Event, "default")).items if e.reason == "MissingClusterDNS"
            ]
            return events or None

        events = await eventually(warned, "the MissingClusterDNS event")
        assert len(events) == 1 and events[0].type == "Warning"
        assert events[0].involved_object.name == "lonely"
        assert events[0].message == (
            'pod: "lonely". kubelet does not have ClusterDNS IP configured and cannot create Pod using '
            '"ClusterFirst" policy. Falling back to "Default" policy.'
        )
