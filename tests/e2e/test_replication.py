"""A ReplicationController on real Podman, as seed 000 walks through it: pods kept alive whatever
happens to them, scaled up and down, and gone with the controller.

The control plane runs its scheduler and controllers; the one agent is this machine's Podman node.
Podman pods are removed behind peapod's back with the podman command itself, talking to the test's
own service socket.
"""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path

import httpx
import pytest

from agent.runtime.base import LABEL_NAME, LABEL_NODE
from agent.runtime.images import BUSYBOX_IMAGE
from agent.runtime.podman_service import PodmanService
from controlplane.api import Pod
from controlplane.client import Client
from tests.support import rc_manifest, rc_yaml
from tui.cli import run

from .cluster import cluster, eventually
from .conftest import NODE, MakePod

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

RC_YAML = rc_yaml(
    rc_manifest(
        "php-controller",
        2,
        {"name": "php-test-pod"},
        [
            {
                "name": "php-test",
                "image": BUSYBOX_IMAGE,
                "command": ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"],
                "env": [{"name": "ENV_TEST_1", "value": "env_test_1"}],
            }
        ],
        labels={"name": "php-controller"},
        pod_spec={"terminationGracePeriodSeconds": 1},
    )
)


async def podman_pods(api: httpx.AsyncClient, running_only: bool = True) -> dict[str, str]:
    """This node's Podman pods (running ones, unless asked for all): API pod name → Podman pod id."""
    node_filter = json.dumps({"label": [f"{LABEL_NODE}={NODE}"]})
    pods = (await api.get("/pods/json", params={"filters": node_filter})).json() or []
    return {
        p["Labels"][LABEL_NAME]: p["Id"] for p in pods if not running_only or p.get("Status") == "Running"
    }


async def running_pods(client: Client) -> dict[str, Pod]:
    """The RC's pods that are Running and not terminating, by name."""
    pods = (await client.list(Pod, "default", label_selector="name=php-test-pod")).items
    return {
        p.metadata.name or "": p
        for p in pods
        if p.status.phase == "Running" and p.metadata.deletion_timestamp is None
    }


async def pea(server: str, *argv: str) -> str:
    out, err = io.StringIO(), io.StringIO()
    code = await run([*argv, "-s", server], out, err)
    assert code == 0, err.getvalue()
    return out.getvalue()


async def test_rc_keeps_its_pods_on_podman_through_kill_scale_and_delete(
    podman_service: PodmanService, podman_api: httpx.AsyncClient, make_pod: MakePod, tmp_path: Path
) -> None:
    manifest = tmp_path / "php-controller.yaml"
    manifest.write_text(RC_YAML)
    async with cluster(podman_service, tmp_path) as (client, _agent, cp):
        assert "created" in await pea(cp.url, "create", "-f", str(manifest))

        async def converged(count: int) -> dict[str, str] | None:
            api_pods = await running_pods(client)
            sandboxes = await podman_pods(podman_api)
            ok = len(api_pods) == count and set(sandboxes) == set(api_pods)
            return sandboxes if ok else None

        first = await eventually(lambda: converged(2), "two php-test pods running on Podman", 60)
        assert all(name.startswith("php-controller-") for name in first)

        # `podman pod rm -f` behind peapod's back: the pod comes back, in a new Podman pod.
        victim, victim_id = sorted(first.items())[0]
        proc = await asyncio.create_subprocess_exec(
            "podman",
            "--url",
            f"unix://{podman_service.socket_path}",
            "pod",
            "rm",
            "-f",
            victim_id,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        _, stderr = await proc.communicate()
        assert proc.returncode == 0, stderr.decode()

        async def replaced() -> dict[str, str] | None:
            now = await converged(2)
            return now if now is not None and now.get(victim, victim_id) != victim_id else None

        await eventually(replaced, "the removed Podman pod to be replaced", 60)

        # Deleting the API pod: the RC makes a new one with a new name.
        await pea(cp.url, "delete", "pod", victim)

        async def renamed() -> dict[str, str] | None:
            now = await converged(2)
            return now if now is not None and victim not in now else None

        await eventually(renamed, "a replacement for the deleted pod", 60)

        await pea(cp.url, "scale", "rc", "php-controller", "--replicas=3")
        await eventually(lambda: converged(3), "three pods after scaling up", 60)
        await pea(cp.url, "scale", "rc", "php-controller", "--replicas=1")
        await eventually(lambda: converged(1), "one pod after scaling down", 60)

        async def described() -> str | None:
            # The scaled-down pods count (as in kubectl) until their containers have stopped.
            text = await pea(cp.url, "describe", "rc", "php-controller")
            lines = dict(
                (k, " ".join(v.split())) for k, _, v in (ln.partition(":") for ln in text.splitlines())
            )
            want = ("1 current / 1 desired", "1 Running / 0 Waiting / 0 Succeeded / 0 Failed")
            return text if (lines.get("Replicas"), lines.get("Pods Status")) == want else None

        describe = await eventually(described, "describe rc to show one pod", 60)
        assert "SuccessfulCreate" in describe and "SuccessfulDelete" in describe

        assert 'replicationcontroller "php-controller" deleted' in await pea(
            cp.url, "delete", "-f", str(manifest)
        )

        async def nothing_left() -> bool:
            api_pods = (await client.list(Pod, "default")).items
            return not api_pods and not await podman_pods(podman_api, running_only=False)

        await eventually(nothing_left, "no pods in the API or on Podman after delete -f", 60)
