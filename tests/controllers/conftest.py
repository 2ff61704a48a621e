"""Controller tests: a real control plane on loopback with its controllers running on short timings.

The scheduler is off unless a module turns it on, so pods stay where a test puts them; nodes, where
needed, are hollow (the real agent code on the fake runtime).
"""

from __future__ import annotations

import pytest

from controlplane.controllers.manager import ControllerSettings
from controlplane.server.controlplane import Settings


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
