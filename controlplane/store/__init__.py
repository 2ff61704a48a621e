"""The store: a kine-style Backend (append-only log, global revision, CAS, watch from revision).

``backend`` defines the contract and errors; ``sqlite`` is the embedded default through aiosqlite.
"""

from .backend import (
    Backend,
    Compacted,
    Conflict,
    KeyExists,
    KeyNotFound,
    KeyValue,
    StorageFull,
    StoreError,
    StoreEvent,
    Watch,
    WatchClosed,
)

__all__ = [
    "Backend",
    "Compacted",
    "Conflict",
    "KeyExists",
    "KeyNotFound",
    "KeyValue",
    "StorageFull",
    "StoreError",
    "StoreEvent",
    "Watch",
    "WatchClosed",
]
