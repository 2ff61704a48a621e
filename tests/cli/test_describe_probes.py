"""``pea describe pod`` shows probes the way kubectl does (one line each: action, timing, thresholds)."""

from __future__ import annotations

import re

import msgspec

from controlplane.api import Pod
from controlplane.client import Client
from controlplane.server.controlplane import ControlPlane

from .test_cli import pea


async def test_describe_shows_each_probe_on_one_line(controlplane: ControlPlane, client: Client) -> None:
    container = {
        "name": "web",
        "image": "busybox",
        "ports": [{"name": "http", "containerPort": 8080}],
        "livenessProbe": {"exec": {"command": ["cat", "/tmp/healthy"]}, "initialDelaySeconds": 5},
        "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 2},
        "startupProbe": {"tcpSocket": {"port": 8080}, "failureThreshold": 30},
    }
    body = {"metadata": {"name": "probed"}, "spec": {"containers": [container]}}
    await client.create(msgspec.convert(body, Pod))
    r = await pea(controlplane, "describe", "pod", "probed")
    assert r.code == 0, r
    lines = {
        "Liveness": r"exec \[cat /tmp/healthy\] delay=5s timeout=1s period=10s #success=1 #failure=3",
        "Readiness": r"http-get http://:http/ready delay=0s timeout=1s period=2s #success=1 #failure=3",
        "Startup": r"tcp-socket :8080 delay=0s timeout=1s period=10s #success=1 #failure=30",
    }
    for title, pattern in lines.items():
        assert re.search(rf"^    {title}:\s+{pattern}$", r.out, re.M), (title, r.out)
