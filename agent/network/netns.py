"""Run blocking network work inside another network namespace without blocking the event loop.

A socket belongs to the network namespace of the thread that creates it, and ``setns(CLONE_NEWNET)``
switches only the calling thread. So each call gets a fresh thread that enters the namespace, runs the
function (which opens its own sockets there) and then ends: a thread that has left the agent's own
namespace is never reused. That costs one thread start (tens of microseconds), against the fork that
pyroute2's own ``netns=`` support would pay. Python 3.11 has no ``os.setns``, hence ctypes.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

CLONE_NEWNET = 0x40000000

_libc = ctypes.CDLL(None, use_errno=True)


def _enter(path: str) -> None:
    """Move the calling thread into the network namespace at ``path`` (a /run/netns or /proc file)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({path}): {os.strerror(err)}")
    finally:
        os.close(fd)


async def run_in_netns(path: str | None, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in a worker thread inside the namespace at ``path`` (None: the current one)."""
    if path is None:
        return await asyncio.to_thread(fn, *args)
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def deliver(result: T | None, error: BaseException | None) -> None:
        if future.done():  # the caller was cancelled meanwhile
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def worker() -> None:
        try:
            _enter(path)
            result, error = fn(*args), None
        except BaseException as e:  # delivered to the awaiting coroutine, not lost in this thread
            result, error = None, e
        try:
            loop.call_soon_threadsafe(deliver, result, error)
        except RuntimeError:  # the loop closed while we worked: nobody is waiting any more
            pass

    threading.Thread(target=worker, name=f"netns:{path}", daemon=True).start()
    return await future


def write_sysctl(name: str, value: str) -> None:
    """Set a sysctl (dotted name) from a thread inside ``run_in_netns``: ``/proc/sys/net`` shows the
    namespace of the thread that opens it, so the setting lands in that namespace, not the agent's."""
    with open(os.path.join("/proc/sys", *name.split(".")), "w") as f:
        f.write(value)
