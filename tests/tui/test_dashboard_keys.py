"""The dashboard's keys on rows, against a real control plane on loopback: drill-down and back, the
label filter, wide columns, scale and delete (and their refusal in read-only mode), the namespace
picker."""

from __future__ import annotations

from typing import Any

import msgspec
from textual.pilot import Pilot
from textual.widgets import Input

from controlplane.api import Pod
from controlplane.api.core import Namespace, Node, ReplicationController, Service
from controlplane.api.meta import parse_time
from controlplane.api.registry import resolve
from controlplane.client import Client, NotFound
from tests.support import busybox_pod, rc_manifest
from tui.dashboard import PeapodApp
from tui.dashboard.screens import ResourcesScreen

from .pilot import SIZE, header, table, type_command, until, until_async


def _labelled(name: str, **labels: str) -> Pod:
    pod = busybox_pod(name)
    pod.metadata.labels = labels
    return pod


async def _select(pilot: Pilot[Any], app: PeapodApp, key: str) -> None:
    t = table(app)
    await until(pilot, lambda: key in t.shown_keys, f"row {key}")
    t.select(key)
    await until(pilot, lambda: t.selected_key == key, f"the cursor on {key}")


async def test_enter_drills_down_and_esc_goes_back(client: Client) -> None:
    for name in ("n1", "n2"):
        await client.create(msgspec.convert({"metadata": {"name": name}}, Node))
    await client.create(busybox_pod("on-n1", node="n1"))
    await client.create(busybox_pod("on-n2", node="n2"))
    await client.create(_labelled("web-a", app="web"))
    await client.create(_labelled("web-b", app="web"))
    await client.create(_labelled("db-a", app="db"))
    rc_info = resolve("rc")
    assert rc_info is not None  # it adopts web-a and web-b, and has what it wants
    await client.create_raw(
        rc_info, rc_manifest("web", 2, {"app": "web"}, [{"name": "c", "image": "busybox"}])
    )
    service = {"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}
    await client.create(msgspec.convert(service, Service))

    app = PeapodApp(client)
    async with app.run_test(size=SIZE) as pilot:
        t = table(app)
        await until(pilot, lambda: len(t.shown_keys) == 5, "the pods")

        # node → the pods bound to it, in every namespace
        await type_command(pilot, "no")
        await _select(pilot, app, "n1")
        await pilot.press("enter")
        await until(pilot, lambda: t.shown_keys == ["default/on-n1"], "the pods on n1")
        assert header(app).view == "pods (node n1)"
        await pilot.press("escape")
        await until(pilot, lambda: sorted(t.shown_keys) == ["n1", "n2"], "the nodes again")
        assert header(app).view == "nodes"

        # rc → the pods its selector matches
        await type_command(pilot, "rc")
        await _select(pilot, app, "default/web")
        await pilot.press("enter")
        await until(pilot, lambda: t.shown_keys == ["default/web-a", "default/web-b"], "the RC's pods")
        assert header(app).view == "pods (rc web)"
        # The drilled view is live: a pod that stops matching leaves it (and the RC makes another).
        await client.patch(Pod, "web-b", {"metadata": {"labels": {"app": "other"}}}, "default")
        await until(pilot, lambda: "default/web-b" not in t.shown_keys, "web-b to leave")
        await pilot.press("escape")
        await until(pilot, lambda: t.shown_keys == ["default/web"], "the RCs again")

        # service → its endpoints
        await type_command(pilot, "svc")
        await _select(pilot, app, "default/web")
        await pilot.press("enter")
        await until(pilot, lambda: t.shown_keys == ["default/web"], "the service's endpoints")
        assert header(app).view == "endpoints (service web)"

        # namespace → its pods
        await type_command(pilot, "ns")
        await _select(pilot, app, "default")
        await pilot.press("enter")
        await until(pilot, lambda: header(app).view == "pods" and len(t.shown_keys) == 6, "default's pods")


async def test_label_filter_and_wide_columns(client: Client) -> None:
    await client.create(_labelled("web-a", app="web", tier="front"))
    await client.create(_labelled("web-b", app="web"))
    await client.create(_labelled("db-a", app="db"))
    app = PeapodApp(client)
    async with app.run_test(size=(200, 40)) as pilot:
        t = table(app)
        await until(pilot, lambda: len(t.shown_keys) == 3, "the pods")
        # 200 cells across: the columns of `pea get -o wide` too
        names = t.column_labels
        assert (
            names[:5] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"] and "NODE" in names and "IP" in names
        )

        await pilot.press("slash", *"-l app=web", "enter")
        await until(pilot, lambda: t.shown_keys == ["default/web-a", "default/web-b"], "app=web")
        assert header(app).view == "pods (-l app=web)"
        await pilot.press("slash", *"-l tier", "enter")  # narrows further: both selectors hold
        await until(pilot, lambda: t.shown_keys == ["default/web-a"], "app=web,tier")
        await pilot.press("escape", "escape")
        await until(pilot, lambda: len(t.shown_keys) == 3, "every pod again")

        # A broken selector is refused with a message and changes nothing.
        await pilot.press("slash", *"-l app in (", "enter")
        await until(
            pilot, lambda: any("label selector" in n.message for n in app._notifications), "the error"
        )
        assert header(app).view == "pods" and len(t.shown_keys) == 3

        # Narrow terminal: the wide columns go, the rows stay.
        await pilot.resize_terminal(120, 40)
        await until(pilot, lambda: "NODE" not in t.column_labels, "narrow columns")
        assert len(t.shown_keys) == 3


async def test_scale_and_delete_act(client: Client) -> None:
    rc_info = resolve("rc")
    assert rc_info is not None
    await client.create_raw(
        rc_info, rc_manifest("web", 1, {"app": "web"}, [{"name": "c", "image": "busybox"}])
    )
    await client.create(busybox_pod("doomed"))
    app = PeapodApp(client)
    async with app.run_test(size=SIZE) as pilot:
        await type_command(pilot, "rc")
        await _select(pilot, app, "default/web")
        await pilot.press("S")
        field = await until(pilot, lambda: next(iter(app.screen.query(Input)), None), "the scale dialog")
        field.value = "3"
        await pilot.press("enter")

        async def scaled() -> bool:
            rc = await client.get(ReplicationController, "web", "default")
            return rc.spec is not None and rc.spec.replicas == 3

        await until(pilot, lambda: isinstance(app.screen, ResourcesScreen), "the dialog closed")
        await until_async(pilot, scaled, "replicas 3")
        await until(pilot, lambda: table(app).cells("default/web")[1] == "3", "DESIRED 3 on screen")

        await type_command(pilot, "po")
        await _select(pilot, app, "default/doomed")
        await pilot.press("ctrl+d")
        await until(pilot, lambda: not isinstance(app.screen, ResourcesScreen), "the confirmation")
        await pilot.press("y")
        await until(pilot, lambda: "default/doomed" not in table(app).shown_keys, "the row to go")

        async def gone() -> bool:
            try:
                await client.get(Pod, "doomed", "default")
            except NotFound:
                return True
            return False

        await until_async(pilot, gone, "the pod deleted")


async def test_readonly_refuses_mutating_keys(client: Client) -> None:
    rc_info = resolve("rc")
    assert rc_info is not None
    await client.create_raw(
        rc_info, rc_manifest("web", 1, {"app": "web"}, [{"name": "c", "image": "busybox"}])
    )
    app = PeapodApp(client, readonly=True)
    async with app.run_test(size=SIZE) as pilot:
        await type_command(pilot, "rc")
        await _select(pilot, app, "default/web")
        for key in ("S", "ctrl+d"):
            await pilot.press(key)
            await pilot.pause()
            assert isinstance(app.screen, ResourcesScreen), key
        await type_command(pilot, "po")
        await until(pilot, lambda: len(table(app).shown_keys) == 1, "the RC's pod")
        await pilot.press("s", "ctrl+d")
        await pilot.pause()
        assert isinstance(app.screen, ResourcesScreen)
        refusals = [n.message for n in app._notifications if n.message.startswith("read-only")]
        assert len(refusals) == 4
        rc = await client.get(ReplicationController, "web", "default")
        assert rc.spec is not None and rc.spec.replicas == 1
        assert len((await client.list(Pod, "default")).items) == 1


async def test_namespace_picker(client: Client) -> None:
    await client.create(msgspec.convert({"metadata": {"name": "other"}}, Namespace))
    await client.create(busybox_pod("there"), "other")
    await client.create(busybox_pod("here"))
    app = PeapodApp(client)
    async with app.run_test(size=SIZE) as pilot:
        t = table(app)
        await until(pilot, lambda: t.shown_keys == ["default/here"], "default's pods")
        await pilot.press("n")
        await until(pilot, lambda: not isinstance(app.screen, ResourcesScreen), "the picker")
        await pilot.press(*"other")
        await pilot.pause()
        await pilot.press("enter")
        await until(pilot, lambda: t.shown_keys == ["other/there"], "other's pods")
        assert app.namespace == "other" and header(app).namespace == "other"


async def test_age_keeps_counting_between_events(client: Client) -> None:
    """The server's AGE is a snapshot; the dashboard counts on from creationTimestamp by itself."""
    pod = await client.create(busybox_pod("old"))
    created = parse_time(pod.metadata.creation_timestamp or "").timestamp()
    now = [created + 5]
    app = PeapodApp(client, clock=lambda: now[0])
    async with app.run_test(size=SIZE) as pilot:
        t = table(app)
        await until(pilot, lambda: "default/old" in t.shown_keys, "the pod")
        assert t.cells("default/old")[4] == "5s"
        now[0] = created + 3 * 3600 + 600  # no watch event: only the clock moves
        await until(pilot, lambda: t.cells("default/old")[4] == "3h10m", "the AGE to move on")
