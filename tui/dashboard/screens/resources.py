"""The main screen: header, unreachable banner, the resource table and the command bar.

What the table lists is a ``Scope`` (a view, a namespace, server-side selectors); drilling down (node →
its pods, RC → its pods, service → its endpoints) and ``/-l selector`` push a scope, ``esc`` pops it.
The keys on a row open the other screens: describe, YAML, logs, shell, scale, delete. Mutating keys
are refused in read-only mode. Anything that talks to the API server runs in a worker, so the screen
keeps drawing while it waits.

Workers (see the package docstring): ``_stream_view`` (group ``view``, exclusive) feeds the table;
``_watch_nodes`` and ``_watch_pods`` run Informers for the header's counts; ``_probe_health`` asks
``/readyz`` each time the view stream (re)connects.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import Input, Static

from controlplane.api.core import Node, Pod, ReplicationController
from controlplane.client import ApiError, ClientError, Informer, TransportError
from controlplane.client.informer import key_of
from controlplane.selectors import SelectorError, parse_label_selector
from controlplane.status import node_ready

from ..context import OnDashboard
from ..messages import ClusterCounts, Connection, Health, RowChanged, RowDeleted, TableReset
from ..shell import open_shell
from ..streams import TableStream
from ..views import VIEWS, Scope, View, find_view, view_of
from ..widgets import ClusterHeader, CommandBar, ResourceTable
from .confirm import ConfirmScreen
from .describe import DescribeScreen
from .logs import LogScreen
from .namespaces import ALL_NAMESPACES, NamespaceScreen
from .scale import ScaleScreen
from .yaml_view import YamlScreen


def _pod_phase(pod: Pod) -> str:
    return (pod.status.phase if pod.status else None) or "Unknown"


class ResourcesScreen(OnDashboard, Screen[None]):
    BINDINGS = [
        Binding("colon", "command", "Command", key_display=":"),
        Binding("slash", "filter", "Filter", key_display="/"),
        Binding("escape", "back", "Back", show=False),
        Binding("0", "all_namespaces", "All namespaces"),
        Binding("n", "pick_namespace", "Namespace"),
        Binding("d", "describe", "Describe"),
        Binding("y", "yaml", "YAML"),
        Binding("l", "logs", "Logs"),
        Binding("s", "shell", "Shell"),
        Binding("S", "scale", "Scale", key_display="shift+s"),
        Binding("ctrl+d", "delete", "Delete"),
    ]

    connected: reactive[bool] = reactive(True)

    def __init__(self) -> None:
        super().__init__()
        self.scopes: list[Scope] = []
        self._serial = 0
        self._node_counts = (0, 0)
        self._pod_phases: dict[str, int] = {}

    @property
    def scope(self) -> Scope:
        return self.scopes[-1]

    @property
    def current_view(self) -> View:
        return self.scope.view

    def compose(self) -> ComposeResult:
        yield ClusterHeader(id="header")
        yield Static("", id="banner")
        yield ResourceTable(self.peapod.clock)
        yield CommandBar()

    def on_mount(self) -> None:
        header = self.query_one(ClusterHeader)
        header.server = self.peapod.client.server
        header.readonly = self.peapod.readonly
        self._watch_nodes()
        self._watch_pods()
        self.show_view(VIEWS[0])
        self.query_one(ResourceTable).focus()

    # --- switching what is shown ----------------------------------------------------------------

    def show_view(self, view: View) -> None:
        """Show ``view`` in the app's namespace (None: all namespaces); forgets any drill-down."""
        self.scopes = [Scope(view, self.peapod.namespace)]
        self._stream_scope()

    def push_scope(self, scope: Scope) -> None:
        self.scopes.append(scope)
        self._stream_scope()

    def pop_scope(self) -> bool:
        if len(self.scopes) < 2:
            return False
        self.scopes.pop()
        self._stream_scope()
        return True

    def switch_namespace(self, namespace: str | None) -> None:
        self.peapod.namespace = namespace
        self.show_view(self.scopes[0].view if self.scopes else VIEWS[0])

    def _stream_scope(self) -> None:
        scope = self.scope
        header = self.query_one(ClusterHeader)
        header.view = scope.title
        header.namespace = scope.namespace
        self._serial += 1
        self.query_one(ResourceTable).reset([], [])
        self._stream_view(
            TableStream(
                self.peapod.client,
                scope.view.info,
                scope.namespace,
                self.post_message,
                self._serial,
                label_selector=scope.label_selector,
                field_selector=scope.field_selector,
            )
        )

    @work(exclusive=True, group="view")
    async def _stream_view(self, stream: TableStream) -> None:
        await stream.run()

    # --- header workers ---------------------------------------------------------------------------

    @work(group="nodes")
    async def _watch_nodes(self) -> None:
        informer = Informer(self.peapod.client, Node)

        def changed(*_: Any) -> None:
            nodes = informer.items()
            self._node_counts = (sum(map(node_ready, nodes)), len(nodes))
            self.post_message(ClusterCounts(*self._node_counts, self._pod_phases))

        informer.on_add(changed)
        informer.on_update(changed)
        informer.on_delete(changed)
        await informer.run()

    @work(group="pods")
    async def _watch_pods(self) -> None:
        """Pods by phase, counted as events arrive (one pod's change costs O(1), not a recount), and
        posted only when a count moves and the first listing is complete."""
        informer = Informer(self.peapod.client, Pod)
        phases: dict[str, str] = {}
        counts: Counter[str] = Counter()

        def post() -> None:
            self._pod_phases = {phase: n for phase, n in counts.items() if n}
            self.post_message(ClusterCounts(*self._node_counts, self._pod_phases))

        def seen(pod: Pod, gone: bool = False) -> None:
            key = key_of(pod)
            old, new = phases.get(key), None if gone else _pod_phase(pod)
            if old == new:
                return
            if old is not None:
                counts[old] -= 1
            if new is None:
                phases.pop(key, None)
            else:
                phases[key] = new
                counts[new] += 1
            if informer.synced.is_set():
                post()

        informer.on_add(seen)
        informer.on_update(lambda _old, pod: seen(pod))
        informer.on_delete(lambda pod: seen(pod, gone=True))
        task = informer.start()
        try:
            await informer.synced.wait()
            post()
            await task
        finally:
            await informer.stop()

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
            self.query_one(ResourceTable).reset(message.columns, message.rows, message.wide, message.created)

    def on_row_changed(self, message: RowChanged) -> None:
        if message.stream == self._serial:
            self.query_one(ResourceTable).upsert(message.key, message.cells, message.created)

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

    # --- the command bar and filter ---------------------------------------------------------------

    def action_command(self) -> None:
        self.query_one(CommandBar).open("command")

    def action_filter(self) -> None:
        self.query_one(CommandBar).open("filter")

    def action_back(self) -> None:
        """Close the bar, else clear the text filter, else go back up a drill-down."""
        bar = self.query_one(CommandBar)
        table = self.query_one(ResourceTable)
        if bar.is_open:
            bar.close()
            table.set_filter("")
        elif table.filter_text:
            table.set_filter("")
        else:
            self.pop_scope()
        table.focus()

    def action_all_namespaces(self) -> None:
        self.switch_namespace(None)

    @on(Input.Changed, "#command-bar")
    def _filter_changed(self, event: Input.Changed) -> None:
        if self.query_one(CommandBar).mode == "filter":
            text = event.value.strip()
            # "-l selector" is a server-side filter, applied on Enter; the text filter waits.
            self.query_one(ResourceTable).set_filter("" if text.startswith("-l") else text)

    @on(Input.Submitted, "#command-bar")
    def _submitted(self, event: Input.Submitted) -> None:
        bar = self.query_one(CommandBar)
        table = self.query_one(ResourceTable)
        text = event.value.strip()
        if bar.mode == "filter":  # keep the filter, close the bar
            bar.remove_class("-open")
            table.focus()
            if text.startswith("-l"):
                bar.value = ""
                self._label_filter(text[2:].strip())
            return
        words = text.split()
        bar.close()
        table.focus()
        if not words:
            return
        if words[0] in ("ns", "namespace", "namespaces") and len(words) == 2:
            self.switch_namespace(None if words[1] in ("all", "*") else words[1])
            return
        view = find_view(words[0]) if len(words) == 1 else None
        if view is None:
            self.notify(f"unknown command: {text}", severity="error")
            return
        self.show_view(view)

    def _label_filter(self, selector: str) -> None:
        try:
            parse_label_selector(selector)
        except SelectorError as exc:
            self.notify(f"label selector {selector!r}: {exc}", severity="error")
            return
        if not selector:
            return
        scope = self.scope
        self.push_scope(Scope(scope.view, scope.namespace, selector, scope.field_selector, f"-l {selector}"))

    # --- keys on the selected row -----------------------------------------------------------------

    @on(ResourceTable.RowSelected)
    def _row_chosen(self) -> None:
        """``enter`` on a row (the ResourceTable's own binding) drills down."""
        self.action_drill()

    def _selected(self) -> tuple[str | None, str] | None:
        """The selected row's namespace (None when cluster-scoped) and name; says so when none is."""
        key = self.query_one(ResourceTable).selected_key
        if key is None:
            self.notify("no row selected", severity="warning")
            return None
        namespace, _, name = key.rpartition("/")
        return namespace or None, name

    def _only_on(self, plural: str, what: str) -> bool:
        if self.current_view.info.plural != plural:
            self.notify(f"{what}: only on {plural}", severity="warning")
            return False
        return True

    def _refused(self, what: str) -> bool:
        if self.peapod.readonly:
            self.notify(f"read-only: {what} is disabled", severity="warning")
        return self.peapod.readonly

    def action_drill(self) -> None:
        selected = self._selected()
        if selected is None:
            return
        namespace, name = selected
        plural = self.current_view.info.plural
        if plural == "nodes":
            self.push_scope(
                Scope(view_of("pods"), None, field_selector=f"spec.nodeName={name}", reason=f"node {name}")
            )
        elif plural == "replicationcontrollers":
            self._drill_rc(namespace or "default", name)
        elif plural == "services":
            scope = Scope(
                view_of("endpoints"),
                namespace,
                field_selector=f"metadata.name={name}",
                reason=f"service {name}",
            )
            self.push_scope(scope)
        elif plural == "namespaces":
            self.peapod.namespace = name
            self.show_view(view_of("pods"))
        else:
            self.action_describe()

    @work(group="action")
    async def _drill_rc(self, namespace: str, name: str) -> None:
        try:
            rc = await self.peapod.client.get(ReplicationController, name, namespace)
        except ClientError as exc:
            self.notify(f"rc {name}: {exc}", severity="error")
            return
        labels = (rc.spec.selector if rc.spec else None) or {}
        if not labels:
            self.notify(f"rc {name} has no selector", severity="warning")
            return
        selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        self.push_scope(Scope(view_of("pods"), namespace, selector, reason=f"rc {name}"))

    def action_describe(self) -> None:
        if (selected := self._selected()) is not None:
            self.app.push_screen(DescribeScreen(self.current_view.info, selected[1], selected[0]))

    def action_yaml(self) -> None:
        if (selected := self._selected()) is not None:
            self.app.push_screen(YamlScreen(self.current_view.info, selected[1], selected[0]))

    def action_logs(self) -> None:
        if self._only_on("pods", "logs") and (selected := self._selected()) is not None:
            self.app.push_screen(LogScreen(selected[1], selected[0] or "default"))

    def action_shell(self) -> None:
        if self._refused("shell") or not self._only_on("pods", "shell"):
            return
        if (selected := self._selected()) is not None:
            self._shell(selected[0] or "default", selected[1])

    @work(exclusive=True, group="shell")
    async def _shell(self, namespace: str, name: str) -> None:
        message = await open_shell(self.app, self.peapod.client, name, namespace)
        self.notify(message, severity="information" if message.endswith(" exited 0") else "warning")

    def action_scale(self) -> None:
        if self._refused("scale") or not self._only_on("replicationcontrollers", "scale"):
            return
        if (selected := self._selected()) is not None:
            self._scale(selected[0] or "default", selected[1])

    @work(group="action")
    async def _scale(self, namespace: str, name: str) -> None:
        client = self.peapod.client
        try:
            rc = await client.get(ReplicationController, name, namespace)
            current = rc.spec.replicas if rc.spec and rc.spec.replicas is not None else 1
            replicas = await self.app.push_screen_wait(ScaleScreen("replicationcontroller", name, current))
            if replicas is None or replicas == current:
                return
            await client.scale(ReplicationController, name, replicas, namespace)
        except ClientError as exc:
            self.notify(f"scale {name}: {exc}", severity="error")
            return
        self.notify(f"replicationcontroller/{name} scaled to {replicas}")

    def action_delete(self) -> None:
        if self._refused("delete") or (selected := self._selected()) is None:
            return
        self._delete(selected[0], selected[1])

    @work(group="action")
    async def _delete(self, namespace: str | None, name: str) -> None:
        info = self.current_view.info
        where = f"{namespace}/{name}" if namespace else name
        question = f"Delete {info.singular} {where}?"
        if not await self.app.push_screen_wait(
            ConfirmScreen(question, "dependents: deleted in the background")
        ):
            return
        try:
            await self.peapod.client.delete(info.type, name, namespace)
        except ClientError as exc:
            self.notify(f"delete {info.singular} {where}: {exc}", severity="error")
            return
        self.notify(f"{info.singular} {where} deleted")

    @work(group="action")
    async def action_pick_namespace(self) -> None:
        choice = await self.app.push_screen_wait(NamespaceScreen(self.peapod.namespace))
        if choice is not None:
            self.switch_namespace(None if choice == ALL_NAMESPACES else choice)
