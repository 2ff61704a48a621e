"""Pod volumes on the node (emptyDir, hostPath, configMap, secret) and the pod's managed ``/etc/hosts``
and ``/etc/resolv.conf``.

Layout, like the kubelet's ``/var/lib/kubelet/pods`` (``root`` is the agent's data dir / "pods")::

    root/<pod uid>/volumes/empty-dir/<volume>   an emptyDir; a tmpfs is mounted there for medium Memory
    root/<pod uid>/volumes/configmap/<volume>   a ConfigMap's files, in the atomic-writer layout below
    root/<pod uid>/volumes/secret/<volume>      a Secret's files (on a tmpfs with ``secrets_in_memory``)
    root/<pod uid>/etc-hosts                    the pod's /etc/hosts
    root/<pod uid>/etc-resolv.conf              the pod's /etc/resolv.conf (see ``pod_dns``)

hostPath volumes stay where they are: ``prepare`` only runs Kubernetes' type check on them (creating the
path for DirectoryOrCreate and FileOrCreate, and, like containerd and CRI-O, a missing directory for
type ""). Containers see every volume through a bind mount the runtime makes (``Mount``): the volume's
directory, or a path inside it for ``subPath``. Volumes belong to the pod, not to a container, so a
restarted container finds its emptyDir as its predecessor left it; ``remove`` unmounts the pod's tmpfs
mounts and deletes its directory, and ``collect`` does that after an agent restart for every pod that
went away meanwhile.

ConfigMap and Secret files are written with the kubelet's atomic writer::

    ..2026_11_23_10_20_30.1234567/   the files, with the mode of their item or the defaultMode
    ..data -> ..2026_11_23_10_20_30.1234567
    key -> ..data/key                one link per top-level name

An update writes a new timestamped directory, then renames a fresh ``..data_tmp`` link over ``..data``:
one atomic rename, so a reader never sees half an update, and a container that bind-mounts the volume
directory sees the new files in place, because its links resolve through the new ``..data``. Content and
modes are compared first, so the agent may call ``prepare`` on every pod sync and an unchanged object
writes nothing. As in Kubernetes, a ``subPath`` mount binds one resolved file and does not see updates.

Concurrency: the agent's work queue never syncs one pod twice at once, and the manager keeps no state of
its own between calls, so one manager serves every pod worker. File-system work runs in batches in a
thread (``asyncio.to_thread``) and tmpfs mounts run ``mount``/``umount`` as subprocesses, so the event
loop never waits on the disk. The one exception is ``mounts()``, which is called right before a container
is created and resolves each subPath (a handful of ``lstat`` calls) to refuse one that a container turned
into a symlink leading out of its volume, and looks for the pod's resolv.conf (one ``stat``).

Errors are ``VolumeError`` with the reason Kubernetes shows for them: "FailedMount" (a pod event) for a
volume that cannot be set up, with the kubelet's message (``MountVolume.SetUp failed for volume "cfg" :
configmap "cfg" not found``); "CreateContainerConfigError" (a container's waiting reason) for a mount
that cannot be made (a volumeMount naming no volume, a bad subPath); "FailedUnmount" when ``remove``
cannot unmount a tmpfs.

Not supported, with a clear error rather than a silently wrong mount: persistentVolumeClaim, projected,
downwardAPI and nfs volumes, emptyDir medium HugePages, ``subPathExpr``. Ignored: ``mountPropagation``,
``recursiveReadOnly``, ``fsGroup`` ownership of volume files, and emptyDir ``sizeLimit`` on disk (the
kubelet enforces that one by eviction).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import datetime as dt
import logging
import os
import re
import secrets
import shutil
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from controlplane.api.core import (
    ConfigMap,
    Container,
    KeyToPath,
    Pod,
    Secret,
    Volume,
    VolumeMount,
)
from controlplane.client import Client, ClientError, NotFound
from controlplane.quantity import memory_bytes

from .mounts import mount_points
from .runtime.base import Mount

__all__ = [
    "DNSConfig",
    "FileProjection",
    "PodDNS",
    "VolumeError",
    "VolumeManager",
    "check_host_path",
    "hosts_file_content",
    "parse_resolv_conf",
    "pod_dns",
    "pod_hostname",
    "volume_kind",
    "write_atomically",
]

log = logging.getLogger(__name__)

DEFAULT_MODE = 0o644  # defaultMode 420, what the API server defaults configMap and secret volumes to
EMPTY_DIR_MODE = 0o777  # the kubelet's: any user of any container may write an emptyDir
DATA_DIR = "..data"
DATA_TMP = "..data_tmp"
HOSTS_FILE = "etc-hosts"
ETC_HOSTS = "/etc/hosts"
HOSTS_HEADER = "# peapod-managed hosts file."
RESOLV_FILE = "etc-resolv.conf"
ETC_RESOLV_CONF = "/etc/resolv.conf"
# The kubelet's limits (pkg/apis/core/validation): what resolvers read of a resolv.conf.
MAX_NAMESERVERS = 3
MAX_SEARCH_PATHS = 32
MAX_SEARCH_CHARS = 2048
MAX_SEARCH_PATH_LENGTH = 253  # longer ones make some glibc versions abort()
CLUSTER_FIRST_OPTIONS = ("ndots:5",)

_KIND_DIRS: dict[str, str] = {"emptyDir": "empty-dir", "configMap": "configmap", "secret": "secret"}
_MAX_NAME = 255
_TIMESTAMP_DIR = re.compile(r"^\.\.\d{4}_\d\d_\d\d_\d\d_\d\d_\d\d\.\d+$")
_MAX_PATH = 4096


class VolumeError(Exception):
    """A volume cannot be set up or mounted; ``reason`` is what the pod's events or status show."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def _setup_failed(volume: str, message: str) -> VolumeError:
    return VolumeError("FailedMount", f'MountVolume.SetUp failed for volume "{volume}" : {message}')


