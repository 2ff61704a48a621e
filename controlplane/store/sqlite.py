"""The embedded store: a kine-style :class:`~controlplane.store.backend.Backend` on SQLite via aiosqlite.

Data model
    One append-only table, ``kv``. Its ``INTEGER PRIMARY KEY AUTOINCREMENT`` row id *is* the global revision:
    every create, update and delete inserts one row, so a key's history is the chain of its rows, linked by
    ``prev_revision``. A create stores ``created=1`` (its create revision is its own id); a delete inserts a
    tombstone (``deleted=1``) that carries the last value. ``old_value`` holds the value the row replaced, so
    a watch can build ``StoreEvent.prev`` from a single row. ``UNIQUE(name, prev_revision)`` is the
    compare-and-swap backstop: two writers can never both extend the same row. Because AUTOINCREMENT never
    reuses an id, ``sqlite_sequence`` gives the current revision even after compaction removed the newest
    row (a compacted tombstone). The compacted revision lives in a small ``meta`` table so it survives
    restarts.

Durability
    WAL journal, ``synchronous=FULL`` (the WAL is fsynced at every commit, so a write acknowledged to a caller
    survives a crash) and ``busy_timeout`` so that several processes can share the file. Every write
    transaction is ``BEGIN IMMEDIATE``: the write lock is taken up front, so the checks made inside the
    transaction stay true until its commit.

Concurrency model (all on one event loop; SQLite work runs on aiosqlite's per-connection threads)
    * Writes: callers enqueue an operation and await a future. One writer task drains the queue, runs up to
      ``_MAX_BATCH`` operations in one transaction (group commit: one fsync for many writes), each as a single
      conditional ``INSERT ... SELECT ... RETURNING id`` evaluated in queue order, and resolves each caller's
      future with its own revision or error only after the commit. A KeyExists/Conflict of one operation
      does not affect the others in the batch. A batch the database cannot take (an I/O error; SQLITE_FULL
      when the disk is full, raised as :class:`StorageFull`) is rolled back whole and fails only its own
      writers: the next batch starts afresh, so writes work again as soon as space returns. A checkpoint
      that cannot grow the database file leaves the frames in the WAL, where readers still find them.
    * Reads: a small pool of read-only connections; WAL lets them read while the writer writes. Reads that
      need several statements run in one read transaction, so they see one snapshot.
    * Watches: ONE poller task reads rows above the last revision it saw and fans the events out to
      bounded per-watch buffers. It is woken right after each local commit and otherwise polls every
      ``poll_interval`` so that writes from another process sharing the file are seen as well. A watch
      subscribes when it is created, reads history from the table when first iterated, then switches to
      the live buffer, dropping live events it already delivered from history: gap-free, duplicate-free.
      A watch whose buffer overflows is dropped and raises :class:`WatchClosed` (the watcher re-lists).
    * Compaction: a background task (and :meth:`SQLiteBackend.compact`) first records the new compacted
      revision (from then on reads and watches below it raise :class:`Compacted`, so nothing can observe
      the deletions), then deletes the garbage at or below it (superseded rows, tombstones) in windows of
      consecutive keys, each its own short transaction, so the write lock is never held long. Windows go
      by key, not by revision: a key's rows sit together in both indexes, while a window of revisions of
      many keys updated in turn touched an index page per key for one row each (with secure_delete ON,
      below, compacting 100,000 revisions of 1,000 keys wrote 10 GB to disk; now 0.6 GB). Windows are
      sized to take about ``_COMPACT_TXN_SECONDS``; the WAL is checkpointed between them, outside the
      write lock (see :meth:`SQLiteBackend._set_autocheckpoint`). A crash between the steps only leaves
      garbage: the next compaction removes the superseded rows (a tombstone may stay, which reads treat as
      the deleted key it is). Compaction never goes past what the local poller has fanned out, so live
      watches lose nothing.
    * The write connection uses ``secure_delete = FAST``: deleted rows are zeroed only where that costs no
      extra I/O (Debian builds SQLite with secure_delete ON, which rewrites every freed page: a third more
      WAL frames at compaction). Freed pages may keep old bytes until reused, as etcd's bbolt does.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import os
import sqlite3
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, TypeVar

import aiosqlite

from .backend import (
    Compacted,
    Conflict,
    KeyExists,
    KeyNotFound,
    KeyValue,
    StorageFull,
    StoreError,
    StoreEvent,
    WatchClosed,
)

__all__ = ["SQLiteBackend", "SQLiteWatch"]

_T = TypeVar("_T")

log = logging.getLogger(__name__)

_MAX_BATCH = 256  # writes per group-commit transaction
_HISTORY_PAGE = 500  # rows per history read of a watch
_POLL_PAGE = 1000  # rows per poller read
_COMPACT_ROWS = 2000  # rows (of a run of keys) in the first compaction transaction; later ones sized by time
_COMPACT_MIN_ROWS = 200
_COMPACT_MAX_ROWS = 50_000
_COMPACT_TXN_SECONDS = 0.05  # aim for compaction transactions this long (the write lock is held that long)
_AUTOCHECKPOINT_PAGES = 1000  # SQLite's default WAL autocheckpoint, restored after a compaction
_WRITER_CACHE_KIB = 16_384  # page cache of the write connection (SQLite's default is 2,000 KiB)
_READERS = 3  # read connections in the pool
_BUSY_TIMEOUT_MS = 10_000
_STOP_TIMEOUT = 5.0  # seconds to wait for a background task at close()

_SCHEMA = """
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS kv (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    created INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    create_revision INTEGER NOT NULL,
    prev_revision INTEGER NOT NULL,
    value BLOB NOT NULL,
    old_value BLOB,
    ts REAL NOT NULL,
    UNIQUE (name, prev_revision)
);
CREATE INDEX IF NOT EXISTS kv_name_id ON kv (name, id);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta (key, value) VALUES ('compacted_revision', 0), ('schema_version', 1);
COMMIT;
"""

# A created row stores create_revision 0: its create revision is its own id, unknown before the insert.
_CREATE_REV = "CASE WHEN created = 1 THEN id ELSE create_revision END"
_K_CREATE_REV = "CASE WHEN k.created = 1 THEN k.id ELSE k.create_revision END"
_ROW = f"id, name, created, deleted, {_CREATE_REV}, prev_revision, value, old_value"
_INSERT = "INSERT INTO kv (name, created, deleted, create_revision, prev_revision, value, old_value, ts)"

# Each write is one conditional insert; no row back means the precondition failed.
_SQL_CREATE = f"""
WITH latest AS (SELECT MAX(id) AS id FROM kv WHERE name = :key)
{_INSERT}
SELECT :key, 1, 0, 0, COALESCE(latest.id, 0), :value, NULL, :ts FROM latest
WHERE latest.id IS NULL OR (SELECT deleted FROM kv WHERE id = latest.id) = 1
RETURNING id
"""
_SQL_UPDATE = f"""
{_INSERT}
SELECT name, 0, 0, {_CREATE_REV}, id, :value, value, :ts FROM kv
WHERE id = :expected AND name = :key AND deleted = 0 AND id = (SELECT MAX(id) FROM kv WHERE name = :key)
RETURNING id
"""
_SQL_DELETE = f"""
{_INSERT}
SELECT name, 0, 1, {_CREATE_REV}, id, value, value, :ts FROM kv
WHERE id = (SELECT MAX(id) FROM kv WHERE name = :key) AND deleted = 0 AND (:expected = 0 OR id = :expected)
RETURNING id
"""
_SQL_LATEST = f"SELECT {_ROW} FROM kv WHERE name = ? ORDER BY id DESC LIMIT 1"
_SQL_HEADS = """
SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'kv'), 0),
       COALESCE((SELECT value FROM meta WHERE key = 'compacted_revision'), 0)
