"""``pea expose``: make a Service for a replication controller, pod or Service, like ``kubectl expose``.

The selector is the resource's: an RC's ``spec.selector``, a pod's labels, a Service's selector (kubectl's
``MapBasedSelectorForObject``); ``--selector`` replaces it. The Service takes the resource's name and
labels unless told otherwise. Without ``--port`` the ports come from the resource itself: its
containers' ports (RC, pod) or its ports (Service), as kubectl's ``PortsForObject``. The API server
does the rest (cluster IP, node ports, validation): what it refuses is printed as one line.
"""

from __future__ import annotations

import argparse
from typing import Any, Protocol, TextIO

from controlplane.api.core import Pod, ReplicationController, Service
from controlplane.api.registry import for_type
from controlplane.client import Client
from controlplane.selectors import SelectorError, parse_label_selector

_KINDS = {
    "rc": "ReplicationController",
    "replicationcontroller": "ReplicationController",
    "replicationcontrollers": "ReplicationController",
    "po": "Pod",
    "pod": "Pod",
    "pods": "Pod",
    "svc": "Service",
    "service": "Service",
    "services": "Service",
}
_TYPES = ("ClusterIP", "NodePort", "LoadBalancer")


class ExposeContext(Protocol):
    args: argparse.Namespace
    out: TextIO
    err: TextIO

    @property
    def namespace(self) -> str: ...

    def client(self) -> Client: ...


class ExposeError(ValueError):
    """Bad arguments or a resource that cannot be exposed: ``pea`` prints it as one line."""


def setup_expose(p: argparse.ArgumentParser) -> None:
    p.add_argument("resource", metavar="TYPE NAME | TYPE/NAME", help="rc, pod or svc, and its name")
    p.add_argument("name", nargs="?", metavar="NAME")
    p.add_argument("--port", type=int, help="the port the Service serves on (default: the resource's)")
    p.add_argument("--target-port", help="the port (number or name) on the pods (default: --port)")
    p.add_argument("--type", choices=_TYPES, help="the Service type (default ClusterIP)")
    p.add_argument(
        "--name", dest="service_name", metavar="NAME", help="the Service's name (default: the resource's)"
    )
    p.add_argument("--protocol", choices=("TCP", "UDP", "SCTP"), help="the port's protocol (default TCP)")
    p.add_argument("--node-port", type=int, metavar="PORT", help="the node port (NodePort, LoadBalancer)")
    p.add_argument(
        "--selector", help="label selector (equality only) for the pods, instead of the resource's"
    )
    p.add_argument("-l", "--labels", help="labels for the Service (key=value,...), instead of the resource's")
    p.add_argument("--cluster-ip", help="the cluster IP to ask for ('None' for a headless Service)")
    p.add_argument("--external-ip", help="an external IP the Service also answers on")
    p.add_argument("--load-balancer-ip", help="the IP a LoadBalancer Service gets")
    p.add_argument("--session-affinity", choices=("None", "ClientIP"), help="the session affinity")


def _target(args: argparse.Namespace) -> tuple[str, str]:
    kind_word, slash, name = args.resource.partition("/")
    if slash:
        if args.name:
            raise ExposeError(f'there is no need to give a name after "{args.resource}"')
    else:
        name = args.name or ""
    kind = _KINDS.get(kind_word.lower())
    if kind is None:
        raise ExposeError(f"cannot expose a {kind_word}: use rc, pod or svc")
    if not name:
        raise ExposeError("a resource name is required: pea expose TYPE NAME")
    return kind, name


def _equality_selector(text: str) -> dict[str, str]:
    try:
        parse_label_selector(text)
    except SelectorError as exc:
        raise ExposeError(f"invalid --selector: {exc}") from None
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or key.endswith("!"):
            raise ExposeError(f'--selector "{text}": only equality (key=value) selectors can be used')
        out[key.strip()] = value.lstrip("=").strip()
    return out