def _config_error(message: str) -> VolumeError:
    return VolumeError("CreateContainerConfigError", message)


def _os_message(err: OSError) -> str:
    """``OSError`` as Go would print it (``mkdir /x: permission denied``), without Python's decorations."""
    if err.strerror and err.filename is not None:
        return f"{err.filename}: {err.strerror.lower()}"
    return str(err)


# --- which volume is which ---------------------------------------------------------------------------


def volume_kind(volume: Volume) -> str:
    """The volume's source, in the field order of Kubernetes' VolumeSource. One with no source at all is
    an emptyDir (the API defaults it so). The name is the API's: "emptyDir", "configMap"..."""
    sources: list[tuple[str, object]] = [
        ("hostPath", volume.host_path),
        ("emptyDir", volume.empty_dir),
        ("secret", volume.secret),
        ("nfs", volume.nfs),
        ("persistentVolumeClaim", volume.persistent_volume_claim),
        ("downwardAPI", volume.downward_api),
        ("configMap", volume.config_map),
        ("projected", volume.projected),
    ]
    return next((name for name, source in sources if source is not None), "emptyDir")


def _unsupported(kind: str) -> str:
    return f"{kind} volumes are not supported by peapod (supported: emptyDir, hostPath, configMap, secret)"


# --- configMap and secret payloads --------------------------------------------------------------------


@dataclass(frozen=True)
class FileProjection:
    """One file of a configMap or secret volume: its bytes and its permission bits."""

    data: bytes
    mode: int


def _validate_path(path: str) -> str | None:
    """The atomic writer's rules for a file path inside the volume (None when valid)."""
    if not path:
        return "invalid path: must not be empty"
    if path.startswith("/"):
        return f"invalid path: must be relative path: {path}"
    if len(path) > _MAX_PATH:
        return f"invalid path: must be less than or equal to {_MAX_PATH} characters"
    parts = path.split("/")
    for part in parts:
        if part == "..":
            return f"invalid path: must not contain '..': {path}"
        if len(part) > _MAX_NAME:
            return f"invalid path: filenames must be less than or equal to {_MAX_NAME} characters"
    if parts[0].startswith("..") and len(parts[0]) > 2:
        return f"invalid path: must not start with '..': {path}"
    return None


def _payload(
    data: Mapping[str, bytes],
    items: list[KeyToPath] | None,
    default_mode: int | None,
    optional: bool,
    missing_key: str,
) -> dict[str, FileProjection]:
    """Kubernetes' MakePayload: every key under its own name, or only ``items`` (key -> path, with an
    optional mode each); a listed key the object lacks is an error unless the volume is optional."""
    mode = DEFAULT_MODE if default_mode is None else default_mode
    files: list[tuple[str, FileProjection]] = []
    if not items:
        files = [(key, FileProjection(value, mode & 0o777)) for key, value in data.items()]
    for item in items or ():
        if item.key not in data:
            if optional:
                continue
            raise ValueError(f"{missing_key}: {item.key}")
        item_mode = mode if item.mode is None else item.mode
        files.append((item.path, FileProjection(data[item.key], item_mode & 0o777)))
    payload = {}
    for path, projection in files:
        problem = _validate_path(path)  # before normalizing, which would fold "a/../b" into "b"
        if problem is not None:
            raise ValueError(problem)
        payload[os.path.normpath(path)] = projection
    return payload


def _decode(kind: str, name: str, field: str, values: Mapping[str, str]) -> dict[str, bytes]:
    out = {}
    for key, value in values.items():
        try:
            out[key] = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f'{kind} "{name}" has invalid base64 in {field} key "{key}"') from None
    return out


def config_map_files(cm: ConfigMap | None) -> dict[str, bytes]:
    """``data`` as UTF-8 and ``binaryData`` decoded from base64 (absent object: nothing)."""
    if cm is None:
        return {}
    name = cm.metadata.name or ""
    files = {key: value.encode() for key, value in (cm.data or {}).items()}
    files.update(_decode("configmap", name, "binaryData", cm.binary_data or {}))
    return files


