"""The dashboard's modal dialogs (confirm, scale, namespace picker) driven by Pilot.

Each test runs the real ``PeapodApp`` against a real control plane on loopback, pushes one modal with a
callback that records its result, and presses keys. Every wait is bounded (``until``); nothing asserts
on timing.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from textual.pilot import Pilot
from textual.screen import Screen
from textual.widgets import Button, Input, Static

from controlplane.api.core import Namespace
from controlplane.client import Client
from tui.dashboard import PeapodApp
from tui.dashboard.screens.confirm import ConfirmScreen
from tui.dashboard.screens.namespaces import ALL_NAMESPACES, NamespaceScreen
from tui.dashboard.screens.scale import MAX_REPLICAS, ScaleScreen, parse_replicas

from .pilot import SIZE, until

NO_RESULT = object()


class Recorder:
    """The callback given to ``push_screen``: keeps every result the modal dismissed with."""

    def __init__(self) -> None:
        self.results: list[Any] = []

    def __call__(self, result: Any) -> None:
        self.results.append(result)

    @property
    def last(self) -> Any:
        return self.results[-1] if self.results else NO_RESULT


async def push(pilot: Pilot[Any], app: PeapodApp, screen: Screen[Any]) -> Recorder:
    """Wait for the main screen, push ``screen`` over it, wait until it is the active one."""
    from tui.dashboard.screens import ResourcesScreen

    await until(pilot, lambda: isinstance(app.screen, ResourcesScreen), "the main screen")
    recorder = Recorder()
    app.push_screen(screen, recorder)
    await until(pilot, lambda: app.screen is screen and screen.is_mounted and screen.children, "the modal")
    return recorder


async def answered(pilot: Pilot[Any], app: PeapodApp, screen: Screen[Any], recorder: Recorder) -> Any:
    await until(pilot, lambda: recorder.results and app.screen is not screen, "the modal's answer")
    assert len(recorder.results) == 1
    return recorder.last


async def new_namespace(client: Client, name: str) -> None:
    await client.create(msgspec.convert({"metadata": {"name": name}}, Namespace))


# --- ConfirmScreen ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("keys", "expected"), [(["y"], True), (["escape"], False), (["n"], False)])
async def test_confirm_keys(client: Client, keys: list[str], expected: bool) -> None:
    app = PeapodApp(client)
    async with app.run_test(size=SIZE) as pilot:
        screen = ConfirmScreen("Delete pod default/web-1?", "cascade: background")
        recorder = await push(pilot, app, screen)
        await pilot.press(*keys)
        assert await answered(pilot, app, screen, recorder) is expected


async def test_confirm_shows_the_question_and_enter_cancels(client: Client) -> None:
    app = PeapodApp(client)
    async with app.run_test(size=SIZE) as pilot:
        screen = ConfirmScreen("Delete pod default/web-1?", "cascade: background")
        recorder = await push(pilot, app, screen)
        assert screen.query_one("#confirm-question", Static).content == "Delete pod default/web-1?"
        assert screen.query_one("#confirm-detail", Static).content == "cascade: background"
        confirm = screen.query_one("#confirm", Button)
        assert "Delete" in str(confirm.label)
        # Cancel has the focus: a stray Enter never deletes.
        await until(pilot, lambda: app.focused is screen.query_one("#cancel", Button), "Cancel focused")
        await pilot.press("enter")
        assert await answered(pilot, app, screen, recorder) is False


async def test_confirm_button_says_yes(client: Client) -> None:
    app = PeapodApp(client)
    async with app.run_test(size=SIZE) as pilot:
        screen = ConfirmScreen("Restart the agent?")
        recorder = await push(pilot, app, screen)
        assert "OK" in str(screen.query_one("#confirm", Button).label)
        await pilot.press("tab", "enter")  # Cancel → the confirm button, pressed
        assert await answered(pilot, app, screen, recorder) is True


# --- ScaleScreen -----------------------------------------------------------------------------------------


def test_parse_replicas() -> None:
    assert parse_replicas("3") == 3
    assert parse_replicas(" 0 ") == 0
    assert parse_replicas("+7") == 7
    for bad in ("", "abc", "-1", "1.5", str(MAX_REPLICAS + 1)):
        assert isinstance(parse_replicas(bad), str), bad


async def test_scale_enter_gives_the_number(client: Client) -> None:
    app = PeapodApp(client)
    async with app.run_test(size=SIZE) as pilot:
        screen = ScaleScreen("ReplicationController", "frontend", 3)
        recorder = await push(pilot, app, screen)
        field = screen.query_one("#replicas", Input)
        assert field.value == "3"
        await until(pilot, lambda: app.focused is field, "the Input focused")
        # The prefilled count is selected, so typing replaces it.
        await pilot.press("1", "2")
        await until(pilot, lambda: field.value == "12", "the typed count")
        await pilot.press("enter")
        assert await answered(pilot, app, screen, recorder) == 12


async def test_scale_enter_keeps_the_current_count(client: Client) -> None:
    app = PeapodApp(client)
    async with app.run_test(size=SIZE) as pilot:
        screen = ScaleScreen("ReplicationController", "frontend", 2)
        recorder = await push(pilot, app, screen)
        await until(pilot, lambda: app.focused is screen.query_one("#replicas", Input), "the Input")
        await pilot.press("enter")
        assert await answered(pilot, app, screen, recorder) == 2


async def test_scale_refuses_bad_counts(client: Client) -> None:
    app = PeapodApp(client)
    async with app.run_test(size=SIZE) as pilot:
        screen = ScaleScreen("ReplicationController", "frontend", 3)
        recorder = await push(pilot, app, screen)
        field = screen.query_one("#replicas", Input)
        error = screen.query_one("#scale-error")
        await until(pilot, lambda: app.focused is field, "the Input focused")
        assert not error.display

        # Letters cannot be typed at all: only the digit lands, replacing the selected count.
        await pilot.press("a", "b", "c", "4")
        await until(pilot, lambda: field.value != "3", "the typed keys")
        assert field.value == "4"
        # Nothing is refused, with a reason.
        await pilot.press("backspace")
        await until(pilot, lambda: field.value == "", "the count erased")
        await pilot.press("enter")
        await until(pilot, lambda: error.display, "the error line")
        assert screen.error == "enter a number of replicas"
        assert app.screen is screen and recorder.results == []
        # Letters that got in some other way (set directly here) are refused too.
        field.value = "abc"
        await until(pilot, lambda: not error.display, "the error cleared by the change")
        await pilot.press("enter")
        await until(pilot, lambda: error.display, "the error line for letters")
        assert screen.error == "not a whole number: 'abc'"
        assert app.screen is screen and recorder.results == []
        field.value = ""

        # A negative count can be typed, and is refused.
        await pilot.press("minus", "1")
        await until(pilot, lambda: field.value == "-1", "-1 typed")
        assert not error.display  # typing clears the old error
        await pilot.press("enter")
        await until(pilot, lambda: error.display, "the error line again")
        assert screen.error == "replicas cannot be negative"
        assert app.screen is screen and recorder.results == []

        await pilot.press("escape")
        assert await answered(pilot, app, screen, recorder) is None


# --- NamespaceScreen -----------------------------------------------------------------------------------


async def test_namespaces_live_filter_and_pick(client: Client) -> None:
    await new_namespace(client, "team-a")
    await new_namespace(client, "team-b")
    app = PeapodApp(client)
    async with app.run_test(size=SIZE) as pilot:
        screen = NamespaceScreen("team-a")
        recorder = await push(pilot, app, screen)
        await until(pilot, lambda: "team-b" in screen.shown, "the namespaces")
        assert screen.shown[0] == ALL_NAMESPACES
        for name in ("default", "kube-system", "kube-public", "kube-node-lease", "team-a", "team-b"):
            assert name in screen.shown
        assert screen.shown[1:] == sorted(screen.shown[1:])
        assert screen.highlighted == "team-a"  # the current one

        # A namespace made while the dialog is open appears; a deleted one goes.
        await new_namespace(client, "late")
        await until(pilot, lambda: "late" in screen.shown, "the new namespace")
        assert screen.highlighted == "team-a"  # the highlight stays put
        await client.delete(Namespace, "team-b")
        await until(pilot, lambda: "team-b" not in screen.shown, "the deleted namespace to go", 30)

        # Typing narrows; Enter picks the highlighted entry.
        await pilot.press("k", "u", "b", "e")
        await until(pilot, lambda: ALL_NAMESPACES not in screen.shown, "the filtered list")
        assert screen.shown == ["kube-node-lease", "kube-public", "kube-system"]
        assert screen.highlighted == "kube-node-lease"
        await pilot.press("down", "down")
        await until(pilot, lambda: screen.highlighted == "kube-system", "the highlight moved")
        await pilot.press("enter")
        assert await answered(pilot, app, screen, recorder) == "kube-system"


async def test_namespaces_all_and_escape(client: Client) -> None:
    app = PeapodApp(client)
    async with app.run_test(size=SIZE) as pilot:
        screen = NamespaceScreen("default")
        recorder = await push(pilot, app, screen)
        await until(pilot, lambda: "kube-system" in screen.shown, "the namespaces")
        assert screen.highlighted == "default"
        await pilot.press("up")
        await until(pilot, lambda: screen.highlighted == ALL_NAMESPACES, "'all namespaces' highlighted")
        await pilot.press("enter")
        assert await answered(pilot, app, screen, recorder) == ALL_NAMESPACES

        # Opened while showing all namespaces: "all namespaces" is highlighted; a filter matching
        # nothing picks nothing; escape gives None.
        again = NamespaceScreen(None)
        recorder = await push(pilot, app, again)
        await until(pilot, lambda: "default" in again.shown, "the namespaces again")
        assert again.highlighted == ALL_NAMESPACES
        await pilot.press("z", "z", "z")
        await until(pilot, lambda: again.shown == [], "nothing matching")
        await pilot.press("enter")
        assert app.screen is again and recorder.results == []
        await pilot.press("escape")
        assert await answered(pilot, app, again, recorder) is None
