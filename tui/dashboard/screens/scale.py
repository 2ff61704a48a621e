"""``ScaleScreen``: ask for a new replica count (``S`` on a scalable row).

The Input starts with the current count, selected, so typing replaces it. It only accepts what could be
an integer as it is typed (``type="integer"``); on Enter ``parse_replicas`` decides: a count from 0 to
the API's int32 limit dismisses with that number, anything else shows a one-line error under the Input
and leaves the dialog open. ``escape`` dismisses with None (no change).
"""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static

__all__ = ["MAX_REPLICAS", "ScaleScreen", "parse_replicas"]

#: ``spec.replicas`` is an int32.
MAX_REPLICAS = 2**31 - 1


def parse_replicas(text: str) -> int | str:
    """The replica count ``text`` asks for, or a one-line reason why it is not one."""
    text = text.strip()
    if not text:
        return "enter a number of replicas"
    try:
        value = int(text)
    except ValueError:
        return f"not a whole number: {text!r}"
    if value < 0:
        return "replicas cannot be negative"
    if value > MAX_REPLICAS:
        return f"at most {MAX_REPLICAS} replicas"
    return value


class ScaleScreen(ModalScreen[int | None]):
    DEFAULT_CSS = """
    ScaleScreen {
        align: center middle;
    }
    ScaleScreen > #scale-dialog {
        width: 50;
        height: auto;
        border: thick $accent 80%;
        background: $surface;
        padding: 1 2;
    }
    ScaleScreen #scale-title {
        text-style: bold;
    }
    ScaleScreen #scale-error {
        color: $error;
        height: auto;
    }
    ScaleScreen #scale-hint {
        color: $text-muted;
    }
    """

    BINDINGS = [Binding("escape", "cancel", "Cancel", show=False)]

    AUTO_FOCUS = "#replicas"

    def __init__(self, kind: str, name: str, current: int) -> None:
        super().__init__()
        self.kind = kind
        self.resource_name = name
        self.current = current

    def compose(self) -> ComposeResult:
        with Vertical(id="scale-dialog"):
            yield Static(f"Scale {self.kind} {self.resource_name}", id="scale-title", markup=False)
            yield Static(f"replicas (now {self.current}):")
            yield Input(str(self.current), type="integer", id="replicas", select_on_focus=True)
            yield Static("", id="scale-error", markup=False)
            yield Static("enter: scale   esc: cancel", id="scale-hint")

    @property
    def error(self) -> str:
        """The error line's text ("" when none is shown): what the tests and the lead can read."""
        return str(self.query_one("#scale-error", Static).content)

    def _show_error(self, text: str) -> None:
        error = self.query_one("#scale-error", Static)
        error.update(text)
        error.display = bool(text)

    def on_mount(self) -> None:
        self._show_error("")

    @on(Input.Changed, "#replicas")
    def _changed(self, event: Input.Changed) -> None:
        self._show_error("")

    @on(Input.Submitted, "#replicas")
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        result = parse_replicas(event.value)
        if isinstance(result, str):
            self._show_error(result)
        else:
            self.dismiss(result)

    def action_cancel(self) -> None:
        self.dismiss(None)
