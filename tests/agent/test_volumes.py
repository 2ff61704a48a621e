"""VolumeManager against a real control plane and a temporary directory: configMap and secret projection
(atomic-writer layout, modes, items, optional, updates), emptyDir and hostPath set-up, subPath, the
mounts a container gets, the pod's hosts file, and clean-up. tmpfs (root) is covered in tests/e2e."""

from __future__ import annotations

import base64
import os
import re
import socket
import stat
import uuid
from pathlib import Path
from typing import Any

import msgspec
import pytest

from agent.runtime.base import ContainerSpec, Mount, RuntimeFailure, SandboxInfo
from agent.runtime.podman import build_container_body
from agent.volumes import (
    VolumeError,
    VolumeManager,
    check_host_path,
    hosts_file_content,
)
from controlplane.api import ConfigMap, ObjectMeta, Secret
from controlplane.api.core import Pod, SecurityContext
from controlplane.client import Client

TS_DIR = re.compile(r"^\.\.\d{4}_\d\d_\d\d_\d\d_\d\d_\d\d\.\d+$")


def make_pod(volumes: list[dict[str, Any]] | None = None, *mounts: list[dict[str, Any]], **spec: Any) -> Pod:
    """A pod in "default" with one container per ``mounts`` list (named c0, c1...)."""
    containers = [
        {"name": f"c{i}", "image": "busybox", "volumeMounts": m} for i, m in enumerate(mounts or ([],))
    ]
    body = {
        "metadata": {"name": "web", "namespace": "default", "uid": str(uuid.uuid4())},
        "spec": {"containers": containers, "volumes": volumes or [], **spec},
    }
    return msgspec.convert(body, Pod)


@pytest.fixture
def manager(tmp_path: Path, client: Client) -> VolumeManager:
    return VolumeManager(tmp_path / "pods", client)


async def config_map(client: Client, name: str, data: dict[str, str], **extra: Any) -> ConfigMap:
    return await client.create(ConfigMap(metadata=ObjectMeta(name=name), data=data, **extra), "default")


async def secret(client: Client, name: str, data: dict[str, bytes]) -> Secret:
    encoded = {k: base64.b64encode(v).decode() for k, v in data.items()}
    return await client.create(Secret(metadata=ObjectMeta(name=name), data=encoded), "default")


def vdir(manager: VolumeManager, pod: Pod, kind: str, name: str) -> Path:
    return manager.root / (pod.metadata.uid or "") / "volumes" / kind / name


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def listing(path: Path) -> set[str]:
    return {p.name for p in path.iterdir()}


def read_at(dir_fd: int, name: str) -> bytes:
    """Read ``name`` relative to an open directory, as a process holding that directory would."""
    fd = os.open(name, os.O_RDONLY, dir_fd=dir_fd)
    try:
        return os.read(fd, 4096)
    finally:
        os.close(fd)


def exists(path: str) -> bool:
    return os.path.lexists(path)


# --- configMap and secret -----------------------------------------------------------------------------


async def test_config_map_uses_the_atomic_writer_layout(manager: VolumeManager, client: Client) -> None:
    await config_map(client, "app", {"app.conf": "port=80\n", "level": "debug"}, binary_data={
        "blob": base64.b64encode(b"\x00\xff").decode()})  # fmt: skip
    pod = make_pod([{"name": "cfg", "configMap": {"name": "app"}}])
    await manager.prepare(pod)

    d = vdir(manager, pod, "configmap", "cfg")
    data_target = os.readlink(d / "..data")
    assert TS_DIR.match(data_target), data_target
    assert listing(d) == {"..data", data_target, "app.conf", "level", "blob"}
    assert os.readlink(d / "app.conf") == "..data/app.conf"
    assert (d / "app.conf").read_text() == "port=80\n"
    assert (d / "blob").read_bytes() == b"\x00\xff"
    assert {mode(d / k) for k in ("app.conf", "level", "blob")} == {0o644}  # defaultMode 420
    assert mode(d / data_target) == 0o755


