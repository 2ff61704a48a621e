"""The ResourceTable on its own, in a tiny App with no server: order, cursor, filter, width, colours,
AGE, keys, and that a change out of view repaints nothing."""

from __future__ import annotations

from typing import Any

from textual.app import App, ComposeResult
from textual.pilot import Pilot

from tui.dashboard.widgets import ResourceTable
from tui.dashboard.widgets.resource_table import WIDE_AT

from .pilot import until

COLUMNS = ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "NODE"]
WIDE = [False, False, False, False, False, True]
NOW = 1_000_000.0


def row(name: str, status: str = "Running") -> tuple[str, list[str]]:
    return f"default/{name}", [name, "1/1", status, "0", "1s", "n1"]


class CountingTable(ResourceTable):
    """Records which lines were drawn, so a test can tell what a change repainted."""

    def __init__(self) -> None:
        super().__init__(clock=lambda: NOW)
        self.drawn: list[int] = []

    def render_line(self, y: int) -> Any:
        self.drawn.append(y)
        return super().render_line(y)


class TableApp(App[None]):
    def __init__(self) -> None:
        super().__init__()
        self.table = CountingTable()
        self.chosen: list[str] = []

    def compose(self) -> ComposeResult:
        yield self.table

    def on_mount(self) -> None:
        self.table.focus()

    def on_resource_table_row_selected(self, message: ResourceTable.RowSelected) -> None:
        self.chosen.append(message.key)


def lines(t: CountingTable) -> list[str]:
    """The text on screen, drawn here without counting as the app's repaint."""
    drawn = list(t.drawn)
    out = [t.render_line(y).text for y in range(t.size.height)]
    t.drawn[:] = drawn
    return out


async def settle(pilot: Pilot[Any]) -> None:
    """Let pending refreshes paint (bounded: a few short pauses)."""
    for _ in range(3):
        await pilot.pause(0.05)


