"""``pea hollow-nodes`` and ``pea agent --runtime hollow`` as a person runs them: processes that register
nodes, run until Ctrl-C, and stop cleanly."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

from controlplane.api import Node
from controlplane.client import Client
from controlplane.server.controlplane import ControlPlane

PEA = str(Path(sys.executable).with_name("pea"))


async def ready_nodes(client: Client) -> set[str]:
    return {
        n.metadata.name or ""
        for n in (await client.list(Node)).items
        if any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or [])
    }


async def run_until_ready(args: list[str], client: Client, want: set[str]) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        PEA, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        for _ in range(300):
            if want <= await ready_nodes(client):
                break
            await asyncio.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return proc.returncode or 0, out.decode()


async def test_hollow_nodes_command(controlplane: ControlPlane, client: Client) -> None:
    code, out = await run_until_ready(
        ["hollow-nodes", "--count", "5", "--prefix", "sim-", "-s", controlplane.url],
        client,
        {f"sim-{i}" for i in range(5)},
    )
    assert code == 0, out
    assert "5 hollow nodes running (sim-0..sim-4)" in out
    assert {f"sim-{i}" for i in range(5)} <= await ready_nodes(client)


async def test_agent_command_with_the_hollow_runtime(controlplane: ControlPlane, client: Client) -> None:
    code, out = await run_until_ready(
        [
            "agent",
            "--runtime",
            "hollow",
            "--node-name",
            "solo",
            "--node-ip",
            "127.0.0.1",
            "-s",
            controlplane.url,
        ],
        client,
        {"solo"},
    )
    assert code == 0, out
    assert "peapod agent solo (127.0.0.1) running" in out
    node = await client.get(Node, "solo")
    assert (node.metadata.annotations or {}).get("peapod.io/agent-address", "").startswith("127.0.0.1:")


async def test_hollow_nodes_without_the_proxy_and_with_their_own_intervals(
    controlplane: ControlPlane, client: Client
) -> None:
    args = ["hollow-nodes", "--count", "3", "--prefix", "np-", "--no-proxy", "--lease-interval", "1"]
    args += ["--status-interval", "5", "--register-batch", "2", "-s", controlplane.url]
    code, out = await run_until_ready(args, client, {f"np-{i}" for i in range(3)})
    assert code == 0, out
    assert "3 hollow nodes running (np-0..np-2)" in out and "registered in" in out


async def test_hollow_nodes_bad_flags_are_clear_errors(controlplane: ControlPlane) -> None:
    for bad, message in (
        (["--cluster-cidr", "10.300.0.0/16"], "--cluster-cidr"),
        (["--lease-interval", "0"], "--lease-interval"),
        (["--register-batch", "0"], "--register-batch"),
    ):
        proc = await asyncio.create_subprocess_exec(
            PEA, "hollow-nodes", "--count", "1", *bad, "-s", controlplane.url,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode != 0
        assert message in out.decode() and "Traceback" not in out.decode()
