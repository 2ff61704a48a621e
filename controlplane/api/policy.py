"""policy/v1 Eviction: the body of ``POST pods/{name}/eviction``, a delete that respects disruption
budgets in Kubernetes (peapod has no PodDisruptionBudgets, so every eviction is allowed).

Also the protobuf wire form of Eviction and DeleteOptions: client-go's typed clients (``kubectl drain``)
send these bodies as ``application/vnd.kubernetes.protobuf`` (the ``k8s\\0`` envelope around a
``runtime.Unknown``), and only the few fields a delete needs are read from it.
"""

from __future__ import annotations

from typing import Any

import msgspec

from .meta import DeleteOptions, ObjectMeta, TopLevel

PROTOBUF = "application/vnd.kubernetes.protobuf"
_MAGIC = b"k8s\x00"


class Eviction(TopLevel):
    api_version: str = "policy/v1"
    kind: str = "Eviction"
    metadata: ObjectMeta = msgspec.field(default_factory=ObjectMeta)
    delete_options: DeleteOptions | None = None


class ProtobufError(ValueError):
    """A protobuf body that does not parse."""


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ProtobufError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def _fields(data: bytes) -> list[tuple[int, int | bytes]]:
    """(field number, value) pairs: varints as ints, length-delimited (and fixed) fields as bytes."""
    out: list[tuple[int, int | bytes]] = []
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        value: int | bytes
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 2:
            size, pos = _varint(data, pos)
            if pos + size > len(data):
                raise ProtobufError("truncated field")
            value, pos = data[pos : pos + size], pos + size
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            value, pos = data[pos : pos + size], pos + size
        else:
            raise ProtobufError(f"unsupported wire type {wire}")
        out.append((number, value))
    return out


def _text(value: int | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _int64(value: int | bytes) -> int:
    number = value if isinstance(value, int) else 0
    return number - (1 << 64) if number >= 1 << 63 else number


def unwrap(body: bytes) -> tuple[str, str, bytes]:
    """The envelope: (apiVersion, kind, raw message bytes)."""
    if not body.startswith(_MAGIC):
        raise ProtobufError("missing the k8s protobuf prefix")
    api_version = kind = ""
    raw = b""
    for number, value in _fields(body[len(_MAGIC) :]):
        if number == 1 and isinstance(value, bytes):
            for n, v in _fields(value):
                if n == 1:
                    api_version = _text(v)
                elif n == 2:
                    kind = _text(v)
        elif number == 2 and isinstance(value, bytes):
            raw = value
    return api_version, kind, raw


def delete_options_fields(raw: bytes) -> dict[str, Any]:
    """meta/v1 DeleteOptions (as JSON field names) from its protobuf message."""
    out: dict[str, Any] = {}
    for number, value in _fields(raw):
        if number == 1:
            out["gracePeriodSeconds"] = _int64(value)
        elif number == 2 and isinstance(value, bytes):
            pre = {}
            for n, v in _fields(value):
                if n in (1, 2):
                    pre["uid" if n == 1 else "resourceVersion"] = _text(v)
            out["preconditions"] = pre
        elif number == 3:
            out["orphanDependents"] = bool(value)
        elif number == 4:
            out["propagationPolicy"] = _text(value)
        elif number == 5:
            out.setdefault("dryRun", []).append(_text(value))
    return out


def eviction_fields(raw: bytes) -> dict[str, Any]:
    """policy/v1 Eviction (as JSON field names) from its protobuf message."""
    out: dict[str, Any] = {"apiVersion": "policy/v1", "kind": "Eviction"}
    for number, value in _fields(raw):
        if number == 1 and isinstance(value, bytes):
            meta: dict[str, Any] = {}
            for n, v in _fields(value):
                if n == 1:
                    meta["name"] = _text(v)
                elif n == 3:
                    meta["namespace"] = _text(v)
            out["metadata"] = meta
        elif number == 2 and isinstance(value, bytes):
            out["deleteOptions"] = delete_options_fields(value)
    return out


def decode_protobuf(body: bytes) -> dict[str, Any]:
    """An Eviction or DeleteOptions protobuf body as the plain values its JSON form would give."""
    api_version, kind, raw = unwrap(body)
    if kind == "Eviction":
        return eviction_fields(raw)
    if kind == "DeleteOptions":
        return {"apiVersion": api_version or "v1", "kind": kind, **delete_options_fields(raw)}
    raise ProtobufError(f"protobuf bodies of kind {kind or 'unknown'!r} are not supported: send JSON")
