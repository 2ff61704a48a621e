"""Shared informers: one list-watch and one cache for several users in a process, each user's handlers
and lifetime its own (client-go's SharedInformerFactory semantics)."""

from __future__ import annotations

import pytest

from controlplane.api.core import ConfigMap, Pod
from controlplane.api.meta import ObjectMeta
from controlplane.client import Client
from controlplane.client.informer import Informer, InformerUse, SharedInformerFactory
from controlplane.controllers.garbagecollector import _SlimCache
from controlplane.controllers.manager import ControllerManager
from controlplane.server.controlplane import ControlPlane, Settings
from tests.support import eventually


@pytest.fixture
def settings(settings: Settings) -> Settings:
    settings.scheduler = False
    settings.controllers = False
    return settings


def cm(name: str) -> ConfigMap:
    return ConfigMap(metadata=ObjectMeta(name=name, namespace="default"), data={"k": "v"})


class Seen:
    """A user's handlers: the names it was told were added, updated and deleted."""

    def __init__(self) -> None:
        self.added: list[str] = []
        self.updated: list[str] = []
        self.deleted: list[str] = []

    def subscribe(self, informer: Informer[ConfigMap]) -> None:
        informer.on_add(lambda o: self.added.append(o.metadata.name or ""), owner=self)
        informer.on_update(lambda _o, n: self.updated.append(n.metadata.name or ""), owner=self)
        informer.on_delete(lambda o: self.deleted.append(o.metadata.name or ""), owner=self)


def test_one_informer_per_kind_namespace_and_selectors(client: Client) -> None:
    factory = SharedInformerFactory(client)
    pods = factory.informer(Pod)
    assert factory.informer(Pod) is pods
    assert factory.informer(Pod, "default") is not pods
    assert factory.informer(Pod, label_selector="app=web") is not pods
    assert factory.informer(Pod, field_selector="spec.nodeName=n1") is not pods
    assert factory.informer(ConfigMap) is not pods
    assert factory.has(Pod) and factory.has(Pod, "default") and not factory.has(ConfigMap, "default")
    assert len(factory.informers()) == 5


async def test_two_users_both_get_events_from_one_watch(client: Client) -> None:
    factory = SharedInformerFactory(client)
    first, second = Seen(), Seen()
    informer = factory.informer(ConfigMap, "default")
    first.subscribe(informer)
    second.subscribe(factory.informer(ConfigMap, "default"))
    informer.start()
    factory.informer(ConfigMap, "default").start()
    try:
        await informer.wait_synced(10)
        await client.create(cm("a"))

        async def both_added() -> bool:
            return "a" in first.added and "a" in second.added

        await eventually(both_added, "the add at both users")
        await client.delete(ConfigMap, "a", "default")

        async def both_deleted() -> bool:
            return first.deleted == ["a"] and second.deleted == ["a"]

        await eventually(both_deleted, "the delete at both users")
        assert informer.relists == 1  # one list (and one watch) served both
    finally:
        await informer.stop()
        await informer.stop()
    assert not informer.running


async def test_stopping_one_user_leaves_the_other_running(client: Client) -> None:
    factory = SharedInformerFactory(client)
    informer = factory.informer(ConfigMap, "default")
    leaving, staying = Seen(), Seen()
    leaving.subscribe(informer)
    staying.subscribe(informer)
    informer.start()
    informer.start()
    try:
        await informer.wait_synced(10)
        informer.remove_handlers(leaving)
        await informer.stop()  # the first user is done
        assert informer.running
        await client.create(cm("b"))

        async def staying_added() -> bool:
            return staying.added == ["b"]

        await eventually(staying_added, "the add after the other user stopped")
        assert leaving.added == []  # its handlers went with it
    finally:
        await informer.stop()
    assert not informer.running  # the last user stops it


async def test_a_late_user_is_told_of_what_is_cached(client: Client) -> None:
    await client.create(cm("early"))
    informer = SharedInformerFactory(client).informer(ConfigMap, "default")
    informer.start()
    try:
        await informer.wait_synced(10)
        plain = Seen()
        plain.subscribe(informer)
        assert plain.added == []  # a handler alone is only told of changes from now on
        late = Seen()
        InformerUse(late, (informer,), lambda: late.subscribe(informer), private=False)
        assert late.added == ["early"]  # a user joining is told at once, as client-go does
        assert plain.added == []  # and only that user
    finally:
        await informer.stop()


async def test_informer_use_restarts_with_its_handlers_and_stops_its_own_informer(client: Client) -> None:
    informer: Informer[ConfigMap] = Informer(client, ConfigMap, "default")
    seen = Seen()
    use = InformerUse(seen, (informer,), lambda: seen.subscribe(informer), private=True)
    informer.start()  # started by hand, not through the use (tests of controllers do this)
    await informer.wait_synced(10)
    await use.stop()
    assert not informer.running  # its own informer stops however it was started
    use.start()  # a restart subscribes again
    try:
        await client.create(cm("c"))

        async def added() -> bool:
            return seen.added == ["c"]

        await eventually(added, "the add after a restart")
    finally:
        await use.stop()
    assert not informer.running


async def test_a_shared_informer_outlives_a_use_that_never_started_it(client: Client) -> None:
    factory = SharedInformerFactory(client)
    informer = factory.informer(ConfigMap, "default")
    informer.start()  # another user's
    try:
        use = InformerUse(object(), (informer,), lambda: None, private=False)
        await use.stop()  # never started: must not stop the other user's informer
        assert informer.running
    finally:
        await informer.stop()


async def test_the_controllers_share_one_pod_informer(controlplane: ControlPlane, client: Client) -> None:
    manager = ControllerManager(client)
    pods = manager.informers.informer(Pod)
    assert manager.replication.pod_informer is pods
    assert manager.endpoints.pods is pods
    assert manager.node_lifecycle.pods is pods
    assert pods in manager.garbage_collector.informers  # full copy shared, no slim one of its own
    own = [i for i in manager.garbage_collector.informers if i.cls is ConfigMap]
    assert len(own) == 1 and not manager.informers.has(ConfigMap)  # no one else watches ConfigMaps:
    assert isinstance(own[0].cache, _SlimCache)  # the collector keeps its own metadata-only cache
    assert manager.servicelb.nodes is manager.node_lifecycle.nodes
    await manager.start()
    try:
        await pods.wait_synced(10)
        assert pods.running
        await manager.endpoints.stop()  # one user gone; the rest keep the watch
        assert pods.running
    finally:
        await manager.stop()
    assert not pods.running
