"""Admission of new pods, as kube-apiserver's admission plugins do it: one mutating, one validating.

DefaultTolerationSeconds: every new pod that does not already say how it treats an unreachable or
not-ready node gets ``tolerationSeconds`` (300 by default) for the ``node.kubernetes.io/not-ready`` and
``node.kubernetes.io/unreachable`` NoExecute taints. So a pod rides out a short node outage instead of
being evicted the moment the node lifecycle controller taints the node, yet is evicted (and replaced by
its controller elsewhere) when the outage lasts. Only creates are mutated: tolerations on an update are
the user's (validation only lets them be added to).

Runs synchronously inside the create path (pure, no I/O), after decoding and before defaulting and
validation, so what it adds is validated like anything the user wrote.

PodSecurity: validating admission, as Kubernetes' PodSecurity "baseline" level enforces it, because the
agent runs pods with rootful Podman and whoever can create a pod with a hostPath of ``/``, a privileged
container or the node's PID namespace owns the machine. Refused unless the server allows them:
``hostPath`` volumes outside the allowed prefixes, ``securityContext.privileged`` and capabilities
beyond baseline's list (containers, initContainers, ephemeralContainers), ``hostNetwork``, ``hostPID``
and ``hostIPC``. It runs on every pod create, mirror pods included (a node could otherwise smuggle a
privileged pod in as the mirror of a static one), after validation and before anything is stored, so a
refusal leaves nothing behind; pod updates cannot change these fields (validation), so creates suffice.
ReplicationControllers are not refused but warned about (a ``Warning`` header) when their pod template
would be, as PodSecurity treats workloads: their pods are then refused, and the controller says so.
Paths are compared as written, normalised (the API server cannot see the node's file system, so
symlinks on the node are the node owner's business); a path with a ``..`` segment is refused outright.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from controlplane.api.core import Container, Pod, PodSpec, ReplicationController, Toleration
from controlplane.api.meta import StatusCause, TopLevel
from controlplane.taints import NOT_READY, UNREACHABLE

from . import errors


@dataclass(frozen=True)
class DefaultTolerationSeconds:
    not_ready_seconds: int = 300
    unreachable_seconds: int = 300

    def admit(self, pod: Pod) -> None:
        """Add the two default tolerations unless the pod already tolerates the taint (a toleration
        with that key, or no key, and NoExecute or no effect: Kubernetes' test)."""
        tolerations = list(pod.spec.tolerations or ())
        added = False
        for key, seconds in ((NOT_READY, self.not_ready_seconds), (UNREACHABLE, self.unreachable_seconds)):
            if any(_covers(t, key) for t in tolerations):
                continue
            tolerations.append(
                Toleration(key=key, operator="Exists", effect="NoExecute", toleration_seconds=seconds)
            )
            added = True
        if added:
            pod.spec.tolerations = tolerations


def _covers(toleration: Toleration, key: str) -> bool:
    return (toleration.key in (key, None, "")) and (toleration.effect in ("NoExecute", None, ""))


#: Capabilities the PodSecurity baseline level lets a container add (Kubernetes' list): anything else
#: (SYS_ADMIN, NET_ADMIN, SYS_PTRACE, ...) is as good as privileged on a rootful runtime.
BASELINE_CAPABILITIES = frozenset(
    {
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "MKNOD",
        "NET_BIND_SERVICE",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
    }
)


def normalise_host_path(path: str) -> str | None:
    """``path`` absolute and normalised (``//`` and ``.`` collapsed, no trailing slash), or None when it
    is relative or climbs with ``..`` (refused rather than resolved: what it means depends on symlinks
    the API server cannot see)."""
    if not path.startswith("/"):
        return None
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        return None
    return "/" + "/".join(parts)


def path_is_under(path: str, prefix: str) -> bool:
    """Both normalised: ``/data`` covers ``/data`` and ``/data/x``, not ``/data2``."""
    return prefix == "/" or path == prefix or path.startswith(prefix + "/")


@dataclass(frozen=True)
class Violation:
    """One refused setting: the field path, what is wrong, and the PodSecurity check it belongs to."""

    check: str
    field: str
    message: str


@dataclass(frozen=True)
class PodSecurity:
    """What new pods may do to their node. The defaults are the secure ones; the control plane passes
    its data directory's ``host-paths`` folder (``Settings.host_path_dir``) and ``--allow-host-path``."""

    allowed_host_paths: tuple[str, ...] = ()
    allow_privileged: bool = False
    allow_host_namespaces: bool = False

    def __post_init__(self) -> None:
        prefixes = []
        for prefix in self.allowed_host_paths:
            norm = normalise_host_path(prefix)
            if norm is None:
                raise ValueError(f"allowed host path {prefix!r} must be an absolute path without '..'")
            prefixes.append(norm)
        object.__setattr__(self, "allowed_host_paths", tuple(dict.fromkeys(prefixes)))

    def admit(self, pod: Pod) -> None:
        """Raise a 403 Forbidden naming every refused field, as kube-apiserver's PodSecurity does."""
        found = self.violations(pod.spec)
        if not found:
            return
        name = pod.metadata.name or pod.metadata.generate_name or ""
        raise errors.forbidden_fields(
            "pods",
            name,
            f"violates PodSecurity: {_summary(found)}",
            [StatusCause(reason="FieldValueForbidden", message=v.message, field=v.field) for v in found],
        )

    def workload_warnings(self, obj: TopLevel, old: TopLevel | None = None) -> list[str]:
        """Warnings for a ReplicationController whose pod template would be refused, as PodSecurity
        warns on workloads instead of refusing them (their pods are refused, with events); none when
        an update leaves the template as it was."""
        if not isinstance(obj, ReplicationController) or obj.spec.template is None:
            return []
        spec = obj.spec.template.spec
        if spec is None:
            return []
        if isinstance(old, ReplicationController) and old.spec.template is not None:
            if old.spec.template.spec == spec:
                return []
        found = self.violations(spec, "spec.template.spec")
        if not found:
            return []
        return [f"would violate PodSecurity: {_summary(found)}"]

    def violations(self, spec: PodSpec, path: str = "spec") -> list[Violation]:
        """Everything in ``spec`` this policy refuses, in field order (also for pod templates)."""
        found: list[Violation] = []
        if not self.allow_host_namespaces:
            for field, value in (
                ("hostNetwork", spec.host_network),
                ("hostPID", spec.host_pid),
                ("hostIPC", spec.host_ipc),
            ):
                if value:
                    found.append(Violation("host namespaces", f"{path}.{field}", f"{field}=true"))
        for i, volume in enumerate(spec.volumes or ()):
            if volume.host_path is not None:
                problem = self._host_path_problem(volume.host_path.path)
                if problem is not None:
                    found.append(
                        Violation(
                            "hostPath volumes",
                            f"{path}.volumes[{i}].hostPath.path",
                            f'volume "{volume.name}": {problem}',
                        )
                    )
        if not self.allow_privileged:
            for kind, containers in (
                ("containers", spec.containers),
                ("initContainers", spec.init_containers or ()),
            ):
                for i, c in enumerate(containers):
                    found.extend(_container_violations(f"{path}.{kind}[{i}]", c.name, _security(c)))
            for i, raw in enumerate(spec.ephemeral_containers or ()):
                sc = raw.get("securityContext") if isinstance(raw, dict) else None
                found.extend(
                    _container_violations(
                        f"{path}.ephemeralContainers[{i}]",
                        str(raw.get("name", "")) if isinstance(raw, dict) else "",
                        sc if isinstance(sc, dict) else {},
                    )
                )
        return found

    def _host_path_problem(self, path: str) -> str | None:
        norm = normalise_host_path(path)
        if norm is None:
            return f"hostPath {path!r} must be an absolute path without '..'"
        if any(path_is_under(norm, prefix) for prefix in self.allowed_host_paths):
            return None
        allowed = ", ".join(self.allowed_host_paths) or "none"
        return f"hostPath {path!r} is not under an allowed prefix (allowed: {allowed})"


def _summary(found: list[Violation]) -> str:
    """PodSecurity's wording: each check once, with what broke it (``host namespaces (hostPID=true)``)."""
    checks: dict[str, list[str]] = {}
    for v in found:
        checks.setdefault(v.check, []).append(v.message)
    return ", ".join(f"{check} ({'; '.join(messages)})" for check, messages in checks.items())


def _security(c: Container) -> dict[str, Any]:
    """The security settings that matter here, as plain values (ephemeral containers are untyped)."""
    sc = c.security_context
    if sc is None:
        return {}
    caps = sc.capabilities
    return {"privileged": sc.privileged, "capabilities": {"add": list(caps.add or ()) if caps else []}}


def _container_violations(path: str, name: str, sc: dict[str, Any]) -> Iterable[Violation]:
    if sc.get("privileged") is True:
        yield Violation(
            "privileged",
            f"{path}.securityContext.privileged",
            f'container "{name}" must not set securityContext.privileged=true',
        )
    caps = sc.get("capabilities")
    added = caps.get("add") if isinstance(caps, dict) else None
    listed_caps = [str(cap) for cap in added] if isinstance(added, list) else []
    extra = [cap for cap in listed_caps if cap.upper().removeprefix("CAP_") not in BASELINE_CAPABILITIES]
    if extra:
        listed = ", ".join(f'"{cap}"' for cap in extra)
        yield Violation(
            "unrestricted capabilities",
            f"{path}.securityContext.capabilities.add",
            f'container "{name}" must not include {listed} in securityContext.capabilities.add',
        )
