"""API tests exercise the server alone: the in-process scheduler would add its own writes and events."""

from __future__ import annotations

import pytest

from controlplane.server.controlplane import Settings


@pytest.fixture
def settings(settings: Settings) -> Settings:
    settings.scheduler = False
    return settings
