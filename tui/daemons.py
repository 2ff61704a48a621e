"""The long-running ``pea`` commands: ``agent`` (one node), ``hollow-nodes`` (many simulated nodes) and
``controller-manager`` (the controllers, as their own process).

Each runs until SIGINT or SIGTERM and then stops cleanly: heartbeats end, workers are cancelled, and an
agent that started its own Podman service stops it (pods keep running; the next agent adopts them).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import socket
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from controlplane.client import Client

if TYPE_CHECKING:
    from agent.network.bridge import BridgeNetwork
    from controlplane.controllers.manager import ControllerSettings


@contextlib.contextmanager
def stop_signals() -> Iterator[asyncio.Event]:
    """An event set by SIGINT or SIGTERM, armed before a daemon starts so Ctrl-C during start-up
    also ends in a clean stop rather than a KeyboardInterrupt."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
    try:
        yield stop
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


def setup_agent(p: argparse.ArgumentParser) -> None:
    p.add_argument("--node-name", default=socket.gethostname(), help="this node's name (default: hostname)")
    p.add_argument("--node-ip", help="the address other nodes reach this one at (default: detected)")
    p.add_argument("--runtime", choices=["podman", "hollow"], default="podman", help="container runtime")
    p.add_argument("--podman-socket", help="use this Podman API socket instead of starting a service")
    p.add_argument("--podman-root", help="Podman storage root for the service this agent starts")
    p.add_argument("--podman-runroot", help="Podman run root for the service this agent starts")
    p.add_argument("--data-dir", help="the agent's state (default ~/.local/share/peapod/agent-NODE)")
    p.add_argument(
        "--network",
        choices=["bridge", "none"],
        help="pod network: a bridge with a veth per pod (default with podman), or loopback only",
    )
    p.add_argument("--bridge", default="pea0", help="the pod network's bridge (default pea0)")
    p.add_argument(
        "--cluster-cidr",
        default="10.244.0.0/16",
        help="every node's pod range; pod traffic to anything else is masqueraded (default 10.244.0.0/16)",
    )
    p.add_argument(
        "--allow-privileged",
        action="store_true",
        help="let pods run privileged containers (refused by default: they own the machine)",
    )
    p.add_argument(
        "--cleanup",
        action="store_true",
        help="remove the pod network and the service proxy's rules (nftables tables, bridge, veths, "
        "routes to other nodes, address records) and exit",
    )
    p.add_argument(
        "--service-cluster-ip-range",
        default="10.254.0.0/16",
        help="the cluster's Service range, as the API server has it (default 10.254.0.0/16)",
    )
    p.add_argument(
        "--no-proxy",
        action="store_true",
        help="do not run the service proxy (no ClusterIP/NodePort rules on this node)",
    )
    p.add_argument(
        "--cluster-dns",
        default="10.254.0.10",
        metavar="IP[,IP...]",
        help="the cluster DNS server(s) ClusterFirst pods use, the kube-dns Service's IP (default "
        '10.254.0.10; "" for none: such pods then fall back to the Default policy)',
    )
    p.add_argument(
        "--cluster-domain", default="cluster.local", help="the cluster's DNS domain (default cluster.local)"
    )
    p.add_argument(
        "--resolv-conf",
        default="/etc/resolv.conf",
        metavar="PATH",
        help='the resolv.conf Default-policy pods copy and ClusterFirst pods take search domains from ("": '
        "none)",
    )
    p.add_argument(
        "--dns-upstream",
        action="append",
        metavar="IP[:PORT]",
        help="where the node's DNS server forwards names outside the cluster (repeatable; default: the "
        "nameservers of --resolv-conf)",
    )
    p.add_argument(
        "--pod-manifests",
        metavar="DIR",
        help="run the Pod manifests of this folder on this node (static pods), with or without the "
        "control plane; each shows in the API as a mirror pod NAME-NODE",
    )
    p.add_argument(
        "--node-lease-duration-seconds",
        type=int,
        default=40,
        metavar="SECONDS",
        help="the node Lease's duration, renewed every quarter of it (default 40, the kubelet's)",
    )
    p.add_argument(
        "--pod-cidr",
        metavar="CIDR",
        help="the pod network's range while the control plane has never given this node one (default: "
        "the last podCIDR it was given)",
    )


def _upstream(text: str) -> tuple[str, int]:
    """``IP`` or ``IP:PORT`` (``[V6]:PORT``) as (address, port), port 53 by default."""
    import ipaddress

    host, port = text, "53"
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.removeprefix(":") or "53"
    elif text.count(":") == 1:
        host, port = text.split(":")
    try:
        ipaddress.ip_address(host)
        number = int(port)
    except ValueError:
        raise ValueError(f'--dns-upstream: "{text}" is not IP or IP:PORT') from None
    if not 0 < number < 65536:
        raise ValueError(f"--dns-upstream: port {number} is out of range")
    return host, number


