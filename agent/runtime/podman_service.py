"""A node's own Podman: ``podman system service`` run as a child process with its own configuration.

The agent talks to Podman only over the libpod REST API (see ``podman.py``), so something has to serve
that API. Rather than relying on a hand-configured machine (``/etc/containers/containers.conf``, a
systemd socket unit), the agent starts its own service and owns its whole configuration:

* ``containers.conf`` written into ``data_dir`` and handed over through ``CONTAINERS_CONF``. Podman passes
  that variable on to conmon, so the ``podman container cleanup`` processes conmon runs when a container
  exits read the same file. It sets the OCI runtime to runc (crun cannot handle this machine's hybrid
  cgroups), default rlimits at or below the sandbox's hard limits (Podman's defaults ask for more and
  every container would fail in ``setrlimit``), cgroupfs when systemd is not PID 1, and the "file"
  events logger so the event stream works without journald. Container output goes to the "k8s-file" log
  driver (the CRI log format, one file per container) with no size limit: ``kubectl logs`` then works
  without journald, and no line is dropped from the file to keep it small while someone follows it.
* An empty ``registries.conf`` through ``CONTAINERS_REGISTRIES_CONF``: no search registries, so nothing
  ever tries to resolve a short name over the network.
* With ``root``/``runroot`` several nodes can share one machine, each with its own storage. Then the
  libpod temporary directory, the lock files and the events log move into that node's directories too
  (``lock_type = "file"``): with the default SHM locks all Podman instances of a machine share one lock
  table, and a fresh instance "refreshing" after what looks like a reboot frees every lock in it.

Containers outlive the service (conmon supervises them), which is what lets an agent restart without
killing its pods; ``stop()`` therefore ends the service process only.

Supervision: a service that dies on its own (killed, crashed) is started again with exponential backoff
(``restart_backoff``), like systemd's ``Restart=always``; the runtime's requests fail meanwhile and its
event stream reconnects (from where it broke off) once the new service answers. The service's PID is
kept in ``podman-service.pid``: an agent killed with SIGKILL leaves its service running, and the next
start ends that orphan first rather than running two services on one storage. ``unmount_storage()`` is for
throwaway nodes (tests): containers/storage keeps ``<root>/overlay`` mounted after the service ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import time
from pathlib import Path
from types import TracebackType

import httpx

from ..mounts import mount_points

__all__ = ["PodmanService", "PodmanServiceError"]

log = logging.getLogger(__name__)

# sockaddr_un.sun_path is 108 bytes including the terminating NUL.
_MAX_SOCKET_PATH = 107

DEFAULT_ULIMITS = ("nofile=10000:10000", "nproc=1000:1000")


class PodmanServiceError(RuntimeError):
    """The Podman service could not be started (missing binary, bad storage, exited early...)."""


def _systemd_booted() -> bool:
    """sd_booted(3)'s test: systemd as init creates this directory; cgroup manager "systemd" needs it."""
    return Path("/run/systemd/system").is_dir()


