"""``pea expose`` end to end, and how ``pea get svc`` shows the result."""

from __future__ import annotations

import msgspec
import pytest

from controlplane.api.core import Pod, ReplicationController, Service
from controlplane.client import Client
from controlplane.server.controlplane import ControlPlane, Settings
from tests.cli.conftest import pea
from tests.controllers.conftest import busybox_rc

pytestmark = pytest.mark.usefixtures("isolated_config")


@pytest.fixture
def settings(settings: Settings) -> Settings:
    settings.scheduler = False
    settings.controllers = False
    return settings


async def test_expose_rc(controlplane: ControlPlane, client: Client) -> None:
    rc = busybox_rc("web", 0)
    await client.create(rc, "default")
    r = await pea(controlplane, "expose", "rc", "web", "--port", "80", "--target-port", "8080")
    assert r == (0, "service/web exposed\n", "")
    svc = await client.get(Service, "web", "default")
    assert svc.spec.selector == {"app": "web"}
    assert svc.spec.ports and svc.spec.ports[0].port == 80 and svc.spec.ports[0].target_port == 8080
    assert svc.spec.cluster_ip and svc.spec.cluster_ip.startswith("10.254.")

    r = await pea(
        controlplane, "expose", "rc/web", "--port", "80", "--type", "NodePort", "--name", "web-np",
        "--node-port", "30123", "--protocol", "UDP",
    )  # fmt: skip
    assert r.code == 0, r
    np = await client.get(Service, "web-np", "default")
    assert np.spec.type == "NodePort" and np.spec.ports and np.spec.ports[0].node_port == 30123
    assert np.spec.ports[0].protocol == "UDP"

    r = await pea(controlplane, "get", "svc")
    lines = r.out.splitlines()
    assert lines[0].split() == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert rows["kubernetes"][1:5] == ["ClusterIP", "10.254.0.1", "<none>", "443/TCP"]
    assert rows["web"][1:5] == ["ClusterIP", svc.spec.cluster_ip, "<none>", "80/TCP"]
    assert rows["web-np"][1:5] == ["NodePort", np.spec.cluster_ip, "<none>", "80:30123/UDP"]

    # The service exposed again under a new name, as a LoadBalancer: pending until someone sets ingress.
    r = await pea(controlplane, "expose", "svc", "web", "--name", "web-lb", "--type", "LoadBalancer")
    assert r.code == 0, r
    lb = await client.get(Service, "web-lb", "default")
    assert lb.spec.selector == {"app": "web"} and lb.spec.ports and lb.spec.ports[0].target_port == 8080
    r = await pea(controlplane, "get", "svc", "web-lb")
    assert r.out.splitlines()[1].split()[3] == "<pending>"


async def test_expose_pod_and_errors(controlplane: ControlPlane, client: Client) -> None:
    pod = msgspec.convert(
        {
            "metadata": {"name": "solo", "labels": {"run": "solo"}},
            "spec": {"containers": [{"name": "c", "image": "x", "ports": [{"containerPort": 9000}]}]},
        },
        Pod,
    )
    await client.create(pod, "default")
    r = await pea(controlplane, "expose", "pod", "solo")
    assert r == (0, "service/solo exposed\n", "")
    svc = await client.get(Service, "solo", "default")
    assert svc.spec.selector == {"run": "solo"}
    assert svc.spec.ports and svc.spec.ports[0].port == 9000

    r = await pea(controlplane, "expose", "rc", "missing", "--port", "80")
    assert r.code == 1 and r.err.count("\n") == 1 and "not found" in r.err
    r = await pea(controlplane, "expose", "pod", "solo", "--port", "80")
    assert r.code == 1 and "already exists" in r.err and r.err.count("\n") == 1
    r = await pea(controlplane, "expose", "rc", "x")
    assert r.code == 1
    rc = busybox_rc("busy", 0)
    await client.create(rc, "default")
    r = await pea(controlplane, "expose", "rc", "busy")
    assert r.code == 1 and "couldn't find port" in r.err
    r = await pea(
        controlplane, "expose", "rc", "busy", "--port", "80", "--type", "NodePort", "--node-port", "80"
    )
    assert r.code == 1 and "provided port is not in the valid range" in r.err and r.err.count("\n") == 1
    r = await pea(controlplane, "expose", "deployment", "busy", "--port", "80")
    assert r.code == 1 and r.err.startswith("error: ")
    assert (await client.get(ReplicationController, "busy", "default")).metadata.name == "busy"
