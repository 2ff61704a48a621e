"""Shared fixtures: a real control plane on loopback (real SQLite, real HTTP) and a client for it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from controlplane.client import Client
from controlplane.server.controlplane import ControlPlane, Settings
from tests.support import serving


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings for a throwaway control plane on a free loopback port; tests may tweak them first."""
    return Settings(
        data_dir=tmp_path / "cp", listen="127.0.0.1:0", bookmark_interval=0.5, event_sweep_interval=3600
    )


@pytest.fixture
async def controlplane(settings: Settings) -> AsyncIterator[ControlPlane]:
    async with serving(settings) as cp:
        yield cp


@pytest.fixture
async def client(controlplane: ControlPlane) -> AsyncIterator[Client]:
    async with Client(controlplane.url, controlplane.admin_token) as c:
        yield c
