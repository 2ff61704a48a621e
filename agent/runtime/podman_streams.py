"""Podman's streaming endpoints, for ``kubectl logs -f`` and ``kubectl exec``: the pieces that httpx
cannot do or that must work chunk by chunk.

* Docker's multiplexed stream: Podman's logs and (non-tty) exec endpoints frame their output as an
  8-byte header (stream byte 1 = stdout, 2 = stderr, three zero bytes, big-endian payload length) and the
  payload. :class:`FrameDemuxer` takes arbitrary chunks and gives back whole frames, in order.
* The hijacked connection: ``POST /exec/{id}/start`` with ``Connection: Upgrade`` / ``Upgrade: tcp``
  answers ``101 UPGRADED`` and then the same socket carries the process's stdin one way and its output
  the other; half-closing our side (``write_eof``) is stdin's EOF. httpx cannot hand the socket over, so
  :func:`open_upgraded` writes the one HTTP/1.1 request itself on ``asyncio.open_unix_connection`` and
  reads the status line and headers; an error answer (4xx/5xx) becomes a RuntimeFailure with Podman's
  message.
* :class:`PodmanExec` is one exec session over such a connection (read, write, close stdin, resize,
  exit code), which ``agent.streams`` bridges to the websocket.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from controlplane.client.streams import STDERR, STDOUT, format_rfc3339

from .base import RuntimeFailure

__all__ = ["FrameDemuxer", "PodmanExec", "open_upgraded", "utc_timestamp_prefix"]

_HEADER = 8
_MAX_HEAD = 64 * 1024


class FrameDemuxer:
    """Docker-multiplexed frames from a byte stream cut anywhere. Bytes that do not start with a valid
    header (a tty's raw output, or a stream that is not multiplexed) are passed through as stdout."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._raw = False

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        if self._raw:
            return [(STDOUT, data)] if data else []
        self._buf += data
        out: list[tuple[int, bytes]] = []
        while len(self._buf) >= _HEADER:
            kind = self._buf[0]
            if kind not in (0, 1, 2) or self._buf[1:4] != b"\0\0\0":
                self._raw = True
                rest, self._buf = bytes(self._buf), bytearray()
                out.append((STDOUT, rest))
                break
            size = int.from_bytes(self._buf[4:8], "big")
            if len(self._buf) < _HEADER + size:
                break
            payload = bytes(self._buf[_HEADER : _HEADER + size])
            del self._buf[: _HEADER + size]
            if payload:
                out.append((STDERR if kind == 2 else STDOUT, payload))
        return out

    def flush(self) -> list[tuple[int, bytes]]:
        """At the end of the stream: whatever incomplete bytes are left, as stdout."""
        rest, self._buf = bytes(self._buf), bytearray()
        return [(STDOUT, rest)] if rest else []


def utc_timestamp_prefix(line: bytes) -> bytes:
    """Podman prefixes each log line with its time in RFC 3339 and the machine's offset; Kubernetes
    writes UTC with a ``Z``. Lines without a parsable prefix are returned unchanged."""
    stamp, sep, rest = line.partition(b" ")
    if not sep:
        return line
    try:
        when = dt.datetime.fromisoformat(stamp.decode("ascii").replace("Z", "+00:00"))
    except (UnicodeDecodeError, ValueError):
        return line
    if when.tzinfo is None:
        return line
    return format_rfc3339(when).encode() + b" " + rest


async def open_upgraded(
    socket_path: Path, path: str, body: dict[str, Any], *, timeout: float = 30.0
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """``POST path`` on Podman's socket asking for the connection (HTTP/1.1 Upgrade); returns the raw
    stream once the answer's headers are read. Podman says ``101 UPGRADED`` (a plain 200 is accepted
    too: it hijacks the connection either way)."""
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_unix_connection(str(socket_path), limit=_MAX_HEAD), timeout
        )
    except (OSError, TimeoutError) as err:
        raise RuntimeFailure("RuntimeUnavailable", f"cannot reach Podman at {socket_path}: {err!r}") from err
    payload = json.dumps(body).encode()
    head = (
        f"POST {path} HTTP/1.1\r\n"
        "Host: podman\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n"
        "Connection: Upgrade\r\n"
        "Upgrade: tcp\r\n"
        "\r\n"
    )
    try:
        writer.write(head.encode() + payload)
        await writer.drain()
        raw = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
    except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as err:
        writer.close()
        raise RuntimeFailure("RuntimeUnavailable", f"POST {path}: no answer from Podman: {err!r}") from err
    status_line, *header_lines = raw.decode("latin-1").split("\r\n")
    parts = status_line.split(" ", 2)
    code = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    if code in (101, 200):
        return reader, writer
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines if h)}
    message = status_line
    with contextlib.suppress(Exception):
        length = int(headers.get("content-length", "0"))
        text = (await asyncio.wait_for(reader.readexactly(length), timeout)).decode(errors="replace")
        message = str(json.loads(text).get("message") or text.strip() or status_line)
    writer.close()
    raise RuntimeFailure("RunContainerError", f"POST {path}: {message}")


class PodmanExec:
    """One running exec session on a hijacked connection.

    ``read`` gives (channel, bytes) in the order Podman sent them and None at the end (the process has
    exited and its output is drained); ``wait`` then gives the exit code. ``resize`` and ``inspect`` are
    the runtime's ordinary HTTP calls, handed in."""

    def __init__(
        self,
        session: str,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        tty: bool,
        resize: Callable[[int, int], Awaitable[None]],
        inspect: Callable[[], Awaitable[dict[str, Any]]],
    ) -> None:
        self.session = session
        self.tty = tty
        self._reader = reader
        self._writer = writer
        self._resize = resize
        self._inspect = inspect
        self._demux = FrameDemuxer()
        self._pending: list[tuple[int, bytes]] = []
        self._eof = False

    async def read(self) -> tuple[int, bytes] | None:
        while not self._pending:
            if self._eof:
                return None
            try:
                data = await self._reader.read(64 * 1024)
            except (ConnectionError, OSError):
                data = b""
            if not data:
                self._eof = True
                self._pending = self._demux.flush()
            elif self.tty:
                self._pending = [(STDOUT, data)]
            else:
                self._pending = self._demux.feed(data)
        return self._pending.pop(0)

    async def write(self, data: bytes) -> None:
        if self._writer.is_closing():
            return
        with contextlib.suppress(ConnectionError, OSError):
            self._writer.write(data)
            await self._writer.drain()

    async def close_stdin(self) -> None:
        """Half-close: the process reads EOF on its stdin; its output keeps coming."""
        with contextlib.suppress(ConnectionError, OSError, RuntimeError):
            if self._writer.can_write_eof() and not self._writer.is_closing():
                self._writer.write_eof()

    async def resize(self, width: int, height: int) -> None:
        await self._resize(width, height)

    async def wait(self, timeout: float = 10.0) -> int:
        """The exit code, once Podman has recorded it (a moment after the stream ends)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            data = await self._inspect()
            if not data.get("Running") and data.get("ExitCode") is not None:
                return int(data["ExitCode"])
            if loop.time() > deadline:
                raise RuntimeFailure("RunContainerError", f"exec session {self.session[:12]} did not end")
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(Exception):
            await self._writer.wait_closed()
