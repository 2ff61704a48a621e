"""DefaultTolerationSeconds admission on pod create, and the pods/eviction subresource."""

from __future__ import annotations

from typing import Any

import pytest

from controlplane.api import Pod, Toleration
from controlplane.client import ApiError, Client, NotFound
from controlplane.server.controlplane import Settings
from tests.support import UNREACHABLE, busybox_pod, tolerate_unreachable_for

NOT_READY = "node.kubernetes.io/not-ready"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return tolerate_unreachable_for(settings, 120, scheduler=False)


def default(key: str, seconds: int) -> Toleration:
    return Toleration(key=key, operator="Exists", effect="NoExecute", toleration_seconds=seconds)


async def test_new_pods_get_the_default_tolerations(client: Client) -> None:
    created = await client.create(busybox_pod("plain"))
    assert created.spec.tolerations == [default(NOT_READY, 300), default(UNREACHABLE, 120)]
    stored = await client.get(Pod, "plain", "default")
    assert stored.spec.tolerations == created.spec.tolerations


async def test_existing_tolerations_are_not_duplicated(client: Client) -> None:
    own = {"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5}
    created = await client.create(busybox_pod("own", tolerations=[own]))
    assert created.spec.tolerations == [
        Toleration(key=UNREACHABLE, operator="Exists", effect="NoExecute", toleration_seconds=5),
        default(NOT_READY, 300),
    ]
    everything = await client.create(busybox_pod("all", tolerations=[{"operator": "Exists"}]))
    assert everything.spec.tolerations == [Toleration(operator="Exists")]
    # A key-only toleration (any effect) covers the NoExecute taint too.
    keyed = await client.create(busybox_pod("keyed", tolerations=[{"key": NOT_READY, "operator": "Exists"}]))
    assert keyed.spec.tolerations == [Toleration(key=NOT_READY, operator="Exists"), default(UNREACHABLE, 120)]


async def test_updates_leave_tolerations_alone(client: Client) -> None:
    own = {"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5}
    await client.create(busybox_pod("p", tolerations=[own]))
    patched = await client.patch(Pod, "p", {"metadata": {"labels": {"a": "b"}}}, "default")
    assert patched.spec.tolerations == [
        Toleration(key=UNREACHABLE, operator="Exists", effect="NoExecute", toleration_seconds=5),
        default(NOT_READY, 300),
    ]
    replaced = await client.replace(patched)
    assert replaced.spec.tolerations == patched.spec.tolerations


def eviction(name: str, **options: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": name, "namespace": "default"},
    }
    if options:
        body["deleteOptions"] = options
    return body


async def test_eviction_deletes_an_unbound_pod(client: Client) -> None:
    await client.create(busybox_pod("loose"))
    resp = await client.request(
        "POST", "/api/v1/namespaces/default/pods/loose/eviction", body=eviction("loose")
    )
    assert resp.status_code == 201
    assert resp.json()["kind"] == "Status" and resp.json()["status"] == "Success"
    with pytest.raises(NotFound):
        await client.get(Pod, "loose", "default")


async def test_eviction_of_a_bound_pod_is_graceful(client: Client) -> None:
    await client.create(busybox_pod("bound", nodeName="somewhere", terminationGracePeriodSeconds=30))
    resp = await client.request(
        "POST",
        "/api/v1/namespaces/default/pods/bound/eviction",
        body=eviction("bound", gracePeriodSeconds=10),
    )
    assert resp.status_code == 201
    left = await client.get(Pod, "bound", "default")
    assert left.metadata.deletion_timestamp is not None
    assert left.metadata.deletion_grace_period_seconds == 10


async def test_eviction_errors(client: Client) -> None:
    await client.create(busybox_pod("p"))
    with pytest.raises(ApiError) as mismatch:
        await client.request("POST", "/api/v1/namespaces/default/pods/p/eviction", body=eviction("q"))
    assert mismatch.value.status.code == 400
    with pytest.raises(NotFound):
        await client.request(
            "POST", "/api/v1/namespaces/default/pods/missing/eviction", body=eviction("missing")
        )
    with pytest.raises(ApiError) as wrong_verb:
        await client.request("GET", "/api/v1/namespaces/default/pods/p/eviction")
    assert wrong_verb.value.status.code == 405
    assert (await client.get(Pod, "p", "default")).metadata.deletion_timestamp is None


def _field(number: int, payload: bytes | str) -> bytes:
    data = payload.encode() if isinstance(payload, str) else payload
    return bytes([number << 3 | 2, len(data)]) + data


async def test_eviction_in_protobuf_as_client_go_sends_it(client: Client) -> None:
    await client.create(busybox_pod("proto", nodeName="somewhere", terminationGracePeriodSeconds=30))
    meta = _field(1, "proto") + _field(3, "default")
    options = bytes([1 << 3, 7])  # gracePeriodSeconds: 7
    unknown = _field(1, _field(1, "policy/v1") + _field(2, "Eviction")) + _field(
        2, _field(1, meta) + _field(2, options)
    )
    resp = await client.request(
        "POST",
        "/api/v1/namespaces/default/pods/proto/eviction",
        body=b"k8s\x00" + unknown,
        content_type="application/vnd.kubernetes.protobuf",
    )
    assert resp.status_code == 201
    left = await client.get(Pod, "proto", "default")
    assert left.metadata.deletion_grace_period_seconds == 7
    with pytest.raises(ApiError) as garbage:
        await client.request(
            "POST",
            "/api/v1/namespaces/default/pods/proto/eviction",
            body=b"not protobuf",
            content_type="application/vnd.kubernetes.protobuf",
        )
    assert garbage.value.status.code == 400
