"""The dashboard's tests run against a real control plane on loopback (tests/conftest.py), here with
no scheduler: pods stay Pending until a test changes their status."""

from __future__ import annotations

from pathlib import Path

import pytest

from controlplane.server.controlplane import Settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "cp",
        listen="127.0.0.1:0",
        bookmark_interval=0.5,
        event_sweep_interval=3600,
        scheduler=False,
    )
