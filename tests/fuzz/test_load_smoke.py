"""A short run of the load benchmark (``bench/bench_load.py``) so the load path stays covered in CI:
10 non-admin users for a few seconds against an in-process control plane with a token file. Figures
are printed, never asserted as timings; what is asserted is that nothing failed other than counted
429s and that every watcher saw each of its own acknowledged writes."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from controlplane.server.controlplane import ControlPlane, Settings

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from bench_load import run_load, write_token_file

CLIENTS = 10
SECONDS = 5.0


@pytest.fixture
def tokens(tmp_path: Path) -> tuple[Path, list[str]]:
    path = tmp_path / "tokens.csv"
    _, users = write_token_file(path, CLIENTS)
    return path, users


@pytest.fixture
def settings(settings: Settings, tokens: tuple[Path, list[str]]) -> Settings:
    settings.token_file = tokens[0]
    settings.scheduler = settings.controllers = False
    return settings


async def test_load_smoke(controlplane: ControlPlane, tokens: tuple[Path, list[str]]) -> None:
    result = await run_load(controlplane.url, tokens[1], duration=SECONDS, max_requests=2_000, watch_every=2)
    by_kind = {op: len(samples) for op, samples in result.latencies.items()}
    print(f"requests: {result.requests} {by_kind}; errors: {dict(result.errors)}; 429s: {result.throttled}")
    print(f"watch: expected {result.watch_expected}, seen {result.watch_seen}, missed {result.watch_missed}")
    print(*result.error_samples, sep="\n")
    assert not result.errors
    assert result.requests > CLIENTS  # every client got going
    assert result.watchers == CLIENTS // 2 and result.watch_expected > 0
    assert result.watch_missed == 0