def secret_files(secret: Secret | None) -> dict[str, bytes]:
    """``data`` decoded from base64 (the API folds ``stringData`` into it on write)."""
    if secret is None:
        return {}
    return _decode("secret", secret.metadata.name or "", "data", secret.data or {})


# --- the atomic writer ----------------------------------------------------------------------------------


def _new_timestamp_dir(target: Path) -> Path:
    """``..2026_11_23_10_20_30.<random>``, mode 0755 whatever the umask, as the kubelet names them."""
    prefix = dt.datetime.now(dt.UTC).strftime("..%Y_%m_%d_%H_%M_%S.")
    while True:
        path = target / f"{prefix}{secrets.randbelow(10**10)}"
        try:
            path.mkdir()
        except FileExistsError:
            continue
        path.chmod(0o755)
        return path


def _tree(top: Path) -> set[str]:
    """Every file and directory below ``top``, relative to it."""
    found: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(top):
        rel = os.path.relpath(dirpath, top)
        for name in [*dirnames, *filenames]:
            found.add(name if rel == "." else f"{rel}/{name}")
    return found


def _with_parents(paths: Iterable[str]) -> set[str]:
    out: set[str] = set()
    for path in paths:
        while path:
            out.add(path)
            path = os.path.dirname(path)
    return out


def _same_file(path: Path, want: FileProjection) -> bool:
    try:
        st = path.lstat()
    except FileNotFoundError:
        return False
    if not stat.S_ISREG(st.st_mode) or stat.S_IMODE(st.st_mode) != want.mode or st.st_size != len(want.data):
        return False
    return path.read_bytes() == want.data


def _link_visible(target: Path, payload: Mapping[str, FileProjection]) -> None:
    """``name -> ..data/name`` for each top-level name; whatever already stands there is left alone."""
    for top in {path.split("/", 1)[0] for path in payload}:
        link = target / top
        if not os.path.lexists(link):
            os.symlink(f"{DATA_DIR}/{top}", link)


def write_atomically(target: Path, payload: Mapping[str, FileProjection]) -> bool:
    """Project ``payload`` into ``target`` the way the kubelet's AtomicWriter does (see the module
    docstring); True when something was written, False when the files were already exactly these."""
    target.mkdir(parents=True, exist_ok=True)
    data_link = target / DATA_DIR
    try:
        old: str | None = os.readlink(data_link)
    except FileNotFoundError:
        old = None
    stale: set[str] = set()
    if old is not None:
        old_dir = target / old
        stale = _tree(old_dir) - _with_parents(payload) if old_dir.is_dir() else set()
        if (
            old_dir.is_dir()
            and not stale
            and all(_same_file(old_dir / path, want) for path, want in payload.items())
        ):
            _link_visible(target, payload)  # a link lost since (kubernetes/kubernetes#121472)
            return False
    ts_dir = _new_timestamp_dir(target)
    try:
        for path, want in payload.items():
            full = ts_dir / path
            full.parent.mkdir(parents=True, exist_ok=True)
            full.write_bytes(want.data)
            full.chmod(want.mode)  # not subject to the umask, unlike open(2)'s mode
        tmp_link = target / DATA_TMP
        if os.path.lexists(tmp_link):  # left over by an agent that died right here
            tmp_link.unlink()
        os.symlink(ts_dir.name, tmp_link)
        os.rename(tmp_link, data_link)
    except BaseException:
        shutil.rmtree(ts_dir, ignore_errors=True)
        raise
    _link_visible(target, payload)
    for path in stale:
        link = target / path
        if "/" not in path and link.is_symlink():
            link.unlink()
    for entry in target.iterdir():  # the previous data, and any an interrupted write left behind
        name = entry.name
        if _TIMESTAMP_DIR.match(name) and name != ts_dir.name and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
    return True


# --- hostPath -----------------------------------------------------------------------------------------

_FILE_TYPES = (
    (stat.S_ISDIR, "Directory"),
    (stat.S_ISREG, "File"),
    (stat.S_ISSOCK, "Socket"),
    (stat.S_ISCHR, "CharDevice"),
    (stat.S_ISBLK, "BlockDevice"),
)
_EXPECTED = {
    "Directory": ("Directory", "directory"),
    "DirectoryOrCreate": ("Directory", "directory"),
    "File": ("File", "file"),
    "FileOrCreate": ("File", "file"),
    "Socket": ("Socket", "socket file"),
    "CharDevice": ("CharDevice", "character device"),
    "BlockDevice": ("BlockDevice", "block device"),
}


