"""LISTs answered from the stored bytes (``storage.stamp``, ``app.list_body``) must be the same JSON
a decode and re-encode would give: every item with apiVersion, kind and its own resourceVersion."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from controlplane.api.core import ConfigMap, Event, ObjectReference, Pod
from controlplane.api.meta import ObjectMeta
from controlplane.api.registry import for_type
from controlplane.client import Client, NotFound
from controlplane.client.client import TABLE_ACCEPT
from controlplane.server.app import list_body
from controlplane.server.storage import decode, encode, stamp
from controlplane.store import KeyValue


def busybox_pod(name: str, labels: dict[str, str] | None = None) -> Pod:
    return msgspec.convert(
        {
            "metadata": {"name": name, "namespace": "default", "labels": labels or {}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
        },
        Pod,
    )


def _kv(obj: Any, rev: int) -> KeyValue:
    return KeyValue("/registry/x", encode(obj), rev, rev)


def _reencoded(obj: Any, rev: int) -> Any:
    info = for_type(type(obj))
    return msgspec.json.decode(msgspec.json.encode(decode(info, _kv(obj, rev))))


@pytest.mark.parametrize(
    "obj",
    [
        busybox_pod("web", labels={"app": "web"}),
        ConfigMap(metadata=ObjectMeta(name="c", namespace="default"), data={"a": "b"}),
        # data keys that look like metadata fields: the splice must not be fooled
        ConfigMap(metadata=ObjectMeta(name="d"), data={"resourceVersion": "1", '"metadata":{': "x"}),
        # an empty metadata object: no comma after the spliced field
        ConfigMap(),
        # an object reference holding a resourceVersion of its own
        Event(
            metadata=ObjectMeta(name="e", namespace="default"),
            involved_object=ObjectReference(kind="Pod", name="p", resource_version="7"),
        ),
    ],
)
def test_stamp_is_the_decoded_object_re_encoded(obj: Any) -> None:
    info = for_type(type(obj))
    raw = stamp(info, _kv(obj, 42))
    assert msgspec.json.decode(raw) == _reencoded(obj, 42)
    assert msgspec.json.decode(raw)["metadata"]["resourceVersion"] == "42"


def test_stamp_falls_back_on_values_of_another_shape() -> None:
    pod = busybox_pod("web")
    info = for_type(Pod)
    doc = msgspec.json.decode(encode(pod))
    reordered = {"spec": doc["spec"], "metadata": doc["metadata"], "kind": "Pod", "apiVersion": "v1"}
    kv = KeyValue("/registry/pods/default/web", msgspec.json.encode(reordered), 5, 9)
    out = msgspec.json.decode(stamp(info, kv))
    assert out["metadata"]["resourceVersion"] == "9"
    assert out["kind"] == "Pod" and out["spec"] == doc["spec"]


def test_list_body_envelope() -> None:
    info = for_type(Pod)
    items = [stamp(info, _kv(busybox_pod(f"p{i}"), 10 + i)) for i in range(3)]
    body = msgspec.json.decode(list_body(info, 12, "tok", items))
    assert body["apiVersion"] == "v1" and body["kind"] == "PodList"
    assert body["metadata"] == {"resourceVersion": "12", "continue": "tok"}
    assert [p["metadata"]["name"] for p in body["items"]] == ["p0", "p1", "p2"]
    assert [p["metadata"]["resourceVersion"] for p in body["items"]] == ["10", "11", "12"]
    empty = msgspec.json.decode(list_body(info, 0, None, []))
    assert empty["items"] == [] and empty["kind"] == "PodList"


async def _get_json(client: Client, path: str, **params: Any) -> Any:
    resp = await client.request("GET", path, params=params)
    return msgspec.json.decode(resp.content)


async def test_list_items_are_what_get_returns(client: Client) -> None:
    for i in range(5):
        await client.create(busybox_pod(f"p{i}", labels={"n": str(i % 2)}))
    await client.patch(Pod, "p3", {"status": {"message": "patched"}}, "default", subresource="status")
    listed = await _get_json(client, "/api/v1/namespaces/default/pods")
    assert listed["kind"] == "PodList" and listed["apiVersion"] == "v1"
    assert int(listed["metadata"]["resourceVersion"]) >= max(
        int(p["metadata"]["resourceVersion"]) for p in listed["items"]
    )
    for item in listed["items"]:
        name = item["metadata"]["name"]
        assert item == await _get_json(client, f"/api/v1/namespaces/default/pods/{name}")
    assert [p["metadata"]["name"] for p in listed["items"]] == [f"p{i}" for i in range(5)]
    # the typed client reads it back
    typed = await client.list(Pod, "default")
    assert [p.status.message for p in typed.items] == [None, None, None, "patched", None]


async def test_encoded_list_pages_and_selectors(client: Client) -> None:
    for i in range(7):
        await client.create(busybox_pod(f"p{i}", labels={"n": str(i % 2)}))
    names: list[str] = []
    token = None
    pages = 0
    while True:
        page = await _get_json(
            client, "/api/v1/namespaces/default/pods", limit=3, **({"continue": token} if token else {})
        )
        pages += 1
        names += [p["metadata"]["name"] for p in page["items"]]
        token = page["metadata"].get("continue")
        if not token:
            break
    assert pages == 3 and names == [f"p{i}" for i in range(7)]
    odd = await _get_json(client, "/api/v1/namespaces/default/pods", labelSelector="n=1", limit=2)
    assert [p["metadata"]["name"] for p in odd["items"]] == ["p1", "p3"]
    assert odd["metadata"]["continue"]
    assert all(p["metadata"]["resourceVersion"] and p["kind"] == "Pod" for p in odd["items"])
    rest = await _get_json(
        client,
        "/api/v1/namespaces/default/pods",
        labelSelector="n=1",
        **{"continue": odd["metadata"]["continue"]},
    )
    assert [p["metadata"]["name"] for p in rest["items"]] == ["p5"]
    every = await _get_json(client, "/api/v1/pods", fieldSelector="metadata.name=p4")
    assert [p["metadata"]["name"] for p in every["items"]] == ["p4"]


async def test_table_list_still_decodes(client: Client) -> None:
    await client.create(busybox_pod("web"))
    resp = await client.request("GET", "/api/v1/namespaces/default/pods", accept=TABLE_ACCEPT)
    table = msgspec.json.decode(resp.content)
    assert table["kind"] == "Table"
    assert [row["cells"][0] for row in table["rows"]] == ["web"]


async def test_get_is_the_object_re_encoded(client: Client) -> None:
    await client.create(busybox_pod("web", labels={"app": "web"}))
    await client.patch(Pod, "web", {"metadata": {"annotations": {"a": "1"}}}, "default")
    raw = await _get_json(client, "/api/v1/namespaces/default/pods/web")
    typed = await client.get(Pod, "web", "default")
    assert raw == msgspec.to_builtins(typed)
    assert raw["metadata"]["annotations"] == {"a": "1"} and raw["kind"] == "Pod"
    with pytest.raises(NotFound):
        await client.get(Pod, "nope", "default")
