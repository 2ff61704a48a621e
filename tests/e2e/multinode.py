"""A multi-node cluster on one machine: N nodes in network namespaces of their own, one "lab" LAN.

    pea-lab-TAG netns: labbr0 192.168.77.1/24 ── veth ── pea-nI-TAG netns: lan0 192.168.77.(10+I)/24
                       (API proxy :6443)                    └─ pea0 bridge 10.244.x.1/24 ── pods

Each node namespace gets a veth into the lab bridge, its own Podman service (started through ``nsenter
--net``, with its own root, runroot and socket, the busybox image built into it) and an agent whose pod
network (``BridgeNetwork``) and host-gw routes (``HostGatewayRoutes``) work inside that namespace. The
agents and the control plane run in the calling process, on its event loop: they reach the API server
on 127.0.0.1, with a token (a static token file, so nothing on the machine is trusted merely for being
local). Each agent has a node token of its own (user ``system:node:<name>``, group ``system:nodes``), so
everything the lab runs proves the agents work under NodeRestriction; the lab's client is the admin.
Pods reach it at 192.168.77.1:6443, a small TCP proxy whose listening socket lives in the lab namespace;
the server advertises 192.168.77.1 in ``default/kubernetes`` (the proxy also listens on the server's own
port, which those Endpoints name), so ``KUBERNETES_SERVICE_HOST`` works from pods.

DNS: every agent runs its node-local cluster DNS server (on its bridge gateway; the proxy sends
``kube-system/kube-dns``, 10.254.0.10, there) and forwards names outside the cluster to the lab's own
"upstream" resolver (``UpstreamDNS``, 192.168.77.1:53 in the lab namespace, UDP and TCP; its names in
``Lab.upstream.records``), never to a resolver outside the machine.

Traffic stays inside: no namespace has a default route, and every one holds blackhole routes for the pod
and service ranges (the node's own pod /24 and the host-gw routes to other nodes' /24s are more specific
and win), so a missing route fails fast instead of leaving the machine. Node namespaces are the exception
for the service range: their agent routes it onto the node's bridge (where the proxy's rules take it),
and a blackhole there would be left in place and break ClusterIPs from the node itself.
Teardown (even after a failure) stops the agents, removes every pod and container, stops the Podman
services, unmounts and deletes their storage and deletes the namespaces, which takes the bridges, veths,
routes and nftables tables along.

Used by ``tests/e2e/test_multinode.py`` and by ``examples/testbed/cluster.py`` (``just cluster N``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import shutil
import socket
import tempfile
import urllib.parse
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from dnslib import QTYPE, RCODE, RR, A, DNSRecord

from agent.agent import Agent, AgentSettings
from agent.network.bridge import BridgeNetwork
from agent.network.netns import run_in_netns
from agent.pods import BackOffPolicy
from agent.runtime.images import build_busybox_image
from agent.runtime.podman import PodmanRuntime
from agent.runtime.podman_service import PodmanService
from agent.volumes import VolumeManager
from controlplane.api import Pod
from controlplane.client import Client
from controlplane.server.controlplane import ControlPlane, Settings

log = logging.getLogger(__name__)

LAB_PREFIX = "192.168.77"
LAB_GATEWAY = f"{LAB_PREFIX}.1"
LAB_BRIDGE = "labbr0"
API_PORT = 6443
SERVICE_RANGE = "10.254.0.0/16"
BLACKHOLES = ("10.244.0.0/16", SERVICE_RANGE)
FAST = BackOffPolicy(initial=0.5, maximum=2.0, reset_after=600)


@dataclass
class LabNode:
    name: str
    netns: str  # /run/netns/...
    ip: str
    service: PodmanService
    agent: Agent | None = None
    token: str = ""  # the node's own token (user system:node:<name>)
    client: Client | None = None  # the agent's client, with that token

    def node_client(self, url: str) -> Client:
        """The node's client (made once, closed by the testbed): what its agent, or a restarted one, uses."""
        if self.client is None:
            self.client = Client(url, self.token)
        return self.client

    @property
    def podman_socket(self) -> Path:
        return self.service.socket_path


