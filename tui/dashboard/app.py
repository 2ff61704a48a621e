"""PeapodApp: the dashboard's application object. It holds what every screen shares (the injected
client, the namespace, read-only) and the global keys; the screens do the rest."""

from __future__ import annotations

import time
from collections.abc import Callable

from textual.app import App
from textual.binding import Binding

from controlplane.client import Client

from .screens import HelpScreen, ResourcesScreen


class PeapodApp(App[None]):
    CSS_PATH = "dashboard.tcss"
    TITLE = "peapod"
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("question_mark", "help", "Help", key_display="?"),
    ]

    def __init__(
        self,
        client: Client,
        namespace: str | None = "default",
        readonly: bool = False,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self.client = client
        #: The namespace the views list; None is all namespaces.
        self.namespace = namespace
        #: Refuses the mutating keys (shell, scale, delete).
        self.readonly = readonly
        #: What ages are counted against (snapshot tests pin it).
        self.clock = clock

    def on_mount(self) -> None:
        self.push_screen(ResourcesScreen())

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())