"""
_SQL_POLL = f"SELECT {_ROW} FROM kv WHERE id > ? ORDER BY id LIMIT ?"
# Compaction garbage of the keys matching {cond}: every row at or below the target that is not its key's
# latest row at the target, and that latest row too when it is a tombstone written after the previous
# compaction (older ones were removed then). The covering-index test comes first, and the id test keeps
# the table reads to the keys written since the previous compaction.
_SQL_COMPACT_KEYS = """
DELETE FROM kv WHERE id IN (
    SELECT k.id FROM kv AS k WHERE {cond} AND k.id <= :target
    AND (k.id < (SELECT MAX(l.id) FROM kv AS l WHERE l.name = k.name AND l.id <= :target)
         OR (k.id > :since AND k.deleted = 1)))
"""
# The name ``rows`` index entries on from :low: the end of a window of about that many rows.
_SQL_COMPACT_BOUND = "SELECT name FROM kv WHERE name >= ? ORDER BY name LIMIT 1 OFFSET ?"
_SQL_NEXT_NAME = "SELECT MIN(name) FROM kv WHERE name > ?"
_SQL_SET_COMPACTED = "UPDATE meta SET value = MAX(value, ?) WHERE key = 'compacted_revision'"


def _prefix_end(prefix: str) -> str | None:
    """The smallest string greater than every string starting with ``prefix`` (None: no upper bound).

    A range condition can use the (name, id) index, unlike LIKE, and has no wildcard escaping to get wrong.
    """
    stem = prefix.rstrip("\U0010ffff")
    if not stem:
        return None
    nxt = ord(stem[-1]) + 1
    if 0xD800 <= nxt <= 0xDFFF:  # surrogates cannot be encoded to UTF-8; skip to the next scalar value
        nxt = 0xE000
    return stem[:-1] + chr(nxt)


def _name_range(low: str, prefix: str, column: str) -> tuple[str, list[Any]]:
    """SQL condition and parameters for ``column`` in [max(prefix, low), prefix-successor)."""
    end = _prefix_end(prefix)
    start = max(prefix, low)
    if end is None:
        return f"{column} >= ?", [start]
    return f"{column} >= ? AND {column} < ?", [start, end]


def _event(row: Sequence[Any]) -> StoreEvent:
    """Build an event from one row: kv is the row itself, prev is reconstructed from old_value."""
    rev, name, created, deleted, create_rev, prev_rev, value, old_value = row
    kv = KeyValue(name, bytes(value), create_rev, rev)
    if created:
        return StoreEvent("create", kv, None)
    prev = KeyValue(name, bytes(old_value) if old_value is not None else b"", create_rev, prev_rev)
    return StoreEvent("delete" if deleted else "update", kv, prev)


def _live(row: Sequence[Any] | None) -> KeyValue | None:
    """The KeyValue of a key's latest row, or None when there is none or it is a tombstone."""
    if row is None or row[3]:
        return None
    return KeyValue(row[1], bytes(row[6]), row[4], row[0])