@dataclass
class Lab:
    client: Client
    url: str  # the API server for this process (loopback)
    token: str
    lab: str  # the lab namespace's path
    nodes: list[LabNode] = field(default_factory=list)
    pod_url: str = f"http://{LAB_GATEWAY}:{API_PORT}"  # the API server as seen from the node namespaces
    upstream: UpstreamDNS | None = None  # the agents' DNS upstream (192.168.77.1:53)

    def node(self, name: str) -> LabNode:
        return next(n for n in self.nodes if n.name == name)

    async def exec_in(self, node: LabNode | str, *cmd: str, timeout: float = 30.0) -> tuple[int, str]:
        """Run ``cmd`` in a node's namespace (or any namespace path); exit status and combined output."""
        netns = node.netns if isinstance(node, LabNode) else node
        return await _run("nsenter", f"--net={netns}", *cmd, timeout=timeout)

    async def http_get(self, from_netns: LabNode | str, url: str, timeout: float = 2.0) -> str:
        """An HTTP/1.0 GET sent from inside a namespace: the whole response text, or OSError."""
        netns = from_netns.netns if isinstance(from_netns, LabNode) else from_netns
        return await run_in_netns(netns, _http_get, url, timeout)

    async def udp_ask(self, from_netns: LabNode | str, host: str, port: int, data: bytes) -> bytes:
        """One datagram sent from inside a namespace and the first answer (OSError/TimeoutError if none)."""
        netns = from_netns.netns if isinstance(from_netns, LabNode) else from_netns
        return await run_in_netns(netns, _udp_ask, host, port, data, 2.0)

    async def pod_netns(self, pod: Pod) -> str | None:
        """The network namespace (``/proc/PID/ns/net``) of a pod's sandbox on its node, for sending
        traffic exactly as the pod would; None until the node has the sandbox running."""
        node = next((n for n in self.nodes if n.name == pod.spec.node_name), None)
        if node is None or node.agent is None:
            return None
        for sandbox in await node.agent.runtime.list_sandboxes():
            if sandbox.uid == pod.metadata.uid and sandbox.infra_running:
                return sandbox.netns
        return None


async def _run(*cmd: str, timeout: float = 60.0) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    return proc.returncode or 0, out.decode(errors="replace")


async def _ip(*args: str) -> None:
    code, out = await _run("ip", *args)
    if code != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {out.strip()}")


