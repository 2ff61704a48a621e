"""CLI tests: ``tui.cli.run`` in-process against the shared control plane fixture."""

from __future__ import annotations

import io
from pathlib import Path
from typing import NamedTuple

import pytest

from controlplane.server.controlplane import ControlPlane
from tui.cli import run


@pytest.fixture
def isolated_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No kubeconfig or environment of the person running the tests leaks in."""
    monkeypatch.setenv("PEA_KUBECONFIG", str(tmp_path / "no-kubeconfig"))
    monkeypatch.delenv("PEA_SERVER", raising=False)
    monkeypatch.delenv("PEA_TOKEN", raising=False)


class Result(NamedTuple):
    """What one ``pea`` run gave: its exit code, stdout and stderr."""

    code: int
    out: str
    err: str


async def pea(cp: ControlPlane, *args: str, stdin: str | None = None) -> Result:
    """Run ``pea ARGS --server <cp>`` in-process, with ``stdin`` as its standard input if given."""
    out, err = io.StringIO(), io.StringIO()
    code = await run(
        [*args, "--server", cp.url], out, err, stdin=io.StringIO(stdin) if stdin is not None else None
    )
    return Result(code, out.getvalue(), err.getvalue())