def _next_compact_rows(rows: int, elapsed: float) -> int:
    """The next compaction window: scaled toward ``_COMPACT_TXN_SECONDS``, at most doubling or halving."""
    scale = _COMPACT_TXN_SECONDS / elapsed if elapsed > 0 else 2.0
    scaled = int(rows * min(2.0, max(0.5, scale)))
    return min(_COMPACT_MAX_ROWS, max(_COMPACT_MIN_ROWS, scaled))


def _first(rows: Iterable[Any]) -> Any:
    """The first row of a result, or None."""
    for row in rows:
        return row
    return None


def _write_error(exc: Exception) -> StoreError:
    """What a caller of a failed batch is told. SQLITE_FULL (ENOSPC on the database or its WAL) is
    :class:`StorageFull`: the transaction was rolled back, so nothing was stored and a retry is safe."""
    code = getattr(exc, "sqlite_errorcode", None)
    err: StoreError
    if code == sqlite3.SQLITE_FULL:
        err = StorageFull(str(exc))
    else:
        err = StoreError(f"write failed: {exc}")
    err.__cause__ = exc
    return err


@dataclass(slots=True)
class _WriteOp:
    kind: Literal["create", "update", "delete"]
    key: str
    value: bytes
    expected: int
    future: asyncio.Future[int]


async def _stop_task(task: asyncio.Task[None] | None, *, cancel: bool) -> None:
    """Stop a background task without letting a stuck one hang close(): wait, cancel, wait, give up."""
    if task is None or task.done():
        return
    if cancel:
        task.cancel()
    done, _ = await asyncio.wait({task}, timeout=_STOP_TIMEOUT)
    if not done:
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=_STOP_TIMEOUT)
    if not done:
        log.warning("background task %s did not stop", task.get_name())
    elif not task.cancelled() and task.exception() is not None:
        log.error("background task %s failed", task.get_name(), exc_info=task.exception())


