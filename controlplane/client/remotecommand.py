"""The client side of ``pods/exec`` (client-go's ``remotecommand``): one websocket to the API server
speaking ``v5.channel.k8s.io`` (or ``v4``), see ``streams.py`` for the channels.

:class:`ExecSession` is what ``Client.exec`` hands out: send stdin, close it (v5), resize the terminal,
and iterate over the output as (channel, bytes) in the order it was sent; when the iteration ends the
error channel has said how the command ended (``exit_code``). ``run_command`` does all of it for a
command whose input is known in advance (tests, scripts).
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from urllib.parse import urlencode

import msgspec
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from controlplane.api.meta import Status

from .errors import TransportError, from_status
from .streams import (
    ERROR,
    PROTOCOLS,
    STDERR,
    STDIN,
    STDOUT,
    V5,
    ExecFailure,
    ExecOptions,
    close_frame,
    exit_code_of,
    frame,
    resize_frame,
)

__all__ = ["ExecOutput", "ExecSession", "open_exec", "run_command"]

MAX_MESSAGE = 16 * 1024 * 1024


@dataclass(frozen=True)
class ExecOutput:
    exit_code: int
    stdout: bytes
    stderr: bytes


class ExecSession:
    """One command running in a container. Iterate for its output; then read ``exit_code``."""

    def __init__(self, ws: ClientConnection, options: ExecOptions) -> None:
        self._ws = ws
        self.options = options
        self.protocol = ws.subprotocol or ""
        self._error = bytearray()
        self.exit_code: int | None = None

    async def send_stdin(self, data: bytes) -> None:
        if data:
            await self._ws.send(frame(STDIN, data))

    @property
    def can_close_stdin(self) -> bool:
        """v4 has no way to say stdin ended (only closing everything would)."""
        return self.protocol == V5

    async def close_stdin(self) -> None:
        if self.can_close_stdin:
            await self._ws.send(close_frame(STDIN))

    async def resize(self, width: int, height: int) -> None:
        await self._ws.send(resize_frame(width, height))

    async def output(self) -> AsyncIterator[tuple[int, bytes]]:
        """(STDOUT or STDERR, bytes) until the server closes the stream; then ``exit_code`` is set, or
        ExecFailure says why the command could not run (or the connection broke)."""
        try:
            async for message in self._ws:
                if not isinstance(message, bytes) or not message:
                    continue
                channel, payload = message[0], message[1:]
                if channel in (STDOUT, STDERR):
                    if payload:
                        yield channel, payload
                elif channel == ERROR:
                    self._error += payload
        except ConnectionClosed as exc:
            if not self._error:
                raise ExecFailure(f"the exec stream broke: {exc}") from None
        if not self._error:
            raise ExecFailure("the exec stream ended without the command's exit status")
        self.exit_code = exit_code_of(bytes(self._error))

    async def close(self) -> None:
        await self._ws.close()

    async def __aenter__(self) -> ExecSession:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _ws_url(server: str, path: str, options: ExecOptions) -> str:
    base = server.rstrip("/")
    if base.startswith("https://"):
        base = "wss://" + base.removeprefix("https://")
    elif base.startswith("http://"):
        base = "ws://" + base.removeprefix("http://")
    return f"{base}{path}?{urlencode(options.to_query())}"


def _ssl_context(url: str, verify: bool | str | ssl.SSLContext) -> ssl.SSLContext | None:
    if not url.startswith("wss://"):
        return None
    if isinstance(verify, ssl.SSLContext):
        return verify
    if verify is False:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    return ssl.create_default_context(cafile=verify if isinstance(verify, str) else None)


async def open_exec(
    server: str,
    path: str,
    options: ExecOptions,
    headers: Mapping[str, str],
    *,
    verify: bool | str | ssl.SSLContext = True,
    open_timeout: float = 30.0,
) -> ExecSession:
    """Open the websocket; the server's refusal (pod not found, container not running) is its ApiError."""
    url = _ws_url(server, path, options)
    try:
        ws = await connect(
            url,
            subprotocols=list(PROTOCOLS),  # type: ignore[arg-type]
            additional_headers=dict(headers),
            compression=None,
            proxy=None,
            open_timeout=open_timeout,
            max_size=MAX_MESSAGE,
            ssl=_ssl_context(url, verify),
            user_agent_header=headers.get("User-Agent", "peapod"),
        )
    except InvalidStatus as exc:
        response = exc.response
        try:
            status = msgspec.json.decode(bytes(response.body or b""), type=Status)
            status.code = status.code or response.status_code
        except (msgspec.DecodeError, msgspec.ValidationError):
            text = bytes(response.body or b"").decode(errors="replace").strip()[:200]
            status = Status(code=response.status_code, reason=response.reason_phrase, message=text)
        raise from_status(status) from None
    except (OSError, TimeoutError, InvalidHandshake) as exc:
        raise TransportError(f"exec {server}{path}: {exc}") from exc
    return ExecSession(ws, options)


async def run_command(session: ExecSession, stdin: bytes | None = None) -> ExecOutput:
    """Send ``stdin`` (then close it; v5), collect the output, return it with the exit code."""
    if stdin is not None:
        await session.send_stdin(stdin)
        await session.close_stdin()
    out, err = bytearray(), bytearray()
    async for channel, data in session.output():
        (out if channel == STDOUT else err).extend(data)
    assert session.exit_code is not None
    return ExecOutput(session.exit_code, bytes(out), bytes(err))
