"""A control plane in a child process (``pea controlplane``) that the fault tests can SIGKILL and restart
on the same data directory and port: what a crash does to the store is only seen across processes."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT = 60.0  # seconds for a (re)start to answer /readyz on a loaded machine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_bytes(pid: int) -> int:
    """Resident set size of a process, from /proc (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/statm").read_text().split()
    except OSError:
        return 0
    return int(fields[1]) * os.sysconf("SC_PAGE_SIZE")


class ChildControlPlane:
    """``pea controlplane`` without scheduler and controllers: the tests write ConfigMaps, which need
    neither, and the revision stream then holds little besides the tests' own writes."""

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = data_dir.parent / f"controlplane-{self.port}.log"
        self.proc: asyncio.subprocess.Process | None = None
        self.starts = 0

    @property
    def db_path(self) -> Path:
        return self.data_dir / "state.db"

    async def start(self) -> None:
        pea = Path(sys.executable).with_name("pea")
        argv = [
            str(pea),
            "controlplane",
            "--data-dir",
            str(self.data_dir),
            "--listen",
            f"127.0.0.1:{self.port}",
            "--no-scheduler",
            "--no-controllers",
        ]
        with self.log_path.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                cwd=REPO,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        self.starts += 1
        await self.wait_ready()

    async def wait_ready(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_TIMEOUT
        async with httpx.AsyncClient(timeout=5.0) as http:
            while loop.time() < deadline:
                assert self.proc is not None
                if self.proc.returncode is not None:
                    raise AssertionError(f"control plane exited {self.proc.returncode}:\n{self.log_tail()}")
                try:
                    if (await http.get(f"{self.url}/readyz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
        raise AssertionError(f"control plane not ready after {START_TIMEOUT} s:\n{self.log_tail()}")

    async def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a power-off of the process."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
            await asyncio.wait_for(self.proc.wait(), 30)

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 20)
            except TimeoutError:
                await self.kill()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
