"""Controller tests: a real control plane on loopback with its controllers running on short timings.

The scheduler is off unless a module turns it on, so pods stay where a test puts them; nodes, where
needed, are hollow (the real agent code on the fake runtime).
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from agent.hollow import HollowNodes
from agent.pods import BackOffPolicy
from controlplane.api import ReplicationController
from controlplane.client import Client
from controlplane.controllers.manager import ControllerSettings
from controlplane.server.controlplane import Settings
from tests.support import rc_manifest


@pytest.fixture
def settings(settings: Settings) -> Settings:
    settings.scheduler = False
    settings.controller = ControllerSettings(
        endpoints_batch_period=0.2,
        node_monitor_period=0.2,
        node_monitor_grace_period=2.0,
        namespace_recheck=0.2,
    )
    return settings


def hollow_nodes(client: Client, count: int = 1, prefix: str = "hollow-node-") -> HollowNodes:
    """``count`` hollow nodes named ``prefix``0.., on short lease/status timings and restart back-off;
    the caller starts and stops them."""
    return HollowNodes(
        client,
        count,
        prefix=prefix,
        lease_interval=0.2,
        status_interval=0.5,
        backoff=BackOffPolicy(initial=0.3, maximum=1.2),
    )


def busybox_rc(name: str, replicas: int, **options: Any) -> ReplicationController:
    """An RC ``name`` keeping ``replicas`` busybox pods labelled ``app=name``; ``options`` as for
    ``tests.support.rc_manifest``."""
    containers = [{"name": "c", "image": "busybox"}]
    return msgspec.convert(
        rc_manifest(name, replicas, {"app": name}, containers, **options), ReplicationController
    )
