"""``pea delete --cascade``: kubectl's flag, through ``tui.cli.run`` against a real control plane whose
garbage collector does the cascading. The scheduler is off, so pods have no node and go at once; owners
are ConfigMaps, or an RC whose dependents its own manager ignores (non-controller references, labels
outside its selector)."""

from __future__ import annotations

from pathlib import Path

import pytest

from controlplane.api import ConfigMap, ObjectMeta, Pod, ReplicationController
from controlplane.api.meta import TopLevel
from controlplane.client import Client
from controlplane.server.controlplane import ControlPlane, Settings
from tests.cli.conftest import pea
from tests.support import absent, busybox_pod, eventually, owner_ref

pytestmark = pytest.mark.usefixtures("isolated_config")


@pytest.fixture
def settings(settings: Settings) -> Settings:
    settings.scheduler = False
    return settings


async def pod(client: Client, name: str, owner: TopLevel) -> Pod:
    body = busybox_pod(name)
    body.metadata.owner_references = [owner_ref(owner)]
    return await client.create(body)


async def test_cascade_orphan_keeps_the_dependents(controlplane: ControlPlane, client: Client) -> None:
    owner = await client.create(ConfigMap(metadata=ObjectMeta(name="settings")))
    await pod(client, "user", owner)

    code, out, err = await pea(controlplane, "delete", "configmap", "settings", "--cascade=orphan")
    assert (code, err) == (0, "")
    assert out == 'configmap "settings" deleted\n'
    await eventually(lambda: absent(client, ConfigMap, "settings"), "the configmap to go")
    kept = await client.get(Pod, "user", "default")
    assert not kept.metadata.owner_references
    assert kept.metadata.deletion_timestamp is None


async def test_default_cascade_deletes_an_rc_and_its_pods(
    controlplane: ControlPlane, client: Client, tmp_path: Path
) -> None:
    manifest = tmp_path / "rc.yaml"
    manifest.write_text(
        "apiVersion: v1\nkind: ReplicationController\nmetadata:\n  name: web\nspec:\n  replicas: 0\n"
        "  selector:\n    app: web\n  template:\n    metadata:\n      labels:\n        app: web\n"
        "    spec:\n      containers:\n      - name: c\n        image: busybox\n"
    )
    code, _, err = await pea(controlplane, "create", "-f", str(manifest))
    assert code == 0, err
    rc = await client.get(ReplicationController, "web", "default")
    await pod(client, "web-1", rc)
    await pod(client, "web-2", rc)

    code, out, err = await pea(controlplane, "delete", "-f", str(manifest))
    assert (code, err) == (0, "")
    assert "web" in out and "deleted" in out
    assert await absent(client, ReplicationController, "web")

    async def pods_gone() -> bool:
        return await absent(client, Pod, "web-1") and await absent(client, Pod, "web-2")

    await eventually(pods_gone, "the RC's pods to be garbage-collected")


async def test_cascade_foreground_and_deprecated_booleans(controlplane: ControlPlane, client: Client) -> None:
    fg = await client.create(ConfigMap(metadata=ObjectMeta(name="fg")))
    await pod(client, "fg-child", fg)
    code, _, err = await pea(controlplane, "delete", "cm", "fg", "--cascade", "foreground")
    assert (code, err) == (0, "")

    async def tree_gone() -> bool:
        return await absent(client, ConfigMap, "fg") and await absent(client, Pod, "fg-child")

    await eventually(tree_gone, "the foreground deletion to finish")

    old = await client.create(ConfigMap(metadata=ObjectMeta(name="old-style")))
    await pod(client, "old-child", old)
    code, _, err = await pea(controlplane, "delete", "cm", "old-style", "--cascade=false")
    assert code == 0
    assert "--cascade=false is deprecated" in err and "--cascade=orphan" in err
    await eventually(lambda: absent(client, ConfigMap, "old-style"), "the orphaning delete to finish")
    assert not (await client.get(Pod, "old-child", "default")).metadata.owner_references


async def test_a_bad_cascade_value_is_one_usage_line(controlplane: ControlPlane, client: Client) -> None:
    await client.create(ConfigMap(metadata=ObjectMeta(name="safe")))
    code, out, err = await pea(controlplane, "delete", "cm", "safe", "--cascade=sideways")
    assert (code, out) == (1, "")
    assert err == (
        'error: invalid cascade value (sideways). Must be "background", "foreground", or "orphan".\n'
    )
    assert (await client.get(ConfigMap, "safe", "default")).metadata.deletion_timestamp is None
