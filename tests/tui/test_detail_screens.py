"""The describe and YAML screens (``d``, ``y``) driven by Pilot against a real control plane on loopback.

The screens are pushed directly on a ``PeapodApp`` (no scheduler: see conftest.py); every wait is
bounded (``until``) and nothing asserts on timing.
"""

from __future__ import annotations

import base64

import msgspec
import pytest
from textual.widgets import Static, TextArea

from controlplane.api import Pod
from controlplane.api.core import Node, Secret
from controlplane.api.registry import ResourceInfo, resolve
from controlplane.client import Client, EventRecorder
from controlplane.server.controlplane import ControlPlane, Settings
from tests.support import busybox_pod
from tui.dashboard import PeapodApp
from tui.dashboard.screens import ResourcesScreen
from tui.dashboard.screens.describe import DescribeScreen
from tui.dashboard.screens.text_view import DetailScreen
from tui.dashboard.screens.yaml_view import MASK, YamlScreen

from .pilot import SIZE, until


def info(word: str) -> ResourceInfo:
    found = resolve(word)
    assert found is not None
    return found


def text(app: PeapodApp) -> str:
    """The detail screen's text ("" until it is composed)."""
    areas = app.screen.query(TextArea)
    return areas.first().text if areas else ""


def title(app: PeapodApp) -> str:
    return str(app.screen.query_one("#detail-title", Static).render())


def notice(app: PeapodApp) -> str:
    """The notice line while it is shown, else ""."""
    found = app.screen.query("#detail-notice").results(Static)
    widget = next(found, None)
    return str(widget.render()) if widget is not None and widget.display else ""


def labelled_pod(name: str, labels: dict[str, str]) -> Pod:
    pod = busybox_pod(name)
    pod.metadata.labels = labels
    return pod


async def test_describe_shows_labels_and_events_and_follows_changes(client: Client) -> None:
    pod = await client.create(labelled_pod("web", {"app": "web"}))
    recorder = EventRecorder(client, "detail-test")
    await recorder.record(pod, "Normal", "Checked", "looked at by the test")
    app = PeapodApp(client)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: isinstance(app.screen, ResourcesScreen), "the main screen")
        app.push_screen(DescribeScreen(info("pods"), "web", "default"))
        await until(pilot, lambda: "looked at by the test" in text(app), "the description with its event")
        described = text(app)
        assert "Name:" in described and "web" in described
        assert "Labels:" in described and "app=web" in described
        assert "Checked" in described and "detail-test" in described
        assert "Pod default/web" in title(app) and "Describe" in title(app)
        assert notice(app) == ""

        # A label patched afterwards shows up without a key press.
        await client.patch(Pod, "web", {"metadata": {"labels": {"tier": "front"}}}, "default")
        await until(pilot, lambda: "tier=front" in text(app), "the new label")
        # So does an event recorded while the screen is open (the events are watched too).
        await recorder.record(pod, "Warning", "Poked", "poked while watched")
        await until(pilot, lambda: "poked while watched" in text(app), "the new event")

        detail = lambda: [w for w in app.workers if w.group.startswith("detail") and not w.is_finished]  # noqa: E731
        assert len(detail()) == 3  # the pod's watch, its events' watch, the renderer
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, ResourcesScreen), "the previous screen")
        # Its watches end with it.
        await until(pilot, lambda: not detail(), "the describe screen's workers to end")


async def test_a_rerender_keeps_the_scroll_position(client: Client) -> None:
    labels = {f"label-{i:02d}": "x" for i in range(60)}  # longer than the screen
    await client.create(labelled_pod("long", labels))
    app = PeapodApp(client)
    async with app.run_test(size=SIZE) as pilot:
        app.push_screen(DescribeScreen(info("po"), "long", "default"))
        await until(pilot, lambda: "label-59=x" in text(app), "the long description")
        area = app.screen.query_one(TextArea)
        assert area.max_scroll_y > 20
        area.scroll_to(0, 20, animate=False, immediate=True)
        await until(pilot, lambda: area.scroll_offset.y == 20, "the scroll")

        await client.patch(Pod, "long", {"metadata": {"labels": {"label-00": "changed"}}}, "default")
        await until(pilot, lambda: "label-00=changed" in text(app), "the patched label")
        await pilot.pause()
        assert area.scroll_offset.y == 20


async def test_yaml_shows_the_object_and_follows_changes(client: Client) -> None:
    await client.create(busybox_pod("web"))
    app = PeapodApp(client)
    async with app.run_test(size=SIZE) as pilot:
        app.push_screen(YamlScreen(info("pods"), "web", "default"))
        await until(pilot, lambda: "image: busybox" in text(app), "the YAML")
        shown = text(app)
        assert "kind: Pod" in shown and "spec:" in shown and "name: web" in shown
        assert "YAML" in title(app) and "Pod default/web" in title(app)
        assert "hidden" not in title(app)  # only Secrets have values to hide

        await client.patch(Pod, "web", {"spec": {"activeDeadlineSeconds": 42}}, "default")
        await until(pilot, lambda: "activeDeadlineSeconds: 42" in text(app), "the changed spec")

        # "x" means nothing here: the text stays as it is.
        await pilot.press("x")
        await pilot.pause()
        assert "activeDeadlineSeconds: 42" in text(app)

        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, ResourcesScreen), "the previous screen")