class SQLiteWatch:
    """One watch: a bounded buffer the poller fills, plus the history it reads on first iteration.

    The poller calls :meth:`_offer` synchronously on the event loop, so the buffer needs no lock. Iterate
    once; each step yields a non-empty batch of events in revision order.
    """

    def __init__(self, backend: SQLiteBackend, prefix: str, revision: int, capacity: int) -> None:
        self._backend = backend
        self._prefix = prefix
        self._revision = revision
        self._capacity = capacity
        self._pending: deque[StoreEvent] = deque()
        self._wakeup = asyncio.Event()
        self._error: StoreError | None = None
        self._closed = False
        self._iterated = False

    @property
    def prefix(self) -> str:
        return self._prefix

    def _offer(self, events: list[StoreEvent]) -> bool:
        """Buffer the events under this watch's prefix; False (and the watch fails) on overflow."""
        matching = [e for e in events if e.kv.key.startswith(self._prefix)]
        if not matching or self._closed or self._error is not None:
            return True
        if len(self._pending) + len(matching) > self._capacity:
            self._fail(WatchClosed(f"watch on {self._prefix!r} fell behind by more than {self._capacity}"))
            return False
        self._pending.extend(matching)
        self._wakeup.set()
        return True

    def _fail(self, error: StoreError) -> None:
        """End the watch with ``error``: buffered events are discarded, as the watcher must re-list."""
        if self._error is None and not self._closed:
            self._error = error
        self._pending.clear()
        self._wakeup.set()

    def __aiter__(self) -> AsyncIterator[list[StoreEvent]]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[list[StoreEvent]]:
        if self._iterated:
            raise RuntimeError("a watch can only be iterated once")
        self._iterated = True
        try:
            position = self._revision
            done = False
            while not done:
                if self._error is not None:
                    raise self._error
                if self._closed:
                    return
                events, done = await self._backend._history_page(self._prefix, position, self._revision)
                if events:
                    position = events[-1].revision
                    yield events
            while True:
                if self._error is not None:
                    raise self._error
                if self._closed:
                    return
                if not self._pending:
                    self._wakeup.clear()
                    await self._wakeup.wait()
                    continue
                # Live events may overlap the history just read: keep only what is newer.
                batch = [e for e in self._pending if e.revision > position]
                self._pending.clear()
                if batch:
                    position = batch[-1].revision
                    yield batch
        finally:
            self._backend._unsubscribe(self)

    async def close(self) -> None:
        """Unsubscribe; a pending or later iteration ends normally."""
        self._closed = True
        self._pending.clear()
        self._backend._unsubscribe(self)
        self._wakeup.set()

    async def __aenter__(self) -> SQLiteWatch:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


