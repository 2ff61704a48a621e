"""Helpers shared by the test suites."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any


async def eventually(check: Callable[[], Awaitable[Any]], what: str, timeout: float = 15.0) -> Any:
    """Poll ``check`` until it returns something truthy and return that: a bounded wait for a
    condition, never a timing assertion."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await check()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def wait_for(
    probe: Callable[[], Awaitable[Any]], what: str, *, attempts: int = 150, interval: float = 0.1
) -> Any:
    """Poll ``probe`` until it returns something truthy; fail after ``attempts`` polls, saying what."""
    for _ in range(attempts):
        result = await probe()
        if result:
            return result
        await asyncio.sleep(interval)
    raise AssertionError(f"gave up waiting for {what}")
