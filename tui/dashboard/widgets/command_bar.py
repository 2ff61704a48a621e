"""The bar at the bottom: ``:`` commands (with completion) and ``/`` filters."""

from __future__ import annotations

from typing import Literal

from textual.suggester import SuggestFromList
from textual.widgets import Input

from ..views import COMMANDS

Mode = Literal["command", "filter"]


class CommandBar(Input):
    DEFAULT_CSS = """
    CommandBar {
        dock: bottom;
        display: none;
    }
    CommandBar.-open {
        display: block;
    }
    """

    def __init__(self) -> None:
        super().__init__(id="command-bar")
        self.mode: Mode = "command"
        self._commands = SuggestFromList(COMMANDS, case_sensitive=False)

    def open(self, mode: Mode) -> None:
        self.mode = mode
        self.suggester = self._commands if mode == "command" else None
        self.placeholder = "pods, rc, svc, ep, no, ns NAME, ev" if mode == "command" else "filter rows"
        self.value = ""
        self.add_class("-open")
        # Focus now, not on the next idle (Widget.focus): keys typed right after ":" or "/" must land
        # here, or a fast "/s…" would reach the table and open a shell.
        self.screen.set_focus(self)

    def close(self) -> None:
        self.remove_class("-open")
        self.value = ""

    @property
    def is_open(self) -> bool:
        return self.has_class("-open")
