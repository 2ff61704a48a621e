"""Pausing Python's cyclic garbage collector around a bulk decode.

Decoding thousands of objects in one go makes the collector run full collections part way through,
each walking the whole (growing) heap: about half the CPU of decoding a 10,000-pod list. Paused for
the decode (no ``await`` inside, so nothing else on the loop runs meanwhile), it runs once afterwards.
The API server (lists from the store) and the client (lists from the server) both decode in bulk.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def paused() -> Iterator[None]:
    """The collector off for the block, then back as it was (left off if it was off)."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
