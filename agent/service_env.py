"""Service environment variables: how a container finds Services without DNS, as the kubelet does.

Port of ``pkg/kubelet/envvars`` and the kubelet's ``getServiceEnvVarMap``: for each Service with a
cluster IP in the pod's namespace (when ``enableServiceLinks`` is not false) and for the master
service ``default/kubernetes`` (always), ``{SVC}_SERVICE_HOST``/``_SERVICE_PORT[_{NAME}]`` and the old
Docker-links ``{SVC}_PORT...`` variables. They are computed once, when a container is created: a Service
made later never reaches a running container (Kubernetes' documented ordering caveat).
"""

from __future__ import annotations

from collections.abc import Iterable

from controlplane.api.core import Service

MASTER_NAMESPACE = "default"
MASTER_SERVICES = frozenset({"kubernetes"})  # in MASTER_NAMESPACE: every pod gets these, links or not


def service_env(services: Iterable[Service], namespace: str, enable_service_links: bool) -> dict[str, str]:
    """The service variables of a pod in ``namespace`` (``getServiceEnvVarMap``).

    A Service of the pod's own namespace wins over a same-named master service, whatever the order."""
    chosen: dict[str, Service] = {}
    for svc in services:
        if not _ip_set(svc):
            continue
        name = svc.metadata.name or ""
        ns = svc.metadata.namespace or "default"
        if ns == MASTER_NAMESPACE and name in MASTER_SERVICES:
            chosen.setdefault(name, svc)
        elif ns == namespace and enable_service_links:
            chosen[name] = svc
    return from_services(chosen[name] for name in sorted(chosen))


def from_services(services: Iterable[Service]) -> dict[str, str]:
    """The variables of each Service with a cluster IP (``envvars.FromServices``), in order."""
    env: dict[str, str] = {}
    for svc in services:
        if not _ip_set(svc):
            continue
        prefix = env_name(svc.metadata.name or "")
        ip = _ip(svc)
        ports = svc.spec.ports or []
        env[f"{prefix}_SERVICE_HOST"] = ip
        if ports:  # validation demands one for a service with a cluster IP; be safe anyway
            env[f"{prefix}_SERVICE_PORT"] = str(ports[0].port)
        for port in ports:
            if port.name:  # only the first port may be unnamed
                env[f"{prefix}_SERVICE_PORT_{env_name(port.name)}"] = str(port.port)
        for i, port in enumerate(ports):
            protocol = port.protocol or "TCP"
            url = f"{protocol.lower()}://{_host_port(ip, port.port)}"
            if i == 0:
                env[f"{prefix}_PORT"] = url  # Docker special-cases the first port
            base = f"{prefix}_PORT_{port.port}_{protocol.upper()}"
            env[base] = url
            env[f"{base}_PROTO"] = protocol.lower()
            env[f"{base}_PORT"] = str(port.port)
            env[f"{base}_ADDR"] = ip
    return env


def env_name(name: str) -> str:
    """``redis-master`` → ``REDIS_MASTER`` (``makeEnvVariableName``)."""
    return name.replace("-", "_").upper()


def _ip(svc: Service) -> str:
    return svc.spec.cluster_ip or (svc.spec.cluster_ips or [""])[0]


def _ip_set(svc: Service) -> bool:
    """``IsServiceIPSet``: headless (``None``) and IP-less services (ExternalName) have no variables."""
    ip = _ip(svc)
    return bool(ip) and ip != "None" and svc.spec.type != "ExternalName"


def _host_port(ip: str, port: int) -> str:
    """``net.JoinHostPort``: an IPv6 address goes in brackets."""
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
