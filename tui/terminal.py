"""Byte streams between ``pea`` and its terminal, for ``pea logs`` and ``pea exec``.

* :class:`ByteWriter` writes a container's bytes to an output that may be a real stream (its binary
  buffer, flushed per chunk so ``logs -f`` shows lines as they come) or a text one such as StringIO
  in tests (decoded incrementally, so a UTF-8 character cut between two chunks survives).
* :func:`read_chunks` reads our stdin without blocking the event loop: ``add_reader`` for pipes and
  terminals, a thread for what epoll refuses (regular files) or what has no descriptor (StringIO).
* :func:`raw_terminal` puts a terminal in raw mode (every key goes to the remote shell, Ctrl-C included)
  and always restores it; :func:`terminal_size` is what the resize channel sends.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import os
import termios
import tty
from collections.abc import AsyncIterator, Iterator
from typing import IO, Any, TextIO

__all__ = ["ByteWriter", "is_terminal", "raw_terminal", "read_chunks", "terminal_size"]

CHUNK = 64 * 1024


class ByteWriter:
    def __init__(self, stream: TextIO) -> None:
        self._text = stream
        self._binary: IO[bytes] | None = getattr(stream, "buffer", None)
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def write(self, data: bytes) -> None:
        if self._binary is not None:
            self._text.flush()  # anything printed as text before goes first
            self._binary.write(data)
            self._binary.flush()
        else:
            self._text.write(self._decoder.decode(data))

    def close(self) -> None:
        if self._binary is None:
            self._text.write(self._decoder.decode(b"", final=True))
        self._text.flush()


def _fileno(stream: Any) -> int | None:
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return None
    return fd if isinstance(fd, int) else None


def is_terminal(stream: Any) -> bool:
    fd = _fileno(stream)
    return fd is not None and os.isatty(fd)


def terminal_size(stream: Any) -> tuple[int, int] | None:
    """(columns, rows) of the terminal behind ``stream``, or None."""
    fd = _fileno(stream)
    if fd is None:
        return None
    try:
        size = os.get_terminal_size(fd)
    except OSError:
        return None
    return size.columns, size.lines


@contextlib.contextmanager
def raw_terminal(stream: Any) -> Iterator[None]:
    """Raw mode on the terminal behind ``stream`` for the block; restored however the block ends."""
    fd = _fileno(stream)
    if fd is None or not os.isatty(fd):
        yield
        return
    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd, termios.TCSANOW)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


async def read_chunks(stream: Any) -> AsyncIterator[bytes]:
    """What arrives on ``stream``, chunk by chunk, until EOF."""
    loop = asyncio.get_running_loop()
    fd = _fileno(stream)
    if fd is None:  # a text stream without a descriptor (tests): all of it, then EOF
        text = await asyncio.to_thread(stream.read)
        if text:
            yield text.encode() if isinstance(text, str) else bytes(text)
        return
    queue: asyncio.Queue[bytes] = asyncio.Queue()

    def readable() -> None:
        try:
            data = os.read(fd, CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        queue.put_nowait(data)
        if not data:
            loop.remove_reader(fd)

    try:
        loop.add_reader(fd, readable)
    except (PermissionError, OSError, ValueError):  # regular files cannot be polled: read in a thread
        while data := await asyncio.to_thread(os.read, fd, CHUNK):
            yield data
        return
    try:
        while data := await queue.get():
            yield data
    finally:
        loop.remove_reader(fd)
