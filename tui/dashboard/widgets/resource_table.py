"""The resource view: a DataTable whose rows are keyed ``namespace/name`` and change in place.

The widget keeps the full set of rows (``rows``); the DataTable shows those matching the filter. Adds
append, updates rewrite cells of the same row key, deletes remove that row, so the cursor stays on the
row it was on.
"""

from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable
from textual.widgets.data_table import RowDoesNotExist

from ..views import status_class

_STYLES = {"ok": "green", "waiting": "yellow", "bad": "bold red"}


class ResourceTable(DataTable[str | Text]):
    def __init__(self) -> None:
        super().__init__(id="resources", cursor_type="row", zebra_stripes=True)
        self.rows_by_key: dict[str, list[str]] = {}
        self.columns_names: list[str] = []
        self.filter_text = ""
        self._status_col: int | None = None

    # --- what the stream says ------------------------------------------------------------------

    def reset(self, columns: list[str], rows: list[tuple[str, list[str]]]) -> None:
        selected = self.selected_key
        self.columns_names = columns
        self._status_col = next((i for i, c in enumerate(columns) if c == "STATUS"), None)
        self.rows_by_key = dict(rows)
        self.clear(columns=True)
        for i, name in enumerate(columns):
            self.add_column(name, key=str(i))
        self._fill(selected)

    def upsert(self, key: str, cells: list[str]) -> None:
        self.rows_by_key[key] = cells
        shown = key in self.rows
        if not self._matches(cells):
            if shown:
                self._remove(key)
            return
        if not shown:
            self.add_row(*self._styled(cells), key=key)
            return
        for i, cell in enumerate(self._styled(cells)):
            if i < len(self.columns):
                self.update_cell(key, str(i), cell)

    def delete(self, key: str) -> None:
        self.rows_by_key.pop(key, None)
        if key in self.rows:
            self._remove(key)

    # --- filter --------------------------------------------------------------------------------

    def set_filter(self, text: str) -> None:
        if text == self.filter_text:
            return
        self.filter_text = text
        selected = self.selected_key
        self.clear()
        self._fill(selected)

    # --- queries (tests, later keys) -----------------------------------------------------------

    @property
    def shown_keys(self) -> list[str]:
        return [str(row.key.value) for row in self.ordered_rows]

    @property
    def selected_key(self) -> str | None:
        if not self.row_count:
            return None
        try:
            return str(self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value)
        except (RowDoesNotExist, KeyError):
            return None

    def cells(self, key: str) -> list[str]:
        return [cell.plain if isinstance(cell, Text) else str(cell) for cell in self.get_row(key)]

    # --- helpers -------------------------------------------------------------------------------

    def _fill(self, selected: str | None) -> None:
        for key, cells in self.rows_by_key.items():
            if self._matches(cells):
                self.add_row(*self._styled(cells), key=key)
        if selected is not None and selected in self.rows:
            self.move_cursor(row=self.get_row_index(selected), animate=False)

    def _remove(self, key: str) -> None:
        """Remove a row; the cursor stays on the row it was on (a row above going shifts its index)."""
        selected = self.selected_key
        self.remove_row(key)
        if selected is not None and selected != key and selected in self.rows:
            self.move_cursor(row=self.get_row_index(selected), animate=False)

    def _matches(self, cells: list[str]) -> bool:
        needle = self.filter_text.lower()
        return not needle or any(needle in cell.lower() for cell in cells)

    def _styled(self, cells: list[str]) -> list[str | Text]:
        out: list[str | Text] = list(cells)
        col = self._status_col
        if col is not None and col < len(cells):
            kind = status_class(cells[col])
            if kind is not None:
                out[col] = Text(cells[col], style=_STYLES[kind])
        return out
