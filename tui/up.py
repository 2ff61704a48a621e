"""``pea up`` and ``pea down``: the whole local cluster in one process, and its clean end.

Design. ``pea up`` runs, in one asyncio process, what ``pea controlplane`` and ``pea agent`` run
separately: the control plane (SQLite under ``DATA/controlplane``), one agent for this machine on its own
Podman service and storage (``DATA/agent``, run root under ``/run/peapod/``), the images the example
needs built into that storage (idempotent), and a :class:`DirectorySync` following the example's
manifest folder (or ``--manifests DIR``). It reports each step as it goes (a spinner on a terminal, plain
lines otherwise), waits until the folder's pods run, then opens the dashboard or, ``--headless``, prints
where the API and the example are and waits for SIGINT/SIGTERM.

Everything is undone in reverse on the way out: the follower stops, the agent stops, its pods are
removed (unless ``--keep-pods``) and with them the pod network (nftables tables, veths, bridge, routes),
the Podman service ends, the control plane closes its database. The cluster's objects stay in SQLite, so
the next ``pea up`` on the same data directory resumes it (same objects, same uids).

Credentials. The control plane always runs with a static token file, ``DATA/controlplane/tokens.csv``:
an admin token (user ``admin``, group ``system:masters``) and a node token for this machine's node
(``system:node:NAME``, group ``system:nodes``), made on the first start and kept
(:mod:`controlplane.server.credentials`). The admin's goes into ``DATA/kubeconfig`` (and, for the
default data directory, pea's default kubeconfig, so ``pea get pods`` just works); the agent gets only
the node token, as a kubelet would. ``--tls`` serves HTTPS with a CA made in ``DATA/controlplane/pki``;
the kubeconfigs carry that CA. The data directory, the token file, keys and kubeconfigs are owner-only.

One ``pea up`` per data directory: it holds an exclusive ``flock`` on ``DATA/up.pid`` (which names its
pid) while it runs. ``pea down`` reads that pid, sends SIGTERM and waits for the lock to be released;
``--purge`` then removes the pods, containers and images of the agent's storage, the pod network's
rules and links, and the data directory itself.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import hashlib
import io
import logging
import os
import shutil
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, cast

from controlplane.api.core import Node, Pod, ReplicationController, Service
from controlplane.client import Client, ClientError, load_config, write_kubeconfig
from controlplane.client.config import pea_kubeconfig

from . import daemons
from .printers import error_line
from .security_flags import security_options, security_settings

if TYPE_CHECKING:
    from agent.runtime.podman_service import PodmanService

__all__ = ["UpError", "run_down", "run_up", "setup_down", "setup_up"]

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
PID_FILE = "up.pid"
STOP_TIMEOUT = 90.0


class UpError(ValueError):
    """Why ``pea up``/``pea down`` cannot go on: printed as one ``error:`` line."""


# --- options -------------------------------------------------------------------------------------


def setup_up(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", help="the cluster's state (default ~/.local/share/peapod/up)")
    p.add_argument("--listen", default="127.0.0.1:6443", metavar="HOST:PORT", help="the API's address")
    p.add_argument("--headless", action="store_true", help="no dashboard: print where things are and wait")
    p.add_argument(
        "--example",
        default="guestbook",
        help="the example of examples/ to run (default guestbook; none: no example)",
    )
    p.add_argument(
        "--manifests", metavar="DIR", help="follow this folder of manifests instead of the example"
    )
    p.add_argument("--keep-pods", action="store_true", help="leave the pods running when stopping")
    p.add_argument("--node-name", default=socket.gethostname(), help="this node's name (default: hostname)")
    p.add_argument(
        "--tls",
        action="store_true",
        help="serve the API over HTTPS with a self-signed cluster CA made in DATA/controlplane/pki "
        "(the kubeconfig carries the CA)",
    )
    security_options(p)


def setup_down(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", help="the data directory of the pea up to stop")
    p.add_argument(
        "--purge",
        action="store_true",
        help="also remove the data directory, the agent's pods, containers and images, and the pod network",
    )


def default_up_dir() -> Path:
    return Path.home() / ".local/share/peapod/up"


def _data_dir(args: argparse.Namespace) -> Path:
    return Path(args.data_dir).absolute() if args.data_dir else default_up_dir()


@dataclass(frozen=True)
class _Layout:
    """Where one cluster keeps its parts."""

    data: Path

    @property
    def controlplane(self) -> Path:
        return self.data / "controlplane"

    @property
    def agent(self) -> Path:
        return self.data / "agent"

    @property
    def storage(self) -> Path:
        return self.agent / "storage"

    @property
    def runroot(self) -> Path:
        """On tmpfs, so Podman notices a reboot; named after the data directory."""
        digest = hashlib.sha256(str(self.data).encode()).hexdigest()[:12]
        return Path("/run/peapod") / f"up-{digest}"

    @property
    def pid_file(self) -> Path:
        return self.data / PID_FILE

    @property
    def kubeconfig(self) -> Path:
        return self.data / "kubeconfig"

    @property
    def token_file(self) -> Path:
        from controlplane.server.credentials import TOKEN_FILE

        return self.controlplane / TOKEN_FILE

    @property
    def log(self) -> Path:
        return self.data / "up.log"

    def service(self) -> PodmanService:
        from agent.runtime.podman_service import PodmanService

        return PodmanService(self.agent, root=self.storage, runroot=self.runroot)


# --- progress ------------------------------------------------------------------------------------


class _Reporter:
    """Progress: a spinner with finished steps above it on a terminal, plain lines otherwise; while the
    dashboard owns the screen, lines go to the log file instead."""

    def __init__(self, out: TextIO, log_path: Path) -> None:
        self.out = out
        self.log_path = log_path
        self.quiet = False
        self.started = False  # something runs that stopping will undo
        self._status: Any = None
        self._console: Any = None
        if out.isatty():
            from rich.console import Console

            self._console = Console(file=out, highlight=False)

    def line(self, text: str) -> None:
        if self.quiet:
            with contextlib.suppress(OSError), self.log_path.open("a") as f:
                f.write(text + "\n")
            return
        if self._console is not None:
            self._console.print(text, markup=False)
        else:
            print(text, file=self.out, flush=True)

    def status(self, text: str) -> None:
        """The step under way (spinner only; plain output waits for the step's result line)."""
        if self._console is None or self.quiet:
            return
        if self._status is None:
            self._status = self._console.status(text)
            self._status.start()
        else:
            self._status.update(text)

    def done(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None


class _Lines(io.TextIOBase):
    """A text stream handing each complete line to the reporter (the follower's output)."""

    def __init__(self, emit: Callable[[str], None], prefix: str) -> None:
        self.emit = emit
        self.prefix = prefix
        self._buffer = ""

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        self._buffer += s
        while "\n" in self._buffer:
            line, self._buffer = self._buffer.split("\n", 1)
            if line.strip():
                self.emit(f"{self.prefix}{line}")
        return len(s)


# --- the lock ------------------------------------------------------------------------------------


@contextlib.contextmanager
def _hold_lock(path: Path) -> Iterator[None]:
    """Hold the data directory's lock and write our pid in it; refuse when another ``pea up`` has it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(path)
            raise UpError(
                f"pea up is already running on {path.parent}"
                + (f" (pid {pid})" if pid else "")
                + "; stop it with: pea down --data-dir "
                + str(path.parent)
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                path.unlink()
    finally:
        os.close(fd)


def _read_pid(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _running_pid(path: Path) -> int | None:
    """The pid of the ``pea up`` holding ``path``'s lock, or None when nobody holds it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_pid(path) or -1
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


# --- pea up --------------------------------------------------------------------------------------


def _check_machine() -> None:
    if shutil.which("podman") is None:
        raise UpError(
            "podman is not installed (Debian: apt-get install podman runc catatonit busybox-static)"
        )
    if os.geteuid() != 0:
        raise UpError("pea up needs root: it runs rootful Podman and the pod network (try sudo)")


def _folder(args: argparse.Namespace) -> tuple[str, Path] | None:
    """The manifest folder to follow, with the name progress lines give it."""
    if args.manifests:
        folder = Path(args.manifests).absolute()
        if not folder.is_dir():
            raise UpError(f"--manifests: {args.manifests} is not a directory")
        return folder.name, folder
    if args.example == "none":
        return None
    folder = EXAMPLES / args.example
    if not folder.is_dir() or args.example.startswith((".", "/")):
        choices = sorted(p.name for p in EXAMPLES.iterdir() if p.is_dir() and any(p.glob("*.yaml")))
        raise UpError(f'no example "{args.example}" (choose one of: {", ".join([*choices, "none"])})')
    return args.example, folder


async def run_up(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """``pea up``; returns the exit code (errors raise UpError, printed by the caller)."""
    host, sep, port = args.listen.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise UpError(f'--listen must be HOST:PORT, got "{args.listen}"')
    folder = _folder(args)
    _check_machine()
    layout = _Layout(_data_dir(args))
    try:
        layout.data.mkdir(mode=0o700, parents=True, exist_ok=True)  # tokens, keys, kubeconfig below
    except OSError as exc:
        raise UpError(f"cannot create {layout.data}: {exc.strerror or exc}") from None
    report = _Reporter(out, layout.log)
    with _hold_lock(layout.pid_file), daemons.stop_signals() as stop:
        async with contextlib.AsyncExitStack() as stack:
            try:
                await _up(args, layout, folder, report, stop, stack)
            finally:
                report.done()
                report.quiet = False
                if report.started:
                    report.line("stopping")
        if report.started:
            report.line("stopped")
    return 0


async def _until(stop: asyncio.Event, work: Awaitable[Any]) -> Any:
    """``work``, unless SIGINT/SIGTERM comes first (then None, the work cancelled)."""
    task = asyncio.ensure_future(work)
    halt = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, halt}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        halt.cancel()
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return None


async def _up(
    args: argparse.Namespace,
    layout: _Layout,
    folder: tuple[str, Path] | None,
    report: _Reporter,
    stop: asyncio.Event,
    stack: contextlib.AsyncExitStack,
) -> None:
    from controlplane.server.controlplane import ControlPlane, ControlPlaneError, Settings
    from controlplane.server.credentials import CredentialsError, ensure_tokens

    report.status("control plane: starting")
    try:
        tokens = await asyncio.to_thread(ensure_tokens, layout.token_file, [args.node_name])
    except (CredentialsError, OSError) as exc:
        raise UpError(f"cannot make the tokens: {exc}") from None
    try:
        cp = ControlPlane(
            Settings(
                data_dir=layout.controlplane,
                listen=args.listen,
                token_file=layout.token_file,
                tls=args.tls,
                **security_settings(args),
            )
        )
        await cp.start()
    except ControlPlaneError as exc:
        raise UpError(str(exc)) from None
    stack.push_async_callback(cp.stop)
    report.started = True
    report.line(f"control plane: listening on {cp.url} (data in {layout.controlplane})")
    verify = str(cp.ca_file) if cp.ca_file is not None else True
    await asyncio.to_thread(_write_kubeconfigs, args, layout, cp.url, tokens.admin, cp.ca_file, report)
    client = Client(cp.url, tokens.admin, user_agent="pea-up", verify=verify)
    stack.push_async_callback(client.close)
    # The agent is a node like any other: its own identity, limited to its own objects (NodeRestriction).
    node_client = Client(cp.url, tokens.nodes[args.node_name], user_agent="pea-up-agent", verify=verify)
    stack.push_async_callback(node_client.close)

    report.status(f"agent: starting Podman and node {args.node_name}")
    service = await _start_agent(args, layout, node_client, report, stack)
    if stop.is_set():
        return
    ready = await _until(stop, _wait_node_ready(client, args.node_name, report))
    if ready is None:
        return

    if folder is not None:
        name, path = folder
        if not await _until(stop, _build_images(path, service, report)):
            return
        await _follow(client, name, path, report, stack)
        if await _until(stop, _wait_pods(client, name, path, report)) is None:
            return
    report.done()
    if not args.headless and not (sys.stdin.isatty() and report.out.isatty()):
        report.line("not a terminal: no dashboard (as with --headless)")
        args.headless = True
    if args.headless:
        await _headless(cp.url, layout, client, folder, report, stop)
    else:
        await _dashboard(client, report, stop)


def _write_kubeconfigs(
    args: argparse.Namespace, layout: _Layout, url: str, token: str, ca_file: Path | None, report: _Reporter
) -> None:
    """``DATA/kubeconfig`` for the admin; for the default data directory also pea's default kubeconfig
    (unless it names another server: someone else's, left alone)."""
    ca = ca_file.read_bytes() if ca_file is not None else None
    write_kubeconfig(layout.kubeconfig, url, token, certificate_authority_data=ca)
    if args.data_dir:
        return
    default = pea_kubeconfig()
    try:
        theirs = load_config(kubeconfig=default).server if default.is_file() else None
    except ValueError:
        theirs = None
    if theirs is None or theirs.split("://")[-1] == url.split("://")[-1]:  # this address: ours
        write_kubeconfig(default, url, token, certificate_authority_data=ca)
        report.line(f"kubeconfig: {default} (and {layout.kubeconfig})")
    else:
        report.line(f"kubeconfig: {layout.kubeconfig} ({default} names {theirs}: left as it is)")


async def _start_agent(
    args: argparse.Namespace,
    layout: _Layout,
    client: Client,
    report: _Reporter,
    stack: contextlib.AsyncExitStack,
) -> PodmanService:
    from agent.agent import Agent, AgentSettings
    from agent.network.bridge import BridgeNetwork
    from agent.runtime.podman import PodmanRuntime
    from agent.runtime.podman_service import PodmanServiceError
    from agent.volumes import VolumeManager

    try:
        service = layout.service()
    except ValueError as exc:
        raise UpError(str(exc)) from None
    try:
        await service.start()
    except PodmanServiceError as exc:
        raise UpError(f"cannot start Podman: {exc}") from None
    stack.push_async_callback(_stop_service, service, args.keep_pods)
    started = time.monotonic()
    settings = AgentSettings(node_name=args.node_name, data_dir=layout.agent)
    volumes = VolumeManager(layout.agent / "pods", client, secrets_in_memory=True)
    network = BridgeNetwork(layout.agent / "network")
    runtime = PodmanRuntime(service.socket_path, args.node_name, allow_privileged=args.allow_privileged)
    agent = Agent(client, runtime, settings, network=network, volumes=volumes)

    async def stop_agent() -> None:
        await agent.stop()
        if not args.keep_pods:
            removed = await _remove_pods(service.socket_path)
            with contextlib.suppress(Exception):
                await volumes.collect(set())
            await daemons.remove_pod_network(layout.agent / "network")
            report.line(f"agent: {removed} pods stopped, pod network removed")

    try:
        await agent.start()
    except Exception as exc:  # a port taken (the agent's 10250, DNS), netlink refusing, the API going away
        with contextlib.suppress(Exception):
            await stop_agent()
        raise UpError(f"cannot start the agent: {error_line(exc).removeprefix('error: ')}") from None
    stack.push_async_callback(stop_agent)
    report.line(
        f"agent: node {args.node_name} ({settings.node_ip}) started ({time.monotonic() - started:.1f} s)"
    )
    return service


async def _stop_service(service: PodmanService, keep_pods: bool) -> None:
    await service.stop()
    if not keep_pods:  # the containers are gone: nothing of the storage stays mounted
        with contextlib.suppress(Exception):
            await service.unmount_storage()


async def _wait_node_ready(client: Client, name: str, report: _Reporter) -> bool:
    while True:
        with contextlib.suppress(ClientError):
            node = await client.get(Node, name)
            conditions = node.status.conditions or []
            if any(c.type == "Ready" and c.status == "True" for c in conditions):
                report.line(f"agent: node {name} Ready")
                return True
        await asyncio.sleep(0.5)


def _manifest_text(path: Path) -> str:
    """Every manifest the follower will read (the same files: ``manifests.walk``) as one text: which
    locally built images it names. An unreadable folder names none; the follower reports it."""
    from controlplane.client.manifests import ManifestError, walk

    try:
        return "\n".join(f.read_text(errors="replace") for f in walk(path, recursive=True))
    except (ManifestError, OSError):
        return ""


async def _build_images(path: Path, service: PodmanService, report: _Reporter) -> bool:
    """busybox (what the examples and a first ``pea run``-style pod use), and the other images the
    folder's manifests name (``localhost/redis``), built if missing: nothing is ever pulled."""
    from agent.runtime.images import (
        BUSYBOX_IMAGE,
        REDIS_IMAGE,
        ImageBuildError,
        build_busybox_image,
        build_redis_image,
    )

    recipes: dict[str, Callable[..., Awaitable[str]]] = {
        BUSYBOX_IMAGE: build_busybox_image,
        REDIS_IMAGE: build_redis_image,
    }
    text = await asyncio.to_thread(_manifest_text, path)
    wanted = [tag for tag in recipes if tag == BUSYBOX_IMAGE or tag in text]
    builds = [(tag.split("/")[-1].split(":")[0], recipes[tag]) for tag in wanted]
    for image, build in builds:
        report.status(f"images: building {image}")
        started = time.monotonic()
        try:
            await build(service.socket_path, timeout=600.0)
        except ImageBuildError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else "failed"
            raise UpError(f"images: {image}: {first}") from None
        report.line(f"images: {image} ready ({time.monotonic() - started:.0f} s)")
    return True


async def _follow(
    client: Client,
    name: str,
    path: Path,
    report: _Reporter,
    stack: contextlib.AsyncExitStack,
) -> None:
    from controlplane.client.dirsync import DirectorySync

    follower = DirectorySync(
        client,
        path,
        out=cast(TextIO, _Lines(report.line, f"{name}: ")),
        err=cast(TextIO, _Lines(report.line, f"{name}: ")),
        format_error=lambda exc, context: error_line(exc, context, server=client.server),
    )
    halt = asyncio.Event()
    task = asyncio.create_task(follower.run(halt), name="manifests")

    async def end() -> None:
        halt.set()
        try:
            await asyncio.wait_for(task, 10)
        except (TimeoutError, asyncio.CancelledError):
            task.cancel()
        except Exception as exc:
            report.line(error_line(exc, f"following {path}"))

    stack.push_async_callback(end)
    report.line(f"{name}: following {path}")


def _selector(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


async def _expected_pods(client: Client, path: Path) -> list[tuple[str, str, int]]:
    """(namespace, selector, replicas) per workload the folder defines, its own pods included."""
    from controlplane.client.dirsync import DIR_LABEL, directory_id

    mine = f"{DIR_LABEL}={directory_id(path)}"
    wanted: list[tuple[str, str, int]] = []
    for rc in (await client.list(ReplicationController, None, label_selector=mine)).items:
        replicas = rc.spec.replicas if rc.spec.replicas is not None else 1
        wanted.append((rc.metadata.namespace or "default", _selector(rc.spec.selector or {}), replicas))
    for pod in (await client.list(Pod, None, label_selector=mine)).items:
        wanted.append((pod.metadata.namespace or "default", _selector(pod.metadata.labels or {}), 1))
    return wanted


def _running(pod: Pod) -> bool:
    statuses = pod.status.container_statuses or []
    return (
        pod.status.phase == "Running"
        and pod.metadata.deletion_timestamp is None
        and bool(statuses)
        and all(s.ready for s in statuses)
    )


async def _wait_pods(client: Client, name: str, path: Path, report: _Reporter) -> bool:
    """Until every pod the folder asks for runs; a progress line each time the count changes."""
    last = ""
    started = time.monotonic()
    hinted = False
    while True:
        try:
            wanted = await _expected_pods(client, path)
            total = sum(n for _, _, n in wanted)
            running = 0
            for namespace, selector, replicas in wanted:
                pods = (await client.list(Pod, namespace, label_selector=selector or None)).items
                running += min(replicas, sum(1 for p in pods if _running(p)))
        except ClientError as exc:
            report.status(f"{name}: {error_line(exc)}")
        else:
            text = f"{name}: {running}/{total} pods Running"
            if total and running >= total:
                report.line(text)
                return True
            if text != last and total:
                report.status(text)
                if not report.out.isatty():
                    report.line(text)
                last = text
        if not hinted and time.monotonic() - started > 180:
            report.line(f"{name}: still waiting for pods; see pea get pods -A and pea describe pod NAME")
            hinted = True
        await asyncio.sleep(1.0)


async def _node_ports(client: Client, path: Path) -> list[tuple[str, int]]:
    from controlplane.client.dirsync import DIR_LABEL, directory_id

    mine = f"{DIR_LABEL}={directory_id(path)}"
    found: list[tuple[str, int]] = []
    with contextlib.suppress(ClientError):
        for svc in (await client.list(Service, None, label_selector=mine)).items:
            for port in svc.spec.ports or []:
                if port.node_port:
                    found.append((svc.metadata.name or "", port.node_port))
    return found


async def _headless(
    url: str,
    layout: _Layout,
    client: Client,
    folder: tuple[str, Path] | None,
    report: _Reporter,
    stop: asyncio.Event,
) -> None:
    report.line(f"ready: API at {url}; kubeconfig {layout.kubeconfig}")
    report.line(f"  try: KUBECONFIG={layout.kubeconfig} pea get pods -o wide   (kubectl reads it too)")
    report.line(f"  tokens (admin, nodes): {layout.token_file}; a node token: pea token create-node NAME")
    if folder is not None:
        for svc, port in await _node_ports(client, folder[1]):
            report.line(f"  {folder[0]}: http://localhost:{port}/ (service {svc})")
    report.line(f"Ctrl-C or pea down --data-dir {layout.data} stops it")
    await stop.wait()


async def _dashboard(client: Client, report: _Reporter, stop: asyncio.Event) -> None:
    from textual.logging import TextualHandler

    from .dashboard import PeapodApp

    report.line(f"opening the dashboard (q quits and stops the cluster; log in {report.log_path})")
    report.quiet = True
    logging.basicConfig(level=logging.WARNING, handlers=[TextualHandler()], force=True)
    app = PeapodApp(client, "default")
    running = asyncio.create_task(app.run_async(), name="dashboard")
    halt = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({running, halt}, return_when=asyncio.FIRST_COMPLETED)
        if not running.done():
            app.exit()
            await asyncio.wait_for(running, 10)
    finally:
        halt.cancel()
        logging.basicConfig(level=logging.WARNING, handlers=[logging.StreamHandler(sys.stderr)], force=True)


# --- cleanup pieces, shared with pea down ---------------------------------------------------------


@contextlib.asynccontextmanager
async def _libpod(socket_path: Path) -> AsyncIterator[Any]:
    import httpx

    transport = httpx.AsyncHTTPTransport(uds=str(socket_path))
    async with httpx.AsyncClient(
        transport=transport, base_url="http://podman/v4.0.0/libpod", timeout=60.0
    ) as api:
        yield api


async def _remove_pods(socket_path: Path) -> int:
    """Stop (briefly graceful) and remove every pod and container of this storage: all are the agent's."""
    import httpx

    try:
        async with _libpod(socket_path) as api:
            pods = (await api.get("/pods/json")).json() or []
            await asyncio.gather(
                *(api.post(f"/pods/{p['Id']}/stop", params={"t": "3"}) for p in pods), return_exceptions=True
            )
            for pod in pods:
                await api.delete(f"/pods/{pod['Id']}", params={"force": "true"})
            for ctr in (await api.get("/containers/json", params={"all": "true"})).json() or []:
                await api.delete(f"/containers/{ctr['Id']}", params={"force": "true"})
            return len(pods)
    except httpx.HTTPError:
        return 0


async def _unmount_all(*bases: Path) -> None:
    from agent.mounts import mount_points

    for point in await asyncio.to_thread(mount_points, *bases):
        proc = await asyncio.create_subprocess_exec(
            "umount",
            "--lazy",
            str(point),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        await proc.wait()


# --- pea down ------------------------------------------------------------------------------------


async def run_down(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    layout = _Layout(_data_dir(args))
    pid = _running_pid(layout.pid_file)
    if pid is None:
        print(f"pea up is not running on {layout.data}", file=out, flush=True)
    else:
        if pid > 0:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        print(f"stopping pea up (pid {pid})", file=out, flush=True)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STOP_TIMEOUT
        while _running_pid(layout.pid_file) is not None:
            if loop.time() > deadline:
                raise UpError(f"pea up (pid {pid}) did not stop within {STOP_TIMEOUT:g} s")
            await asyncio.sleep(0.2)
        print("stopped", file=out, flush=True)
    if args.purge:
        await _purge(layout, out)
    return 0


async def _purge(layout: _Layout, out: TextIO) -> None:
    if not await asyncio.to_thread(lambda: layout.data.exists() or layout.runroot.exists()):
        print(f"nothing to purge at {layout.data}", file=out, flush=True)
        return
    _check_machine()
    if await asyncio.to_thread(layout.storage.exists):
        from agent.runtime.podman_service import PodmanServiceError

        service = layout.service()
        try:
            await service.start()
            removed = await _remove_pods(service.socket_path)
            print(f"removed {removed} pods and the images of {layout.storage}", file=out, flush=True)
        except PodmanServiceError as exc:
            print(f"warning: cannot start Podman to remove pods: {exc}", file=out, flush=True)
        finally:
            await service.stop()
            with contextlib.suppress(Exception):
                await service.unmount_storage()
    # The bridge, tables and routes belong to the machine: only a data directory whose agent ran removes
    # them (one pea up per machine; another data directory's live cluster would lose its network).
    if await asyncio.to_thread(layout.agent.exists):
        await daemons.remove_pod_network(layout.agent / "network")
        print("pod network removed (nftables tables, veths, bridge, routes)", file=out, flush=True)
    await _unmount_all(layout.data, layout.runroot)
    for path in (layout.data, layout.runroot):
        for _ in range(25):  # conmon's last "container cleanup" calls may still be writing there
            await asyncio.to_thread(shutil.rmtree, path, True)
            if not await asyncio.to_thread(path.exists):
                break
            await asyncio.sleep(0.2)
        else:
            print(f"warning: could not remove all of {path}", file=out, flush=True)
    print(f"removed {layout.data}", file=out, flush=True)
