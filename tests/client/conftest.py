"""Client tests run against the API server alone: the in-process scheduler would add its own writes."""

from __future__ import annotations

import pytest

from controlplane.server.controlplane import Settings


@pytest.fixture
def settings(settings: Settings) -> Settings:
    settings.scheduler = False
    settings.controllers = False
    return settings