async def test_items_modes_and_nested_paths(manager: VolumeManager, client: Client) -> None:
    await config_map(client, "app", {"a": "A", "b": "B", "c": "C"})
    pod = make_pod([{"name": "cfg", "configMap": {"name": "app", "defaultMode": 0o600, "items": [
        {"key": "a", "path": "first"},
        {"key": "b", "path": "dir/sub/second", "mode": 0o755},
    ]}}])  # fmt: skip
    await manager.prepare(pod)

    d = vdir(manager, pod, "configmap", "cfg")
    assert listing(d) - {os.readlink(d / "..data")} == {"..data", "first", "dir"}
    assert os.readlink(d / "dir") == "..data/dir"
    assert (d / "first").read_text() == "A" and mode(d / "first") == 0o600
    assert (d / "dir/sub/second").read_text() == "B" and mode(d / "dir/sub/second") == 0o755


async def test_secret_is_decoded_with_the_requested_modes(manager: VolumeManager, client: Client) -> None:
    await secret(client, "creds", {"user": b"admin", "key": b"\x01\x02secret"})
    pod = make_pod([{"name": "s", "secret": {"secretName": "creds", "defaultMode": 0o400,
                                              "items": [{"key": "key", "path": "tls.key", "mode": 0o440},
                                                        {"key": "user", "path": "user"}]}}])  # fmt: skip
    await manager.prepare(pod)

    d = vdir(manager, pod, "secret", "s")
    assert (d / "tls.key").read_bytes() == b"\x01\x02secret" and mode(d / "tls.key") == 0o440
    assert (d / "user").read_bytes() == b"admin" and mode(d / "user") == 0o400


async def test_missing_objects_and_keys_fail_like_the_kubelet(manager: VolumeManager, client: Client) -> None:
    pod = make_pod([{"name": "cfg", "configMap": {"name": "nope"}}])
    with pytest.raises(VolumeError) as err:
        await manager.prepare(pod)
    assert err.value.reason == "FailedMount"
    assert err.value.message == 'MountVolume.SetUp failed for volume "cfg" : configmap "nope" not found'

    pod = make_pod([{"name": "s", "secret": {"secretName": "gone"}}])
    with pytest.raises(VolumeError, match='volume "s" : secret "gone" not found'):
        await manager.prepare(pod)

    await config_map(client, "app", {"a": "A"})
    pod = make_pod([{"name": "cfg", "configMap": {"name": "app", "items": [{"key": "zz", "path": "z"}]}}])
    with pytest.raises(VolumeError, match="configmap references non-existent config key: zz"):
        await manager.prepare(pod)
    await secret(client, "creds", {"a": b"A"})
    pod = make_pod([{"name": "s", "secret": {"secretName": "creds", "items": [{"key": "zz", "path": "z"}]}}])
    with pytest.raises(VolumeError, match="references non-existent secret key: zz"):
        await manager.prepare(pod)


async def test_item_paths_may_not_climb_out(manager: VolumeManager, client: Client) -> None:
    await config_map(client, "app", {"a": "A"})
    for path, said in (
        ("../evil", "must not contain '..'"),
        ("/abs", "must be relative path"),
        ("..hidden", "must not start with '..'"),
        ("x/../y", "must not contain '..'"),
    ):
        pod = make_pod([{"name": "cfg", "configMap": {"name": "app", "items": [{"key": "a", "path": path}]}}])
        with pytest.raises(VolumeError, match=re.escape(said)):
            await manager.prepare(pod)


