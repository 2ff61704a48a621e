"""Pods' /etc/resolv.conf on real Podman: what a running container reads is the agent's managed file for
its dnsPolicy (Podman's own resolv.conf is overridden by the bind mount), and a hostNetwork pod on the
Default policy reads the node's settings.

Each test starts its own cluster on the session's Podman service (see conftest.py); ``make_pod`` is
requested for its teardown, which removes every sandbox of the test node.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from agent.runtime.podman_service import PodmanService
from agent.volumes import parse_resolv_conf
from controlplane.client import Client

from .cluster import cluster, eventually, manifest, running, sh
from .conftest import MakePod

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]


async def resolv_conf(client: Client, name: str) -> str:
    out = await client.exec_output(name, ["cat", "/etc/resolv.conf"])
    assert out.exit_code == 0, out.stderr
    return out.stdout.decode()


async def test_resolv_conf_per_dns_policy(
    podman_service: PodmanService, make_pod: MakePod, tmp_path: Path
) -> None:
    allow = {"allow_host_namespaces": True}  # the hostNetwork pod below
    async with cluster(podman_service, tmp_path, cp_settings=allow) as (client, agent, _):
        node = parse_resolv_conf(await asyncio.to_thread(Path(agent.settings.resolv_conf).read_text))
        await client.create(manifest("first", sh("app", "exec sleep 600")))
        await client.create(
            manifest(
                "none",
                sh("app", "exec sleep 600"),
                dnsPolicy="None",
                dnsConfig={
                    "nameservers": ["192.0.2.53"],
                    "searches": ["example.test"],
                    "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}],
                },
            )
        )
        await client.create(manifest("host", sh("app", "exec sleep 600"), hostNetwork=True))
        for name in ("first", "none", "host"):
            await eventually(lambda name=name: running(client, name), f"{name} running")  # type: ignore[misc]

        lines = (await resolv_conf(client, "first")).splitlines()
        assert [line for line in lines if line.startswith("nameserver")] == ["nameserver 10.254.0.10"]
        search = next(line for line in lines if line.startswith("search")).split()[1:]
        assert search[:3] == ["default.svc.cluster.local", "svc.cluster.local", "cluster.local"]
        assert search[3:] == [s for s in node.searches if s not in search[:3]]  # then the node's own
        assert "options ndots:5" in lines

        assert await resolv_conf(client, "none") == (
            "search example.test\nnameserver 192.0.2.53\noptions ndots:2 edns0\n"
        )

        # hostNetwork on the Default policy: Podman's copy of the node's file, nothing managed.
        host = parse_resolv_conf(await resolv_conf(client, "host"))
        assert host.nameservers == node.nameservers and "10.254.0.10" not in host.nameservers
