"""Watch streams: newline-delimited ``{"type": ..., "object": ...}`` frames, encoded with msgspec.

A watch with no resourceVersion (or "0") starts with a synthetic ADDED for every current object, as
Kubernetes does; with a resourceVersion it replays what changed after it. Label and field selectors
are applied to both the old and the new object, so an object that stops matching is seen as DELETED
and one that starts matching as ADDED. Bookmarks, when asked for, carry the latest revision so an idle
watcher can resume without a re-list.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass

import msgspec

from controlplane.api.meta import ObjectMeta, Status, TopLevel
from controlplane.store import WatchClosed
from controlplane.tables import build_table

from . import errors
from .handlers import API, ListQuery
from .request import RequestInfo
from .watchcache import Change, Subscription, WatchCache

_encoder = msgspec.json.Encoder()
_CHUNK = 64 * 1024  # bytes of frames joined into one write


@dataclass(frozen=True)
class WatchParams:
    resource_version: str
    timeout: float
    bookmarks: bool
    bookmark_interval: float
    as_table: bool
    include_object: str

    @classmethod
    def from_query(cls, query: dict[str, str], as_table: bool, bookmark_interval: float) -> WatchParams:
        timeout_text = query.get("timeoutSeconds")
        try:
            timeout = float(timeout_text) if timeout_text else random.uniform(1800, 3600)
        except ValueError:
            raise errors.bad_request(f'invalid timeoutSeconds "{timeout_text}"') from None
        return cls(
            resource_version=query.get("resourceVersion", ""),
            timeout=timeout,
            bookmarks=query.get("allowWatchBookmarks") in ("true", "1"),
            bookmark_interval=bookmark_interval,
            as_table=as_table,
            include_object=query.get("includeObject", "Metadata"),
        )


def frame(event_type: str, obj_bytes: bytes) -> bytes:
    return b'{"type":"' + event_type.encode() + b'","object":' + obj_bytes + b"}\n"


class _Encoder:
    """Encodes objects for one stream: shared JSON bytes per change, or a one-row Table."""

    def __init__(self, ri: RequestInfo, params: WatchParams) -> None:
        self.ri = ri
        self.params = params
        self.first_table = True

    def object_bytes(self, obj: TopLevel, change: Change | None = None) -> bytes:
        if self.params.as_table:
            table = build_table(self.ri.info, [obj], include_object=self.params.include_object)  # type: ignore[arg-type]
            if not self.first_table:
                table.column_definitions = []
            self.first_table = False
            return _encoder.encode(table)
        if change is not None:
            if change.encoded is None:
                change.encoded = _encoder.encode(change.obj)
            return change.encoded
        return _encoder.encode(obj)

    def change_frame(self, change: Change, kind: str) -> bytes:
        """The frame for ``change`` seen as ``kind``. A plain JSON frame of the change's own type is
        built once and the same bytes go to every watcher that gets it."""
        if kind == "DELETED" and change.type == "MODIFIED" and change.prev is not None:
            # It stopped matching the selector: like Kubernetes, the watcher is shown the object as it
            # last matched, at the change's resourceVersion.
            gone = _at_revision(change.prev, change.revision)
            return frame(kind, self.object_bytes(gone))
        if kind != change.type or self.params.as_table:
            return frame(kind, self.object_bytes(change.obj, change))
        if change.framed is None:
            change.framed = frame(kind, self.object_bytes(change.obj, change))
        return change.framed


def _at_revision(obj: TopLevel, revision: int) -> TopLevel:
    meta = msgspec.structs.replace(obj.metadata, resource_version=str(revision))  # type: ignore[attr-defined]
    return msgspec.structs.replace(obj, metadata=meta)


def _chunks(frames: Iterable[bytes]) -> Iterator[bytes]:
    """Frames joined into chunks of about ``_CHUNK`` bytes: each chunk costs a trip through Starlette,
    uvicorn, h11 and a socket write whatever its size, and a bounded size bounds the copies."""
    chunk: list[bytes] = []
    size = 0
    for f in frames:
        chunk.append(f)
        size += len(f)
        if size >= _CHUNK:
            yield b"".join(chunk)
            chunk, size = [], 0
    if chunk:
        yield b"".join(chunk)


def _classify(change: Change, q: ListQuery) -> str | None:
    """The event type this watcher sees for a change, given its selectors (None: not its business)."""
    if q.labels is None and q.fields is None:
        return change.type
    new_ok = change.type != "DELETED" and q.matches(change.obj)
    if change.type == "DELETED":
        return "DELETED" if q.matches(change.obj) else None
    old = change.prev
    old_ok = old is not None and q.matches(old)
    if new_ok and old_ok:
        return "MODIFIED"
    if new_ok:
        return "ADDED"
    if old_ok:
        return "DELETED"
    return None


async def watch_stream(
    api: API, cache: WatchCache, ri: RequestInfo, q: ListQuery, params: WatchParams
) -> AsyncIterator[bytes]:
    """The body of a watch response; raises nothing (errors become an ERROR frame)."""
    enc = _Encoder(ri, params)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + params.timeout
    sub: Subscription | None = None
    try:
        if params.resource_version in ("", "0"):
            revision, items, _ = await api.list(ri, ListQuery(q.labels, q.fields, 0, 0, "", 0))
            sub = cache.subscribe(ri.info.prefix(ri.namespace), revision)
            for chunk in _chunks(frame("ADDED", enc.object_bytes(obj)) for obj in items):
                yield chunk
        else:
            try:
                after = int(params.resource_version)
            except ValueError:
                raise errors.bad_request(f'invalid resourceVersion "{params.resource_version}"') from None
            sub = cache.subscribe(ri.info.prefix(ri.namespace), after)
        last_bookmark = loop.time()
        plain = q.labels is None and q.fields is None
        while loop.time() < deadline:
            wake = deadline
            if params.bookmarks:
                wake = min(wake, last_bookmark + params.bookmark_interval)
            batch = await sub.next_batch_until(wake)
            if batch:
                # Everything that is ready goes out together (a watcher that fell behind, a replay).
                if plain:
                    frames = [enc.change_frame(c, c.type) for c in batch]
                else:
                    frames = [enc.change_frame(c, k) for c in batch if (k := _classify(c, q)) is not None]
                if len(frames) == 1:
                    yield frames[0]
                else:
                    for chunk in _chunks(frames):
                        yield chunk
            if params.bookmarks and loop.time() >= last_bookmark + params.bookmark_interval:
                last_bookmark = loop.time()
                if sub.idle():
                    yield frame("BOOKMARK", bookmark(ri, sub.delivered_revision()))
    except errors.APIError as exc:
        yield frame("ERROR", _encoder.encode(exc.status))
    except WatchClosed:
        return
    finally:
        if sub is not None:
            await sub.close()


def bookmark(ri: RequestInfo, revision: int) -> bytes:
    obj = ri.info.type(metadata=ObjectMeta(resource_version=str(revision)))
    raw = msgspec.to_builtins(obj)
    return _encoder.encode(
        {"kind": raw["kind"], "apiVersion": raw["apiVersion"], "metadata": {"resourceVersion": str(revision)}}
    )


def error_frame(status: Status) -> bytes:
    return frame("ERROR", _encoder.encode(status))