async def remove_pod_network(network_dir: Path, bridge: str = "pea0") -> None:
    """What ``pea agent --cleanup`` (and ``pea up`` on its way out) removes: the pod network's table,
    veths and bridge, the service proxy's table and the routes to other nodes' pods."""
    from agent.network import nftables
    from agent.network.bridge import BridgeNetwork
    from agent.network.netns import run_in_netns
    from agent.network.proxy_rules import TABLE as PROXY_TABLE
    from agent.network.routes import sync_routes

    await BridgeNetwork(network_dir, bridge=bridge).cleanup()
    await nftables.delete(PROXY_TABLE)
    await run_in_netns(None, sync_routes, {})


async def run_agent(args: argparse.Namespace, out: TextIO, client: Client) -> int:
    import ipaddress

    from agent.agent import Agent, AgentSettings

    cluster_dns = [ip.strip() for ip in args.cluster_dns.split(",") if ip.strip()]
    for ip in cluster_dns:
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise ValueError(f'--cluster-dns: "{ip}" is not an IP address') from None
    settings = AgentSettings(
        node_name=args.node_name,
        proxy=not args.no_proxy,
        service_cidr=args.service_cluster_ip_range,
        cluster_dns=cluster_dns,
        cluster_domain=args.cluster_domain.strip("."),
        resolv_conf=args.resolv_conf,
        dns_upstreams=[_upstream(u) for u in args.dns_upstream] if args.dns_upstream else None,
    )
    if args.node_ip:
        settings.node_ip = args.node_ip
    if args.node_lease_duration_seconds < 1:
        raise ValueError("--node-lease-duration-seconds: must be at least 1")
    settings.lease_duration = args.node_lease_duration_seconds
    settings.lease_interval = args.node_lease_duration_seconds / 4
    if args.data_dir or args.runtime == "podman":  # the hollow runtime keeps nothing unless told where
        settings.data_dir = _data_dir(args)
    if args.pod_cidr:
        try:
            settings.pod_cidr = str(ipaddress.IPv4Network(args.pod_cidr, strict=False))
        except ValueError:
            raise ValueError(f'--pod-cidr: "{args.pod_cidr}" is not an IPv4 range') from None
    if args.pod_manifests:
        settings.pod_manifests = Path(args.pod_manifests)
        if not settings.pod_manifests.is_dir():
            raise ValueError(f"--pod-manifests: {args.pod_manifests} is not a directory")
    if args.cleanup:
        await remove_pod_network(_data_dir(args) / "network", args.bridge)
        print(f"pod network of {args.node_name} removed", file=out)
        return 0
    network = _network(args)
    with stop_signals() as stop:
        runtime, cleanup = await _runtime(args)
        volumes = None
        if args.runtime == "podman":
            from agent.volumes import VolumeManager

            volumes = VolumeManager(_data_dir(args) / "pods", client, secrets_in_memory=True)
        agent = Agent(client, runtime, settings, network=network, volumes=volumes)
        try:
            await agent.start()
            where = f"{settings.node_name} ({settings.node_ip})"
            print(f"peapod agent {where} running; Ctrl-C stops it", file=out)
            out.flush()
            await stop.wait()
        finally:
            await agent.stop()
            await cleanup()
    return 0


async def _runtime(args: argparse.Namespace) -> tuple[Any, Callable[[], Awaitable[None]]]:
    async def nothing() -> None:
        return None

    if args.runtime == "hollow":
        from agent.runtime.hollow import HollowRuntime

        return HollowRuntime(args.node_name), nothing
    from agent.runtime.podman import PodmanRuntime
    from agent.runtime.podman_service import PodmanService

    privileged = bool(getattr(args, "allow_privileged", False))
    if args.podman_socket:
        return PodmanRuntime(Path(args.podman_socket), args.node_name, allow_privileged=privileged), nothing
    service = PodmanService(
        _data_dir(args),
        root=Path(args.podman_root) if args.podman_root else None,
        runroot=Path(args.podman_runroot) if args.podman_runroot else None,
    )
    await service.start()
    return PodmanRuntime(service.socket_path, args.node_name, allow_privileged=privileged), service.stop


def _data_dir(args: argparse.Namespace) -> Path:
    return (
        Path(args.data_dir)
        if args.data_dir
        else Path.home() / ".local/share/peapod" / f"agent-{args.node_name}"
    )


