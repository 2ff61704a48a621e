"""Background tasks end the same way everywhere: cancelled, then awaited with a bound.

A component's ``stop()`` must never hang on a task that ignores cancellation, nor leak one; nor should a
task's own failure at shutdown escape from ``stop()`` (it was logged where it happened).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable


async def cancel(
    tasks: asyncio.Task[None] | Iterable[asyncio.Task[None]] | None, timeout: float = 5.0
) -> None:
    """Cancel the task(s) and wait for them to finish, at most ``timeout`` seconds each."""
    if tasks is None:
        return
    todo = [tasks] if isinstance(tasks, asyncio.Task) else list(tasks)
    for task in todo:
        task.cancel()
    for task in todo:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(task, timeout)
