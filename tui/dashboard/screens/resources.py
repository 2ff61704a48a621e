"""The main screen: header, unreachable banner, the resource table and the command bar.

Workers (see the package docstring): ``_stream_view`` (group ``view``, exclusive) feeds the table;
``_watch_nodes`` and ``_watch_pods`` run Informers for the header's counts; ``_probe_health`` asks
``/readyz`` each time the view stream (re)connects.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import Input, Static

from controlplane.api.core import Node, Pod
from controlplane.client import ApiError, Informer, TransportError

from ..messages import ClusterCounts, Connection, Health, RowChanged, RowDeleted, TableReset
from ..streams import TableStream
from ..views import VIEWS, View, find_view
from ..widgets import ClusterHeader, CommandBar, ResourceTable

if TYPE_CHECKING:
    from ..app import PeapodApp


def _node_ready(node: Node) -> bool:
    conditions = node.status.conditions if node.status else None
    return any(c.type == "Ready" and c.status == "True" for c in conditions or [])


def _pod_phase(pod: Pod) -> str:
    return (pod.status.phase if pod.status else None) or "Unknown"


class ResourcesScreen(Screen[None]):
    BINDINGS = [
        Binding("colon", "command", "Command", key_display=":"),
        Binding("slash", "filter", "Filter", key_display="/"),
        Binding("escape", "close_bar", "Close", show=False),
        Binding("0", "all_namespaces", "All namespaces"),
    ]

    connected: reactive[bool] = reactive(True)

    def __init__(self) -> None:
        super().__init__()
        self.current_view: View = VIEWS[0]
        self._serial = 0
        self._node_counts = (0, 0)
        self._pod_phases: dict[str, int] = {}

    @property
    def peapod(self) -> PeapodApp:
        from ..app import PeapodApp

        assert isinstance(self.app, PeapodApp)
        return self.app

    def compose(self) -> ComposeResult:
        yield ClusterHeader(id="header")
        yield Static("", id="banner")
        yield ResourceTable()
        yield CommandBar()

    def on_mount(self) -> None:
        header = self.query_one(ClusterHeader)
        header.server = self.peapod.client.server
        header.readonly = self.peapod.readonly
        header.namespace = self.peapod.namespace
        self._watch_nodes()
        self._watch_pods()
        self.show_view(self.current_view)
        self.query_one(ResourceTable).focus()

    # --- switching what is shown ----------------------------------------------------------------

    def show_view(self, view: View) -> None:
        """Show ``view`` in the app's namespace (None: all namespaces), on a new stream."""
        self.current_view = view
        header = self.query_one(ClusterHeader)
        header.view = view.name
        header.namespace = self.peapod.namespace
        self._serial += 1
        self.query_one(ResourceTable).reset([], [])
        client, namespace = self.peapod.client, self.peapod.namespace
        self._stream_view(TableStream(client, view.info, namespace, self.post_message, self._serial))

    def switch_namespace(self, namespace: str | None) -> None:
        self.peapod.namespace = namespace
        self.show_view(self.current_view)

    @work(exclusive=True, group="view")
    async def _stream_view(self, stream: TableStream) -> None:
        await stream.run()

    # --- header workers ---------------------------------------------------------------------------

    @work(group="nodes")
    async def _watch_nodes(self) -> None:
        informer = Informer(self.peapod.client, Node)

        def changed(*_: Any) -> None:
            nodes = informer.items()
            self._node_counts = (sum(map(_node_ready, nodes)), len(nodes))
            self.post_message(ClusterCounts(*self._node_counts, self._pod_phases))

        informer.on_add(changed)
        informer.on_update(changed)
        informer.on_delete(changed)
        await informer.run()

    @work(group="pods")
    async def _watch_pods(self) -> None:
        informer = Informer(self.peapod.client, Pod)

        def changed(*_: Any) -> None:
            self._pod_phases = dict(Counter(_pod_phase(p) for p in informer.items()))
            self.post_message(ClusterCounts(*self._node_counts, self._pod_phases))

        informer.on_add(changed)
        informer.on_update(changed)
        informer.on_delete(changed)
        await informer.run()

    @work(exclusive=True, group="health")
    async def _probe_health(self) -> None:
        try:
            await self.peapod.client.request("GET", "/readyz")
        except (TransportError, ApiError):
            self.post_message(Health(False))
        else:
            self.post_message(Health(True))

    # --- messages from the workers ----------------------------------------------------------------

    def on_table_reset(self, message: TableReset) -> None:
        if message.stream == self._serial:
            self.query_one(ResourceTable).reset(message.columns, message.rows)

    def on_row_changed(self, message: RowChanged) -> None:
        if message.stream == self._serial:
            self.query_one(ResourceTable).upsert(message.key, message.cells)

    def on_row_deleted(self, message: RowDeleted) -> None:
        if message.stream == self._serial:
            self.query_one(ResourceTable).delete(message.key)

    def on_connection(self, message: Connection) -> None:
        self.connected = message.connected
        banner = self.query_one("#banner", Static)
        banner.update("" if message.connected else f"{message.error} — retrying…")
        if message.connected:
            self._probe_health()
        else:
            self.query_one(ClusterHeader).ready = False

    def on_health(self, message: Health) -> None:
        self.query_one(ClusterHeader).ready = message.ready

    def on_cluster_counts(self, message: ClusterCounts) -> None:
        header = self.query_one(ClusterHeader)
        header.nodes_ready = message.nodes_ready
        header.nodes_total = message.nodes_total
        header.pod_phases = message.pod_phases

    def watch_connected(self, connected: bool) -> None:
        self.set_class(not connected, "-disconnected")

    # --- keys ---------------------------------------------------------------------------------------

    def action_command(self) -> None:
        self.query_one(CommandBar).open("command")

    def action_filter(self) -> None:
        self.query_one(CommandBar).open("filter")

    def action_close_bar(self) -> None:
        bar = self.query_one(CommandBar)
        if bar.is_open:
            bar.close()
        self.query_one(ResourceTable).set_filter("")
        self.query_one(ResourceTable).focus()

    def action_all_namespaces(self) -> None:
        self.switch_namespace(None)

    @on(Input.Changed, "#command-bar")
    def _filter_changed(self, event: Input.Changed) -> None:
        if self.query_one(CommandBar).mode == "filter":
            self.query_one(ResourceTable).set_filter(event.value.strip())

    @on(Input.Submitted, "#command-bar")
    def _submitted(self, event: Input.Submitted) -> None:
        bar = self.query_one(CommandBar)
        table = self.query_one(ResourceTable)
        if bar.mode == "filter":  # keep the filter, close the bar
            bar.remove_class("-open")
            table.focus()
            return
        words = event.value.strip().split()
        bar.close()
        table.focus()
        if not words:
            return
        if words[0] in ("ns", "namespace", "namespaces") and len(words) == 2:
            self.switch_namespace(words[1])
            return
        view = find_view(words[0]) if len(words) == 1 else None
        if view is None:
            self.notify(f"unknown command: {event.value.strip()}", severity="error")
            return
        self.show_view(view)