class SQLiteBackend:
    """The SQLite implementation of the Backend protocol (see the module docstring for the design)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        compact_interval: float = 300.0,
        keep_seconds: float = 300.0,
        keep_revisions: int = 10_000,
        poll_interval: float = 1.0,
        subscriber_queue: int = 10_000,
    ) -> None:
        self._path = os.fspath(path)
        self._compact_interval = compact_interval
        self._keep_seconds = keep_seconds
        self._keep_revisions = keep_revisions
        self._poll_interval = poll_interval
        self._subscriber_queue = subscriber_queue

        self._started = False
        self._closing = False
        self._writer_conn: aiosqlite.Connection | None = None
        self._reader_conns: list[aiosqlite.Connection] = []
        self._readers: asyncio.Queue[aiosqlite.Connection] = asyncio.Queue()
        self._write_queue: asyncio.Queue[_WriteOp | None] = asyncio.Queue()
        self._write_lock = asyncio.Lock()  # one write transaction at a time on the write connection
        self._compact_lock = asyncio.Lock()
        self._subscribers: set[SQLiteWatch] = set()
        self._poll_rev = 0  # highest revision the poller has fanned out
        self._poll_wake = asyncio.Event()
        self._poll_round = asyncio.Event()  # replaced and set at the end of every poll round
        self._writer_task: asyncio.Task[None] | None = None
        self._poller_task: asyncio.Task[None] | None = None
        self._compactor_task: asyncio.Task[None] | None = None
        self._aux_tasks: set[asyncio.Task[None]] = set()

    # ----------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Open the connections, create the schema if needed, start the writer, poller and compactor."""
        if self._started:
            raise RuntimeError("SQLiteBackend.start() called twice")
        self._started = True
        try:
            writer = await self._connect(readonly=False)
            self._writer_conn = writer
            await writer.execute_fetchall("PRAGMA journal_mode = WAL")
            await writer.execute_fetchall("PRAGMA secure_delete = FAST")
            await writer.execute_fetchall(f"PRAGMA cache_size = -{_WRITER_CACHE_KIB}")
            await writer.executescript(_SCHEMA)
            for _ in range(_READERS):
                conn = await self._connect(readonly=True)
                self._reader_conns.append(conn)
                self._readers.put_nowait(conn)
            self._poll_rev, _ = await self._heads()
        except BaseException:
            self._closing = True
            await self._close_connections()
            raise
        self._writer_task = asyncio.create_task(self._write_loop(), name="sqlite-store-writer")
        self._poller_task = asyncio.create_task(self._poll_loop(), name="sqlite-store-poller")
        self._compactor_task = asyncio.create_task(self._compact_loop(), name="sqlite-store-compactor")

    async def close(self) -> None:
        """Finish queued writes, stop the background tasks, end live watches, close the connections."""
        if not self._started or self._closing:
            return
        self._closing = True
        await _stop_task(self._compactor_task, cancel=True)
        self._write_queue.put_nowait(None)  # the writer commits what is queued before it, then exits
        await _stop_task(self._writer_task, cancel=False)
        while not self._write_queue.empty():
            op = self._write_queue.get_nowait()
            if op is not None and not op.future.done():
                op.future.set_exception(StoreError("store closed"))
        await _stop_task(self._poller_task, cancel=True)
        for sub in list(self._subscribers):
            sub._fail(WatchClosed("store closed"))
        self._subscribers.clear()
        self._poll_round.set()  # release compact() calls waiting on the poller
        for task in list(self._aux_tasks):
            await _stop_task(task, cancel=True)
        await self._close_connections()

    async def _connect(self, *, readonly: bool) -> aiosqlite.Connection:
        """Open one connection in autocommit mode (transactions are explicit) with our pragmas."""
        conn = await aiosqlite.connect(self._path, isolation_level=None, timeout=_BUSY_TIMEOUT_MS / 1000)
        try:
            await conn.execute_fetchall(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
            await conn.execute_fetchall("PRAGMA synchronous = FULL")
            if readonly:
                await conn.execute_fetchall("PRAGMA query_only = 1")
        except BaseException:
            await conn.close()
            raise
        return conn

    async def _close_connections(self) -> None:
        conns = [*self._reader_conns, *([self._writer_conn] if self._writer_conn else [])]
        self._reader_conns.clear()
        self._writer_conn = None
        for conn in conns:
            try:
                await conn.close()
            except Exception:
                log.warning("closing a store connection failed", exc_info=True)

    def _check_open(self) -> None:
        if not self._started or self._closing:
            raise StoreError("store is not open")

    # ----------------------------------------------------------------- reads

    @contextlib.asynccontextmanager
    async def _reader(self, *, transaction: bool = False) -> AsyncIterator[aiosqlite.Connection]:
        """Borrow a read connection, optionally inside a read transaction (one consistent snapshot).

        If the transaction cannot be ended (e.g. the caller was cancelled mid-statement), the connection
        may still be inside it, so it is replaced rather than returned to the pool.
        """
        self._check_open()
        conn = await self._readers.get()
        reusable = False
        try:
            if transaction:
                await conn.execute_fetchall("BEGIN")
            try:
                yield conn
            finally:
                if transaction:
                    await conn.execute_fetchall("ROLLBACK")  # read-only: nothing to commit
                reusable = True
        finally:
            if reusable:
                self._readers.put_nowait(conn)
            else:
                self._spawn(self._replace_reader(conn))

    async def _replace_reader(self, old: aiosqlite.Connection) -> None:
        with contextlib.suppress(ValueError):
            self._reader_conns.remove(old)
        with contextlib.suppress(Exception):
            await old.close()
        if self._closing:
            return
        conn = await self._connect(readonly=True)
        if self._closing:
            await conn.close()
            return
        self._reader_conns.append(conn)
        self._readers.put_nowait(conn)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro)
        self._aux_tasks.add(task)
        task.add_done_callback(self._aux_tasks.discard)

    @staticmethod
    async def _read_heads(conn: aiosqlite.Connection) -> tuple[int, int]:
        """(current revision, compacted revision) as seen by ``conn``'s snapshot."""
        row = _first(await conn.execute_fetchall(_SQL_HEADS))
        return int(row[0]), int(row[1])

    async def _heads(self) -> tuple[int, int]:
        async with self._reader() as conn:
            return await self._read_heads(conn)

    async def current_revision(self) -> int:
        """The highest revision ever written (0 for an empty store); never goes backwards."""
        return (await self._heads())[0]

    async def compacted_revision(self) -> int:
        return (await self._heads())[1]

    async def get(self, key: str) -> KeyValue | None:
        async with self._reader() as conn:
            return _live(_first(await conn.execute_fetchall(_SQL_LATEST, (key,))))

    async def list(
        self, prefix: str, revision: int = 0, start_key: str = "", limit: int = 0
    ) -> tuple[int, list[KeyValue], bool]:
        """Live keys under ``prefix`` as of ``revision`` (0: now); a revision above the current one reads
        at the current one, which is the revision returned."""
        async with self._reader(transaction=True) as conn:
            head, compacted = await self._read_heads(conn)
            if 0 < revision < compacted:
                raise Compacted(revision, compacted)
            at = head if revision <= 0 else min(revision, head)
            if limit > 0:
                # Walks the (name, id) index in key order and stops after limit + 1 keys: cheap pages.
                cond, params = _name_range(start_key, prefix, "k.name")
                sql = f"""
                    SELECT k.name, k.value, {_K_CREATE_REV}, k.id FROM kv AS k
                    WHERE {cond} AND k.id <= ? AND k.deleted = 0
                    AND k.id = (SELECT MAX(l.id) FROM kv AS l WHERE l.name = k.name AND l.id <= ?)
                    ORDER BY k.name LIMIT ?"""
                rows = await conn.execute_fetchall(sql, (*params, at, at, limit + 1))
            else:
                # One grouped pass over the index is faster when every key is wanted.
                cond, params = _name_range(start_key, prefix, "name")
                sql = f"""
                    SELECT k.name, k.value, {_K_CREATE_REV}, k.id
                    FROM (SELECT MAX(id) AS mid FROM kv WHERE {cond} AND id <= ? GROUP BY name) AS m
                    JOIN kv AS k ON k.id = m.mid WHERE k.deleted = 0 ORDER BY k.name"""
                rows = await conn.execute_fetchall(sql, (*params, at))
        items = [KeyValue(r[0], bytes(r[1]), r[2], r[3]) for r in rows]
        more = 0 < limit < len(items)
        return at, items[:limit] if more else items, more

    async def count(self, prefix: str) -> int:
        cond, params = _name_range("", prefix, "name")
        sql = f"""
            SELECT COUNT(*) FROM (SELECT MAX(id) AS mid FROM kv WHERE {cond} GROUP BY name) AS m
            JOIN kv AS k ON k.id = m.mid WHERE k.deleted = 0"""
        async with self._reader() as conn:
            return int(_first(await conn.execute_fetchall(sql, params))[0])

    # ----------------------------------------------------------------- writes

    async def create(self, key: str, value: bytes) -> int:
        return await self._submit("create", key, value, 0)

    async def update(self, key: str, value: bytes, expected_revision: int) -> int:
        return await self._submit("update", key, value, expected_revision)

    async def delete(self, key: str, expected_revision: int = 0) -> int:
        return await self._submit("delete", key, b"", expected_revision)

    async def _submit(
        self, kind: Literal["create", "update", "delete"], key: str, value: bytes, rev: int
    ) -> int:
        """Queue a write for the writer task and wait for its own outcome."""
        self._check_open()
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._write_queue.put_nowait(_WriteOp(kind, key, bytes(value), rev, future))
        return await future

    async def _write_loop(self) -> None:
        """Take whatever is queued (up to a batch) and commit it together; a None entry means stop."""
        stopping = False
        while not stopping:
            first = await self._write_queue.get()
            if first is None:
                break
            batch = [first]
            while len(batch) < _MAX_BATCH and not self._write_queue.empty():
                nxt = self._write_queue.get_nowait()
                if nxt is None:
                    stopping = True
                    break
                batch.append(nxt)
            # A caller cancelled before we started no longer wants its write.
            batch = [op for op in batch if not op.future.done()]
            if batch:
                await self._commit_batch(batch)

    async def _commit_batch(self, batch: builtins.list[_WriteOp]) -> None:
        """Run the batch in one transaction; a per-op StoreError fails only that op, anything else (I/O
        error, disk full) rolls back and fails the whole batch, since none of it was committed."""
        ts = time.time()
        outcomes: builtins.list[int | StoreError] = []
        try:
            async with self._write_lock:
                conn = self._writer_conn
                if conn is None:
                    raise StoreError("store is not open")
                await conn.execute_fetchall("BEGIN IMMEDIATE")
                try:
                    for op in batch:
                        try:
                            outcomes.append(await self._apply(conn, op, ts))
                        except StoreError as e:
                            outcomes.append(e)
                    await conn.execute_fetchall("COMMIT")
                except BaseException:
                    await self._rollback(conn)
                    raise
        except asyncio.CancelledError:
            for op in batch:
                if not op.future.done():
                    op.future.set_exception(StoreError("store closed before the write was confirmed"))
            raise
        except Exception as exc:
            log.warning("write batch of %d failed: %s", len(batch), exc)
            for op in batch:
                if not op.future.done():
                    op.future.set_exception(_write_error(exc))
            return
        for op, outcome in zip(batch, outcomes, strict=True):
            if op.future.done():
                continue
            if isinstance(outcome, StoreError):
                op.future.set_exception(outcome)
            else:
                op.future.set_result(outcome)
        self._poll_wake.set()

    async def _apply(self, conn: aiosqlite.Connection, op: _WriteOp, ts: float) -> int:
        """One write inside the open transaction: the conditional insert, then on failure one read to say
        why. Raises the op's StoreError."""
        if op.kind == "create":
            sql, params = _SQL_CREATE, {"key": op.key, "value": op.value, "ts": ts}
        elif op.kind == "update":
            sql, params = _SQL_UPDATE, {"key": op.key, "value": op.value, "expected": op.expected, "ts": ts}
        else:
            sql, params = _SQL_DELETE, {"key": op.key, "expected": op.expected, "ts": ts}
        try:
            row = _first(await conn.execute_fetchall(sql, params))
        except sqlite3.IntegrityError:
            row = None  # the UNIQUE(name, prev_revision) backstop: the row was already extended
        if row is not None:
            return int(row[0])
        if op.kind == "create":
            raise KeyExists(op.key)
        current = _live(_first(await conn.execute_fetchall(_SQL_LATEST, (op.key,))))
        if current is None:
            raise KeyNotFound(op.key)
        raise Conflict(op.key, current)

    @staticmethod
    async def _rollback(conn: aiosqlite.Connection) -> None:
        with contextlib.suppress(Exception):
            await conn.execute_fetchall("ROLLBACK")

    # ----------------------------------------------------------------- watch

    def watch(self, prefix: str, revision: int) -> SQLiteWatch:
        """Subscribe now (so nothing committed from here on is missed); history is read on iteration."""
        sub = SQLiteWatch(self, prefix, revision, self._subscriber_queue)
        if not self._started or self._closing:
            sub._fail(WatchClosed("store is not open"))
        else:
            self._subscribers.add(sub)
        return sub

    def _unsubscribe(self, sub: SQLiteWatch) -> None:
        self._subscribers.discard(sub)

    async def _history_page(
        self, prefix: str, position: int, requested: int
    ) -> tuple[builtins.list[StoreEvent], bool]:
        """Events under ``prefix`` after ``position`` from the table; True when this was the last page.

        Compaction is checked in the same snapshot as the read, so a compaction racing a long replay is
        reported rather than silently skipping events.
        """
        if self._closing or not self._started:
            raise WatchClosed("store is not open")
        cond, params = _name_range("", prefix, "name")
        try:
            async with self._reader(transaction=True) as conn:
                _, compacted = await self._read_heads(conn)
                if position < compacted:
                    raise Compacted(requested, compacted)
                rows = await conn.execute_fetchall(
                    f"SELECT {_ROW} FROM kv WHERE id > ? AND {cond} ORDER BY id LIMIT ?",
                    (position, *params, _HISTORY_PAGE),
                )
        except (sqlite3.Error, ValueError) as exc:
            if self._closing:
                raise WatchClosed("store closed") from exc
            raise
        events = [_event(r) for r in rows]
        return events, len(events) < _HISTORY_PAGE

    async def _poll_loop(self) -> None:
        """The single source of live events: woken by local commits, otherwise polls for other writers."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poll_wake.wait(), self._poll_interval)
            self._poll_wake.clear()
            if self._closing:  # close() is stopping us: the connections are about to go
                return
            try:
                await self._poll_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("store poll failed; retrying")
            finally:
                done, self._poll_round = self._poll_round, asyncio.Event()
                done.set()

    async def _poll_once(self) -> None:
        while True:
            async with self._reader(transaction=True) as conn:
                rows = list(await conn.execute_fetchall(_SQL_POLL, (self._poll_rev, _POLL_PAGE)))
                head, compacted = await self._read_heads(conn)
            if compacted > self._poll_rev and self._subscribers:
                # Another process compacted history this poller had not read: events may be lost.
                for sub in list(self._subscribers):
                    sub._fail(WatchClosed("history compacted before it was delivered"))
                self._subscribers.clear()
            events = [_event(r) for r in rows]
            if events:
                for sub in list(self._subscribers):
                    if not sub._offer(events):
                        self._subscribers.discard(sub)
            full = len(rows) == _POLL_PAGE
            # The snapshot holds every row up to head, so a short page means we have seen all of them
            # (head may exceed the last row when the newest rows were compacted tombstones).
            self._poll_rev = events[-1].revision if full else max(self._poll_rev, head)
            if not full:
                return

    async def _wait_poll_round(self) -> None:
        waiter = self._poll_round
        self._poll_wake.set()
        await waiter.wait()

    # ----------------------------------------------------------------- compaction

    async def compact(self, revision: int) -> int:
        """Remove rows at or below ``revision`` that no read at or after it needs: rows superseded by a
        later row at or below it, and tombstones (with what they superseded). Clamped to what the local
        poller has fanned out, so live watches never miss an event. Returns the number of rows removed."""
        async with self._compact_lock:
            self._check_open()
            head, compacted = await self._heads()
            target = min(revision, head)
            for _ in range(2):  # a round already running may have started before the newest commits
                if self._poll_rev >= target or self._closing:
                    break
                await self._wait_poll_round()
            target = min(target, self._poll_rev)
            if target <= compacted:
                return 0
            await self._write_transaction(self._mark_compacted, target)
            removed = 0
            low: str | None = ""
            rows = _COMPACT_ROWS
            await self._set_autocheckpoint(0)
            try:
                while low is not None:
                    started = time.perf_counter()
                    n, low = await self._write_transaction(self._compact_keys, low, rows, compacted, target)
                    removed += n
                    rows = _next_compact_rows(rows, time.perf_counter() - started)
                    await self._checkpoint()
            finally:
                with contextlib.suppress(Exception):  # shielded: a cancelled compact() still restores it
                    await asyncio.shield(self._set_autocheckpoint(_AUTOCHECKPOINT_PAGES))
            return removed

    async def _set_autocheckpoint(self, pages: int) -> None:
        """While compacting, the writer's commits do not checkpoint (a checkpoint of a window's pages in
        its commit held the write lock for hundreds of ms on a busy disk); :meth:`_checkpoint` does it
        between windows instead, without the write lock."""
        async with self._write_lock:
            if self._writer_conn is not None:
                await self._writer_conn.execute_fetchall(f"PRAGMA wal_autocheckpoint = {int(pages)}")

    async def _checkpoint(self) -> None:
        """Copy the WAL back to the database from a read connection: PASSIVE, so writers go on."""
        try:
            async with self._reader() as conn:
                await conn.execute_fetchall("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error as exc:  # e.g. the database file cannot grow: the frames stay in the WAL
            log.warning("WAL checkpoint failed: %s", exc)

    async def _write_transaction(self, body: Callable[..., Awaitable[_T]], *args: Any) -> _T:
        """Run ``body(conn, *args)`` in one write transaction on the write connection, between batches."""
        async with self._write_lock:
            self._check_open()
            conn = self._writer_conn
            assert conn is not None
            try:
                await conn.execute_fetchall("BEGIN IMMEDIATE")
                try:
                    result = await body(conn, *args)
                    await conn.execute_fetchall("COMMIT")
                except BaseException:
                    await self._rollback(conn)
                    raise
            except sqlite3.Error as exc:  # a full disk is StorageFull here too
                raise _write_error(exc) from exc
        return result

    @staticmethod
    async def _mark_compacted(conn: aiosqlite.Connection, target: int) -> None:
        await conn.execute_fetchall(_SQL_SET_COMPACTED, (target,))

    @staticmethod
    async def _compact_keys(
        conn: aiosqlite.Connection, low: str, rows: int, since: int, target: int
    ) -> tuple[int, str | None]:
        """Delete the garbage at or below ``target`` (compacted before: up to ``since``) of the keys from
        ``low`` on, about ``rows`` rows of them. Returns (rows removed, the next window's first key or None
        when done)."""
        bound = _first(await conn.execute_fetchall(_SQL_COMPACT_BOUND, (low, rows)))
        params: dict[str, Any] = {"low": low, "since": since, "target": target}
        nxt: str | None
        if bound is None:  # the rest of the keys
            cond, nxt = "k.name >= :low", None
        elif bound[0] == low:  # one key with more than ``rows`` rows: alone in its window
            cond = "k.name = :low"
            nxt = _first(await conn.execute_fetchall(_SQL_NEXT_NAME, (low,)))[0]
        else:
            cond, nxt = "k.name >= :low AND k.name < :high", bound[0]
            params["high"] = bound[0]
        await conn.execute_fetchall(_SQL_COMPACT_KEYS.format(cond=cond), params)
        removed = _first(await conn.execute_fetchall("SELECT changes()"))[0]
        return int(removed), nxt

    async def _retention_target(self) -> int:
        """The revision to compact to: keep at least ``keep_seconds`` and ``keep_revisions`` of history."""
        async with self._reader(transaction=True) as conn:
            head, compacted = await self._read_heads(conn)
            cutoff = time.time() - self._keep_seconds
            # Scans forward from the compacted revision and stops at the first row young enough to keep.
            row = _first(
                await conn.execute_fetchall(
                    "SELECT id FROM kv WHERE id > ? AND ts > ? ORDER BY id LIMIT 1", (compacted, cutoff)
                )
            )
        by_time = int(row[0]) - 1 if row is not None else head
        by_count = head - self._keep_revisions
        target = min(by_time, by_count)
        return target if target > compacted else 0

    async def _compact_loop(self) -> None:
        while True:
            await asyncio.sleep(self._compact_interval)
            try:
                target = await self._retention_target()
                if target > 0:
                    removed = await self.compact(target)
                    log.debug("compacted to revision %d, removed %d rows", target, removed)
            except asyncio.CancelledError:
                raise
            except StorageFull as exc:
                log.warning("store compaction postponed: %s", exc)
            except Exception:
                log.exception("store compaction failed; will retry")
