"""``?``: the keys, in a modal that any key closes."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.events import Key
from textual.screen import ModalScreen
from textual.widgets import Static

KEYS = (
    (":", "command bar: pods (po), rc, svc, ep, no, ns, ev, cm, secret; ns NAME: namespace"),
    ("→", "in the command bar: accept the completion"),
    ("/", "filter the rows by text; /-l app=web by label selector"),
    ("esc", "close the bar, clear the filter, go back up"),
    ("enter", "open: node → its pods, rc → its pods, service → its endpoints, ns → its pods"),
    ("d  y", "describe (with events), YAML"),
    ("l", "logs of a pod, following (p pause, t timestamps, c container)"),
    ("s", "shell into a pod's container"),
    ("shift+s", "scale a replication controller"),
    ("ctrl+d", "delete, after confirmation"),
    ("n  0", "pick a namespace, all namespaces"),
    ("↑ ↓ pgup pgdn", "move the cursor"),
    ("?", "this help"),
    ("q", "quit"),
)


class HelpScreen(ModalScreen[None]):
    def compose(self) -> ComposeResult:
        lines = "\n".join(f"[b]{key:>14}[/b]  {what}" for key, what in KEYS)
        with Vertical(id="help"):
            yield Static("[b]peapod dashboard — keys[/b]\n", id="help-title")
            yield Static(lines, id="help-keys")
            if getattr(self.app, "readonly", False):
                yield Static("\n[b yellow]read-only:[/] s, shift+s and ctrl+d are disabled")
            yield Static("\n[dim]any key closes this[/dim]")

    def on_key(self, event: Key) -> None:
        event.stop()
        self.dismiss()
