"""Snapshots of the dashboard (pytest-textual-snapshot): the pods view, a describe screen, the help.

Regenerate after a deliberate change of layout, then look at the SVGs before committing them::

    .venv/bin/python -m pytest -p no:cacheprovider tests/tui/test_snapshots.py --snapshot-update

``snap_compare`` runs the app itself with ``App.run`` (its own event loop), so these tests are sync and
the control plane runs on a loop of its own in a thread (``ThreadedControlPlane``); the app's client
is used only on the app's loop. What differs between runs is pinned: the clock that stamps
creationTimestamps and events (``meta.now`` wherever it was imported by name), the clocks that ages are
measured against (the server's tables, describe's, and the ResourceTable's ``clock``, which keeps AGE
counting on screen), the local time zone (describe prints local times) and the API
server's address in the header (a random port, overwritten in ``run_before``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import inspect
import sys
import threading
import time
import types
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import pytest
from textual.pilot import Pilot
from textual.widgets import TextArea

import controlplane.api.meta as meta
import controlplane.tables as tables
import tui.describe
from controlplane.api import Pod
from controlplane.api.registry import resolve
from controlplane.client import Client, EventRecorder
from controlplane.server.controlplane import ControlPlane, Settings
from tests.support import busybox_pod
from tui.dashboard import PeapodApp
from tui.dashboard.screens import HelpScreen
from tui.dashboard.screens.describe import DescribeScreen
from tui.dashboard.widgets import ClusterHeader, ResourceTable

SIZE = (120, 40)
#: When every object is created and every event recorded.
CREATED = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
#: The "now" ages are measured against: everything is 5m old.
NOW = CREATED + dt.timedelta(minutes=5)
SERVER = "http://127.0.0.1:6443"

T = TypeVar("T")


class ThreadedControlPlane:
    """A real control plane on loopback, served by its own event loop in a daemon thread."""

    def __init__(self, settings: Settings) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="controlplane", daemon=True)
        self.cp = ControlPlane(settings)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self) -> None:
        self.thread.start()
        self.run(self.cp.start())

    def stop(self) -> None:
        try:
            self.run(self.cp.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(30)
            self.loop.close()

    def client(self) -> Client:
        return Client(self.cp.url, self.cp.admin_token)


class _FrozenDateTime(dt.datetime):
    @classmethod
    def now(cls, tz: dt.tzinfo | None = None) -> Any:
        return NOW.astimezone(tz) if tz is not None else NOW.replace(tzinfo=None)


@pytest.fixture
def frozen_time(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Pin the clocks (see the module docstring) and the time zone (UTC)."""
    stamp = CREATED.strftime("%Y-%m-%dT%H:%M:%SZ")
    stamp_micro = CREATED.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    real_now, real_now_micro, real_build_table = meta.now, meta.now_micro, tables.build_table
    for module in list(sys.modules.values()):
        if not module or not module.__name__.startswith(("controlplane", "tui")):
            continue
        if getattr(module, "now", None) is real_now:
            monkeypatch.setattr(module, "now", lambda: stamp)
        if getattr(module, "now_micro", None) is real_now_micro:
            monkeypatch.setattr(module, "now_micro", lambda: stamp_micro)
        if getattr(module, "build_table", None) is real_build_table and module is not tables:
            monkeypatch.setattr(module, "build_table", partial(real_build_table, now=NOW))
    frozen_dt = types.SimpleNamespace(**{**vars(dt), "datetime": _FrozenDateTime})
    monkeypatch.setattr(tui.describe, "dt", frozen_dt)
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def served(settings: Settings, frozen_time: None) -> Iterator[ThreadedControlPlane]:
    """The control plane of ``settings`` (no scheduler: the pods keep the phases the test gives them)."""
    cp = ThreadedControlPlane(settings)
    cp.start()
    try:
        yield cp
    finally:
        cp.stop()