async def test_optional_volume_is_empty_until_its_object_appears(
    manager: VolumeManager, client: Client
) -> None:
    pod = make_pod([
        {"name": "cfg", "configMap": {"name": "later", "optional": True}},
        {"name": "s", "secret": {"secretName": "later", "optional": True}},
        {"name": "keys", "configMap": {"name": "partial", "optional": True,
                                       "items": [{"key": "a", "path": "a"}, {"key": "b", "path": "b"}]}},
    ])  # fmt: skip
    await config_map(client, "partial", {"a": "A"})
    await manager.prepare(pod)
    d = vdir(manager, pod, "configmap", "cfg")
    assert listing(d) == {"..data", os.readlink(d / "..data")}
    assert listing(vdir(manager, pod, "configmap", "keys")) - {
        os.readlink(vdir(manager, pod, "configmap", "keys") / "..data")
    } == {"..data", "a"}

    await config_map(client, "later", {"k": "v"})
    await manager.prepare(pod)
    assert (d / "k").read_text() == "v"


async def test_update_swaps_data_and_unchanged_is_not_rewritten(
    manager: VolumeManager, client: Client
) -> None:
    cm = await config_map(client, "app", {"a": "one", "b": "bee"})
    pod = make_pod([{"name": "cfg", "configMap": {"name": "app"}}])
    await manager.prepare(pod)
    d = vdir(manager, pod, "configmap", "cfg")
    first = os.readlink(d / "..data")
    inode = (d / "a").stat().st_ino

    await manager.prepare(pod)  # nothing changed: nothing written
    assert os.readlink(d / "..data") == first
    assert (d / "a").stat().st_ino == inode

    # Whoever holds the volume directory (a container's bind mount) sees the new content in place.
    held = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    try:
        cm.data = {"a": "two", "c": "sea"}
        await client.replace(cm)
        await manager.prepare(pod)
        second = os.readlink(d / "..data")
        assert second != first and TS_DIR.match(second)
        assert listing(d) == {"..data", second, "a", "c"}  # b's link gone, the old data too
        assert read_at(held, "a") == b"two"
        assert (d / "c").read_text() == "sea"
    finally:
        os.close(held)


async def test_mode_change_alone_is_written(manager: VolumeManager, client: Client) -> None:
    await config_map(client, "app", {"a": "A"})
    pod = make_pod([{"name": "cfg", "configMap": {"name": "app"}}])
    await manager.prepare(pod)
    d = vdir(manager, pod, "configmap", "cfg")
    first = os.readlink(d / "..data")
    assert pod.spec.volumes and pod.spec.volumes[0].config_map
    pod.spec.volumes[0].config_map.default_mode = 0o640
    await manager.prepare(pod)
    assert os.readlink(d / "..data") != first and mode(d / "a") == 0o640


async def test_lost_link_and_leftovers_are_repaired(manager: VolumeManager, client: Client) -> None:
    await config_map(client, "app", {"a": "A"})
    pod = make_pod([{"name": "cfg", "configMap": {"name": "app"}}])
    await manager.prepare(pod)
    d = vdir(manager, pod, "configmap", "cfg")
    current = os.readlink(d / "..data")
    (d / "a").unlink()
    (d / "..2020_01_01_00_00_00.123").mkdir()  # an interrupted write
    await manager.prepare(pod)
    assert os.readlink(d / "..data") == current and (d / "a").read_text() == "A"

    await client.patch(ConfigMap, "app", {"data": {"a": "B"}}, "default")
    await manager.prepare(pod)
    assert listing(d) == {"..data", os.readlink(d / "..data"), "a"}


# --- emptyDir and hostPath ------------------------------------------------------------------------------


async def test_empty_dir_is_shared_and_survives_prepare(manager: VolumeManager) -> None:
    pod = make_pod([{"name": "scratch", "emptyDir": {}}, {"name": "bare"}])
    await manager.prepare(pod)
    d = vdir(manager, pod, "empty-dir", "scratch")
    assert d.is_dir() and mode(d) == 0o777
    assert vdir(manager, pod, "empty-dir", "bare").is_dir()  # no source at all is an emptyDir
    (d / "state").write_text("kept")
    await manager.prepare(pod)
    assert (d / "state").read_text() == "kept"