async def test_secret_values_are_hidden_until_x(client: Client) -> None:
    encoded = base64.b64encode(b"hunter2-password").decode()
    secret = msgspec.convert({"metadata": {"name": "creds"}, "data": {"password": encoded}}, Secret)
    await client.create(secret)
    app = PeapodApp(client)
    async with app.run_test(size=SIZE) as pilot:
        app.push_screen(YamlScreen(info("secrets"), "creds", "default"))
        await until(pilot, lambda: "password:" in text(app), "the secret's YAML")
        assert encoded not in text(app) and MASK in text(app)
        assert "values hidden" in title(app)

        await pilot.press("x")
        await until(pilot, lambda: encoded in text(app), "the revealed value")
        assert MASK not in text(app) and "values shown" in title(app)

        # A change while revealed keeps the values revealed; hiding again masks the new value too.
        newer = base64.b64encode(b"correct-horse").decode()
        await client.patch(Secret, "creds", {"data": {"password": newer}}, "default")
        await until(pilot, lambda: newer in text(app), "the new value, revealed")
        await pilot.press("x")
        await until(pilot, lambda: newer not in text(app), "the value hidden again")
        assert MASK in text(app) and "values hidden" in title(app)


@pytest.mark.parametrize("screen", [DescribeScreen, YamlScreen])
async def test_a_deleted_object_gets_a_notice(client: Client, screen: type[DetailScreen]) -> None:
    await client.create(busybox_pod("doomed"))
    app = PeapodApp(client)
    async with app.run_test(size=SIZE) as pilot:
        app.push_screen(screen(info("pods"), "doomed", "default"))
        await until(pilot, lambda: "doomed" in text(app), "the object")
        assert notice(app) == ""

        await client.delete(Pod, "doomed", "default", grace_period_seconds=0)
        await until(pilot, lambda: "was deleted" in notice(app), "the deletion notice")
        assert "Pod default/doomed" in notice(app)
        assert "doomed" in text(app)  # the last version seen stays readable

        # Made again under the same name: the screen follows the new object and the notice goes.
        await client.create(labelled_pod("doomed", {"again": "yes"}))
        await until(pilot, lambda: notice(app) == "", "the notice to clear")
        await until(pilot, lambda: "again" in text(app), "the new object")


class _CountingDescribe(DescribeScreen):
    """Counts its fetches, to see what ``r`` does."""

    fetches = 0

    async def fetch(self, client: Client) -> str:
        self.fetches += 1
        return await super().fetch(client)


async def test_an_object_that_does_not_exist_and_r(client: Client) -> None:
    app = PeapodApp(client)
    async with app.run_test(size=SIZE) as pilot:
        screen = _CountingDescribe(info("pods"), "nowhere", "default")
        app.push_screen(screen)
        await until(pilot, lambda: "was deleted" in notice(app), "the notice")
        assert text(app) == ""
        before = screen.fetches
        await pilot.press("r")
        await until(pilot, lambda: screen.fetches > before, "the fetch that r asks for")
        assert "was deleted" in notice(app)
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, ResourcesScreen), "the previous screen")


async def test_a_cluster_scoped_object(client: Client) -> None:
    await client.create(msgspec.convert({"metadata": {"name": "n1"}}, Node))
    app = PeapodApp(client)
    async with app.run_test(size=SIZE) as pilot:
        app.push_screen(DescribeScreen(info("nodes"), "n1", None))
        await until(pilot, lambda: "Name:" in text(app), "the node's description")
        assert "Node n1" in title(app)
        await client.patch(Node, "n1", {"metadata": {"labels": {"zone": "a"}}})
        await until(pilot, lambda: "zone=a" in text(app), "the node's new label")


async def test_an_unreachable_server_gets_a_notice(settings: Settings, controlplane: ControlPlane) -> None:
    port = controlplane.port  # the restarted control plane comes back here, on the same data dir
    async with Client(controlplane.url, controlplane.admin_token) as client:
        await client.create(busybox_pod("steady"))
        app = PeapodApp(client)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: isinstance(app.screen, ResourcesScreen), "the main screen")
            app.push_screen(YamlScreen(info("pods"), "steady", "default"))
            await until(pilot, lambda: "name: steady" in text(app), "the YAML")

            await controlplane.stop()
            await until(pilot, lambda: "retrying" in notice(app), "the unreachable notice")
            assert "API server unreachable" in notice(app)
            assert "name: steady" in text(app)  # what was shown stays

            settings.listen = f"127.0.0.1:{port}"
            again = ControlPlane(settings)
            await again.start()
            try:
                await until(pilot, lambda: notice(app) == "", "the notice to clear", timeout=30)
                await client.patch(Pod, "steady", {"metadata": {"labels": {"back": "again"}}}, "default")
                await until(pilot, lambda: "back: again" in text(app), "a change after the restart")
            finally:
                await app.action_quit()
                await again.stop()
