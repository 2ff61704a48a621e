"""Helpers for driving the dashboard with Textual's Pilot: bounded waits that let the app run, and the
main screen's parts."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from textual.pilot import Pilot

from tui.dashboard import PeapodApp
from tui.dashboard.widgets import ClusterHeader, ResourceTable

SIZE = (120, 40)


async def until(pilot: Pilot[Any], check: Callable[[], Any], what: str, timeout: float = 15.0) -> Any:
    """Let the app run until ``check()`` is truthy and return that; fail after ``timeout`` seconds,
    saying what. A bounded wait, never a timing assertion."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = check()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.05)


async def until_async(
    pilot: Pilot[Any], check: Callable[[], Awaitable[Any]], what: str, timeout: float = 15.0
) -> Any:
    """``until`` for a check that must await (an API read)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await check()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.05)


def table(app: PeapodApp) -> ResourceTable:
    return app.screen.query_one(ResourceTable)


def header(app: PeapodApp) -> ClusterHeader:
    return app.screen.query_one(ClusterHeader)


async def type_command(pilot: Pilot[Any], text: str) -> None:
    await pilot.press("colon")
    await pilot.press(*text)
    await pilot.press("enter")
