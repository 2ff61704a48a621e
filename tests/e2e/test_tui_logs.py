"""The dashboard's log view (``l``) end to end: real Podman, a real control plane and agent, the Textual
app driven by Pilot.

The acceptance test is the one k9s fails: a container printing 1,000 numbered lines a second for 30 s,
followed live, with a pause in the middle; the view must end up holding every number exactly once and in
order. ``make_pod`` is requested for its teardown (it removes every sandbox of the test node).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import OptionList, Static

from agent.runtime.podman_service import PodmanService
from tests.tui.pilot import until as pilot_until
from tui.dashboard import PeapodApp
from tui.dashboard.screens.logs import ContainerPicker, LogScreen
from tui.dashboard.widgets.log_view import NOTICE_PREFIX, LogView

from .cluster import cluster, eventually, manifest, running, sh, start_agent
from .conftest import MakePod
from .test_logs_exec import COUNTER, LINES

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

SIZE = (120, 40)


async def until(pilot: Pilot[Any], check: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    """The dashboard tests' bounded wait, with a real cluster's longer default."""
    return await pilot_until(pilot, check, what, timeout)


def container_lines(view: LogView) -> list[str]:
    """The view's lines that came from the container (our notices start with »)."""
    return [line for line in view.lines if not line.startswith(NOTICE_PREFIX)]


def status(screen: LogScreen) -> str:
    return str(screen.query_one("#log-status", Static).render())


async def open_logs(pilot: Pilot[Any], app: PeapodApp, pod: str) -> tuple[LogScreen, LogView]:
    await pilot.pause()
    screen = LogScreen(pod, "default")
    await app.push_screen(screen)
    await until(pilot, lambda: app.screen is screen, "the log screen")
    return screen, screen.query_one(LogView)


async def test_follows_30000_lines_with_a_pause(
    podman_service: PodmanService, make_pod: MakePod, tmp_path: Path
) -> None:
    async with cluster(podman_service, tmp_path) as (client, _, _):
        await client.create(manifest("counter", sh("count", COUNTER), restartPolicy="Never"))
        await eventually(lambda: running(client, "counter"), "running")
        app = PeapodApp(client)
        async with app.run_test(size=SIZE) as pilot:
            started = time.monotonic()
            screen, view = await open_logs(pilot, app, "counter")
            max_backlog = 0

            def shown_at_least(n: int) -> bool:
                nonlocal max_backlog
                max_backlog = max(max_backlog, len(view.pending))
                return len(container_lines(view)) >= n

            await until(pilot, lambda: shown_at_least(5_000), "the first 5,000 lines", timeout=60)
            assert "count" in status(screen) and "following" in status(screen)

            # Paused: nothing is appended, yet lines keep arriving into the buffer.
            await pilot.press("p")
            frozen = list(view.lines)
            await until(pilot, lambda: len(view.pending) >= 2_000, "2,000 lines buffered while paused")
            assert list(view.lines) == frozen
            assert view.received >= len(frozen) + 2_000
            assert "paused" in status(screen)
            buffered = len(view.pending)

            # Resumed: the backlog goes in, in order, and the view follows again.
            await pilot.press("p")
            await until(pilot, lambda: len(view.lines) >= len(frozen) + buffered, "the backlog written")
            assert view.lines[: len(frozen)] == frozen

            await until(pilot, lambda: shown_at_least(LINES), f"all {LINES} lines", timeout=120)
            took = time.monotonic() - started
            lines = container_lines(view)
            assert len(lines) == LINES, f"{len(lines)} lines; first gap at {_first_gap(lines)}"
            assert lines == [str(i) for i in range(LINES)], f"first difference at {_first_gap(lines)}"
            assert view.received == LINES

            # The container ends (restartPolicy Never): the view says so, after the last line.
            await until(pilot, lambda: view.lines[-1].startswith(NOTICE_PREFIX), "the end notice", 60)
            assert view.lines[-1] == f"{NOTICE_PREFIX}container count ended: Completed, exit code 0"
            assert container_lines(view) == lines
            print(
                f"\nlog view: {len(lines)} lines in {took:.1f} s, paused with {buffered} buffered, "
                f"largest backlog while following {max_backlog} lines"
            )


