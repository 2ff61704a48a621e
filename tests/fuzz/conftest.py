"""A control plane on loopback served from its own thread, for tests that drive it synchronously.

Hypothesis' ``@given`` runs plain functions, so the fuzzer talks to the server with a blocking
``httpx.Client`` while the server runs its own event loop in a thread. No scheduler, controllers or
periodic reconcilers: nothing but the requests under test writes to the store, so a rejected request
can be checked to have left the store's revision where it was.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from controlplane.server.controlplane import ControlPlane, Settings

T = TypeVar("T")


class ThreadedControlPlane:
    """A :class:`ControlPlane` running in a background thread's event loop."""

    def __init__(self, settings: Settings) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="fuzz-controlplane", daemon=True)
        self.cp = ControlPlane(settings)

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self) -> None:
        self.thread.start()
        self.call(self.cp.start())

    def stop(self) -> None:
        try:
            self.call(self.cp.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(60)
            self.loop.close()

    def revision(self) -> int:
        """The store's current revision: it moves on every write, and only on writes."""
        return self.call(self.cp.backend.current_revision())

    @property
    def url(self) -> str:
        return self.cp.url

    @property
    def headers(self) -> dict[str, str]:
        token = self.cp.admin_token
        return {"Authorization": f"Bearer {token}"} if token else {}


@pytest.fixture(scope="module")
def quiet_controlplane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedControlPlane]:
    data = Path(tmp_path_factory.mktemp("fuzz")) / "cp"
    settings = Settings(
        data_dir=data,
        listen="127.0.0.1:0",
        scheduler=False,
        controllers=False,
        endpoint_reconcile_interval=3600.0,
        endpoint_lease_ttl=7200.0,
        event_sweep_interval=3600.0,
        bookmark_interval=60.0,
    )
    server = ThreadedControlPlane(settings)
    server.start()
    try:
        yield server
    finally:
        server.stop()
