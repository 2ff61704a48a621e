"""Pod security admission: hostPath outside the allowed prefixes, privileged containers, added
capabilities and host namespaces are refused on pod create (mirror pods and dry runs included) with a
403 naming each field, and nothing is stored; the Settings and ``pea`` flags allow them."""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from controlplane.api import Pod, ReplicationController
from controlplane.api.registry import for_type
from controlplane.client import ApiError, Client, NotFound
from controlplane.server.admission import PodSecurity, normalise_host_path, path_is_under
from controlplane.server.controlplane import ControlPlane, ControlPlaneError, Settings
from tests.support import rc_manifest, recorded
from tui.security_flags import security_options, security_settings


def pod(name: str = "p", annotations: dict[str, str] | None = None, **spec: Any) -> Pod:
    containers = spec.pop("containers", [{"name": "app", "image": "busybox"}])
    body = {
        "metadata": {"name": name, "annotations": annotations},
        "spec": {"containers": containers, **spec},
    }
    return msgspec.convert(body, Pod)


def host_path(path: str, name: str = "data") -> dict[str, Any]:
    return {"name": name, "hostPath": {"path": path, "type": "DirectoryOrCreate"}}


def privileged(name: str = "app", **security: Any) -> dict[str, Any]:
    return {"name": name, "image": "busybox", "securityContext": {"privileged": True, **security}}


async def refused(client: Client, p: Pod, **kw: Any) -> ApiError:
    """Create ``p``, expect PodSecurity's 403, and check nothing was stored."""
    with pytest.raises(ApiError) as err:
        await client.create(p, "default", **kw)
    with pytest.raises(NotFound):
        await client.get(Pod, p.metadata.name or "", "default")
    assert err.value.code == 403 and err.value.reason == "Forbidden", err.value.status
    return err.value


def fields(err: ApiError) -> list[str]:
    details = err.status.details
    assert details is not None and details.causes, err.status
    assert all(c.reason == "FieldValueForbidden" for c in details.causes)
    return [c.field or "" for c in details.causes]


# --- pure -------------------------------------------------------------------------------------------


def test_paths_are_normalised_and_compared_by_directory() -> None:
    assert normalise_host_path("/srv//data/./x/") == "/srv/data/x"
    assert normalise_host_path("/") == "/"
    assert normalise_host_path("srv/data") is None  # relative
    assert normalise_host_path("/srv/data/../../etc") is None  # climbs: refused, not resolved
    assert path_is_under("/data", "/data") and path_is_under("/data/x/y", "/data")
    assert not path_is_under("/data2", "/data") and not path_is_under("/dat", "/data")
    assert path_is_under("/anything", "/")


def test_policy_lists_every_violation_with_its_field() -> None:
    policy = PodSecurity(("/srv/data/",))
    spec = pod(
        hostNetwork=True,
        hostPID=True,
        hostIPC=True,
        volumes=[host_path("/srv/data/ok"), host_path("/srv/data2", "b"), host_path("/srv/data/../x", "c")],
        containers=[privileged(), {"name": "caps", "image": "busybox", "securityContext": {
            "capabilities": {"add": ["NET_BIND_SERVICE", "CAP_SYS_ADMIN", "net_admin"]}}}],
        initContainers=[privileged("init")],
        ephemeralContainers=[{"name": "debug", "securityContext": {"privileged": True}}],
    ).spec  # fmt: skip
    assert policy.allowed_host_paths == ("/srv/data",)
    assert [v.field for v in policy.violations(spec)] == [
        "spec.hostNetwork",
        "spec.hostPID",
        "spec.hostIPC",
        "spec.volumes[1].hostPath.path",
        "spec.volumes[2].hostPath.path",
        "spec.containers[0].securityContext.privileged",
        "spec.containers[1].securityContext.capabilities.add",
        "spec.initContainers[0].securityContext.privileged",
        "spec.ephemeralContainers[0].securityContext.privileged",
    ]
    caps = policy.violations(spec)[6].message
    assert '"CAP_SYS_ADMIN"' in caps and '"net_admin"' in caps and "NET_BIND_SERVICE" not in caps
    everything = PodSecurity(("/",), allow_privileged=True, allow_host_namespaces=True)
    assert [v.field for v in everything.violations(spec)] == ["spec.volumes[2].hostPath.path"]  # '..'
    with pytest.raises(ValueError, match="absolute"):
        PodSecurity(("relative/dir",))


