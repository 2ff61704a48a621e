"""The typed layer over the store: API objects in, API objects out.

Objects are stored as msgspec JSON without ``metadata.resourceVersion``; the key's revision is put back
on every read, so the resourceVersion a client sees is always the store's revision of that write.
Store errors become API errors here, so handlers never see a raw ``KeyExists`` or ``Conflict``.

Reads that only pass objects on (a LIST answered as JSON) need not decode them at all: :func:`stamp`
splices the resourceVersion into the stored bytes, which are already the object's JSON.
"""

from __future__ import annotations

import builtins
import contextlib
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import TypeVar

import msgspec

from controlplane import collector
from controlplane.api.meta import TopLevel
from controlplane.api.registry import RESOURCES, ResourceInfo
from controlplane.store import (
    Backend,
    Compacted,
    Conflict,
    KeyExists,
    KeyNotFound,
    KeyValue,
    StorageFull,
    StoreError,
)

from . import errors

T = TypeVar("T", bound=TopLevel)

_encoder = msgspec.json.Encoder()
_decoders: dict[type, msgspec.json.Decoder] = {}

# Longest prefix first, so that a plural that prefixes another never shadows it.
_PREFIXES = sorted(((r.prefix(), r) for r in RESOURCES), key=lambda p: -len(p[0]))


def _decoder(cls: type) -> msgspec.json.Decoder:
    dec = _decoders.get(cls)
    if dec is None:
        dec = _decoders[cls] = msgspec.json.Decoder(cls)
    return dec


def info_for_key(key: str) -> ResourceInfo | None:
    for prefix, info in _PREFIXES:
        if key.startswith(prefix):
            return info
    return None


def decode(info: ResourceInfo, kv: KeyValue) -> TopLevel:
    """Decode a stored value, stamping the key's revision as its resourceVersion."""
    obj: TopLevel = _decoder(info.type).decode(kv.value)
    obj.metadata.resource_version = str(kv.mod_revision)  # type: ignore[attr-defined]
    return obj


S = TypeVar("S", bound=msgspec.Struct)


def clone(obj: S) -> S:
    """A deep copy through msgspec (what storage does to every object anyway): several times faster
    than ``copy.deepcopy``, which walks the Structs in Python."""
    return _decoder(type(obj)).decode(_encoder.encode(obj))


def decode_all(info: ResourceInfo, kvs: Iterable[KeyValue]) -> builtins.list[TopLevel]:
    """Many stored values decoded at once, the cyclic collector paused (:mod:`controlplane.collector`)."""
    with collector.paused():
        return [decode(info, kv) for kv in kvs]


def encode(obj: TopLevel) -> bytes:
    """Encode for storage: the resourceVersion is the store's business, not the value's."""
    meta = obj.metadata  # type: ignore[attr-defined]
    rv = meta.resource_version
    meta.resource_version = None
    try:
        return _encoder.encode(obj)
    finally:
        meta.resource_version = rv


_METADATA = b'"metadata":{'


def stamp(info: ResourceInfo, kv: KeyValue) -> bytes:
    """A stored value as the API serves it: the same JSON with ``metadata.resourceVersion`` set to the
    key's revision, without decoding it. Values are written by :func:`encode` (``apiVersion``, ``kind``,
    then ``metadata``, no resourceVersion); anything not in that shape is decoded and re-encoded."""
    value = kv.value
    at = value.find(_METADATA, 0, 256)
    # The key is the top-level one when no object opens before it: a JSON string cannot hold the
    # pattern (its quotes would be escaped). No stored value has a resourceVersion (encode drops it).
    if at < 0 or value[:1] != b"{" or value.find(b"{", 1, at) >= 0:
        return _encoder.encode(decode(info, kv))
    end = at + len(_METADATA)
    rv = b'"resourceVersion":"%d"' % kv.mod_revision
    return value[:end] + rv + (b"" if value[end : end + 1] == b"}" else b",") + value[end:]


def name_of(obj: TopLevel) -> str:
    return obj.metadata.name or ""  # type: ignore[attr-defined]


def namespace_of(obj: TopLevel) -> str | None:
    return obj.metadata.namespace  # type: ignore[attr-defined]


def parse_rv(value: str | None, what: str = "resourceVersion") -> int:
    if not value:
        return 0
    try:
        rv = int(value)
    except ValueError:
        raise errors.bad_request(f'invalid {what} "{value}": must be an integer') from None
    if rv < 0:
        raise errors.bad_request(f'invalid {what} "{value}": must not be negative')
    return rv