async def test_unsupported_volumes_are_clear_errors(manager: VolumeManager) -> None:
    pod = make_pod([{"name": "data", "persistentVolumeClaim": {"claimName": "pvc"}}],
                   [{"name": "data", "mountPath": "/data"}])  # fmt: skip
    with pytest.raises(VolumeError) as err:
        await manager.prepare(pod)
    assert err.value.reason == "FailedMount"
    assert "persistentVolumeClaim volumes are not supported by peapod" in err.value.message
    with pytest.raises(VolumeError) as err:
        manager.mounts(pod, pod.spec.containers[0])
    assert err.value.reason == "CreateContainerConfigError"

    pod = make_pod([{"name": "huge", "emptyDir": {"medium": "HugePages"}}])
    with pytest.raises(VolumeError, match='emptyDir medium "HugePages" is not supported'):
        await manager.prepare(pod)


def test_host_path_through_a_symbolic_link_is_refused(tmp_path: Path) -> None:
    """A pod allowed a directory may plant a link in it; mounting through that link is refused, so a
    second pod cannot reach the node's root by it. The real path still works."""
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "evil").symlink_to("/")
    for path in (allowed / "evil", allowed / "evil" / "etc"):
        with pytest.raises(ValueError, match="goes through a symbolic link"):
            check_host_path(str(path), "")
    outside = tmp_path / "outside"
    (allowed / "out").symlink_to(outside)
    with pytest.raises(ValueError, match="goes through a symbolic link"):  # refused before it is made
        check_host_path(str(allowed / "out" / "made"), "DirectoryOrCreate")
    assert not outside.exists()
    check_host_path(str(allowed), "Directory")


def test_host_path_type_checks(tmp_path: Path) -> None:
    d, f = tmp_path / "dir", tmp_path / "file"
    d.mkdir()
    f.write_text("x")
    check_host_path(str(d), "Directory")
    check_host_path(str(f), "File")
    check_host_path(str(tmp_path / "whatever"), "")  # no check; made a directory, as CRI runtimes do
    assert (tmp_path / "whatever").is_dir()
    with pytest.raises(
        ValueError, match=f"^hostPath type check failed: {f} is not a directory, it's a File$"
    ):
        check_host_path(str(f), "Directory")
    with pytest.raises(
        ValueError, match=f"^hostPath type check failed: {d} is not a file, it's a Directory$"
    ):
        check_host_path(str(d), "File")
    with pytest.raises(ValueError, match=f"^hostPath {tmp_path / 'absent'} doesn't exist$"):
        check_host_path(str(tmp_path / "absent"), "Directory")
    with pytest.raises(ValueError, match=r"^Bogus is an invalid volume type$"):
        check_host_path(str(d), "Bogus")

    check_host_path(str(tmp_path / "a/b/c"), "DirectoryOrCreate")
    assert (tmp_path / "a/b/c").is_dir() and mode(tmp_path / "a/b/c") == 0o755 & ~current_umask()
    check_host_path(str(tmp_path / "new.txt"), "FileOrCreate")
    assert (tmp_path / "new.txt").read_bytes() == b""
    with pytest.raises(FileNotFoundError):  # FileOrCreate does not make the parent directory
        check_host_path(str(tmp_path / "no/such.txt"), "FileOrCreate")
    with pytest.raises(ValueError, match="is not a file, it's a Directory"):
        check_host_path(str(d), "FileOrCreate")

    check_host_path("/dev/null", "CharDevice")
    said = "hostPath type check failed: /dev/null is not a block device, it's a CharDevice"
    with pytest.raises(ValueError, match=re.escape(said)):
        check_host_path("/dev/null", "BlockDevice")
    sock_path = tmp_path / "s.sock"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(sock_path))
        check_host_path(str(sock_path), "Socket")
    with pytest.raises(ValueError, match="is not a socket file, it's a Directory"):
        check_host_path(str(d), "Socket")


