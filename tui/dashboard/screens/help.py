"""``?``: the keys, in a modal that any key closes."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.events import Key
from textual.screen import ModalScreen
from textual.widgets import Static

KEYS = (
    (":", "command bar: pods (po), rc, svc, ep, no, ns, ev; ns NAME switches namespace"),
    ("→", "in the command bar: accept the completion"),
    ("/", "filter the rows by text"),
    ("esc", "close the bar, clear the filter"),
    ("0", "all namespaces"),
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
            yield Static("\n[dim]any key closes this[/dim]")

    def on_key(self, event: Key) -> None:
        event.stop()
        self.dismiss()
