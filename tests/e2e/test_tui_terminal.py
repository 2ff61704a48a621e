"""``pea tui`` in a real terminal: the installed ``pea`` in a tmux pane of the test's own tmux server,
against a real control plane and agent on Podman, the screen read back with ``capture-pane``.

One walk through the dashboard (starting a cluster costs more than the checks): the pods view and the
header, a pod appearing while watched, the help, ``s`` (refused on a pod that is not running; then a
shell in a running pod, with the dashboard suspended meanwhile and back afterwards, having seen what
changed), the command bar, and ``q``, after which the terminal is in its normal modes again.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from agent.runtime.podman_service import PodmanService
from tui.logs import DEFAULT_CONTAINER

from .cluster import cluster, eventually, manifest, running, sh
from .conftest import NODE, MakePod

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

PEA = Path(sys.executable).parent / "pea"


class Pane:
    """One tmux pane of a private tmux server: send keys, read the screen as text."""

    def __init__(self, socket: Path) -> None:
        self.socket = socket

    def _tmux(self, *args: str) -> str:
        command = ["tmux", "-S", str(self.socket), *args]
        return subprocess.run(command, check=True, capture_output=True, text=True, timeout=10).stdout

    async def start(self, script: str, width: int = 120, height: int = 40) -> None:
        size = ("-x", str(width), "-y", str(height))
        await asyncio.to_thread(self._tmux, "new-session", "-d", "-s", "main", *size, script)

    async def screen(self) -> str:
        return await asyncio.to_thread(self._tmux, "capture-pane", "-p", "-t", "main")

    async def keys(self, *keys: str) -> None:
        """Key names (``Enter``, ``Escape``) or single characters."""
        await asyncio.to_thread(self._tmux, "send-keys", "-t", "main", *keys)

    async def type(self, text: str) -> None:
        """Literal text, each character a key press."""
        await asyncio.to_thread(self._tmux, "send-keys", "-t", "main", "-l", text)

    async def shows(self, *texts: str) -> bool:
        screen = await self.screen()
        return all(text in screen for text in texts)

    async def has_line(self, *words: str) -> bool:
        """A line of the screen holding every word (a table row)."""
        return any(all(w in line for w in words) for line in (await self.screen()).splitlines())

    async def until(self, check: Callable[[], Awaitable[object]], what: str) -> None:
        """A bounded wait for ``check``; a timeout shows the screen as it was."""
        try:
            await eventually(check, what)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the screen:\n{await self.screen()}") from None

    async def bar(self, opener: str, placeholder: str, text: str) -> None:
        """Open the command bar (``:``) or the filter (``/``), type ``text`` once it is open, Enter.
        Keys sent before the bar has the focus would go to the table (``s`` is a shell there)."""
        await self.keys(opener)
        await self.until(lambda: self.shows(placeholder), f"the {opener} bar")
        await self.type(text)
        await self.until(lambda: self.has_line("▊", text), f"{text!r} in the bar")
        await self.keys("Enter")

    async def kill(self) -> None:
        command = ["tmux", "-S", str(self.socket), "kill-server"]
        await asyncio.to_thread(subprocess.run, command, capture_output=True, timeout=10)
        self.socket.unlink(missing_ok=True)


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (apt-get install tmux)")
async def test_pea_tui_in_a_real_terminal(
    podman_service: PodmanService, make_pod: MakePod, tmp_path: Path
) -> None:
    pane = Pane(tmp_path / "tmux.sock")
    done = tmp_path / "done"
    async with cluster(podman_service, tmp_path) as (client, _, cp):
        await client.create(manifest("web-1", sh("app", "exec sleep 600")))
        await client.create(manifest("stuck", sh("app", "exec sleep 600"), nodeSelector={"no": "such-node"}))
        duo = manifest("duo", sh("first", "exec sleep 600"), sh("second", "exec sleep 600"))
        duo.metadata.annotations = {DEFAULT_CONTAINER: "second"}
        await client.create(duo)
        await eventually(lambda: running(client, "web-1"), "web-1 running")
        await eventually(lambda: running(client, "duo"), "duo running")
        # After pea: its exit status and the terminal's modes, which must be the normal ones again.
        script = (
            f'{PEA} tui -s {cp.url}; echo "exit=$?" > {done}.tmp; '
            f"stty -a | tr ' ' '\\n' | grep -xE -- '-?(icanon|echo)' >> {done}.tmp; "
            f"mv {done}.tmp {done}; sleep 60"
        )
        await pane.start(script)
        try:
            # (a) The pods view, live: the pod Running, the header with the server and the node Ready.
            await pane.until(lambda: pane.has_line("web-1", "Running"), "web-1 Running on screen")
            await pane.until(lambda: pane.shows(f"Server: {cp.url}", "Nodes: 1/1"), "the header")
            await pane.until(lambda: pane.has_line("stuck", "Pending"), "the stuck pod on screen")

            # (b) A pod created while the dashboard watches shows up.
            await client.create(manifest("web-2", sh("app", "exec sleep 600")))
            await pane.until(lambda: pane.has_line("web-2"), "web-2 on screen")

            # (d) ? shows the keys; escape closes them.
            await pane.keys("?")
            await pane.until(lambda: pane.shows("peapod dashboard — keys", "shell into"), "the help")
            await pane.keys("Escape")
            await pane.until(lambda: _not(pane.shows("peapod dashboard — keys")), "the help closed")

            # (e) s on a pod that is not running: a notification, no shell, the dashboard stays.
            await pane.bar("/", "filter rows", "stuck")
            await pane.until(lambda: _not(pane.has_line("web-1")), "the rows filtered down to stuck")
            await pane.keys("s")
            await pane.until(lambda: pane.shows("not Running"), "the refusal")
            assert await pane.has_line("stuck", "Pending"), await pane.screen()
            await pane.keys("Escape")
            await pane.until(lambda: pane.has_line("web-1", "Running"), "the filter cleared")

            # (e) s on the running pod: the dashboard gives the terminal to a shell in the container...
            await pane.bar("/", "filter rows", "web-1")
            await pane.until(lambda: _not(pane.has_line("web-2")), "the rows filtered down to web-1")
            await pane.keys("s")
            await pane.until(lambda: pane.shows("shell in web-1/app", "/ #"), "the container's shell")
            assert not await pane.shows("Server:"), await pane.screen()
            await pane.type("echo marker-$((6*7))")
            await pane.keys("Enter")
            await pane.until(lambda: pane.shows("\nmarker-42"), "the shell's answer")
            # Meanwhile the dashboard keeps watching (its repaints held until it is back).
            await client.create(manifest("web-3", sh("app", "exec sleep 600")))
            await eventually(lambda: running(client, "web-3"), "web-3 running")
            assert not await pane.shows("Server:"), await pane.screen()
            # ...and takes the terminal back when the shell exits, with the outcome.
            await pane.type("exit")
            await pane.keys("Enter")
            await pane.until(lambda: pane.shows(f"Server: {cp.url}"), "the dashboard back")
            await pane.until(lambda: pane.has_line("web-1", "Running"), "the pod list back")
            await pane.until(lambda: pane.shows("shell in web-1/app exited 0"), "the outcome")
            await pane.keys("Escape")
            await pane.until(lambda: pane.has_line("web-3", "Running"), "the pod made during the shell")

            # (e) Of two containers, s picks the default-container annotation's; the exit status shows.
            await pane.bar("/", "filter rows", "duo")
            await pane.until(lambda: _not(pane.has_line("web-1")), "the rows filtered down to duo")
            await pane.keys("s")
            await pane.until(lambda: pane.shows("shell in duo/second", "/ #"), "the shell in duo/second")
            await pane.type("exit 3")
            await pane.keys("Enter")
            await pane.until(lambda: pane.shows("shell in duo/second exited 3"), "the exit status")
            await pane.keys("Escape")
            await pane.until(lambda: pane.has_line("web-1", "Running"), "the filter cleared")

            # (c) :no switches to the nodes.
            await pane.bar(":", "pods, rc, svc", "no")
            await pane.until(lambda: pane.has_line(NODE, "Ready"), "the node row")
            assert await pane.shows("View: nodes") and not await pane.has_line("web-1", "Running"), (
                await pane.screen()
            )

            # (f) q quits; pea exits 0 and leaves the terminal in canonical mode with echo.
            await pane.keys("q")
            await eventually(lambda: asyncio.to_thread(done.exists), "pea tui to exit")
            result = done.read_text().split()
            assert result == ["exit=0", "icanon", "echo"], result
        finally:
            await pane.kill()


async def _not(check: Awaitable[bool]) -> bool:
    return not await check