def current_umask() -> int:
    old = os.umask(0)
    os.umask(old)
    return old


async def test_host_path_failures_are_failed_mount(manager: VolumeManager, tmp_path: Path) -> None:
    pod = make_pod([{"name": "h", "hostPath": {"path": str(tmp_path), "type": "File"}}])
    with pytest.raises(VolumeError) as err:
        await manager.prepare(pod)
    assert err.value.reason == "FailedMount"
    assert err.value.message == (
        f'MountVolume.SetUp failed for volume "h" : hostPath type check failed: {tmp_path} is not a file, '
        "it's a Directory"
    )
    pod = make_pod([{"name": "h", "hostPath": {"path": str(tmp_path / "x/y"), "type": "FileOrCreate"}}])
    with pytest.raises(VolumeError, match="no such file or directory"):
        await manager.prepare(pod)
    pod = make_pod([{"name": "h", "hostPath": {"path": "relative/dir"}}])
    with pytest.raises(VolumeError, match="hostPath relative/dir is not an absolute path"):
        await manager.prepare(pod)
    pod = make_pod([{"name": "cfg", "configMap": {}}])
    with pytest.raises(VolumeError, match=re.escape('volume "cfg" : configMap.name is required')):
        await manager.prepare(pod)


# --- subPath and mounts ----------------------------------------------------------------------------


async def test_mounts_for_each_kind(manager: VolumeManager, client: Client, tmp_path: Path) -> None:
    await config_map(client, "app", {"app.conf": "x"})
    await secret(client, "creds", {"token": b"t"})
    host = tmp_path / "host"
    pod = make_pod(
        [
            {"name": "scratch", "emptyDir": {}},
            {"name": "cfg", "configMap": {"name": "app"}},
            {"name": "s", "secret": {"secretName": "creds"}},
            {"name": "h", "hostPath": {"path": str(host), "type": "DirectoryOrCreate"}},
        ],
        [
            {"name": "scratch", "mountPath": "/data"},
            {"name": "cfg", "mountPath": "/etc/app", "readOnly": False},
            {"name": "s", "mountPath": "/run/secrets"},
            {"name": "h", "mountPath": "/host", "readOnly": True},
            {"name": "scratch", "mountPath": "/logs", "subPath": "logs/app"},
            {"name": "cfg", "mountPath": "/etc/app.conf", "subPath": "app.conf"},
        ],
    )
    await manager.prepare(pod)
    uid = pod.metadata.uid or ""
    root = manager.root.resolve() / uid
    cfg = vdir(manager, pod, "configmap", "cfg")
    assert manager.mounts(pod, pod.spec.containers[0]) == [
        Mount(str(manager.root / uid / "volumes/empty-dir/scratch"), "/data"),
        Mount(str(cfg), "/etc/app", read_only=True),  # configMap and secret: always read-only
        Mount(str(manager.root / uid / "volumes/secret/s"), "/run/secrets", read_only=True),
        Mount(str(host), "/host", read_only=True),
        Mount(str(root / "volumes/empty-dir/scratch/logs/app"), "/logs", sub_path="logs/app"),
        Mount(str((cfg / os.readlink(cfg / "..data") / "app.conf").resolve()), "/etc/app.conf",
              read_only=True, sub_path="app.conf"),
        Mount(str(manager.root / uid / "etc-hosts"), "/etc/hosts"),
    ]  # fmt: skip
    sub = root / "volumes/empty-dir/scratch/logs/app"
    assert sub.is_dir() and mode(sub) == 0o777  # made by prepare, with the volume's mode
    assert (manager.root / uid / "etc-hosts").is_file()


