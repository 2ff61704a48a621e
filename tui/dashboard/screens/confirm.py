"""``ConfirmScreen``: a yes/no question before a destructive action (``ctrl+d`` delete).

Safe by default: Cancel has the focus when the dialog opens, so a stray Enter answers "no"; only ``y``
or the confirm button says yes. ``n`` and ``escape`` say no. The answer is the screen's result
(``dismiss(True | False)``), for ``push_screen(screen, callback)`` or ``push_screen_wait``.
"""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

__all__ = ["ConfirmScreen"]


class ConfirmScreen(ModalScreen[bool]):
    DEFAULT_CSS = """
    ConfirmScreen {
        align: center middle;
    }
    ConfirmScreen > #confirm-dialog {
        width: auto;
        min-width: 40;
        max-width: 80%;
        height: auto;
        border: thick $error 80%;
        background: $surface;
        padding: 1 2;
    }
    ConfirmScreen #confirm-question {
        text-style: bold;
        width: auto;
    }
    ConfirmScreen #confirm-detail {
        color: $text-muted;
        width: auto;
    }
    ConfirmScreen #confirm-buttons {
        width: 100%;
        height: auto;
        align-horizontal: right;
        margin-top: 1;
    }
    ConfirmScreen #confirm-buttons Button {
        margin-left: 2;
    }
    """

    BINDINGS = [
        Binding("y", "answer(True)", "Yes", show=False),
        Binding("n", "answer(False)", "No", show=False),
        Binding("escape", "answer(False)", "Cancel", show=False),
    ]

    AUTO_FOCUS = "#cancel"

    def __init__(self, question: str, detail: str = "", *, confirm_label: str | None = None) -> None:
        """``confirm_label`` defaults to "Delete" for a question about deleting, "OK" otherwise."""
        super().__init__()
        self.question = question
        self.detail = detail
        if confirm_label is None:
            confirm_label = "Delete" if question.lower().startswith("delete") else "OK"
        self.confirm_label = confirm_label

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-dialog"):
            yield Static(self.question, id="confirm-question", markup=False)
            if self.detail:
                yield Static(self.detail, id="confirm-detail", markup=False)
            with Horizontal(id="confirm-buttons"):
                yield Button("Cancel", id="cancel", variant="default")
                yield Button(f"{self.confirm_label} (y)", id="confirm", variant="error")

    @on(Button.Pressed, "#cancel")
    def _cancel(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(False)

    @on(Button.Pressed, "#confirm")
    def _confirm(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(True)

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)
