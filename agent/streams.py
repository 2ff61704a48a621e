"""Container logs and exec as the agent serves them (its endpoint is ``server.py``).

The API server has already checked the request against the API pod (container name, scheduled, state)
and names the pod's uid and, usually, the exact container ID its status shows. Here the agent finds that
container among what its runtime really has, then streams:

* logs: the runtime's output chunks, cut at ``limitBytes``; the request to the runtime starts when the
  HTTP answer does (Podman answers nothing before the first line, so nothing may wait for it).
* exec: a websocket speaking ``v5``/``v4.channel.k8s.io`` (see ``controlplane.client.streams``) bridged to
  the runtime's exec session. Concurrency: the handler's own task copies the process's output to the
  websocket in order; one more task reads the websocket (stdin, resize, v5 close of stdin). When the
  output ends, the exit code goes out on the error channel and the websocket closes; when the client
  goes away first, the session is closed and nothing more is sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterable
from typing import Protocol, runtime_checkable

import msgspec
from starlette.websockets import WebSocket, WebSocketDisconnect

from controlplane.client.streams import (
    CLOSE,
    ERROR,
    RESIZE,
    STDERR,
    STDIN,
    STDOUT,
    V5,
    ExecOptions,
    LogOptions,
    exit_status,
    failure_status,
    frame,
    parse_resize,
)

from .runtime.base import ContainerInfo, RuntimeFailure, SandboxInfo

__all__ = ["ExecStream", "StreamError", "StreamingRuntime", "bridge_exec", "find_container", "limit_bytes"]

log = logging.getLogger(__name__)
_encoder = msgspec.json.Encoder()


class ExecStream(Protocol):
    """One running command with its streams (``PodmanExec``)."""

    async def read(self) -> tuple[int, bytes] | None:
        """(STDOUT or STDERR, bytes) in order; None once the output has ended."""

    async def write(self, data: bytes) -> None: ...

    async def close_stdin(self) -> None: ...

    async def resize(self, width: int, height: int) -> None: ...

    async def wait(self) -> int:
        """The exit code, after ``read`` returned None."""

    async def close(self) -> None: ...


@runtime_checkable
class StreamingRuntime(Protocol):
    """What a runtime needs for logs and exec (Podman has it; the hollow runtime does not)."""

    def stream_logs(self, container_id: str, options: LogOptions) -> AsyncIterator[bytes]: ...

    async def open_exec(self, container_id: str, options: ExecOptions) -> ExecStream: ...


class StreamError(Exception):
    """A request the agent refuses, as an HTTP code, a Kubernetes reason and message."""

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message


def _bad(message: str) -> StreamError:
    return StreamError(400, "BadRequest", message)


def find_container(
    sandboxes: Iterable[SandboxInfo],
    *,
    namespace: str,
    pod: str,
    uid: str | None,
    container: str,
    container_id: str | None = None,
    previous: bool = False,
    running: bool = False,
) -> ContainerInfo:
    """The container to read or exec into. With ``container_id`` (what the API server read in the pod's
    status) exactly that one, if it belongs to this pod and container; without, the newest attempt (or
    with ``previous`` the newest dead attempt before it). ``running``: exec needs a live process."""
    box = next(
        (s for s in sandboxes if (s.namespace, s.name) == (namespace, pod) and (not uid or s.uid == uid)),
        None,
    )
    mine = sorted(
        (c for c in (box.containers if box else []) if c.name == container), key=lambda c: c.attempt
    )
    if container_id:
        wanted = container_id.split("://", 1)[-1]
        found = next((c for c in mine if c.id == wanted), None)
        if found is None:
            raise _bad(f'container "{container}" in pod "{pod}" is not available')
    elif previous:
        older = [c for c in mine[:-1] if c.state == "exited"]
        if not older:
            raise _bad(f'previous terminated container "{container}" in pod "{pod}" not found')
        found = older[-1]
    else:
        if not mine or mine[-1].state == "created":
            raise _bad(f'container "{container}" in pod "{pod}" is waiting to start: ContainerCreating')
        found = mine[-1]
    if running and found.state != "running":
        raise _bad(f'container "{container}" in pod "{pod}" is not running')
    return found


async def limit_bytes(chunks: AsyncIterator[bytes], limit: int | None) -> AsyncIterator[bytes]:
    """At most ``limit`` bytes of ``chunks`` (cut anywhere, like the kubelet's LimitedWriter); the source
    is closed as soon as the limit is reached or the consumer stops."""
    remaining = limit
    try:
        async for chunk in chunks:
            if remaining is not None:
                chunk = chunk[:remaining]
                remaining -= len(chunk)
            if chunk:
                yield chunk
            if remaining is not None and remaining <= 0:
                return
    finally:
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()


async def bridge_exec(websocket: WebSocket, stream: ExecStream, options: ExecOptions, protocol: str) -> None:
    """Copy between an accepted websocket and a running exec session until the command ends."""
    # As the kubelet does: an empty message on the lowest output channel says the streams are up.
    first = STDOUT if options.stdout else STDERR if options.stderr else ERROR
    gone = asyncio.Event()

    async def inbound() -> None:
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                data = message.get("bytes")
                if not data:
                    continue  # text messages belong to the base64 protocols, which are not offered
                channel, payload = data[0], data[1:]
                if channel == STDIN and options.stdin and payload:
                    await stream.write(payload)
                elif channel == RESIZE and options.tty:
                    try:
                        width, height = parse_resize(payload)
                        await stream.resize(width, height)
                    except (ValueError, RuntimeFailure) as exc:
                        log.debug("exec resize ignored: %s", exc)
                elif channel == CLOSE and protocol == V5 and payload[:1] == bytes((STDIN,)) and options.stdin:
                    await stream.close_stdin()
        except (WebSocketDisconnect, RuntimeError):
            pass
        gone.set()
        await stream.close()  # the client left: nothing more to copy

    reader = asyncio.create_task(inbound(), name="exec-stdin")
    try:
        await websocket.send_bytes(frame(first))
        while (item := await stream.read()) is not None:
            channel, data = item
            await websocket.send_bytes(frame(channel, data))
        if gone.is_set():
            return
        try:
            status = exit_status(await stream.wait(), options.command)
        except RuntimeFailure as exc:
            status = failure_status(exc.message)
        await websocket.send_bytes(frame(ERROR, _encoder.encode(status)))
        await websocket.close(1000)
    except (WebSocketDisconnect, RuntimeError, OSError) as exc:
        log.debug("exec client went away: %s", exc)
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await reader
        await stream.close()