async def test_bad_mounts_are_create_container_config_errors(manager: VolumeManager) -> None:
    pod = make_pod([{"name": "scratch", "emptyDir": {}}], [{"name": "nope", "mountPath": "/x"}])
    with pytest.raises(VolumeError) as err:
        manager.mounts(pod, pod.spec.containers[0])
    assert (err.value.reason, err.value.message) == (
        "CreateContainerConfigError", 'cannot find volume "nope" to mount into container "c0"'
    )  # fmt: skip

    for sub_path, said in (
        ("/abs", "error SubPath `/abs` must not be an absolute path"),
        ("a/../..", "unable to provision SubPath `a/../..`: must not contain '..'"),
    ):
        pod = make_pod([{"name": "scratch", "emptyDir": {}}],
                       [{"name": "scratch", "mountPath": "/x", "subPath": sub_path}])  # fmt: skip
        with pytest.raises(VolumeError, match=re.escape(said)) as err:
            await manager.prepare(pod)
        assert err.value.reason == "CreateContainerConfigError"

    pod = make_pod([{"name": "scratch", "emptyDir": {}}],
                   [{"name": "scratch", "mountPath": "/x", "subPathExpr": "$(POD_NAME)"}])  # fmt: skip
    with pytest.raises(VolumeError, match="subPathExpr is not supported"):
        manager.mounts(pod, pod.spec.containers[0])


async def test_sub_path_symlink_out_of_the_volume_is_refused(manager: VolumeManager) -> None:
    pod = make_pod([{"name": "scratch", "emptyDir": {}}],
                   [{"name": "scratch", "mountPath": "/x", "subPath": "evil"}])  # fmt: skip
    await manager.prepare(pod)
    d = vdir(manager, pod, "empty-dir", "scratch")
    (d / "evil").rmdir()
    (d / "evil").symlink_to("/etc")  # what a container could do in its emptyDir
    with pytest.raises(VolumeError, match="resolves to /etc, outside the volume") as err:
        manager.mounts(pod, pod.spec.containers[0])
    assert err.value.reason == "CreateContainerConfigError"
    (d / "evil").unlink()
    (d / "evil").symlink_to("/etc/passwd-dir-that-is-not-there")
    with pytest.raises(VolumeError, match="outside the volume"):
        await manager.prepare(pod)  # nor is anything created through it
    assert not exists("/etc/passwd-dir-that-is-not-there")


async def test_hosts_mount_skipped_for_host_network_and_own_mount(manager: VolumeManager) -> None:
    pod = make_pod([{"name": "scratch", "emptyDir": {}}], [{"name": "scratch", "mountPath": "/data"}],
                   hostNetwork=True)  # fmt: skip
    assert [m.destination for m in manager.mounts(pod, pod.spec.containers[0])] == ["/data"]
    pod = make_pod(
        [{"name": "h", "emptyDir": {}}], [{"name": "h", "mountPath": "/etc/hosts", "subPath": "x"}]
    )
    assert [m.destination for m in manager.mounts(pod, pod.spec.containers[0])] == ["/etc/hosts"]


# --- /etc/hosts ---------------------------------------------------------------------------------------


def test_hosts_file_like_the_kubelet() -> None:
    aliases = [
        {"ip": "10.1.2.3", "hostnames": ["foo.local", "bar.local"]},
        {"ip": "10.1.2.4", "hostnames": ["baz"]},
    ]
    pod = make_pod(hostname="db-0", subdomain="db", hostAliases=aliases)
    assert hosts_file_content(pod, "10.244.1.7", "example.org") == (
        "# peapod-managed hosts file.\n"
        "127.0.0.1\tlocalhost\n"
        "::1\tlocalhost ip6-localhost ip6-loopback\n"
        "fe00::0\tip6-localnet\n"
        "fe00::0\tip6-mcastprefix\n"
        "fe00::1\tip6-allnodes\n"
        "fe00::2\tip6-allrouters\n"
        "10.244.1.7\tdb-0.db.default.svc.example.org\tdb-0\n"
        "\n"
        "# Entries added by HostAliases.\n"
        "10.1.2.3\tfoo.local\tbar.local\n"
        "10.1.2.4\tbaz\n"
    )
    plain = make_pod()
    assert hosts_file_content(plain, "10.244.1.8").endswith("fe00::2\tip6-allrouters\n10.244.1.8\tweb\n")
    assert hosts_file_content(plain, None).endswith("fe00::2\tip6-allrouters\n")  # no IP yet: no line
    long = make_pod()
    long.metadata.name = "a" * 62 + "-b"
    assert hosts_file_content(long, "10.0.0.1").endswith(f"10.0.0.1\t{'a' * 62}\n")  # cut, no trailing '-'


