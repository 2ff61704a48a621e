"""The resource view: a virtual table (Textual's Line API) whose rows are keyed ``namespace/name``.

Why not ``DataTable``: any ``update_cell`` there invalidates every render cache and rebuilds O(n) row
lists, so at 10,000 rows a change far out of view re-renders the whole table. Here the widget keeps

* ``rows_by_key``: every row with every column the server printed (hidden ``-o wide`` columns too);
* ``_keys``: the keys of the rows shown (matching the text filter), SORTED, so an upsert or delete is a
  ``bisect`` (k9s lists by name too) and new rows land in order;
* ``_widths``: each column's width, the max of its header and cells, grown as rows arrive and measured
  afresh only on reset, filter or rebuild;
* the cursor as a KEY, so rows coming and going above it leave it on the same row.

Only the lines on screen are drawn (``render_line``): line 0 is the bold header, fixed; line ``y`` is
row ``scroll_y + y - 1``. An upsert of a row out of view repaints nothing; a visible row's change
repaints its line; an insert or delete repaints from its line down (the rows below shift), and one
above the view scrolls by a row so that what is on screen stays put.

AGE keeps counting between watch events (the server's text is a snapshot): rows that carry a
creationTimestamp get their AGE from ``clock`` when drawn, and a one-second tick repaints the lines on
screen whose AGE text has moved on. Cells are ``rich.text.Text``, never parsed as markup (a pod may be
called anything a label allows, and a status may hold ``[``).
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.geometry import Region, Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from controlplane.tables import human_duration

from ..views import status_class

_STYLES = {"ok": "green", "waiting": "yellow", "bad": "bold red"}

#: From this many cells across, the table also shows the columns ``pea get -o wide`` adds.
WIDE_AT = 150

#: Spaces either side of a cell.
_PAD = 1


class ResourceTable(ScrollView, can_focus=True):
    """The rows of one view, sorted by key, drawn a line at a time."""

    DEFAULT_CSS = """
    ResourceTable {
        background: $surface;
        color: $foreground;
        height: 1fr;
        & > .resource-table--header {
            text-style: bold;
            background: $panel;
            color: $foreground;
        }
        & > .resource-table--even-row {
            background: $surface-lighten-1 50%;
        }
        & > .resource-table--cursor {
            background: $block-cursor-blurred-background;
            color: $block-cursor-blurred-foreground;
            text-style: $block-cursor-blurred-text-style;
        }
        &:focus > .resource-table--cursor {
            background: $block-cursor-background;
            color: $block-cursor-foreground;
            text-style: $block-cursor-text-style;
        }
    }
    """

    COMPONENT_CLASSES = {"resource-table--header", "resource-table--even-row", "resource-table--cursor"}

    BINDINGS = [
        Binding("up", "cursor_up", "Up", show=False),
        Binding("down", "cursor_down", "Down", show=False),
        Binding("pageup", "page_up", "Page up", show=False),
        Binding("pagedown", "page_down", "Page down", show=False),
        Binding("home", "first", "First", show=False),
        Binding("end", "last", "Last", show=False),
        Binding("enter", "choose", "Choose", show=False),
    ]

    @dataclass
    class RowSelected(Message):
        """``enter`` (or a click on the selected row) chose the row ``key``."""

        key: str

    wide: reactive[bool] = reactive(False)

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        super().__init__(id="resources")
        self.clock = clock
        self.rows_by_key: dict[str, list[str]] = {}
        #: creationTimestamp (epoch seconds) of the rows that have one: their AGE is computed here.
        self.created: dict[str, float] = {}
        self.columns_names: list[str] = []
        self.filter_text = ""
        self._wide_columns: list[bool] = []
        self._shown: list[int] = []  # indices into a row's cells, in display order
        self._status_col: int | None = None
        self._age_col: int | None = None
        self._keys: list[str] = []  # the shown rows' keys, sorted
        self._widths: list[int] = []  # per column of columns_names (shown or not)
        self._cursor: str | None = None  # None iff no row is shown
        #: The AGE text each row was last drawn with, so the tick repaints only lines that changed.
        self._drawn_age: dict[str, str] = {}

    def on_mount(self) -> None:
        self.set_interval(1.0, self._tick_ages)

    # --- what the stream says ------------------------------------------------------------------

    def reset(
        self,
        columns: list[str],
        rows: list[tuple[str, list[str]]],
        wide: list[bool] | None = None,
        created: dict[str, float] | None = None,
    ) -> None:
        self.columns_names = columns
        self._wide_columns = list(wide) if wide else [False] * len(columns)
        self._status_col = columns.index("STATUS") if "STATUS" in columns else None
        self._age_col = columns.index("AGE") if "AGE" in columns else None
        self.rows_by_key = dict(rows)
        self.created = dict(created or {})
        self._drawn_age.clear()
        self._rebuild()

    def upsert(self, key: str, cells: list[str], created: float | None = None) -> None:
        """O(log n); repaints only when the row is on screen (or shifts rows that are)."""
        self.rows_by_key[key] = cells
        if created is not None:
            self.created[key] = created
        index = bisect_left(self._keys, key)
        shown = index < len(self._keys) and self._keys[index] == key
        if not self._matches(cells):
            if shown:
                self._remove_at(index)
            return
        if self._grow(key, cells):
            self._resize_virtual()
            self.refresh()
        if shown:
            self._refresh_row(index)
            return
        self._keys.insert(index, key)
        if self._cursor is None:
            self._cursor = key
        self._shifted(index, +1)

    def delete(self, key: str) -> None:
        self.rows_by_key.pop(key, None)
        self.created.pop(key, None)
        self._drawn_age.pop(key, None)
        index = bisect_left(self._keys, key)
        if index < len(self._keys) and self._keys[index] == key:
            self._remove_at(index)

    # --- filter and width ----------------------------------------------------------------------

    def set_filter(self, text: str) -> None:
        if text == self.filter_text:
            return
        self.filter_text = text
        self._rebuild()

    def on_resize(self, event: events.Resize) -> None:
        self.wide = event.size.width >= WIDE_AT

    def watch_wide(self) -> None:
        if self.columns_names:
            self._rebuild()

    # --- queries (tests, keys) -----------------------------------------------------------------

    @property
    def shown_keys(self) -> list[str]:
        return list(self._keys)

    @property
    def row_count(self) -> int:
        return len(self._keys)

    @property
    def selected_key(self) -> str | None:
        return self._cursor

    @property
    def cursor_row(self) -> int:
        return 0 if self._cursor is None else bisect_left(self._keys, self._cursor)

    @property
    def column_labels(self) -> list[str]:
        return [self.columns_names[i] for i in self._shown]

    def styled(self, key: str) -> list[Text]:
        """The shown cells of a row as drawn (AGE from the clock, STATUS coloured)."""
        cells = self.rows_by_key.get(key, [])
        out: list[Text] = []
        for index in self._shown:
            text = cells[index] if index < len(cells) else ""
            if index == self._age_col:
                text = self._age(key) or text
            kind = status_class(text) if index == self._status_col else None
            out.append(Text(text, style=_STYLES[kind] if kind is not None else "", end=""))
        return out

    def cells(self, key: str) -> list[str]:
        """The shown cells of a row, as text."""
        return [cell.plain for cell in self.styled(key)]

    def cell(self, key: str, column: str) -> str | None:
        """One cell of a row by column name, shown or not (e.g. ``DESIRED`` of an RC)."""
        cells = self.rows_by_key.get(key)
        if cells is None or column not in self.columns_names:
            return None
        index = self.columns_names.index(column)
        return cells[index] if index < len(cells) else None

    def select(self, key: str) -> None:
        """Move the cursor to a shown row (and into view)."""
        index = bisect_left(self._keys, key)
        if index < len(self._keys) and self._keys[index] == key:
            self._move_to(index)

    # --- keys and mouse ------------------------------------------------------------------------

    def action_cursor_up(self) -> None:
        self._move_to(self.cursor_row - 1)

    def action_cursor_down(self) -> None:
        self._move_to(self.cursor_row + 1)

    def action_page_up(self) -> None:
        self._move_to(self.cursor_row - max(1, self._body_height() - 1))

    def action_page_down(self) -> None:
        self._move_to(self.cursor_row + max(1, self._body_height() - 1))

    def action_first(self) -> None:
        self._move_to(0)

    def action_last(self) -> None:
        self._move_to(len(self._keys) - 1)

    def action_choose(self) -> None:
        if self._cursor is not None:
            self.post_message(self.RowSelected(self._cursor))

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None or offset.y < 1:
            return
        index = int(self.scroll_y) + offset.y - 1
        if not 0 <= index < len(self._keys):
            return
        event.stop()
        if self._keys[index] == self._cursor and event.chain > 1:
            self.action_choose()
        self._move_to(index)

    # --- drawing -------------------------------------------------------------------------------

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        width = self.size.width
        base = self.rich_style
        if y == 0:
            style = base + self.get_component_rich_style("resource-table--header")
            texts = [Text(self.columns_names[i], end="") for i in self._shown]
            return self._strip(texts, style).crop_extend(scroll_x, scroll_x + width, style)
        index = scroll_y + y - 1
        if not 0 <= index < len(self._keys):
            return Strip.blank(width, base)
        key = self._keys[index]
        style = base
        if index % 2 == 1:
            style = style + self.get_component_rich_style("resource-table--even-row")
        if key == self._cursor:
            style = style + self.get_component_rich_style("resource-table--cursor")
        age = self._age(key)
        if age is not None:
            self._drawn_age[key] = age
        return self._strip(self.styled(key), style).crop_extend(scroll_x, scroll_x + width, style)

    def _strip(self, texts: list[Text], style: Style) -> Strip:
        """One line: each cell padded to its column's width, on the row's style."""
        segments: list[Segment] = []
        total = 0
        for text, index in zip(texts, self._shown, strict=False):
            width = self._widths[index]
            plain = text.plain
            length = cell_len(plain)
            cell_style = style + Style.parse(str(text.style)) if text.style else style
            pad = " " * _PAD
            segments.append(Segment(pad, style))
            segments.append(Segment(plain, cell_style))
            segments.append(Segment(" " * (width - length) + pad, style))
            total += width + 2 * _PAD
        return Strip(segments, total)

    # --- helpers -------------------------------------------------------------------------------

    def _rebuild(self) -> None:
        """Filter, sort and measure every row afresh (reset, filter, width change)."""
        self._shown = [i for i, wide in enumerate(self._wide_columns) if self.wide or not wide]
        self._keys = sorted(key for key, cells in self.rows_by_key.items() if self._matches(cells))
        self._widths = [cell_len(name) for name in self.columns_names]
        for key in self._keys:
            self._grow(key, self.rows_by_key[key])
        if self._cursor is not None and self._cursor not in self.rows_by_key:
            self._cursor = None
        if self._cursor is None or not self._is_shown(self._cursor):
            self._cursor = self._keys[0] if self._keys else None
            self.scroll_to(y=0, animate=False, force=True)
        self._resize_virtual()
        self.refresh()
        self._scroll_cursor_visible()

    def _grow(self, key: str, cells: list[str]) -> bool:
        """Widen columns to fit this row's cells; whether any grew."""
        widths = self._widths
        grew = False
        for index in self._shown:
            if index == self._age_col and key in self.created:
                length = len(self._age(key) or "")
            else:
                length = cell_len(cells[index]) if index < len(cells) else 0
            if length > widths[index]:
                widths[index] = length
                grew = True
        return grew

    def _resize_virtual(self) -> None:
        """Set the virtual size; when only the row count changes and the vertical scrollbar stays,
        update the scrollbar alone (assigning ``virtual_size`` repaints the whole widget)."""
        size = Size(sum(self._widths[i] + 2 * _PAD for i in self._shown), len(self._keys) + 1)
        old = self.virtual_size
        if size == old:
            return
        height = self.size.height
        if size.width == old.width and old.height > height and size.height > height and self.is_mounted:
            self.set_reactive(ResourceTable.virtual_size, size)
            self._scroll_update(size)
        else:
            self.virtual_size = size

    def _is_shown(self, key: str) -> bool:
        index = bisect_left(self._keys, key)
        return index < len(self._keys) and self._keys[index] == key

    def _remove_at(self, index: int) -> None:
        key = self._keys.pop(index)
        if key == self._cursor:  # the cursor goes to the row that took its place
            self._cursor = self._keys[min(index, len(self._keys) - 1)] if self._keys else None
        self._shifted(index, -1)

    def _shifted(self, index: int, by: int) -> None:
        """Rows from ``index`` down moved by ``by``: repaint what moved on screen, keep the view put."""
        top = int(self.scroll_y)  # before resizing, which may clamp it
        self._resize_virtual()
        if index < top:  # above the view: scroll along, so the rows on screen stay where they were
            self.scroll_to(y=max(0, top + by), animate=False, force=True)
            return
        line = index - top + 1
        height = self._body_height() + 1
        if line < height:
            self.refresh(Region(0, line, self.size.width, height - line))

    def _refresh_row(self, index: int) -> None:
        line = index - int(self.scroll_y) + 1
        if 1 <= line <= self._body_height():
            self.refresh(Region(0, line, self.size.width, 1))

    def _body_height(self) -> int:
        """How many rows fit under the header."""
        return max(0, self.scrollable_content_region.height - 1)

    def _move_to(self, index: int) -> None:
        if not self._keys:
            return
        index = max(0, min(index, len(self._keys) - 1))
        old = self.cursor_row
        self._cursor = self._keys[index]
        self._refresh_row(old)
        self._refresh_row(index)
        self._scroll_cursor_visible()

    def _scroll_cursor_visible(self) -> None:
        if self._cursor is None:
            return
        index = self.cursor_row
        top = int(self.scroll_y)
        height = self._body_height()
        if index < top:
            self.scroll_to(y=index, animate=False, force=True)
        elif height and index >= top + height:
            self.scroll_to(y=index - height + 1, animate=False, force=True)

    def _matches(self, cells: list[str]) -> bool:
        needle = self.filter_text.lower()
        return not needle or any(needle in cell.lower() for cell in cells)

    def _age(self, key: str) -> str | None:
        created = self.created.get(key)
        return None if created is None else human_duration(self.clock() - created)

    def _tick_ages(self) -> None:
        """Repaint the lines on screen whose AGE text has moved on (widening AGE if it must)."""
        if self._age_col is None or self._age_col not in self._shown or not self._keys:
            return
        top = int(self.scroll_y)
        for index in range(top, min(len(self._keys), top + self._body_height())):
            key = self._keys[index]
            age = self._age(key)
            if age is None or age == self._drawn_age.get(key):
                continue
            if len(age) > self._widths[self._age_col]:
                self._widths[self._age_col] = len(age)
                self._resize_virtual()
                self.refresh()
                return
            self._refresh_row(index)