def _http_get(url: str, timeout: float) -> str:
    parts = urllib.parse.urlsplit(url)
    host, port = parts.hostname or "", parts.port or 80
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(f"GET {parts.path or '/'} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


def _udp_ask(host: str, port: int, data: bytes, timeout: float) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(data, (host, port))
        return s.recv(65536)


# --- the lab LAN and the node namespaces -----------------------------------------------------------


async def _make_namespace(name: str, blackholes: tuple[str, ...] = BLACKHOLES) -> None:
    await _ip("netns", "add", name)
    await _ip("-n", name, "link", "set", "lo", "up")
    for cidr in blackholes:
        await _ip("-n", name, "route", "add", "blackhole", cidr)


async def _make_lab(lab: str) -> None:
    await _make_namespace(lab)
    await _ip("-n", lab, "link", "add", LAB_BRIDGE, "type", "bridge")
    await _ip("-n", lab, "addr", "add", f"{LAB_GATEWAY}/24", "dev", LAB_BRIDGE)
    await _ip("-n", lab, "link", "set", LAB_BRIDGE, "up")


async def _plug_node(lab: str, node: str, tag: str, index: int, ip: str) -> None:
    """A node namespace with ``lan0`` on the lab bridge; no default route."""
    await _make_namespace(node, blackholes=tuple(c for c in BLACKHOLES if c != SERVICE_RANGE))
    port = f"pl{tag}{index}"
    await _ip("link", "add", port, "netns", lab, "type", "veth", "peer", "name", "lan0", "netns", node)
    await _ip("-n", lab, "link", "set", port, "master", LAB_BRIDGE, "up")
    await _ip("-n", node, "addr", "add", f"{ip}/24", "dev", "lan0")
    await _ip("-n", node, "link", "set", "lan0", "up")


# --- Podman per node -------------------------------------------------------------------------------


def _podman_wrapper(directory: Path, netns: str) -> Path:
    """``podman`` entering the node's namespace first: the service, conmon and runc all run there. In a
    session of its own (``setsid`` execs in place: same PID), so a terminal's Ctrl-C reaches only the
    test bed, which then removes the pods through the still running service before stopping it."""
    path = directory / "podman-in-netns"
    path.write_text(f'#!/bin/sh\nexec setsid nsenter --net={netns} podman "$@"\n')
    path.chmod(0o755)
    return path


async def _remove_everything(socket_path: Path) -> None:
    async with httpx.AsyncClient(
        transport=httpx.AsyncHTTPTransport(uds=str(socket_path)),
        base_url="http://podman/v4.0.0/libpod",
        timeout=30.0,
    ) as api:
        for pod in (await api.get("/pods/json")).json() or []:
            await api.delete(f"/pods/{pod['Id']}", params={"force": "true", "timeout": 0})
        for ctr in (await api.get("/containers/json", params={"all": "true"})).json() or []:
            await api.delete(f"/containers/{ctr['Id']}", params={"force": "true", "timeout": 0})


async def _start_podman(node: LabNode) -> None:
    await node.service.start()
    await build_busybox_image(node.service.socket_path)


async def _stop_podman(service: PodmanService) -> None:
    try:
        if service.running:
            with contextlib.suppress(httpx.HTTPError):
                await _remove_everything(service.socket_path)
    finally:
        await service.stop()
        with contextlib.suppress(Exception):
            await service.unmount_storage()


# --- the API server, seen from the lab -------------------------------------------------------------


def _lab_listener(host: str, port: int) -> socket.socket:
    """Made in a thread inside the lab namespace: the socket stays there, and so do its connections."""
    sock = socket.create_server((host, port))
    sock.setblocking(False)
    return sock


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(ConnectionError, OSError):
            writer.close()


class ApiProxy:
    """192.168.77.1:6443 in the lab namespace, passed byte for byte to the API server on loopback (which
    still wants each client's token: with a token file, loopback earns nothing)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.server: asyncio.Server | None = None
        self._extra: list[asyncio.Server] = []
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self, lab: str) -> None:
        """On 6443, and on the server's own port: ``default/kubernetes``'s Endpoints name that one (the
        server advertises 192.168.77.1 with its real port), so ClusterIP 10.254.0.1:443 lands here."""
        ports = sorted({API_PORT, self.target_port})
        socks = [await run_in_netns(lab, _lab_listener, LAB_GATEWAY, port) for port in ports]
        self.server = await asyncio.start_server(self._handle, sock=socks[0])
        self._extra = [await asyncio.start_server(self._handle, sock=sock) for sock in socks[1:]]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._writers.add(up_writer)
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    async def stop(self) -> None:
        for server in [self.server, *self._extra]:
            if server is not None:
                server.close()
        for writer in self._writers:
            writer.close()


# --- the lab's upstream DNS resolver -------------------------------------------------------------


def _lab_dns_sockets(host: str, port: int) -> tuple[socket.socket, socket.socket]:
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tcp = socket.create_server((host, port))
    udp.bind((host, port))
    udp.setblocking(False)
    tcp.setblocking(False)
    return udp, tcp


class UpstreamDNS(asyncio.DatagramProtocol):
    """The resolver the agents forward to: A records from ``records`` (name with the final dot ->
    addresses), NXDOMAIN for the rest; every question asked is kept in ``asked`` (qname, qtype name)."""

    def __init__(self, records: dict[str, list[str]] | None = None, ttl: int = 30) -> None:
        self.records = records if records is not None else {"outside.example.": ["192.0.2.7"]}
        self.ttl = ttl
        self.asked: list[tuple[str, str]] = []
        self.port = 53
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None

    async def start(self, lab: str, host: str = LAB_GATEWAY, port: int = 53) -> None:
        udp, tcp = await run_in_netns(lab, _lab_dns_sockets, host, port)
        loop = asyncio.get_running_loop()
        self._udp, _ = await loop.create_datagram_endpoint(lambda: self, sock=udp)
        self._tcp = await asyncio.start_server(self._tcp_client, sock=tcp)

    async def stop(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()

    def answer(self, data: bytes) -> bytes:
        request = DNSRecord.parse(data)
        reply = request.reply()
        qname, qtype = str(request.q.qname), QTYPE.get(request.q.qtype, str(request.q.qtype))
        self.asked.append((qname, qtype))
        addresses = self.records.get(qname.lower())
        if addresses is None:
            reply.header.rcode = RCODE.NXDOMAIN
        elif qtype == "A":
            for ip in addresses:
                reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A(ip), ttl=self.ttl))
        return bytes(reply.pack())

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        with contextlib.suppress(Exception):  # a malformed question gets no answer
            if self._udp is not None:
                self._udp.sendto(self.answer(data), addr)

    async def _tcp_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            for _ in range(100):  # bounded: a test connection asks a few questions
                size = int.from_bytes(await asyncio.wait_for(reader.readexactly(2), 10.0), "big")
                out = self.answer(await reader.readexactly(size))
                writer.write(len(out).to_bytes(2, "big") + out)
                await writer.drain()
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError, OSError):
            pass
        finally:
            writer.close()


# --- the whole bed ---------------------------------------------------------------------------------


def _agent(client: Client, node: LabNode, data: Path) -> Agent:
    settings = AgentSettings(
        node_name=node.name,
        node_ip=node.ip,
        listen="127.0.0.1:0",
        lease_interval=0.5,
        status_interval=1.0,
        resync_interval=1.0,
        backoff=FAST,
        dns_upstreams=[(LAB_GATEWAY, 53)],  # the lab's UpstreamDNS, never a resolver outside the machine
        cluster_dns=["10.254.0.10"],
    )
    return Agent(
        client,
        PodmanRuntime(node.service.socket_path, node.name),
        settings,
        network=BridgeNetwork(data / "network", netns=node.netns),
        volumes=VolumeManager(data / "pods", client),
    )


def _prepare_dirs(tmp: Path, token_file: Path, token: str, nodes: dict[str, str]) -> Path:
    """The token file under ``tmp`` (owner-only: the admin's token, and ``nodes``' node name → token);
    Podman's directories under a short /tmp path (unix socket paths are limited), returned."""
    tmp.mkdir(parents=True, exist_ok=True)
    lines = [f'{token},admin,admin,"system:masters"']
    lines += [f'{t},system:node:{name},{name},"system:nodes"' for name, t in nodes.items()]
    token_file.touch(mode=0o600)
    token_file.write_text("\n".join(lines) + "\n")
    return Path(tempfile.mkdtemp(prefix="pea-mn-"))


@contextlib.asynccontextmanager
async def testbed(
    n: int, tmp: Path, *, prefix: str = "node", settings: dict[str, object] | None = None
) -> AsyncIterator[Lab]:
    """N nodes (``node1``..``nodeN`` at 192.168.77.11..), their agents running, and a control plane;
    ``settings``: more control-plane ``Settings`` fields (shorter grace periods for fault tests)."""
    if not 1 <= n <= 200:
        raise ValueError("1 to 200 nodes")
    tag = secrets.token_hex(3)
    lab = f"pea-lab-{tag}"
    namespaces = [lab]
    token = secrets.token_urlsafe(24)
    token_file = tmp / "tokens.csv"
    node_tokens = {f"{prefix}{i}": secrets.token_urlsafe(24) for i in range(1, n + 1)}
    short = await asyncio.to_thread(_prepare_dirs, tmp, token_file, token, node_tokens)
    nodes: list[LabNode] = []
    cp: ControlPlane | None = None
    client: Client | None = None
    proxy: ApiProxy | None = None
    upstream = UpstreamDNS()
    try:
        await _make_lab(lab)
        for i in range(1, n + 1):
            ns = f"pea-n{i}-{tag}"
            namespaces.append(ns)
            ip = f"{LAB_PREFIX}.{10 + i}"
            await _plug_node(lab, ns, tag, i, ip)
            base = short / f"n{i}"
            base.mkdir()
            service = PodmanService(
                base / "data",
                root=base / "root",
                runroot=base / "run",
                podman=str(_podman_wrapper(base, f"/run/netns/{ns}")),
            )
            name = f"{prefix}{i}"
            nodes.append(LabNode(name, f"/run/netns/{ns}", ip, service, token=node_tokens[name]))
        cp = ControlPlane(
            Settings(
                data_dir=tmp / "cp",
                listen="127.0.0.1:0",
                advertise_address=LAB_GATEWAY,  # pods reach the API server there (ApiProxy)
                token_file=token_file,
                event_sweep_interval=3600,
                **(settings or {}),  # type: ignore[arg-type]
            )
        )
        await cp.start()
        proxy = ApiProxy(urllib.parse.urlsplit(cp.url).port or API_PORT)
        await proxy.start(f"/run/netns/{lab}")
        await upstream.start(f"/run/netns/{lab}")
        client = Client(cp.url, token)
        await asyncio.gather(*(_start_podman(node) for node in nodes))
        for node in nodes:
            node.agent = _agent(node.node_client(cp.url), node, tmp / node.name)
        await asyncio.gather(*(node.agent.start() for node in nodes if node.agent is not None))
        yield Lab(client, cp.url, token, f"/run/netns/{lab}", nodes, upstream=upstream)
    finally:
        for node in nodes:
            if node.agent is not None:
                with contextlib.suppress(Exception):
                    await node.agent.stop()
        await asyncio.gather(*(_stop_podman(node.service) for node in nodes), return_exceptions=True)
        if proxy is not None:
            await proxy.stop()
        await upstream.stop()
        if client is not None:
            await client.close()
        for node in nodes:
            if node.client is not None:
                with contextlib.suppress(Exception):
                    await node.client.close()
        if cp is not None:
            await cp.stop()
        for ns in reversed(namespaces):
            with contextlib.suppress(RuntimeError):
                await _ip("netns", "del", ns)
        shutil.rmtree(short, ignore_errors=True)
