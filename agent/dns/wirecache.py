"""Replies as they went out on the wire, for questions asked again byte for byte.

Parsing a query and packing a reply (dnslib, pure Python) cost far more than finding the answer, and a
node's pods ask the same few questions over and over (every lookup walks the same search path). So the
UDP path keeps each reply it sent, keyed by the query's bytes after the id (flags, question, EDNS
record): a repeat costs one dict lookup and a two-byte id splice, no parse, no pack. The query's exact
bytes are the key, so the reply echoes its question (case included) and fits its announced UDP size.

Each entry carries how long it stays exactly what the slow path would send: cluster answers until the
next Service or Endpoints event (the server clears that cache on every one), forwarded answers until
their age in whole seconds -- which their TTLs count down by -- ticks over. Bounded, LRU.

Concurrency model: plain dicts used from the event loop only.
"""

from __future__ import annotations

import math
from collections import OrderedDict

FOREVER = math.inf


class WireCache:
    def __init__(self, size: int) -> None:
        self.size = size
        self.entries: OrderedDict[bytes, tuple[float, bytes]] = OrderedDict()
        self.hits = 0

    def get(self, query: bytes, now: float) -> bytes | None:
        """The reply to ``query`` (with its id) if one is stored and still exact at ``now``."""
        key = query[2:]
        entry = self.entries.get(key)
        if entry is None:
            return None
        if entry[0] <= now:
            del self.entries[key]
            return None
        self.entries.move_to_end(key)
        self.hits += 1
        return query[:2] + entry[1][2:]

    def put(self, query: bytes, reply: bytes, until: float) -> None:
        if self.size <= 0:
            return
        self.entries[query[2:]] = (until, reply)
        self.entries.move_to_end(query[2:])
        while len(self.entries) > self.size:
            self.entries.popitem(last=False)

    def clear(self) -> None:
        self.entries.clear()