async def _seed(client: Client) -> None:
    """Three pods, Running, Pending and Failed; the running one has two events."""
    async with client:
        labelled = busybox_pod("web-running")
        labelled.metadata.labels = {"app": "web", "tier": "front"}
        running = await client.create(labelled)
        await client.create(busybox_pod("web-pending"))
        await client.create(busybox_pod("job-failed"))
        started = CREATED.strftime("%Y-%m-%dT%H:%M:%SZ")
        container = {
            "name": "c",
            "image": "busybox",
            "imageID": "docker.io/library/busybox@sha256:0000",
            "ready": True,
            "started": True,
            "restartCount": 0,
            "state": {"running": {"startedAt": started}},
        }
        status = {"phase": "Running", "startTime": started, "containerStatuses": [container]}
        await client.patch(Pod, "web-running", {"status": status}, "default", subresource="status")
        failed = {"status": {"phase": "Failed"}}
        await client.patch(Pod, "job-failed", failed, "default", subresource="status")
        recorder = EventRecorder(client, "peapod-agent")
        await recorder.record(running, "Normal", "Pulled", 'Container image "busybox" already present')
        await recorder.record(running, "Normal", "Started", "Started container c")


async def _bounded(check: Callable[[], Any], pilot: Pilot[Any], what: str, timeout: float = 15) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.05)


async def _pods_listed(pilot: Pilot[Any]) -> None:
    """Pin the header's address; wait for the three rows, the header's counts and readiness."""
    app = pilot.app
    header = app.screen.query_one(ClusterHeader)
    table = app.screen.query_one(ResourceTable)
    table.clock = NOW.timestamp  # the table counts AGE itself, from creationTimestamp, every second
    phases = {"Running": 1, "Pending": 1, "Failed": 1}
    await _bounded(lambda: len(table.shown_keys) == 3, pilot, "the three pods")
    ages = lambda: all("5m" in table.cells(key) for key in table.shown_keys)  # noqa: E731
    await _bounded(ages, pilot, "the AGE cells against the pinned clock")
    await _bounded(lambda: header.pod_phases == phases and header.ready is True, pilot, "the header")
    header.server = SERVER


def _snapshot(
    served: ThreadedControlPlane,
    snap_compare: Callable[..., bool],
    run_before: Callable[[Pilot[Any]], Awaitable[None]],
) -> bool:
    served.run(_seed(served.client()))
    app = _SnapshotApp(served.client())
    return snap_compare(app, terminal_size=SIZE, run_before=run_before)


def _css_paths() -> list[Path]:
    """PeapodApp's stylesheets as absolute paths (Textual resolves them next to the subclass)."""
    here = Path(inspect.getfile(PeapodApp)).parent
    paths = PeapodApp.CSS_PATH
    return [here / p for p in ([paths] if isinstance(paths, str | Path) else paths or [])]


class _SnapshotApp(PeapodApp):
    """The dashboard, closing its client when it shuts down (the test has no loop of its own)."""

    CSS_PATH = _css_paths()  # type: ignore[assignment]

    async def on_unmount(self) -> None:
        await self.client.close()


def test_pods_view(served: ThreadedControlPlane, snap_compare: Callable[..., bool]) -> None:
    """The pods view: three pods, Running (green), Pending and Failed (red), each 5m old."""
    assert _snapshot(served, snap_compare, _pods_listed)


def test_describe_screen(served: ThreadedControlPlane, snap_compare: Callable[..., bool]) -> None:
    """The describe screen of the running pod, with its two events."""

    async def run_before(pilot: Pilot[Any]) -> None:
        await _pods_listed(pilot)
        pods = resolve("pods")
        assert pods is not None
        pilot.app.push_screen(DescribeScreen(pods, "web-running", "default"))

        def described() -> bool:
            areas = pilot.app.screen.query(TextArea)
            return bool(areas) and "Started container c" in areas.first().text

        await _bounded(described, pilot, "the description")

    assert _snapshot(served, snap_compare, run_before)


def test_help_screen(served: ThreadedControlPlane, snap_compare: Callable[..., bool]) -> None:
    """The help over the pods view."""

    async def run_before(pilot: Pilot[Any]) -> None:
        await _pods_listed(pilot)
        await pilot.press("question_mark")
        await _bounded(lambda: isinstance(pilot.app.screen, HelpScreen), pilot, "the help")

    assert _snapshot(served, snap_compare, run_before)
