"""``Client.list`` decodes the items with the cyclic collector paused: the result must be the typed
items, and the collector must be left as it was found (on, or off if the caller had turned it off)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import msgspec
import pytest

from controlplane.api.core import ConfigMap, Pod
from controlplane.api.meta import ObjectMeta
from controlplane.client import Client
from controlplane.client.client import _decode_items


@pytest.fixture
def gc_restored() -> Iterator[None]:
    was = gc.isenabled()
    try:
        yield
    finally:
        if was:
            gc.enable()
        else:
            gc.disable()


def test_decode_items_leaves_the_collector_as_it_was(gc_restored: None) -> None:
    raw = msgspec.Raw(msgspec.json.encode([ConfigMap(metadata=ObjectMeta(name=f"c{i}")) for i in range(3)]))
    gc.enable()
    items = _decode_items(raw, ConfigMap)
    assert [c.metadata.name for c in items] == ["c0", "c1", "c2"]
    assert gc.isenabled()
    gc.disable()
    assert len(_decode_items(raw, ConfigMap)) == 3
    assert not gc.isenabled()


def test_decode_items_error_re_enables_the_collector(gc_restored: None) -> None:
    gc.enable()
    with pytest.raises(msgspec.ValidationError):
        _decode_items(msgspec.Raw(b'[{"metadata": 5}]'), ConfigMap)
    assert gc.isenabled()


async def test_list_returns_typed_items(client: Client) -> None:
    for i in range(3):
        await client.create(
            msgspec.convert(
                {"metadata": {"name": f"p{i}"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}},
                Pod,
            )
        )
    listed = await client.list(Pod, "default")
    assert [p.metadata.name for p in listed.items] == ["p0", "p1", "p2"]
    assert all(isinstance(p, Pod) and p.metadata.resource_version for p in listed.items)
    assert int(listed.resource_version) >= max(int(p.metadata.resource_version or 0) for p in listed.items)
    assert gc.isenabled()
