"""The dashboard (``pea tui``) driven by Pilot against a real control plane on loopback.

Every wait is bounded (``until``) and lets the app run between checks with ``pilot.pause()``; nothing
asserts on timing.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from textual.message import Message
from textual.widgets import Static

from controlplane.api import Pod
from controlplane.api.core import Namespace, Node
from controlplane.api.meta import Status, Table
from controlplane.api.registry import resolve
from controlplane.client import Client, Gone, TransportError
from controlplane.server.controlplane import ControlPlane, Settings
from tests.support import busybox_pod, eventually, rc_manifest
from tui.cli import run
from tui.dashboard import PeapodApp
from tui.dashboard.messages import Connection, RowDeleted, TableReset
from tui.dashboard.screens import HelpScreen, ResourcesScreen
from tui.dashboard.streams import TableStream
from tui.dashboard.widgets import CommandBar

from .pilot import SIZE, header, table, type_command, until


async def test_pods_view_follows_the_watch(client: Client) -> None:
    await client.create(busybox_pod("web-1"))
    await client.create(busybox_pod("web-2"))
    app = PeapodApp(client)
    async with app.run_test(size=SIZE) as pilot:
        t = await until(pilot, lambda: len(table(app).shown_keys) == 2 and table(app), "the existing pods")
        assert t.shown_keys == ["default/web-1", "default/web-2"]
        assert t.column_labels == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
        assert t.cells("default/web-1")[2] == "Pending"

        # A pod created afterwards appears.
        await client.create(busybox_pod("web-3"))
        await until(pilot, lambda: "default/web-3" in t.shown_keys, "the new pod's row")

        # A status change rewrites that row in place; the cursor stays where it was.
        await pilot.press("down")
        await until(pilot, lambda: t.selected_key == "default/web-2", "the cursor on web-2")
        await client.patch(Pod, "web-2", {"status": {"phase": "Failed"}}, "default", subresource="status")
        await until(pilot, lambda: t.cells("default/web-2")[2] == "Failed", "web-2's new status")
        assert t.shown_keys == ["default/web-1", "default/web-2", "default/web-3"]
        assert t.cursor_row == 1 and t.selected_key == "default/web-2"
        status = t.styled("default/web-2")[2]
        assert "red" in str(getattr(status, "style", ""))

        # A deleted pod disappears.
        await client.delete(Pod, "web-1", "default", grace_period_seconds=0)
        await until(pilot, lambda: "default/web-1" not in t.shown_keys, "web-1's row to go")
        assert t.selected_key == "default/web-2"


async def test_command_bar_switches_views_and_filter_narrows(client: Client) -> None:
    manifest = rc_manifest("frontend", 0, {"app": "fe"}, [{"name": "c", "image": "busybox"}])
    rc_info = resolve("rc")
    assert rc_info is not None
    await client.create_raw(rc_info, manifest)
    await client.create(busybox_pod("alpha"))
    await client.create(busybox_pod("beta"))
    app = PeapodApp(client)
    async with app.run_test(size=SIZE) as pilot:
        t = table(app)
        await until(pilot, lambda: len(t.shown_keys) == 2, "the pods")

        await type_command(pilot, "rc")
        await until(pilot, lambda: t.shown_keys == ["default/frontend"], "the RC view")
        names = t.column_labels
        assert names == ["NAME", "DESIRED", "CURRENT", "READY", "AGE"]
        assert header(app).view == "replicationcontrollers"

        # Completion: ":po" suggests "pods", which the right arrow accepts.
        await pilot.press("colon", "p", "o")
        bar = app.screen.query_one(CommandBar)
        await until(pilot, lambda: bar._suggestion == "pods", "the suggestion")
        await pilot.press("right")
        await until(pilot, lambda: bar.value == "pods", "the completion")
        await pilot.press("escape")
        assert not bar.is_open

        await type_command(pilot, "po")
        await until(pilot, lambda: len(t.shown_keys) == 2, "the pods again")

        await pilot.press("slash", "a", "l")
        await until(pilot, lambda: t.shown_keys == ["default/alpha"], "the filtered rows")
        # A row that arrives while filtering obeys the filter.
        await client.create(busybox_pod("gamma"))
        await client.create(busybox_pod("alps"))
        await until(pilot, lambda: t.shown_keys == ["default/alpha", "default/alps"], "filtered new rows")
        await pilot.press("escape")
        await until(pilot, lambda: len(t.shown_keys) == 4, "every row after esc")

        # An unknown command changes nothing.
        await type_command(pilot, "nope")
        assert header(app).view == "pods"


async def test_namespaces_and_header(client: Client) -> None:
    await client.create(msgspec.convert({"metadata": {"name": "other"}}, Namespace))
    await client.create(busybox_pod("here"))
    await client.create(busybox_pod("there"), "other")
    node = await client.create(msgspec.convert({"metadata": {"name": "n1"}}, Node))
    await client.create(msgspec.convert({"metadata": {"name": "n2"}}, Node))
    status = {"conditions": [{"type": "Ready", "status": "True"}]}
    await client.patch(Node, node.metadata.name or "", {"status": status}, subresource="status")
    await client.patch(Pod, "here", {"status": {"phase": "Running"}}, "default", subresource="status")

    app = PeapodApp(client, readonly=True)
    async with app.run_test(size=SIZE) as pilot:
        t = table(app)
        h = header(app)
        await until(pilot, lambda: t.shown_keys == ["default/here"], "the default namespace's pods")
        await until(pilot, lambda: (h.nodes_ready, h.nodes_total) == (1, 2), "the node counts")
        await until(pilot, lambda: h.pod_phases == {"Running": 1, "Pending": 1}, "the pod phases")
        await until(pilot, lambda: h.ready is True, "the API server's health")
        text = str(h.render())
        assert "Nodes: 1/2" in text and "Running 1" in text and "Pending 1" in text
        assert "Namespace: default" in text and "read-only" in text
        assert t.cells("default/here")[2] == "Running"

        await type_command(pilot, "ns other")
        await until(pilot, lambda: t.shown_keys == ["other/there"], "the other namespace's pods")
        assert app.namespace == "other" and h.namespace == "other"

        await pilot.press("0")
        await until(pilot, lambda: sorted(t.shown_keys) == ["default/here", "other/there"], "every pod")
        assert t.column_labels[:2] == ["NAMESPACE", "NAME"]
        assert "Namespace: all" in str(h.render())

        await type_command(pilot, "no")
        await until(pilot, lambda: sorted(t.shown_keys) == ["n1", "n2"], "the nodes view")
        assert t.cells("n1")[1] == "Ready" and t.cells("n2")[1] in ("NotReady", "Unknown")

        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen), "the help screen")
        await pilot.press("x")
        await until(pilot, lambda: isinstance(app.screen, ResourcesScreen), "help closed")
        await pilot.press("q")
    assert app.return_code == 0


async def test_banner_while_the_api_server_is_down(settings: Settings, controlplane: ControlPlane) -> None:
    port = controlplane.port  # the restarted control plane comes back here, on the same data dir
    async with Client(controlplane.url, controlplane.admin_token) as client:
        await client.create(busybox_pod("survivor"))
        app = PeapodApp(client)
        async with app.run_test(size=SIZE) as pilot:
            t = table(app)
            screen = app.screen
            banner = screen.query_one("#banner", Static)
            await until(pilot, lambda: t.shown_keys == ["default/survivor"], "the pod")
            assert not banner.display

            await controlplane.stop()
            await until(pilot, lambda: banner.display, "the banner")
            assert "unreachable" in str(banner.render())
            await until(pilot, lambda: header(app).ready is False, "Not Ready")

            settings.listen = f"127.0.0.1:{port}"
            again = ControlPlane(settings)
            await again.start()
            try:
                await until(pilot, lambda: not banner.display, "the banner to clear", timeout=30)
                await until(pilot, lambda: header(app).ready is True, "Ready again")
                # The resumed watch still follows changes.
                await client.create(busybox_pod("newcomer"))
                await until(pilot, lambda: "default/newcomer" in t.shown_keys, "a pod made after the restart")
            finally:
                await app.action_quit()
                await again.stop()


async def test_pea_tui_is_a_command() -> None:
    out, err = io.StringIO(), io.StringIO()
    assert await run(["tui", "--help"], out, err) == 0
    assert "--readonly" in out.getvalue() and "--all-namespaces" in out.getvalue()
    help_out = io.StringIO()
    assert await run([], help_out, err) == 0
    assert "tui" in help_out.getvalue()


class _FakeClient:
    """Just enough of Client for TableStream: scripted lists, watches and /readyz answers."""

    def __init__(self, lists: list[Table], watches: list[list[tuple[str, Table]] | Exception]) -> None:
        self.lists = lists
        self.watches = watches
        self.watched_from: list[str | None] = []
        self.readyz = 0

    async def table(self, info: Any, namespace: str | None = None, **selectors: str | None) -> Table:
        return self.lists.pop(0)

    async def request(self, method: str, path: str) -> None:
        self.readyz += 1

    async def watch_table(
        self,
        info: Any,
        namespace: str | None = None,
        *,
        resource_version: str | None = None,
        **selectors: str | None,
    ) -> AsyncIterator[tuple[str, Table]]:
        self.watched_from.append(resource_version)
        script = self.watches.pop(0) if self.watches else []
        if isinstance(script, Exception):
            raise script
        for event in script:
            yield event
        if not self.watches:
            await asyncio.Event().wait()  # the stream stays open until the test cancels it


def _table(rv: str, *names: str) -> Table:
    columns = [{"name": "Name", "type": "string", "format": "name"}, {"name": "Age", "type": "string"}]
    meta = {"namespace": "default", "resourceVersion": rv}
    rows = [{"cells": [n, "1s"], "object": {"metadata": {"name": n, **meta}}} for n in names]
    return msgspec.convert(
        {"metadata": {"resourceVersion": rv}, "columnDefinitions": columns, "rows": rows}, Table
    )


async def test_table_stream_resumes_and_relists_on_gone() -> None:
    info = resolve("pods")
    assert info is not None
    gone = Gone(Status(code=410, reason="Expired", message="too old"))
    fake = _FakeClient(
        lists=[_table("5", "a", "b"), _table("9", "a")],
        watches=[
            [("MODIFIED", _table("6", "a"))],  # then the stream ends: resume from 6
            TransportError("connection refused"),  # resume fails: banner, back-off, /readyz, resume
            gone,  # too old: re-list
            [("DELETED", _table("10", "a"))],
        ],
    )
    posted: list[Message] = []
    stream = TableStream(fake, info, "default", posted.append, 7, min_delay=0.01)  # type: ignore[arg-type]
    task = asyncio.create_task(stream.run())
    try:
        await eventually(lambda: _done(posted), "the scripted stream to play out", timeout=10)
    finally:
        task.cancel()
    kinds = [type(m).__name__ for m in posted]
    assert kinds == [
        "TableReset",
        "Connection",
        "RowChanged",
        "Connection",
        "Connection",
        "TableReset",
        "RowDeleted",
    ]
    first, again = posted[0], posted[5]
    assert isinstance(first, TableReset) and isinstance(again, TableReset)
    assert first.columns == ["NAME", "AGE"] and [k for k, _ in first.rows] == ["default/a", "default/b"]
    assert [k for k, _ in again.rows] == ["default/a"]
    disconnected = posted[3]
    assert isinstance(disconnected, Connection) and not disconnected.connected
    assert fake.watched_from == ["5", "6", "6", "9"]
    assert fake.readyz == 1
    assert all(getattr(m, "stream", 7) == 7 for m in posted)


async def _done(posted: list[Message]) -> bool:
    return any(isinstance(m, RowDeleted) for m in posted)