def _toml_str(value: str) -> str:
    """A TOML basic string; paths are the only values we write and may contain quotes or backslashes."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class PodmanService:
    """Start, own and stop one ``podman system service --time=0`` listening on ``<data_dir>/podman.sock``."""

    def __init__(
        self,
        data_dir: Path,
        *,
        root: Path | None = None,
        runroot: Path | None = None,
        podman: str = "podman",
        start_timeout: float = 30.0,
        stop_timeout: float = 10.0,
        supervise: bool = True,
        restart_backoff: tuple[float, float] = (0.5, 30.0),
    ) -> None:
        """``supervise``: restart the service whenever it exits without ``stop()``; ``restart_backoff``:
        the first and the longest wait between restarts (doubling; back to the first once a service
        has run for a minute)."""
        self.data_dir = Path(data_dir).absolute()
        self.root = Path(root).absolute() if root is not None else None
        self.runroot = Path(runroot).absolute() if runroot is not None else None
        self.podman = podman
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.supervise = supervise
        self.restart_backoff = restart_backoff
        self.restarts = 0  # services started again after dying on their own
        self._proc: asyncio.subprocess.Process | None = None
        self._supervisor: asyncio.Task[None] | None = None
        if len(os.fsencode(self.socket_path)) > _MAX_SOCKET_PATH:
            raise ValueError(
                f"socket path too long for a unix socket ({_MAX_SOCKET_PATH} bytes max): "
                f"{self.socket_path}; use a shorter data_dir"
            )

    # --- where things are -----------------------------------------------------------------------

    @property
    def socket_path(self) -> Path:
        return self.data_dir / "podman.sock"

    @property
    def url(self) -> str:
        """The service address as Podman's own ``--url`` flag and CONTAINER_HOST spell it."""
        return f"unix://{self.socket_path}"

    @property
    def containers_conf(self) -> Path:
        return self.data_dir / "containers.conf"

    @property
    def registries_conf(self) -> Path:
        return self.data_dir / "registries.conf"

    @property
    def log_path(self) -> Path:
        """The service's stdout and stderr: where to look when it will not start."""
        return self.data_dir / "podman-service.log"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "podman-service.pid"

    @property
    def events_log(self) -> Path:
        return self.data_dir / "events.log"

    @property
    def tmp_dir(self) -> Path | None:
        """libpod's per-boot directory; only moved when the storage is ours (see the module docstring)."""
        if self.runroot is not None:
            return self.runroot / "libpod"
        if self.root is not None:
            return self.data_dir / "libpod-tmp"
        return None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def global_args(self) -> list[str]:
        """``podman`` flags that select this node's storage, for CLI calls that bypass the service."""
        args: list[str] = []
        if self.root is not None:
            args += ["--root", str(self.root)]
        if self.runroot is not None:
            args += ["--runroot", str(self.runroot)]
        return args

    def env(self) -> dict[str, str]:
        """The environment a ``podman`` CLI call needs to agree with the service on locks and config."""
        env = dict(os.environ)
        env["CONTAINERS_CONF"] = str(self.containers_conf)
        env["CONTAINERS_REGISTRIES_CONF"] = str(self.registries_conf)
        return env

    # --- configuration --------------------------------------------------------------------------

    def render_containers_conf(self) -> str:
        """The containers.conf text; a method so tests and operators can see exactly what is applied."""
        ulimits = ", ".join(_toml_str(u) for u in DEFAULT_ULIMITS)
        lines = [
            "# Written by peapod's agent (agent/runtime/podman_service.py); rewritten on every start.",
            "[containers]",
            f"default_ulimits = [{ulimits}]",
            'log_driver = "k8s-file"',
            "log_size_max = -1",
            "",
            "[engine]",
            'runtime = "runc"',
            f"cgroup_manager = {_toml_str('systemd' if _systemd_booted() else 'cgroupfs')}",
            'events_logger = "file"',
            f"events_logfile_path = {_toml_str(str(self.events_log))}",
            # Never look for images anywhere but local storage.
            'pull_policy = "never"',
        ]
        if self.tmp_dir is not None:
            lines += [f"tmp_dir = {_toml_str(str(self.tmp_dir))}", 'lock_type = "file"']
        return "\n".join(lines) + "\n"

    @staticmethod
    def render_registries_conf() -> str:
        return (
            "# Written by peapod's agent: no registry is configured, short names resolve locally only.\n"
            "unqualified-search-registries = []\n"
        )

    def _prepare(self) -> None:
        """Blocking file-system work of ``start()``; run in a thread."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        for d in (self.root, self.runroot, self.tmp_dir):
            if d is not None:
                d.mkdir(parents=True, exist_ok=True)
        self.containers_conf.write_text(self.render_containers_conf())
        self.registries_conf.write_text(self.render_registries_conf())
        self._end_orphan()
        # A socket left by a service that was killed would make the ping below talk to nothing.
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()

    def _end_orphan(self) -> None:
        """End the service a killed agent left behind (its PID in ``pid_file``, still serving our socket):
        SIGTERM, then SIGKILL after ``stop_timeout``. Blocking; part of ``_prepare``."""
        try:
            pid = int(self.pid_file.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return
        if os.fsencode(self.url) not in cmdline or b"service" not in cmdline:
            return  # the PID was reused by something else
        log.warning("ending the Podman service left running by a previous agent (pid %d)", pid)
        for sig, wait in ((signal.SIGTERM, self.stop_timeout), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                if not Path(f"/proc/{pid}").exists():
                    return
                time.sleep(0.05)

    # --- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the service and return once it answers ``_ping``; raise PodmanServiceError otherwise.
        With ``supervise``, a service that later dies on its own is started again."""
        if self.running:
            return
        if self._supervisor is not None:  # between a death and its restart: this start wins
            await self.stop()
        if shutil.which(self.podman) is None:
            raise PodmanServiceError(f"{self.podman!r} not found; install the Debian package podman")
        try:
            await self._spawn()
        except BaseException:
            await self.stop()
            raise
        if self.supervise:
            self._supervisor = asyncio.create_task(self._supervise(), name=f"podman-service-{self.data_dir}")

    async def _spawn(self) -> None:
        """One service process, answering; on failure it may be left behind (the caller stops it)."""
        await asyncio.to_thread(self._prepare)
        cmd = [self.podman, *self.global_args(), "system", "service", "--time=0", self.url]
        out = await asyncio.to_thread(self.log_path.open, "ab")
        try:
            # cwd: conmon inherits it, and conmon 2.1.6 writes its cgroup-v1 "oom" marker file there.
            self._proc = await asyncio.create_subprocess_exec(
                *cmd,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                env=self.env(),
                cwd=self.data_dir,
            )
        finally:
            out.close()  # the child has its own copy of the descriptor
        await asyncio.to_thread(self.pid_file.write_text, f"{self._proc.pid}\n")
        await self._wait_ready()

    async def _supervise(self) -> None:
        """Wait for the service to exit; unless ``stop()`` ended it, start another, with backoff."""
        first, longest = self.restart_backoff
        delay = first
        loop = asyncio.get_running_loop()
        while True:
            proc = self._proc
            if proc is None:
                return
            started = loop.time()
            code = await proc.wait()
            if proc is not self._proc:
                return  # stop() ended it
            if loop.time() - started >= 60.0:
                delay = first
            log.warning(
                "podman system service (pid %d) exited with status %s; restarting it in %.1fs",
                proc.pid, code, delay,
            )  # fmt: skip
            while True:
                await asyncio.sleep(delay)
                delay = min(delay * 2, longest)
                try:
                    await self._spawn()
                except (PodmanServiceError, OSError) as err:
                    log.warning("podman system service did not come back (%s); retrying in %.1fs", err, delay)
                    await self._kill_current()
                    continue
                break
            self.restarts += 1
            log.info("podman system service running again (pid %d)", self._proc.pid if self._proc else 0)

    async def _kill_current(self) -> None:
        proc = self._proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()

    async def _wait_ready(self) -> None:
        """Poll the socket until libpod answers; fail fast if the process dies instead."""
        assert self._proc is not None
        transport = httpx.AsyncHTTPTransport(uds=str(self.socket_path))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.start_timeout
        async with httpx.AsyncClient(transport=transport, base_url="http://podman", timeout=2.0) as client:
            while True:
                if self._proc.returncode is not None:
                    raise PodmanServiceError(
                        f"podman system service exited with status {self._proc.returncode}: "
                        f"{await self._log_tail()}"
                    )
                with contextlib.suppress(httpx.TransportError):
                    r = await client.get("/v4.0.0/libpod/_ping")
                    if r.status_code == 200:
                        return
                if loop.time() > deadline:
                    raise PodmanServiceError(
                        f"podman system service did not answer on {self.socket_path} within "
                        f"{self.start_timeout:g}s: {await self._log_tail()}"
                    )
                await asyncio.sleep(0.05)

    async def _log_tail(self, limit: int = 2000) -> str:
        def read() -> str:
            try:
                return self.log_path.read_text(errors="replace")[-limit:].strip() or "(no output)"
            except OSError as err:
                return f"(cannot read {self.log_path}: {err})"

        return await asyncio.to_thread(read)

    async def stop(self) -> None:
        """SIGTERM, then SIGKILL after ``stop_timeout``; always reaps the process. Containers keep running."""
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is not None and supervisor is not asyncio.current_task():
            supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await supervisor
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), self.stop_timeout)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        for path in (self.socket_path, self.pid_file):
            with contextlib.suppress(FileNotFoundError):
                await asyncio.to_thread(path.unlink)

    async def unmount_storage(self) -> list[Path]:
        """Unmount whatever is still mounted under ``root``/``runroot`` (deepest first), so the directories
        can be deleted. Only for storage that is ours alone and whose containers are gone."""
        if self.running:
            raise PodmanServiceError("stop the service before unmounting its storage")
        bases = [p for p in (self.root, self.runroot) if p is not None]
        if not bases:
            return []

        points = await asyncio.to_thread(mount_points, *bases)
        for point in points:
            proc = await asyncio.create_subprocess_exec(
                "umount", "--lazy", str(point),
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            _, err = await proc.communicate()
            if proc.returncode != 0:
                raise PodmanServiceError(f"umount {point} failed: {err.decode(errors='replace').strip()}")
        return points

    async def __aenter__(self) -> PodmanService:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