# --- through the API ----------------------------------------------------------------------------------


async def test_host_path_outside_the_data_directory_is_refused(client: Client, settings: Settings) -> None:
    err = await refused(client, pod("etc", volumes=[host_path("/etc")]))
    assert err.status.message.startswith('pods "etc" is forbidden: violates PodSecurity: hostPath volumes')
    assert "/etc" in err.status.message and str(settings.host_path_dir) in err.status.message
    assert fields(err) == ["spec.volumes[0].hostPath.path"]
    assert err.status.details is not None and err.status.details.name == "etc"
    assert err.status.details.kind == "pods"

    # The data directory itself (the store, the tokens) and tricks around the allowed folder.
    area = settings.host_path_dir
    for i, path in enumerate(
        [str(settings.data_dir.absolute()), f"{area}/../state.db", f"{area}-2/x", f"{settings.data_dir}/x"]
    ):
        err = await refused(client, pod(f"trick-{i}", volumes=[host_path(path)]))
        assert fields(err) == ["spec.volumes[0].hostPath.path"], path

    ok = await client.create(pod("ok", volumes=[host_path(str(area)), host_path(f"{area}//app/./logs", "b")]))
    assert ok.metadata.uid


async def test_privileged_and_host_namespaces_are_refused(client: Client) -> None:
    err = await refused(client, pod("priv", containers=[privileged()], initContainers=[privileged("init")]))
    assert fields(err) == [
        "spec.containers[0].securityContext.privileged",
        "spec.initContainers[0].securityContext.privileged",
    ]
    assert 'privileged (container "app" must not set securityContext.privileged=true;' in err.status.message

    err = await refused(client, pod("host", hostNetwork=True, hostPID=True, hostIPC=True))
    assert fields(err) == ["spec.hostNetwork", "spec.hostPID", "spec.hostIPC"]
    assert "host namespaces (hostNetwork=true; hostPID=true; hostIPC=true)" in err.status.message

    # False is as good as unset; baseline capabilities are fine.
    caps = {"name": "app", "image": "busybox", "securityContext": {
        "privileged": False, "capabilities": {"add": ["NET_BIND_SERVICE", "CHOWN"]}}}  # fmt: skip
    assert (await client.create(pod("plain", hostNetwork=False, containers=[caps]))).metadata.uid


async def test_dry_runs_generated_names_and_mirror_pods_are_refused_too(client: Client) -> None:
    await refused(client, pod("dry", hostNetwork=True), dry_run=True)
    mirror = pod("mirror", {"kubernetes.io/config.mirror": "abc"}, nodeName="n1", containers=[privileged()])
    await refused(client, mirror)
    generated = pod("", hostPID=True)
    generated.metadata.generate_name = "gen-"
    with pytest.raises(ApiError) as err:
        await client.create(generated, "default")
    assert err.value.code == 403 and err.value.status.message.startswith('pods "gen-')
    assert (await client.list(Pod, "default")).items == []


async def test_updates_cannot_add_what_creates_may_not(client: Client) -> None:
    """Pod specs are immutable but for images and a few fields, so checking creates is enough."""
    await client.create(pod("calm"))
    for patch in ({"hostNetwork": True}, {"volumes": [host_path("/")]}, {"containers": [privileged()]}):
        with pytest.raises(ApiError) as err:
            await client.patch(Pod, "calm", {"spec": patch}, "default")
        assert err.value.code == 422, patch
    stored = await client.get(Pod, "calm", "default")
    assert not stored.spec.host_network and not stored.spec.volumes


async def test_validation_errors_come_first(client: Client) -> None:
    """As in kube-apiserver, validating admission runs after validation: an invalid pod is a 422."""
    bad = pod("bad", hostNetwork=True, containers=[{"name": "app", "securityContext": {"privileged": True}}])
    with pytest.raises(ApiError) as err:
        await client.create(bad, "default")
    assert err.value.code == 422


