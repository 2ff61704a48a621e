"""The detail screens' shared part: one object shown as read-only text that a watch keeps live.

A ``DetailScreen`` shows one object (``info``, ``name``, ``namespace``) under a title line and a notice
line, in a read-only TextArea (scrollable, with a cursor to select and copy from). A subclass says how
to fetch the payload from the server (``fetch``: I/O) and how to present it as text (``present``: no
I/O), so a change of presentation (the YAML screen's secret reveal) needs no new request.

Concurrency model, all on Textual's asyncio loop:

- one ``Follower`` worker per watched stream (``followed()``: the object itself, selected by
  ``metadata.name``; the describe screen adds its events). A follower only marks the screen dirty; it
  never fetches the text and never touches a widget. A broken stream resumes from the last
  resourceVersion with exponential back-off; 410 Gone restarts from the current state.
- one render worker waits for the dirty mark, lets a burst of changes settle (``SETTLE`` seconds),
  fetches once and posts ``DetailLoaded``, ``DetailMissing`` (404: the object was deleted) or
  ``DetailTrouble``; the handlers update the widgets, keeping the scroll position and the cursor.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import Footer, Static, TextArea
from textual.widgets.text_area import LanguageDoesNotExist

from controlplane.api.registry import ResourceInfo
from controlplane.client import ApiError, Client, Gone, NotFound, TransportError

from ..context import OnDashboard
from ..streams import trouble_line

log = logging.getLogger(__name__)

__all__ = [
    "DetailLoaded",
    "DetailMissing",
    "DetailScreen",
    "DetailTrouble",
    "Followed",
    "Follower",
]


@dataclass
class DetailLoaded(Message):
    """A fresh payload for the screen to present (the describe text, the raw object...)."""

    payload: Any


@dataclass
class DetailMissing(Message):
    """The object is not there (deleted, or never was)."""


@dataclass
class DetailTrouble(Message):
    """The server cannot be reached or refused; ``error`` is one line, "" when that is over."""

    error: str


@dataclass(frozen=True)
class Followed:
    """One watch that can change what the screen shows: a type, a namespace (None: all) and a
    field selector."""

    cls: type[Any]
    namespace: str | None
    field_selector: str


class Follower:
    """Watch one stream and call ``changed`` for every event that is not a bookmark (and after every
    gap in the stream, since anything may have happened meanwhile)."""

    def __init__(
        self,
        client: Client,
        followed: Followed,
        changed: Callable[[], None],
        post: Callable[[Message], object],
        *,
        min_delay: float = 0.2,
        max_delay: float = 5.0,
    ) -> None:
        self.client = client
        self.followed = followed
        self.changed = changed
        self.post = post
        self.min_delay = min_delay
        self.max_delay = max_delay
        self.resource_version = ""

    async def run(self) -> None:
        delay = self.min_delay
        troubled = False
        f = self.followed
        while True:
            try:
                async for event in self.client.watch(
                    f.cls,
                    f.namespace,
                    resource_version=self.resource_version or None,
                    field_selector=f.field_selector,
                ):
                    if troubled:
                        troubled = False
                        self.post(DetailTrouble(""))
                    delay = self.min_delay
                    self.resource_version = event.resource_version or self.resource_version
                    if event.type != "BOOKMARK":
                        self.changed()
            except Gone:
                self.resource_version = ""  # start again from the current state (synthetic ADDEDs)
                self.changed()
            except (TransportError, ApiError) as exc:
                troubled = True
                self.post(DetailTrouble(trouble_line(exc)))
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_delay)
                self.changed()


class DetailScreen(OnDashboard, Screen[None]):
    """One object as live read-only text; subclasses provide ``fetch``, ``present`` and ``VERB``."""

    DEFAULT_CSS = """
    DetailScreen #detail-title {
        height: 1;
        padding: 0 1;
        background: $panel;
        text-style: bold;
    }
    DetailScreen #detail-notice {
        display: none;
        height: 1;
        padding: 0 1;
        background: $error;
        color: $text;
        text-style: bold;
    }
    DetailScreen.-notice #detail-notice {
        display: block;
    }
    DetailScreen #detail-text {
        height: 1fr;
        border: none;
        padding: 0 1;
    }
    """

    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("r", "refresh", "Refresh"),
    ]

    #: What the screen shows, for the title line ("Describe", "YAML").
    VERB = ""
    #: The TextArea's tree-sitter language, if highlighting is wanted (and available).
    LANGUAGE: str | None = None
    #: How long a burst of watch events may last before the screen asks the server once.
    SETTLE = 0.1

    #: Whether the object was found missing on the last fetch.
    missing: reactive[bool] = reactive(False)
    #: The last stream or fetch error, "" when there is none.
    trouble: reactive[str] = reactive("")

    def __init__(self, info: ResourceInfo, name: str, namespace: str | None) -> None:
        super().__init__()
        self.info = info
        self.object_name = name
        self.namespace = namespace if info.namespaced else None
        self.payload: Any = None
        self._dirty = asyncio.Event()

    @property
    def object_ref(self) -> str:
        """``Kind namespace/name`` (``Kind name`` when cluster-scoped)."""
        where = f"{self.namespace}/{self.object_name}" if self.namespace else self.object_name
        return f"{self.info.kind} {where}"

    # --- what subclasses provide ------------------------------------------------------------------

    async def fetch(self, client: Client) -> Any:
        """The payload from the server; NotFound when the object is gone."""
        raise NotImplementedError

    def present(self, payload: Any) -> str:
        """The payload as the text shown."""
        return str(payload)

    def followed(self) -> list[Followed]:
        """The watches whose events change the text: by default the object itself."""
        return [Followed(self.info.type, self.namespace, f"metadata.name={self.object_name}")]

    def title_text(self) -> str:
        return f"{self.VERB} · {self.object_ref}"

    # --- layout and workers -----------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Static(self.title_text(), id="detail-title", markup=False)
        yield Static("", id="detail-notice", markup=False)
        yield self._text_area()
        yield Footer()

    def _text_area(self) -> TextArea:
        """A read-only TextArea; with YAML highlighting when tree-sitter has the language, else plain
        (Textual falls back by itself when tree-sitter is absent, and raises when only the grammar is)."""
        options: dict[str, Any] = {
            "read_only": True,
            "soft_wrap": False,
            "show_line_numbers": False,
            "id": "detail-text",
        }
        try:
            area = TextArea("", language=self.LANGUAGE, **options)
        except LanguageDoesNotExist:
            area = TextArea("", **options)
        area.cursor_blink = False
        return area

    def on_mount(self) -> None:
        client = self.peapod.client
        for followed in self.followed():
            self._follow(Follower(client, followed, self.mark_dirty, self.post_message))
        self._render_loop()
        self.mark_dirty()
        self.query_one(TextArea).focus()

    def mark_dirty(self) -> None:
        """Ask for a fresh fetch; several marks before the render worker wakes make one fetch."""
        self._dirty.set()

    @work(group="detail-follow")
    async def _follow(self, follower: Follower) -> None:
        await follower.run()

    @work(group="detail-render", exclusive=True)
    async def _render_loop(self) -> None:
        client = self.peapod.client
        while True:
            await self._dirty.wait()
            await asyncio.sleep(self.SETTLE)
            self._dirty.clear()
            try:
                payload = await self.fetch(client)
            except NotFound:
                self.post_message(DetailMissing())
            except Exception as exc:  # unreachable, refused, or a describer's bug: say so, keep going
                if not isinstance(exc, TransportError | ApiError):
                    log.exception("rendering %s failed", self.object_ref)
                self.post_message(DetailTrouble(trouble_line(exc)))
            else:
                self.post_message(DetailLoaded(payload))

    # --- messages from the workers ----------------------------------------------------------------

    def on_detail_loaded(self, message: DetailLoaded) -> None:
        self.payload = message.payload
        self.missing = False
        self.trouble = ""
        self.show_text(self.present(message.payload))

    def on_detail_missing(self, message: DetailMissing) -> None:
        self.missing = True

    def on_detail_trouble(self, message: DetailTrouble) -> None:
        self.trouble = message.error

    def watch_missing(self) -> None:
        self._update_notice()

    def watch_trouble(self) -> None:
        self._update_notice()

    def _update_notice(self) -> None:
        if self.missing:
            text = f"{self.object_ref} was deleted (or does not exist); showing the last version seen"
        elif self.trouble:
            text = f"{self.trouble} — retrying…"
        else:
            text = ""
        if self.is_mounted:
            self.query_one("#detail-notice", Static).update(text)
        self.set_class(bool(text), "-notice")

    def show_text(self, text: str) -> None:
        """Replace the text, keeping the cursor and the scroll position where they were."""
        area = self.query_one(TextArea)
        if text == area.text:
            return
        scroll_x, scroll_y = area.scroll_offset
        row, column = area.cursor_location
        area.load_text(text)
        last = max(area.document.line_count - 1, 0)
        row = min(row, last)
        area.move_cursor((row, min(column, len(area.document.get_line(row)))))
        area.scroll_to(scroll_x, scroll_y, animate=False, immediate=True)

    def refresh_title(self) -> None:
        self.query_one("#detail-title", Static).update(self.title_text())

    # --- keys ---------------------------------------------------------------------------------------

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_refresh(self) -> None:
        self.mark_dirty()