async def test_rows_sorted_and_cursor_stays_on_its_key() -> None:
    app = TableApp()
    async with app.run_test(size=(100, 20)) as pilot:
        t = app.table
        t.reset(COLUMNS, [row("web-3"), row("web-1")], WIDE)
        assert t.shown_keys == ["default/web-1", "default/web-3"]
        assert t.selected_key == "default/web-1" and t.cursor_row == 0
        t.upsert(*row("web-2"))
        assert t.shown_keys == ["default/web-1", "default/web-2", "default/web-3"]
        t.select("default/web-3")
        assert t.cursor_row == 2
        t.upsert(*row("a-first"))  # above the cursor: it moves down with its row
        assert t.selected_key == "default/web-3" and t.cursor_row == 3
        t.delete("default/web-1")
        assert t.selected_key == "default/web-3" and t.cursor_row == 2
        t.delete("default/web-3")  # the cursor's own row: it goes to the row that took its place
        assert t.selected_key == "default/web-2"
        await settle(pilot)
        shown = lines(t)
        assert shown[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
        assert [line.split()[0] for line in shown[1:3]] == ["a-first", "web-2"]


async def test_filter_matches_any_cell_and_keeps_the_cursor() -> None:
    app = TableApp()
    async with app.run_test(size=(100, 20)):
        t = app.table
        t.reset(COLUMNS, [row("alpha"), row("beta", "Failed"), row("gamma", "Failed")], WIDE)
        t.select("default/gamma")
        t.set_filter("fail")
        assert t.shown_keys == ["default/beta", "default/gamma"] and t.selected_key == "default/gamma"
        t.upsert(*row("delta", "Failed"))
        t.upsert(*row("beta"))  # no longer matches: leaves the view, stays in the store
        assert t.shown_keys == ["default/delta", "default/gamma"]
        assert "default/beta" in t.rows_by_key and t.cell("default/beta", "NODE") == "n1"
        t.set_filter("")
        assert len(t.shown_keys) == 4 and t.selected_key == "default/gamma"


async def test_wide_columns_follow_the_width() -> None:
    app = TableApp()
    async with app.run_test(size=(100, 20)) as pilot:
        t = app.table
        t.reset(COLUMNS, [row("web")], WIDE)
        assert "NODE" not in t.column_labels and len(t.cells("default/web")) == 5
        await pilot.resize_terminal(WIDE_AT + 10, 20)
        await until(pilot, lambda: "NODE" in t.column_labels, "the wide columns")
        assert t.cells("default/web")[-1] == "n1"
        await pilot.resize_terminal(100, 20)
        await until(pilot, lambda: "NODE" not in t.column_labels, "the narrow columns")


async def test_markup_looking_text_is_shown_literally() -> None:
    app = TableApp()
    async with app.run_test(size=(100, 20)) as pilot:
        t = app.table
        t.reset(COLUMNS, [("default/x", ["[/x]", "1/1", "[red]oops", "0", "1s", "n1"])], WIDE)
        await settle(pilot)
        assert t.cells("default/x")[:3] == ["[/x]", "1/1", "[red]oops"]
        assert "[/x]" in lines(t)[1] and "[red]oops" in lines(t)[1]
        assert not t.styled("default/x")[2].style  # not a known status: no colour


async def test_status_colours_and_age_from_the_clock() -> None:
    app = TableApp()
    async with app.run_test(size=(100, 20)) as pilot:
        t = app.table
        created = {"default/a": NOW - 3 * 86400, "default/b": NOW - 7}
        t.reset(COLUMNS, [row("a", "Failed"), row("b", "Pending"), row("c", "Running")], WIDE, created)
        assert "red" in str(t.styled("default/a")[2].style)
        assert "yellow" in str(t.styled("default/b")[2].style)
        assert "green" in str(t.styled("default/c")[2].style)
        assert [t.cells(k)[4] for k in t.shown_keys] == ["3d", "7s", "1s"]  # c has no timestamp
        await settle(pilot)
        t.drawn.clear()
        t.clock = lambda: NOW + 1  # b's AGE turns 8s; a's stays 3d
        await until(pilot, lambda: t.drawn, "the tick to repaint b's line")
        await settle(pilot)
        assert set(t.drawn) == {2}  # only the line whose AGE changed
        assert "8s" in lines(t)[2] and "3d" in lines(t)[1]


async def test_keys_move_the_cursor_and_enter_chooses() -> None:
    app = TableApp()
    async with app.run_test(size=(100, 12)) as pilot:
        t = app.table
        t.reset(COLUMNS, [row(f"pod-{i:03}") for i in range(100)], WIDE)
        await pilot.press("down", "down")
        assert t.selected_key == "default/pod-002"
        await pilot.press("end")
        assert t.selected_key == "default/pod-099"
        await settle(pilot)
        assert "pod-099" in lines(t)[-1] or "pod-099" in lines(t)[-2]  # scrolled into view
        await pilot.press("home", "pagedown")
        assert t.cursor_row > 2
        await pilot.press("pageup", "up", "enter")
        assert t.selected_key == "default/pod-000"
        await until(pilot, lambda: app.chosen == ["default/pod-000"], "RowSelected")
        await pilot.click(ResourceTable, offset=(3, 3))  # the header is line 0: line 3 is row 2
        assert t.selected_key == "default/pod-002"


async def test_changes_out_of_view_repaint_nothing() -> None:
    app = TableApp()
    async with app.run_test(size=(100, 12)) as pilot:
        t = app.table
        t.reset(COLUMNS, [row(f"pod-{i:04}") for i in range(1000)], WIDE)
        await settle(pilot)
        before = lines(t)
        t.drawn.clear()
        t.upsert("default/pod-0500", ["pod-0500", "0/1", "Failed", "3", "1s", "n1"])
        t.upsert(*row("pod-060a"))  # a new row far below
        t.delete("default/pod-0700")
        await settle(pilot)
        assert t.drawn == [] and lines(t) == before
        assert t.row_count == 1000

        # A change on screen repaints its line alone; any repaint still pending from the changes
        # above would be composed with it (or before it), so this also proves they queued none.
        t.upsert("default/pod-0003", ["pod-0003", "0/1", "Failed", "3", "1s", "n1"])
        await until(pilot, lambda: 4 in t.drawn, "pod-0003's line to repaint")
        await settle(pilot)
        assert set(t.drawn) == {4} and "Failed" in lines(t)[4]
        assert [line for y, line in enumerate(lines(t)) if y != 4] == before[:4] + before[5:]


async def test_rows_coming_and_going_above_the_view_leave_it_put() -> None:
    app = TableApp()
    async with app.run_test(size=(100, 12)) as pilot:
        t = app.table
        t.reset(COLUMNS, [row(f"pod-{i:04}") for i in range(1000)], WIDE)
        await pilot.press("end")
        await settle(pilot)
        before = lines(t)
        assert "pod-0999" in before[-1] or "pod-0999" in before[-2]
        t.upsert(*row("pod-000a"))  # sorts near the top, far above the view
        t.delete("default/pod-0001")
        t.upsert(*row("pod-001a"))
        await settle(pilot)
        assert lines(t) == before and t.selected_key == "default/pod-0999"
        keys = t.shown_keys  # sorted: "pod-000a" comes after "pod-0009"
        assert keys[:2] == ["default/pod-0000", "default/pod-0002"] and keys[9] == "default/pod-000a"