async def test_resumes_across_an_agent_restart(
    podman_service: PodmanService, make_pod: MakePod, tmp_path: Path
) -> None:
    """A real break: the node's agent (which serves the stream) stops mid-log and a new one starts; the
    container runs on meanwhile. The view reconnects and resumes: every number once, in order."""
    async with cluster(podman_service, tmp_path) as (client, agent, _):
        await client.create(manifest("counter", sh("count", COUNTER), restartPolicy="Never"))
        await eventually(lambda: running(client, "counter"), "running")
        app = PeapodApp(client)
        async with app.run_test(size=SIZE) as pilot:
            screen, view = await open_logs(pilot, app, "counter")
            await until(pilot, lambda: len(container_lines(view)) >= 3_000, "the first 3,000 lines", 60)
            await agent.stop()
            await until(
                pilot, lambda: "reconnecting" in screen.state or "retrying" in screen.state, "a break"
            )
            broke_at = len(container_lines(view))
            second = start_agent(client, podman_service, data_dir=tmp_path / "agent")
            await second.start()
            try:
                await until(pilot, lambda: len(container_lines(view)) >= LINES, f"all {LINES} lines", 240)
                await until(pilot, lambda: view.lines[-1].startswith(NOTICE_PREFIX), "the end notice", 60)
            finally:
                await second.stop()
            lines = container_lines(view)
            assert len(lines) == LINES, f"{len(lines)} lines; first gap at {_first_gap(lines)}"
            assert lines == [str(i) for i in range(LINES)], f"first difference at {_first_gap(lines)}"
            print(f"\nlog view: the stream broke after {broke_at} lines and resumed; {len(lines)} lines")


async def test_container_picker_switches_the_stream(
    podman_service: PodmanService, make_pod: MakePod, tmp_path: Path
) -> None:
    async with cluster(podman_service, tmp_path) as (client, _, _):
        pod = manifest(
            "duo",
            sh("first", "echo from-first; exec sleep 600"),
            sh("second", "echo from-second; exec sleep 600"),
            initContainers=[sh("setup", "echo from-setup")],
        )
        await client.create(pod)
        await eventually(lambda: running(client, "duo"), "running")
        app = PeapodApp(client)
        async with app.run_test(size=SIZE) as pilot:
            screen, view = await open_logs(pilot, app, "duo")
            # The default is the first (non-init) container.
            await until(pilot, lambda: "from-first" in view.lines, "the first container's output")
            assert "/first" in status(screen)

            await pilot.press("c")
            picker = await until(
                pilot, lambda: app.screen if isinstance(app.screen, ContainerPicker) else None, "the picker"
            )
            options = picker.query_one(OptionList)
            labels = [str(options.get_option_at_index(i).prompt) for i in range(options.option_count)]
            assert labels == ["setup (init)", "first", "second"]
            assert options.highlighted == 1  # the current container
            await pilot.press("down", "enter")

            await until(pilot, lambda: app.screen is screen, "back on the log screen")
            await until(pilot, lambda: "from-second" in view.lines, "the second container's output")
            assert "from-first" not in view.lines  # the view was cleared
            assert "/second" in status(screen)

            # The init container has ended: its output, then the notice.
            await pilot.press("c")
            await until(pilot, lambda: isinstance(app.screen, ContainerPicker), "the picker again")
            await pilot.press("up", "up", "enter")
            await until(
                pilot, lambda: view.lines[-1:] and view.lines[-1].startswith(NOTICE_PREFIX), "the end"
            )
            assert container_lines(view) == ["from-setup"]
            assert view.lines[-1] == f"{NOTICE_PREFIX}container setup ended: Completed, exit code 0"

            # escape goes back to the resources screen, and the stream stops with the screen.
            await pilot.press("escape")
            await until(pilot, lambda: app.screen is not screen, "the previous screen")
            assert not [w for w in app.workers if w.group == "logs" and w.is_running]


def _first_gap(lines: list[str]) -> int | None:
    return next((i for i, line in enumerate(lines) if line != str(i)), None)
