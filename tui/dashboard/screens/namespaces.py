"""``NamespaceScreen``: pick the namespace the views show (``n``), from the cluster's live list.

Layout: a filter Input above an OptionList whose first entry is "all namespaces". Typing narrows the
list (case-insensitive substring); up/down/pgup/pgdn move the highlight without leaving the Input; Enter
picks the highlighted entry. The result is the namespace's name, ``ALL_NAMESPACES`` ("") for all of
them, or None on ``escape``.

Concurrency model: one worker (``_watch_namespaces``, owned by this screen, so dismissing the screen
cancels it) runs an ``Informer`` over Namespaces. It waits for the first full listing, then posts a
``NamespacesListed`` message with every name, and again after each watch event; it never touches a
widget. The message handler rebuilds the options, keeping the highlighted entry where it can; the
very first listing highlights the namespace the app is showing now.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Input, OptionList, Static
from textual.widgets.option_list import Option

from controlplane.api.core import Namespace
from controlplane.client import Informer

from ..context import OnDashboard

__all__ = ["ALL_NAMESPACES", "NamespaceScreen", "NamespacesListed"]

#: The result that means "every namespace" (the app's ``namespace = None``).
ALL_NAMESPACES = ""

ALL_LABEL = "all namespaces"

#: Option ids: a namespace's is this prefix and its name, so "all" can never clash with a namespace.
_ALL_ID = "all"
_NS_PREFIX = "ns:"


@dataclass
class NamespacesListed(Message):
    """Every namespace the informer knows, sorted; ``terminating`` are those being deleted."""

    names: list[str]
    terminating: set[str]


def _option_id(value: str) -> str:
    return _ALL_ID if value == ALL_NAMESPACES else _NS_PREFIX + value


def _value_of(option_id: str | None) -> str | None:
    if option_id is None:
        return None
    return ALL_NAMESPACES if option_id == _ALL_ID else option_id.removeprefix(_NS_PREFIX)


class NamespaceScreen(OnDashboard, ModalScreen[str | None]):
    DEFAULT_CSS = """
    NamespaceScreen {
        align: center middle;
    }
    NamespaceScreen > #ns-dialog {
        width: 50;
        height: auto;
        max-height: 80%;
        border: thick $accent 80%;
        background: $surface;
        padding: 0 1;
    }
    NamespaceScreen #ns-title {
        text-style: bold;
        padding: 0 1;
    }
    NamespaceScreen #ns-filter {
        margin-bottom: 1;
    }
    NamespaceScreen #ns-list {
        height: auto;
        max-height: 20;
    }
    NamespaceScreen #ns-hint {
        color: $text-muted;
        padding: 0 1;
    }
    """

    BINDINGS = [
        Binding("escape", "cancel", "Cancel", show=False),
        Binding("down", "move('cursor_down')", show=False),
        Binding("up", "move('cursor_up')", show=False),
        Binding("pagedown", "move('page_down')", show=False),
        Binding("pageup", "move('page_up')", show=False),
    ]

    AUTO_FOCUS = "#ns-filter"

    def __init__(self, current: str | None) -> None:
        """``current`` is the app's namespace now; None means all namespaces."""
        super().__init__()
        self.current = ALL_NAMESPACES if current is None else current
        self.names: list[str] = []
        self.terminating: set[str] = set()
        self._listed = False

    def compose(self) -> ComposeResult:
        with Vertical(id="ns-dialog"):
            yield Static("Namespace", id="ns-title")
            yield Input(placeholder="type to filter", id="ns-filter")
            yield OptionList(id="ns-list")
            yield Static("enter: pick   esc: cancel", id="ns-hint")

    def on_mount(self) -> None:
        self._rebuild(prefer=self.current)
        self._watch_namespaces()

    # --- the worker -------------------------------------------------------------------------------

    @work(exclusive=True, group="namespaces")
    async def _watch_namespaces(self) -> None:
        informer = Informer(self.peapod.client, Namespace)

        def post(*_: Any) -> None:
            names, terminating = [], set()
            for ns in informer.items():
                name = ns.metadata.name or ""
                names.append(name)
                if ns.metadata.deletion_timestamp or (ns.status and ns.status.phase == "Terminating"):
                    terminating.add(name)
            self.post_message(NamespacesListed(sorted(names), terminating))

        task = informer.start()
        try:
            # Only a full listing is posted first: partial ones would lose the initial highlight.
            await informer.synced.wait()
            post()
            informer.on_add(post)
            informer.on_update(post)
            informer.on_delete(post)
            await task
        finally:
            await informer.stop()

    def on_namespaces_listed(self, message: NamespacesListed) -> None:
        self.names = message.names
        self.terminating = message.terminating
        prefer = self.current if not self._listed else self.highlighted
        self._listed = True
        self._rebuild(prefer=prefer)

    # --- the list ---------------------------------------------------------------------------------

    @property
    def filter_text(self) -> str:
        return self.query_one("#ns-filter", Input).value.strip().lower()

    @property
    def highlighted(self) -> str | None:
        """The highlighted entry's value (a name or ``ALL_NAMESPACES``), None when nothing matches."""
        option = self.query_one("#ns-list", OptionList).highlighted_option
        return _value_of(option.id) if option is not None else None

    @property
    def shown(self) -> list[str]:
        """The values of the entries shown, in order: what the filter lets through."""
        options = self.query_one("#ns-list", OptionList)
        return [
            value
            for i in range(options.option_count)
            if (value := _value_of(options.get_option_at_index(i).id)) is not None
        ]

    def _visible(self) -> list[str]:
        text = self.filter_text
        values = [ALL_NAMESPACES] if text in ALL_LABEL else []
        return values + [name for name in self.names if text in name.lower()]

    def _prompt(self, value: str) -> Text:
        label = Text(ALL_LABEL, style="italic") if value == ALL_NAMESPACES else Text(value)
        if value in self.terminating:
            label.append("  terminating", style="dim red")
        if value == self.current:
            label.append("  (current)", style="dim")
        return label

    def _rebuild(self, prefer: str | None) -> None:
        """Show what the filter lets through; highlight ``prefer`` if shown, else the first entry."""
        options = self.query_one("#ns-list", OptionList)
        values = self._visible()
        options.set_options(Option(self._prompt(v), id=_option_id(v)) for v in values)
        if values:
            options.highlighted = values.index(prefer) if prefer in values else 0

    @on(Input.Changed, "#ns-filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self._rebuild(prefer=self.highlighted)

    # --- picking ------------------------------------------------------------------------------------

    @on(Input.Submitted, "#ns-filter")
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        value = self.highlighted
        if value is None:
            self.notify(f"no namespace matches {event.value.strip()!r}", severity="error")
            return
        self.dismiss(value)

    @on(OptionList.OptionSelected, "#ns-list")
    def _selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        value = _value_of(event.option.id)
        if value is not None:
            self.dismiss(value)

    def action_move(self, action: str) -> None:
        """Move the highlight from the filter Input (the OptionList runs its own keys when focused)."""
        options = self.query_one("#ns-list", OptionList)
        getattr(options, f"action_{action}")()

    def action_cancel(self) -> None:
        self.dismiss(None)