def _network(args: argparse.Namespace) -> BridgeNetwork | None:
    """The pod network the flags ask for (None: loopback only)."""
    kind = args.network or ("bridge" if args.runtime == "podman" else "none")
    if kind == "none":
        return None
    from agent.network.bridge import BridgeNetwork

    return BridgeNetwork(_data_dir(args) / "network", bridge=args.bridge, cluster_cidr=args.cluster_cidr)


def setup_hollow(p: argparse.ArgumentParser) -> None:
    p.add_argument("--count", type=int, default=10, help="how many hollow nodes to run")
    p.add_argument("--prefix", default="hollow-node-", help="node name prefix")
    p.add_argument(
        "--no-proxy",
        dest="proxy",
        action="store_false",
        help="do not compute the nodes' service proxy rules (nor watch Endpoints)",
    )
    p.add_argument(
        "--cluster-cidr",
        default="10.244.0.0/16",
        help="the pods' range, as the control plane's --cluster-cidr (for the proxy rules)",
    )
    p.add_argument(
        "--lease-interval",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="how often each node renews its Lease (default 10)",
    )
    p.add_argument(
        "--status-interval",
        type=float,
        default=40.0,
        metavar="SECONDS",
        help="how often each node writes its status when nothing changed (default 40)",
    )
    p.add_argument(
        "--register-batch",
        type=int,
        default=50,
        metavar="N",
        help="nodes registering at once (default 50)",
    )


async def run_hollow(args: argparse.Namespace, out: TextIO, client: Client) -> int:
    import ipaddress
    import time

    from agent.hollow import HollowNodes

    if args.count < 1:
        raise ValueError("--count must be at least 1")
    if args.lease_interval <= 0 or args.status_interval <= 0:
        raise ValueError("--lease-interval and --status-interval must be positive")
    if args.register_batch < 1:
        raise ValueError("--register-batch must be at least 1")
    try:
        cluster_cidr = str(ipaddress.IPv4Network(args.cluster_cidr))
    except ValueError as exc:
        raise ValueError(f"--cluster-cidr: {exc}") from None
    nodes = HollowNodes(
        client,
        args.count,
        prefix=args.prefix,
        proxy=args.proxy,
        cluster_cidr=cluster_cidr,
        lease_interval=args.lease_interval,
        status_interval=args.status_interval,
    )
    with stop_signals() as stop:
        try:
            began = time.perf_counter()
            await nodes.start(batch=args.register_batch)
            took = time.perf_counter() - began
            last = f"{args.prefix}{args.count - 1}"
            print(
                f"{args.count} hollow nodes running ({args.prefix}0..{last}); Ctrl-C stops them "
                f"(registered in {took:.1f} s)",
                file=out,
            )
            out.flush()
            await stop.wait()
        finally:
            await nodes.stop()
    return 0


def controller_options(p: argparse.ArgumentParser) -> None:
    """The controllers' flags, shared by ``pea controlplane`` and ``pea controller-manager``."""
    p.add_argument(
        "--node-monitor-grace-period",
        type=float,
        default=50.0,
        metavar="SECONDS",
        help="a node silent this long becomes Ready=Unknown and unreachable (default 50)",
    )
    p.add_argument(
        "--node-monitor-period",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="how often node heartbeats are checked (default 5)",
    )
    p.add_argument(
        "--endpoints-batch-period",
        type=float,
        default=0.5,
        metavar="SECONDS",
        help="how long pod changes are gathered before a Service's Endpoints are written (default 0.5)",
    )
    p.add_argument("--workers", type=int, default=5, help="workers per controller (default 5)")


def controller_settings(args: argparse.Namespace) -> ControllerSettings:
    from controlplane.controllers.manager import ControllerSettings

    for flag in ("node_monitor_grace_period", "node_monitor_period", "endpoints_batch_period"):
        if getattr(args, flag) <= 0:
            raise ValueError(f"--{flag.replace('_', '-')} must be positive")
    if args.workers < 1:
        raise ValueError("--workers must be at least 1")
    return ControllerSettings(
        workers=args.workers,
        node_monitor_grace_period=args.node_monitor_grace_period,
        node_monitor_period=args.node_monitor_period,
        endpoints_batch_period=args.endpoints_batch_period,
    )


async def run_controller_manager(args: argparse.Namespace, out: TextIO, client: Client) -> int:
    from controlplane.controllers.manager import ControllerManager

    manager = ControllerManager(client, controller_settings(args))
    with stop_signals() as stop:
        try:
            await client.request("GET", "/version")
            await manager.start()
            print(f"peapod controller-manager running against {client.server}; Ctrl-C stops it", file=out)
            out.flush()
            await stop.wait()
        finally:
            await manager.stop()
    return 0