def check_host_path(path: str, path_type: str) -> None:
    """Kubernetes' hostPath type check, with its messages (raises ValueError).

    Unlike Kubernetes, a path that goes through a symbolic link is refused: the API server admits
    hostPath only under allowed directories, and a pod allowed one of them could otherwise plant a link
    there (``allowed/evil -> /``) for a second pod to mount the node's root through. Checked here and
    not at admission because only the node sees its files (a link swapped in between this check and the
    mount is not caught: the mount itself would need to refuse links).

    DirectoryOrCreate makes the directory and its parents (0755); FileOrCreate makes an empty file (0644)
    but, as in Kubernetes, not its parent directory. Type "" checks nothing; a path that does not exist
    is made a directory, which is what containerd and CRI-O do for a missing bind-mount source.
    """
    if path_type not in ("", *_EXPECTED):
        raise ValueError(f"{path_type} is an invalid volume type")
    real = os.path.realpath(path)
    if real != os.path.normpath(path):
        raise ValueError(
            f"hostPath {path} goes through a symbolic link (it is {real}): peapod mounts only real paths, "
            "name that one"
        )
    if not os.path.exists(path):
        if path_type in ("", "DirectoryOrCreate"):
            with contextlib.suppress(FileExistsError):  # a dangling symlink: the mount will say so
                os.makedirs(path, mode=0o755, exist_ok=True)
            return
        if path_type == "FileOrCreate":
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o644))
            return
        raise ValueError(f"hostPath {path} doesn't exist")
    if path_type == "":
        return
    want, description = _EXPECTED[path_type]
    mode = os.stat(path).st_mode
    found = next((name for test, name in _FILE_TYPES if test(mode)), None)
    if found is None:
        raise ValueError(
            f"hostPath type check failed, {path} is not a {description}, unable to determine its type: "
            "only recognise file, directory, socket, block device and character device"
        )
    if found != want:
        raise ValueError(f"hostPath type check failed: {path} is not a {description}, it's a {found}")


# --- /etc/hosts -------------------------------------------------------------------------------------


def pod_hostname(pod: Pod, cluster_domain: str = "cluster.local") -> tuple[str, str]:
    """(hostname, domain) as the kubelet derives them: ``spec.hostname`` or the pod's name, cut to 63
    characters without a trailing '-' or '.'; the domain ``<subdomain>.<namespace>.svc.<cluster domain>``
    when ``spec.subdomain`` is set, else empty."""
    hostname = pod.spec.hostname or pod.metadata.name or ""
    if len(hostname) > 63:
        hostname = hostname[:63].rstrip("-.")
    domain = ""
    if pod.spec.subdomain:
        domain = f"{pod.spec.subdomain}.{pod.metadata.namespace or 'default'}.svc.{cluster_domain}"
    return hostname, domain


def hosts_file_content(pod: Pod, pod_ip: str | None, cluster_domain: str = "cluster.local") -> str:
    """The kubelet's managed hosts file: localhost lines, the pod's own (FQDN first when it has a
    subdomain; none while it has no IP), then its hostAliases, one line per IP."""
    hostname, domain = pod_hostname(pod, cluster_domain)
    lines = [
        HOSTS_HEADER,
        "127.0.0.1\tlocalhost",
        "::1\tlocalhost ip6-localhost ip6-loopback",
        "fe00::0\tip6-localnet",
        "fe00::0\tip6-mcastprefix",
        "fe00::1\tip6-allnodes",
        "fe00::2\tip6-allrouters",
    ]
    if pod_ip:
        lines.append(f"{pod_ip}\t{hostname}.{domain}\t{hostname}" if domain else f"{pod_ip}\t{hostname}")
    if pod.spec.host_aliases:
        lines += ["", "# Entries added by HostAliases."]
        lines += [f"{alias.ip}\t" + "\t".join(alias.hostnames or []) for alias in pod.spec.host_aliases]
    return "\n".join(lines) + "\n"


# --- /etc/resolv.conf -------------------------------------------------------------------------------


@dataclass
class DNSConfig:
    """What a resolv.conf says: nameserver lines, the search list, options (``name`` or ``name:value``)."""

    nameservers: list[str]
    searches: list[str]
    options: list[str]

    def render(self) -> str:
        """The file, in the order containerd and CRI-O write it."""
        lines = []
        if self.searches:
            lines.append("search " + " ".join(self.searches))
        lines += [f"nameserver {ns}" for ns in self.nameservers]
        if self.options:
            lines.append("options " + " ".join(self.options))
        return "".join(line + "\n" for line in lines)


def parse_resolv_conf(text: str) -> DNSConfig:
    """The kubelet's reading of the node's resolv.conf: nameservers and options accumulate, the last
    search line wins (its "." entries dropped, trailing dots cut), comments and other lines ignored."""
    config = DNSConfig([], [], [])
    for raw in text.splitlines():
        fields = raw.split("#", 1)[0].split(";", 1)[0].split()
        if not fields:
            continue
        if fields[0] == "nameserver" and len(fields) > 1:
            config.nameservers.append(fields[1])
        elif fields[0] == "search":
            config.searches = [d.rstrip(".") for d in fields[1:] if d != "."]
        elif fields[0] == "options":
            config.options += fields[1:]
    return config


@dataclass
class PodDNS:
    """A pod's DNS set-up: the policy in effect (``ClusterFirst``, ``Default`` or ``None``), the file's
    content, and what the kubelet would say about it as Warning events (reason, message)."""

    policy: str
    config: DNSConfig
    events: list[tuple[str, str]]


