"""Fixtures for the pod network's kernel tests: each runs in a network namespace of its own.

Tests marked ``e2e`` in this directory touch the kernel (namespaces, nftables); they are skipped unless
the run is root and has ``ip`` and ``nft``. The rest (pure functions) run everywhere.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).parent


def kernel_unavailable() -> str | None:
    """Why the kernel tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "pod network kernel tests need root (they create network namespaces and nftables tables)"
    missing = [tool for tool in ("ip", "nft", "nsenter") if shutil.which(tool) is None]
    if missing:
        return f"pod network kernel tests need {', '.join(missing)} on PATH"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = kernel_unavailable()
    if reason is None:
        return
    for item in items:
        if item.get_closest_marker("e2e") and HERE in item.path.parents:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture
def netns() -> Iterator[str]:
    """A throwaway network namespace (only ``lo``, down); yields its path and deletes it afterwards,
    which also removes every interface and nftables table made in it."""
    name = f"peatest-{secrets.token_hex(4)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield f"/run/netns/{name}"
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)