async def test_replication_controllers_get_warnings_and_their_pods_are_refused(client: Client) -> None:
    """As Kubernetes' PodSecurity treats workloads: a warning on create and on an update that changes
    the template, the object stored; the pods it would make are refused (FailedCreate events)."""
    warnings: list[str] = []
    client.on_warning = warnings.append
    info = for_type(ReplicationController)
    manifest = rc_manifest("web", 1, {"app": "web"}, [privileged()], pod_spec={"hostNetwork": True})
    created = await client.create_raw(info, manifest)
    assert created["metadata"]["uid"]
    assert warnings == [
        "would violate PodSecurity: host namespaces (hostNetwork=true), "
        'privileged (container "app" must not set securityContext.privileged=true)'
    ]
    await recorded(client, "web", "FailedCreate", timeout=60)
    assert (await client.list(Pod, "default")).items == []
    warnings.clear()
    await client.patch_raw(info, "web", {"spec": {"replicas": 0}}, "default", patch_type="merge")
    assert warnings == []  # the template did not change
    fixed = {"spec": {"template": {"spec": {"hostNetwork": False, "containers": [
        {"name": "app", "securityContext": {"privileged": False}}]}}}}  # fmt: skip
    await client.patch_raw(info, "web", fixed, "default", patch_type="strategic")
    assert warnings == []
    bad = {"spec": {"template": {"spec": {"hostPID": True}}}}
    await client.patch_raw(info, "web", bad, "default", patch_type="merge")
    assert warnings == ["would violate PodSecurity: host namespaces (hostPID=true)"]


@pytest.fixture
async def allowing(tmp_path: Path) -> AsyncIterator[Client]:
    settings = Settings(
        data_dir=tmp_path / "allowing",
        listen="127.0.0.1:0",
        scheduler=False,
        controllers=False,
        allowed_host_paths=("/srv/data",),
        allow_privileged=True,
        allow_host_namespaces=True,
    )
    cp = ControlPlane(settings)
    await cp.start()
    try:
        async with Client(cp.url, cp.admin_token) as c:
            yield c
    finally:
        await cp.stop()


async def test_settings_allow_what_they_name(allowing: Client) -> None:
    everything = pod(
        "everything",
        hostNetwork=True,
        hostPID=True,
        hostIPC=True,
        volumes=[host_path("/srv/data"), host_path("/srv/data/sub", "sub")],
        containers=[privileged(capabilities={"add": ["SYS_ADMIN"]})],
    )
    assert (await allowing.create(everything)).metadata.uid
    err = await refused(allowing, pod("near", volumes=[host_path("/srv/data2")]))
    assert fields(err) == ["spec.volumes[0].hostPath.path"]


def test_a_relative_allowed_prefix_stops_the_control_plane(tmp_path: Path) -> None:
    with pytest.raises(ControlPlaneError, match="absolute path"):
        ControlPlane(Settings(data_dir=tmp_path / "cp", listen="127.0.0.1:0", allowed_host_paths=("srv",)))


def test_flags() -> None:
    parser = argparse.ArgumentParser(exit_on_error=False)
    security_options(parser)
    flags = ["--allow-host-path", "/srv/", "--allow-host-path", "/mnt//x", "--allow-privileged"]
    args = parser.parse_args([*flags, "--max-requests-per-second", "5", "--max-request-burst", "10"])
    assert security_settings(args) == {
        "allowed_host_paths": ("/srv", "/mnt/x"),
        "allow_privileged": True,
        "allow_host_namespaces": False,
        "max_requests_per_second": 5.0,
        "max_request_burst": 10,
    }
    defaults = security_settings(parser.parse_args([]))
    assert defaults["allowed_host_paths"] == () and not defaults["allow_privileged"]
    assert defaults["max_requests_per_second"] > 0 and defaults["max_request_burst"] > 0
    for bad in (
        ["--allow-host-path", "srv"],
        ["--allow-host-path", "/a/../b"],
        ["--max-request-burst", "-1"],
    ):
        with pytest.raises(argparse.ArgumentError):
            parser.parse_args(bad)