async def test_write_hosts_in_place_and_only_on_change(tmp_path: Path, client: Client) -> None:
    manager = VolumeManager(tmp_path / "pods", client, cluster_domain="corp.internal")
    pod = make_pod(subdomain="svc")
    await manager.prepare(pod)  # writes the file when missing, with whatever IP the pod has (none)
    path = manager.hosts_path(pod.metadata.uid or "")
    assert "web" not in path.read_text() and mode(path) == 0o644
    inode = path.stat().st_ino
    await manager.write_hosts(pod, "10.244.0.9")
    assert "10.244.0.9\tweb.svc.default.svc.corp.internal\tweb\n" in path.read_text()
    assert path.stat().st_ino == inode  # a container's bind mount of the file sees the change
    before = path.stat().st_mtime_ns
    await manager.write_hosts(pod, "10.244.0.9")
    await manager.prepare(pod)
    assert path.stat().st_mtime_ns == before


# --- clean-up --------------------------------------------------------------------------------------


async def test_remove_and_collect(manager: VolumeManager, client: Client) -> None:
    await config_map(client, "app", {"a": "A"})
    pods = [make_pod([{"name": "cfg", "configMap": {"name": "app"}}, {"name": "e", "emptyDir": {}}])
            for _ in range(3)]  # fmt: skip
    for pod in pods:
        await manager.prepare(pod)
    uids = [p.metadata.uid or "" for p in pods]
    await manager.remove(uids[0])
    assert not (manager.root / uids[0]).exists()
    await manager.remove(uids[0])  # already gone: fine
    await manager.collect({uids[1]})
    assert listing(manager.root) == {uids[1]}
    await VolumeManager(manager.root / "never-made", client).collect(set())  # no root yet: fine
    with pytest.raises(ValueError):
        await manager.remove("../etc")


# --- the runtime side: mounts and privileged in the libpod body ---------------------------------------


def test_container_body_mounts_and_privileged_guard() -> None:
    pod = make_pod()
    container = pod.spec.containers[0]
    sandbox = SandboxInfo(uid="u", namespace="default", name="web", id="pod-id", infra_running=True)
    mounts = [Mount("/v/data", "/data"), Mount("/v/etc-hosts", "/etc/hosts"), Mount("/v/c", "/c", True, "x")]
    body = build_container_body(sandbox, pod, ContainerSpec(container, {}, 0, mounts=mounts), "img", "n")
    assert body["mounts"] == [
        {"destination": "/data", "source": "/v/data", "type": "bind", "options": ["rbind", "rw"]},
        {"destination": "/etc/hosts", "source": "/v/etc-hosts", "type": "bind", "options": ["rbind", "rw"]},
        {"destination": "/c", "source": "/v/c", "type": "bind", "options": ["rbind", "ro"]},
    ]
    assert "mounts" not in build_container_body(sandbox, pod, ContainerSpec(container, {}, 0), "img", "n")

    container.security_context = SecurityContext(privileged=True)
    with pytest.raises(RuntimeFailure) as err:
        build_container_body(sandbox, pod, ContainerSpec(container, {}, 0), "img", "n")
    assert err.value.reason == "CreateContainerConfigError"
    assert err.value.message == (
        "privileged containers are not allowed on this node (pea agent --allow-privileged)"
    )
    body = build_container_body(
        sandbox, pod, ContainerSpec(container, {}, 0), "img", "n", allow_privileged=True
    )
    assert body["privileged"] is True