def _container_ports(spec: Any) -> list[dict[str, Any]]:
    ports: list[dict[str, Any]] = []
    for container in (spec.containers if spec is not None else None) or ():
        for port in container.ports or ():
            ports.append({"port": port.container_port, "protocol": port.protocol or "TCP"})
    return ports


async def _introspect(
    client: Client, kind: str, name: str, namespace: str
) -> tuple[dict[str, str], dict[str, str], list[dict[str, Any]]]:
    """(selector, labels, ports) of the resource."""
    if kind == "ReplicationController":
        rc = await client.get(ReplicationController, name, namespace)
        template = rc.spec.template
        return (
            dict(rc.spec.selector or {}),
            dict(rc.metadata.labels or {}),
            _container_ports(template.spec if template else None),
        )
    if kind == "Pod":
        pod = await client.get(Pod, name, namespace)
        return dict(pod.metadata.labels or {}), dict(pod.metadata.labels or {}), _container_ports(pod.spec)
    svc = await client.get(Service, name, namespace)
    ports = [
        {"port": p.port, "protocol": p.protocol or "TCP", "targetPort": p.target_port}
        for p in svc.spec.ports or ()
    ]
    return dict(svc.spec.selector or {}), dict(svc.metadata.labels or {}), ports


def _labels(text: str) -> dict[str, str]:
    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep:
            raise ExposeError(f'invalid label "{part}": want key=value')
        out[key] = value
    return out


async def run_expose(args: argparse.Namespace, out: TextIO, client: Client, namespace: str) -> int:
    kind, name = _target(args)
    selector, labels, ports = await _introspect(client, kind, name, namespace)
    if args.selector:
        selector = _equality_selector(args.selector)
    if not selector:
        raise ExposeError(
            f"couldn't retrieve selectors via --selector flag or introspection of {kind} {name}"
        )
    if args.port is not None:
        target: Any = args.target_port or args.port
        if isinstance(target, str) and target.isdigit():
            target = int(target)
        ports = [{"port": args.port, "protocol": args.protocol or "TCP", "targetPort": target}]
    elif not ports:
        raise ExposeError("couldn't find port via --port flag or introspection")
    else:
        for port in ports:
            if args.protocol:
                port["protocol"] = args.protocol
            if args.target_port:
                port["targetPort"] = int(args.target_port) if args.target_port.isdigit() else args.target_port
            port.setdefault("targetPort", port["port"])
            if port["targetPort"] is None:
                port["targetPort"] = port["port"]
    if len(ports) > 1:
        for i, port in enumerate(ports, 1):
            port["name"] = f"port-{i}"
    if args.node_port is not None:
        if (args.type or "ClusterIP") not in ("NodePort", "LoadBalancer"):
            raise ExposeError("--node-port needs --type NodePort or LoadBalancer")
        if len(ports) != 1:
            raise ExposeError("--node-port can only be used with one port")
        ports[0]["nodePort"] = args.node_port
    spec: dict[str, Any] = {"selector": selector, "ports": ports}
    if args.type:
        spec["type"] = args.type
    if args.cluster_ip:
        spec["clusterIP"] = args.cluster_ip
    if args.external_ip:
        spec["externalIPs"] = [args.external_ip]
    if args.load_balancer_ip:
        spec["loadBalancerIP"] = args.load_balancer_ip
    if args.session_affinity:
        spec["sessionAffinity"] = args.session_affinity
    service_name = args.service_name or name
    metadata: dict[str, Any] = {"name": service_name, "namespace": namespace}
    labels = _labels(args.labels) if args.labels else labels
    if labels:
        metadata["labels"] = labels
    body = {"apiVersion": "v1", "kind": "Service", "metadata": metadata, "spec": spec}
    await client.create_raw(for_type(Service), body, namespace)
    print(f"service/{service_name} exposed", file=out)
    return 0


async def expose(ctx: ExposeContext) -> int:
    async with ctx.client() as client:
        return await run_expose(ctx.args, ctx.out, client, ctx.namespace)