def _dedupe(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _merge_options(existing: list[str], extra: Iterable[tuple[str, str | None]]) -> list[str]:
    """The kubelet's ``mergeDNSOptions``: options by name, the pod's overriding the base's (kept in the
    order first seen, where the kubelet's map has none)."""
    merged: dict[str, str] = {}
    for op in existing:
        name, _, value = op.partition(":")
        merged[name] = value
    for name, maybe in extra:
        merged[name] = maybe or ""
    return [f"{name}:{value}" if value else name for name, value in merged.items()]


def _fit_limits(config: DNSConfig, events: list[tuple[str, str]]) -> None:
    """The kubelet's ``formDNSConfigFitsLimits``: at most 3 nameservers, 32 search paths of at most 253
    characters each, 2048 characters of search line; what is cut is said in a DNSConfigForming event."""
    if len(config.nameservers) > MAX_NAMESERVERS:
        config.nameservers = config.nameservers[:MAX_NAMESERVERS]
        events.append(
            (
                "DNSConfigForming",
                "Nameserver limits were exceeded, some nameservers have been omitted, the applied nameserver "
                f"line is: {' '.join(config.nameservers)}",
            )
        )
    searches = config.searches
    cut = len(searches) > MAX_SEARCH_PATHS
    searches = searches[:MAX_SEARCH_PATHS]
    kept = [s for s in searches if len(s) <= MAX_SEARCH_PATH_LENGTH]
    cut = cut or len(kept) != len(searches)
    while kept and len(" ".join(kept)) > MAX_SEARCH_CHARS:
        kept.pop()
        cut = True
    config.searches = kept
    if cut:
        events.append(
            (
                "DNSConfigForming",
                "Search Line limits were exceeded, some search paths have been omitted, the applied search "
                f"line is: {' '.join(kept)}",
            )
        )


def effective_dns_policy(pod: Pod) -> str:
    """The kubelet's ``getPodDNSType``: ClusterFirst on the node's network acts as Default (unless asked
    for with ClusterFirstWithHostNet)."""
    policy = pod.spec.dns_policy or "ClusterFirst"
    if policy == "ClusterFirstWithHostNet" or (policy == "ClusterFirst" and not pod.spec.host_network):
        return "ClusterFirst"
    return "None" if policy == "None" else "Default"


def pod_dns(pod: Pod, cluster_dns: Iterable[str], cluster_domain: str, node: DNSConfig | None) -> PodDNS:
    """The kubelet's ``GetPodDNS`` (pkg/kubelet/network/dns). ``node`` is the node's resolv.conf, None
    when the agent has none (``--resolv-conf ""``: then Default means 127.0.0.1 and search ".", which
    disables lookups, as in the kubelet)."""
    events: list[tuple[str, str]] = []
    servers = list(cluster_dns)
    policy = effective_dns_policy(pod)
    if policy == "ClusterFirst" and not servers:
        events.append(
            (
                "MissingClusterDNS",
                f'pod: "{pod.metadata.name}". kubelet does not have ClusterDNS IP configured and cannot '
                'create Pod using "ClusterFirst" policy. Falling back to "Default" policy.',
            )
        )
        policy = "Default"
    base = node if node is not None else DNSConfig([], [], [])
    if policy == "None":
        config = DNSConfig([], [], [])
    elif policy == "ClusterFirst":
        searches = list(base.searches)
        if cluster_domain:
            ns = pod.metadata.namespace or "default"
            cluster = [f"{ns}.svc.{cluster_domain}", f"svc.{cluster_domain}", cluster_domain]
            searches = _dedupe([*cluster, *searches])
        config = DNSConfig(servers, searches, list(CLUSTER_FIRST_OPTIONS))
    elif node is None:
        config = DNSConfig(["127.0.0.1"], ["."], [])
    else:
        config = DNSConfig(list(base.nameservers), list(base.searches), list(base.options))
    extra = pod.spec.dns_config
    if extra is not None:
        config.nameservers = _dedupe([*config.nameservers, *(extra.nameservers or ())])
        config.searches = _dedupe([*config.searches, *(extra.searches or ())])
        options = [(o.name or "", o.value) for o in extra.options or ()]
        config.options = _merge_options(config.options, options)
    _fit_limits(config, events)
    return PodDNS(policy, config, events)


def uses_node_resolv_conf(pod: Pod, dns: PodDNS) -> bool:
    """A hostNetwork pod on the Default policy with nothing to add gets the node's file as is (Podman
    copies it into host-network containers), so the agent manages none for it."""
    return bool(pod.spec.host_network) and dns.policy == "Default" and pod.spec.dns_config is None


def _read_node_resolv_conf(path: str) -> DNSConfig | None:
    if not path:
        return None
    try:
        return parse_resolv_conf(Path(path).read_text(errors="replace"))
    except FileNotFoundError:
        return DNSConfig([], [], [])


def _write_in_place(path: Path, content: bytes) -> bool:
    """Write ``path`` only if its content differs, keeping its inode: a container bind-mounts the file
    itself, so replacing it by a rename would leave that container with the old one."""
    try:
        if path.read_bytes() == content:
            return False
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.write(fd, content)  # over the old content, then cut: never an empty file in between
        os.ftruncate(fd, len(content))
        os.fchmod(fd, 0o644)
    finally:
        os.close(fd)
    return True


# --- tmpfs ------------------------------------------------------------------------------------------


def _is_mount_point(path: Path) -> bool:
    return Path(os.path.realpath(path)) in mount_points(path)


async def _run(*argv: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    _, err = await proc.communicate()
    if proc.returncode != 0:
        said = err.decode(errors="replace").strip() or f"exit status {proc.returncode}"
        raise OSError(f"{' '.join(argv)} failed: {said}")


async def _ensure_tmpfs(path: Path, size: int | None, mode: int) -> None:
    """Mount a tmpfs on ``path`` unless one is there already (``prepare`` runs on every sync)."""
    if await asyncio.to_thread(_is_mount_point, path):
        return
    options = f"mode={mode:04o}" + (f",size={size}" if size else "")
    await _run("mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path))


def _memory_limit(pod: Pod) -> int | None:
    """The pod's memory limit (the larger of the app containers' sum and the largest init container's),
    or None unless every container has one: the size of a Memory emptyDir without a sizeLimit."""

    def limit(c: Container) -> int | None:
        value = (c.resources.limits or {}).get("memory") if c.resources else None
        return None if value is None else memory_bytes(value)

    apps = [limit(c) for c in pod.spec.containers]
    inits = [limit(c) for c in pod.spec.init_containers or ()]
    if not apps or any(v is None for v in [*apps, *inits]):
        return None
    return max([sum(v for v in apps if v is not None), *(v for v in inits if v is not None)])


# --- the manager ------------------------------------------------------------------------------------


class VolumeManager:
    """Sets up, mounts into containers and tears down the volumes of the pods on one node."""

    def __init__(
        self,
        root: Path,
        client: Client,
        *,
        cluster_domain: str = "cluster.local",
        cluster_dns: Iterable[str] = (),
        resolv_conf: str = "/etc/resolv.conf",
        secrets_in_memory: bool = False,
    ) -> None:
        """``secrets_in_memory`` puts each secret volume on a tmpfs of its own, as the kubelet does, so
        secrets never reach the node's disk; it needs root (mount(2)), hence off unless asked for.
        ``cluster_dns``, ``cluster_domain`` and ``resolv_conf`` (the node's file) make pods'
        resolv.conf; the agent sets them from its settings."""
        self.root = Path(root)
        self.client = client
        self.cluster_domain = cluster_domain
        self.cluster_dns = list(cluster_dns)
        self.resolv_conf = resolv_conf
        self.secrets_in_memory = secrets_in_memory

    # --- paths ---

    def pod_dir(self, pod_uid: str) -> Path:
        if not pod_uid or "/" in pod_uid or pod_uid in (".", ".."):
            raise ValueError(f"not a pod uid: {pod_uid!r}")
        return self.root / pod_uid

    def hosts_path(self, pod_uid: str) -> Path:
        return self.pod_dir(pod_uid) / HOSTS_FILE

    def resolv_conf_path(self, pod_uid: str) -> Path:
        return self.pod_dir(pod_uid) / RESOLV_FILE

    def volume_path(self, pod_uid: str, volume: Volume) -> Path:
        """Where the volume's content is on the node: its own directory, or the hostPath."""
        kind = volume_kind(volume)
        if kind == "hostPath" and volume.host_path is not None:
            return Path(os.path.normpath(volume.host_path.path))
        if kind not in _KIND_DIRS:
            raise ValueError(_unsupported(kind))
        return self.pod_dir(pod_uid) / "volumes" / _KIND_DIRS[kind] / volume.name

    # --- setting up ---

    async def prepare(self, pod: Pod) -> None:
        """Create or update every volume of the pod, the subPath directories its containers mount and
        its hosts file (if missing). Idempotent, and cheap when nothing changed: meant for every sync."""
        uid = _uid(pod)
        for volume in pod.spec.volumes or ():
            try:
                await self._set_up(pod, volume)
            except OSError as err:
                raise _setup_failed(volume.name, _os_message(err)) from err
            except ValueError as err:
                raise _setup_failed(volume.name, str(err)) from err
        await asyncio.to_thread(self._make_sub_paths, pod)
        if not await asyncio.to_thread(self.hosts_path(uid).exists):
            await self.write_hosts(pod, pod.status.pod_ip)

    async def _set_up(self, pod: Pod, volume: Volume) -> None:
        kind = volume_kind(volume)
        if kind == "hostPath" and volume.host_path is not None:
            if not volume.host_path.path.startswith("/"):
                raise ValueError(f"hostPath {volume.host_path.path} is not an absolute path")
            await asyncio.to_thread(check_host_path, volume.host_path.path, volume.host_path.type or "")
            return
        if kind not in _KIND_DIRS:
            raise ValueError(_unsupported(kind))
        path = self.volume_path(_uid(pod), volume)
        if kind == "emptyDir":
            medium = (volume.empty_dir.medium if volume.empty_dir else None) or ""
            if medium not in ("", "Memory"):
                raise ValueError(f'emptyDir medium "{medium}" is not supported by peapod ("" or "Memory")')
            await asyncio.to_thread(_make_dir, path, EMPTY_DIR_MODE)
            if medium == "Memory":
                limit = volume.empty_dir.size_limit if volume.empty_dir else None
                size = memory_bytes(limit) if limit is not None else _memory_limit(pod)
                await _ensure_tmpfs(path, size, EMPTY_DIR_MODE)
            return
        payload = await self._payload(pod, volume)
        await asyncio.to_thread(_make_dir, path, 0o755)
        if kind == "secret" and self.secrets_in_memory:
            await _ensure_tmpfs(path, None, 0o755)
        if await asyncio.to_thread(write_atomically, path, payload):
            log.info("volume %s of pod %s/%s written", volume.name, pod.metadata.namespace, pod.metadata.name)

    async def _payload(self, pod: Pod, volume: Volume) -> dict[str, FileProjection]:
        """Fetch the ConfigMap or Secret and turn it into files; a missing one is an error unless the
        volume is optional (then the volume is empty until the object appears)."""
        namespace = pod.metadata.namespace or "default"
        if volume.config_map is not None:
            cm_source = volume.config_map
            name, optional = cm_source.name or "", bool(cm_source.optional)
            if not name:
                raise ValueError("configMap.name is required")
            try:
                cm: ConfigMap | None = await self.client.get(ConfigMap, name, namespace)
            except NotFound:
                if not optional:
                    raise ValueError(f'configmap "{name}" not found') from None
                cm = None
            except ClientError as err:
                raise ValueError(f"couldn't get configmap {namespace}/{name}: {err}") from err
            return _payload(
                config_map_files(cm), cm_source.items, cm_source.default_mode, optional,
                "configmap references non-existent config key",
            )  # fmt: skip
        secret_source = volume.secret
        assert secret_source is not None
        name, optional = secret_source.secret_name or "", bool(secret_source.optional)
        if not name:
            raise ValueError("secret.secretName is required")
        try:
            secret: Secret | None = await self.client.get(Secret, name, namespace)
        except NotFound:
            if not optional:
                raise ValueError(f'secret "{name}" not found') from None
            secret = None
        except ClientError as err:
            raise ValueError(f"couldn't get secret {namespace}/{name}: {err}") from err
        return _payload(
            secret_files(secret), secret_source.items, secret_source.default_mode, optional,
            "references non-existent secret key",
        )  # fmt: skip

    def _make_sub_paths(self, pod: Pod) -> None:
        """Create each missing subPath as a directory with its volume's mode, as the kubelet does, so
        it exists with sane permissions before a container is started on it."""
        uid = _uid(pod)
        volumes = {v.name: v for v in pod.spec.volumes or ()}
        for container in [*(pod.spec.init_containers or ()), *pod.spec.containers]:
            for vm in container.volume_mounts or ():
                volume = volumes.get(vm.name)
                if not vm.sub_path or volume is None or volume_kind(volume) not in ("hostPath", *_KIND_DIRS):
                    continue
                base = self.volume_path(uid, volume)
                full = _sub_path(base, vm, container)
                if os.path.lexists(full):
                    continue
                try:
                    _make_dirs(full, stat.S_IMODE(base.stat().st_mode))
                except OSError as err:
                    log.warning("subPath %s of volume %s: %s", vm.sub_path, vm.name, err)
                    raise _config_error(
                        f'failed to create subPath directory for volumeMount "{vm.name}" of container '
                        f'"{container.name}"'
                    ) from err

    async def write_hosts(self, pod: Pod, pod_ip: str | None) -> None:
        """(Re)write the pod's hosts file when its content changes, in place (see ``_write_in_place``)."""
        content = hosts_file_content(pod, pod_ip, self.cluster_domain).encode()
        try:
            await asyncio.to_thread(_write_in_place, self.hosts_path(_uid(pod)), content)
        except OSError as err:
            raise VolumeError("FailedMount", f"cannot write the hosts file: {_os_message(err)}") from err

    async def write_resolv_conf(self, pod: Pod) -> tuple[PodDNS, bool]:
        """(Re)write the pod's resolv.conf from its dnsPolicy and dnsConfig (see ``pod_dns``) when its
        content changes, in place; a hostNetwork pod on the node's own file gets none. Returns the DNS
        set-up and whether the file was written (new or changed): its events are worth recording then."""
        node = await asyncio.to_thread(_read_node_resolv_conf, self.resolv_conf)
        dns = pod_dns(pod, self.cluster_dns, self.cluster_domain, node)
        path = self.resolv_conf_path(_uid(pod))
        try:
            if uses_node_resolv_conf(pod, dns):
                await asyncio.to_thread(path.unlink, missing_ok=True)
                return dns, False
            content = dns.config.render().encode()
            return dns, await asyncio.to_thread(_write_in_place, path, content)
        except OSError as err:
            message = f"cannot write the resolv.conf file: {_os_message(err)}"
            raise VolumeError("FailedMount", message) from err

    # --- mounting ---

    def mounts(self, pod: Pod, container: Container) -> list[Mount]:
        """The container's bind mounts: one per volumeMount (configMap and secret always read-only),
        the pod's hosts file at /etc/hosts, unless the pod uses the node's network or the container
        mounts something there itself, and its resolv.conf at /etc/resolv.conf once
        ``write_resolv_conf`` made one (unless the container mounts something there itself)."""
        uid = _uid(pod)
        volumes = {v.name: v for v in pod.spec.volumes or ()}
        out = []
        for vm in container.volume_mounts or ():
            volume = volumes.get(vm.name)
            if volume is None:
                raise _config_error(
                    f'cannot find volume "{vm.name}" to mount into container "{container.name}"'
                )
            kind = volume_kind(volume)
            if kind != "hostPath" and kind not in _KIND_DIRS:
                raise _config_error(_unsupported(kind))
            if vm.sub_path_expr and not vm.sub_path:
                raise _config_error(
                    f'subPathExpr is not supported by peapod (volumeMount "{vm.name}" of container '
                    f'"{container.name}")'
                )
            source = self.volume_path(uid, volume)
            if vm.sub_path:
                source = _sub_path(source, vm, container)
            read_only = bool(vm.read_only) or kind in ("configMap", "secret")
            out.append(Mount(str(source), vm.mount_path, read_only, vm.sub_path or ""))
        mounted = {os.path.normpath(vm.mount_path) for vm in container.volume_mounts or ()}
        if not pod.spec.host_network and ETC_HOSTS not in mounted:
            out.append(Mount(str(self.hosts_path(uid)), ETC_HOSTS))
        resolv = self.resolv_conf_path(uid)
        if ETC_RESOLV_CONF not in mounted and resolv.is_file():
            out.append(Mount(str(resolv), ETC_RESOLV_CONF))
        return out

    # --- tearing down ---

    async def remove(self, pod_uid: str) -> None:
        """Unmount the pod's tmpfs mounts, then delete its directory (nothing to do if it is gone)."""
        pod_dir = self.pod_dir(pod_uid)
        for point in await asyncio.to_thread(mount_points, pod_dir):
            try:
                await _run("umount", str(point))
            except OSError:
                try:  # busy: detach now, the kernel frees it when the last user goes
                    await _run("umount", "--lazy", str(point))
                except OSError as err:
                    raise VolumeError("FailedUnmount", f"volumes of pod {pod_uid}: {err}") from err
        try:
            await asyncio.to_thread(shutil.rmtree, pod_dir)
        except FileNotFoundError:
            pass
        except OSError as err:
            raise VolumeError("FailedUnmount", f"volumes of pod {pod_uid}: {_os_message(err)}") from err

    async def collect(self, live_uids: set[str]) -> None:
        """After an agent restart: remove the volumes of every pod that is no longer here."""

        def pod_dirs() -> list[str]:
            try:
                return [e.name for e in os.scandir(self.root) if e.is_dir(follow_symlinks=False)]
            except FileNotFoundError:
                return []

        for uid in await asyncio.to_thread(pod_dirs):
            if uid not in live_uids:
                log.info("removing the volumes of pod %s, which is gone", uid)
                await self.remove(uid)


def _uid(pod: Pod) -> str:
    if not pod.metadata.uid:
        raise VolumeError("FailedMount", "pod has no uid")
    return pod.metadata.uid


def _make_dir(path: Path, mode: int) -> None:
    path.mkdir(parents=True, exist_ok=True)
    if stat.S_IMODE(path.stat().st_mode) != mode:
        path.chmod(mode)  # mkdir(2) applies the umask


def _make_dirs(path: Path, mode: int) -> None:
    """mkdir -p where every directory made gets exactly ``mode``, whatever the umask."""
    missing = []
    while not os.path.lexists(path):
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        try:
            directory.mkdir()
        except FileExistsError:
            continue
        directory.chmod(mode)


def _sub_path(base: Path, vm: VolumeMount, container: Container) -> Path:
    """``base/subPath`` with symlinks resolved, refused when it is absolute, climbs with '..' or
    resolves to a place outside the volume (a container may plant symlinks in an emptyDir)."""
    sub = vm.sub_path or ""
    if sub.startswith("/"):
        raise _config_error(f"error SubPath `{sub}` must not be an absolute path")
    if ".." in sub.split("/"):
        raise _config_error(f"unable to provision SubPath `{sub}`: must not contain '..'")
    real_base = os.path.realpath(base)
    real = os.path.realpath(base / sub)
    if real != real_base and not real.startswith(real_base.rstrip("/") + "/"):
        raise _config_error(
            f'subPath "{sub}" of volumeMount "{vm.name}" of container "{container.name}" resolves to '
            f"{real}, outside the volume"
        )
    return Path(real)