@contextlib.contextmanager
def _as_api_errors(info: ResourceInfo, name: str) -> Iterator[None]:
    """Store errors in the API's words: 404 NotFound, 409 AlreadyExists or Conflict, and a 500 Status
    that says what failed (a full disk, an I/O error) when the write could not be stored at all."""
    try:
        yield
    except KeyExists:
        raise errors.already_exists(info.plural, name, info.group) from None
    except KeyNotFound:
        raise errors.not_found(info.plural, name, info.group) from None
    except Conflict:
        raise errors.conflict(info.plural, name, errors.STALE, info.group) from None
    except StorageFull as exc:
        raise errors.storage_full(
            f"{info.plural} {name!r} was not stored: the data directory's disk is full ({exc})"
        ) from None
    except StoreError as exc:
        raise errors.internal(f"{info.plural} {name!r} was not stored: {exc}") from None


class ObjectStorage:
    """Typed get/list/create/update/delete over a Backend, with Kubernetes error semantics."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    async def get(self, info: ResourceInfo, namespace: str | None, name: str) -> TopLevel:
        kv = await self.backend.get(info.key(namespace, name))
        if kv is None:
            raise errors.not_found(info.plural, name, info.group)
        return decode(info, kv)

    async def get_encoded(self, info: ResourceInfo, namespace: str | None, name: str) -> bytes:
        """:meth:`get` as the JSON served, without decoding (see :func:`stamp`)."""
        kv = await self.backend.get(info.key(namespace, name))
        if kv is None:
            raise errors.not_found(info.plural, name, info.group)
        return stamp(info, kv)

    async def try_get(self, info: ResourceInfo, namespace: str | None, name: str) -> TopLevel | None:
        kv = await self.backend.get(info.key(namespace, name))
        return None if kv is None else decode(info, kv)

    async def list(
        self,
        info: ResourceInfo,
        namespace: str | None,
        *,
        revision: int = 0,
        start_key: str = "",
        limit: int = 0,
    ) -> tuple[int, list[TopLevel], str | None]:
        """One page of objects. Returns (revision read at, objects, key to continue from or None)."""
        rev, kvs, next_key = await self.list_values(
            info, namespace, revision=revision, start_key=start_key, limit=limit
        )
        return rev, decode_all(info, kvs), next_key

    async def list_values(
        self,
        info: ResourceInfo,
        namespace: str | None,
        *,
        revision: int = 0,
        start_key: str = "",
        limit: int = 0,
    ) -> tuple[int, builtins.list[KeyValue], str | None]:
        """:meth:`list` without decoding: the stored key-values, for callers that may not need objects."""
        prefix = info.prefix(namespace)
        try:
            rev, kvs, more = await self.backend.list(prefix, revision, start_key, limit)
        except Compacted as exc:
            raise errors.expired(exc.requested, exc.compacted + 1) from None
        next_key = kvs[-1].key + "\x00" if more and kvs else None
        return rev, kvs, next_key

    async def create(self, info: ResourceInfo, obj: T) -> T:
        with _as_api_errors(info, name_of(obj)):
            rev = await self.backend.create(info.key(namespace_of(obj), name_of(obj)), encode(obj))
        obj.metadata.resource_version = str(rev)  # type: ignore[attr-defined]
        return obj

    async def update(self, info: ResourceInfo, obj: T, expected: int) -> T:
        with _as_api_errors(info, name_of(obj)):
            rev = await self.backend.update(info.key(namespace_of(obj), name_of(obj)), encode(obj), expected)
        obj.metadata.resource_version = str(rev)  # type: ignore[attr-defined]
        return obj

    async def delete(self, info: ResourceInfo, obj: T, expected: int = 0) -> T:
        """Delete; returns the last state stamped with the deletion's revision."""
        with _as_api_errors(info, name_of(obj)):
            rev = await self.backend.delete(info.key(namespace_of(obj), name_of(obj)), expected)
        obj.metadata.resource_version = str(rev)  # type: ignore[attr-defined]
        return obj

    async def guaranteed_update(
        self,
        info: ResourceInfo,
        namespace: str | None,
        name: str,
        mutate: Callable[[TopLevel], Awaitable[TopLevel | None]],
        *,
        attempts: int = 16,
    ) -> TopLevel:
        """Read-modify-write with compare-and-swap, retried on conflict. ``mutate`` gets a fresh copy
        and returns the new object, or None to leave it unchanged."""
        for _ in range(attempts):
            current = await self.get(info, namespace, name)
            expected = int(current.metadata.resource_version)  # type: ignore[attr-defined]
            updated = await mutate(current)
            if updated is None:
                return current
            try:
                return await self.update(info, updated, expected)
            except errors.APIError as exc:
                if exc.status.reason != "Conflict":
                    raise
        raise errors.conflict(info.plural, name, "too many concurrent writers; try again", info.group)
