"""``l``: one container's log, followed live (see ``logstream.py`` for how nothing is dropped or doubled).

One worker (group ``logs``, exclusive: picking another container cancels the old stream) runs a
:class:`~..logstream.LogFollower`; the screen queues the lines it posts in the
:class:`~..widgets.log_view.LogView`, which writes them in batches.

Keys: ``p`` pause/resume (lines keep being received and buffered), ``t`` timestamps, ``c`` container
picker (init containers too), ``escape`` back.
"""

from __future__ import annotations

from rich.markup import escape
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen, Screen
from textual.widgets import Footer, OptionList, Static
from textual.widgets.option_list import Option

from ..context import OnDashboard
from ..logstream import LogFollower, LogLines, LogNotice, LogState, PodContainers
from ..widgets.log_view import LogView

__all__ = ["ContainerPicker", "LogScreen"]


class ContainerPicker(ModalScreen[str | None]):
    """The pod's containers (init containers marked); enter picks, escape cancels."""

    DEFAULT_CSS = """
    ContainerPicker {
        align: center middle;
    }
    ContainerPicker #container-picker {
        width: 50;
        height: auto;
        max-height: 20;
        padding: 1 2;
        border: round $accent;
        background: $surface;
    }
    ContainerPicker OptionList {
        height: auto;
        max-height: 14;
    }
    """

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, containers: list[tuple[str, bool]], current: str | None) -> None:
        super().__init__()
        self.containers = containers
        self.current = current

    def compose(self) -> ComposeResult:
        options = [Option(f"{name} (init)" if init else name, id=name) for name, init in self.containers]
        with Vertical(id="container-picker"):
            yield Static("[b]container[/b]")
            yield OptionList(*options)

    def on_mount(self) -> None:
        options = self.query_one(OptionList)
        names = [name for name, _ in self.containers]
        if self.current in names:
            options.highlighted = names.index(self.current)
        options.focus()

    @on(OptionList.OptionSelected)
    def _picked(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_cancel(self) -> None:
        self.dismiss(None)


class LogScreen(OnDashboard, Screen[None]):
    DEFAULT_CSS = """
    LogScreen #log-status {
        height: 1;
        padding: 0 1;
        background: $panel;
    }
    """

    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("p", "pause", "Pause/resume"),
        Binding("t", "timestamps", "Timestamps"),
        Binding("c", "containers", "Container"),
    ]

    def __init__(self, pod: str, namespace: str, container: str | None = None) -> None:
        super().__init__()
        self.pod = pod
        self.namespace = namespace
        self.container = container
        self.containers: list[tuple[str, bool]] = []
        self.state = "starting"
        self._serial = 0

    @property
    def view(self) -> LogView:
        return self.query_one(LogView)

    def compose(self) -> ComposeResult:
        yield Static("", id="log-status")
        yield LogView(id="log")
        yield Footer()

    def on_mount(self) -> None:
        self.view.focus()
        self.follow(self.container)
        self.set_interval(0.25, self.refresh_status)

    def follow(self, container: str | None) -> None:
        """Start (or restart, for another container) the stream on a clean view."""
        self._serial += 1
        self.container = container
        self.state = "starting"
        self.view.reset()
        follower = LogFollower(
            self.peapod.client, self.pod, self.namespace, container, self.post_message, self._serial
        )
        self._follow(follower)
        self.refresh_status()

    @work(exclusive=True, group="logs")
    async def _follow(self, follower: LogFollower) -> None:
        await follower.run()

    def refresh_status(self) -> None:
        view = self.view
        mode = "paused" if view.paused else "following"
        stamps = "on" if view.timestamps else "off"
        self.query_one("#log-status", Static).update(
            f"[b]{self.namespace}/{self.pod}[/b]/{self.container or '?'}  {mode}  "
            f"received {view.received}  buffered {len(view.pending)}  timestamps {stamps}  "
            + ("" if self.state == "following" else f"[dim]{escape(self.state)}[/dim]"),
        )

    # --- messages from the follower --------------------------------------------------------------

    def on_pod_containers(self, message: PodContainers) -> None:
        if message.stream == self._serial:
            self.containers = message.containers
            self.container = message.container
            self.refresh_status()

    def on_log_lines(self, message: LogLines) -> None:
        if message.stream == self._serial:
            self.view.receive(message.entries)

    def on_log_notice(self, message: LogNotice) -> None:
        if message.stream == self._serial:
            self.view.notice(message.text)
            if message.error:
                self.notify(message.text, severity="error", markup=False)

    def on_log_state(self, message: LogState) -> None:
        if message.stream == self._serial:
            self.state = message.state
            self.refresh_status()

    # --- keys ---------------------------------------------------------------------------------------

    def action_back(self) -> None:
        self.workers.cancel_group(self, "logs")
        self.app.pop_screen()

    def action_pause(self) -> None:
        self.view.set_paused(not self.view.paused)
        self.refresh_status()

    def action_timestamps(self) -> None:
        self.view.set_timestamps(not self.view.timestamps)
        self.refresh_status()

    def action_containers(self) -> None:
        if not self.containers:
            self.notify("the pod's containers are not known yet", severity="warning")
            return

        def picked(container: str | None) -> None:
            if container is not None and container != self.container:
                self.follow(container)

        self.app.push_screen(ContainerPicker(self.containers, self.container), picked)
