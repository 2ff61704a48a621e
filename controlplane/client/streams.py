"""The wire formats of ``pods/log`` and ``pods/exec``, shared by the three parties that speak them: the
client (``pea logs``/``pea exec``), the API server (which checks the request and proxies it to the node)
and the node agent (which serves it from Podman). Pure functions and values only; no I/O.

Logs are plain HTTP: :class:`LogOptions` is Kubernetes' ``PodLogOptions`` as query parameters, parsed
and validated with kube-apiserver's rules and messages.

Exec is a websocket carrying Kubernetes' channel protocol (``v5.channel.k8s.io``, and ``v4``, which
lacks only the close message): every binary message starts with one channel byte.

====  =======  ===========================================================================
byte  channel  payload
====  =======  ===========================================================================
0     stdin    bytes for the command's standard input (client → server)
1     stdout   the command's standard output (server → client)
2     stderr   the command's standard error (server → client; unused with a tty)
3     error    one JSON ``Status`` when the command ends: Success, or Failure with reason
               NonZeroExitCode and the code in ``details.causes[{reason: ExitCode}]``
4     resize   JSON ``{"Width": W, "Height": H}`` (client → server, tty only)
255   close    v5 only: ``[255, channel]``, the client closed that channel (stdin EOF)
====  =======  ===========================================================================
"""

from __future__ import annotations

import base64
import datetime as dt
import math
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import msgspec

from controlplane.api.meta import ListMeta, Status, StatusCause, StatusDetails
from controlplane.validation import FieldError, forbidden, invalid

__all__ = [
    "CLOSE",
    "ERROR",
    "PROTOCOLS",
    "PROXY_SECRET_NAME",
    "PROXY_SECRET_NAMESPACE",
    "RESIZE",
    "STDERR",
    "STDIN",
    "STDOUT",
    "V4",
    "V5",
    "ExecFailure",
    "ExecOptions",
    "LogOptions",
    "QueryError",
    "choose_protocol",
    "close_frame",
    "exit_code_of",
    "exit_status",
    "failure_status",
    "format_rfc3339",
    "frame",
    "parse_duration",
    "parse_frame",
    "parse_resize",
    "resize_frame",
    "secret_token",
    "since_seconds_for",
]

STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
V5 = "v5.channel.k8s.io"
V4 = "v4.channel.k8s.io"
PROTOCOLS = (V5, V4)  # the server's preference


class QueryError(ValueError):
    """A query parameter that does not parse (HTTP 400)."""


# --- query values, as kube-apiserver converts them ---------------------------------------------------


def _bool(value: str) -> bool:
    """Kubernetes' query booleans: only ``false`` and ``0`` are false; anything else (even ``?follow``
    with no value) is true."""
    return value.strip().lower() not in ("false", "0")


def _int(name: str, value: str) -> int:
    try:
        return int(value.strip())
    except ValueError:
        raise QueryError(f'invalid value "{value}" for {name}: must be an integer') from None


def _time(name: str, value: str) -> dt.datetime:
    """RFC 3339 (``2024-05-01T10:00:00Z``, fractions and offsets allowed)."""
    text = value.strip()
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        when = None
    if when is None or "T" not in text.upper() or when.tzinfo is None:
        raise QueryError(f'invalid value "{value}" for {name}: must be an RFC 3339 time') from None
    return when


def format_rfc3339(when: dt.datetime) -> str:
    """UTC, ``Z``, with the fraction only when there is one (Go's RFC3339Nano trims zeros)."""
    utc = when.astimezone(dt.UTC)
    text = utc.strftime("%Y-%m-%dT%H:%M:%S")
    if utc.microsecond:
        text += f".{utc.microsecond:06d}".rstrip("0")
    return text + "Z"


_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """A Go duration (``5m``, ``1h30m``, ``10s``, ``1.5h``) in seconds; ValueError otherwise."""
    s = text.strip()
    if not s:
        raise ValueError(f'invalid duration "{text}"')
    total, i = 0.0, 0
    while i < len(s):
        j = i
        while j < len(s) and (s[j].isdigit() or s[j] == "."):
            j += 1
        k = j
        while k < len(s) and not (s[k].isdigit() or s[k] == "."):
            k += 1
        number, unit = s[i:j], s[j:k]
        if not number or number == "." or unit not in _UNITS:
            if s == "0":
                return 0.0
            raise ValueError(f'invalid duration "{text}": use a number with a unit, e.g. 10s, 5m, 1h')
        try:
            total += float(number) * _UNITS[unit]
        except ValueError:
            raise ValueError(f'invalid duration "{text}"') from None
        i = k
    return total


# --- logs ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LogOptions:
    """``PodLogOptions``: which container, which attempt, and which part of its output."""

    container: str | None = None
    follow: bool = False
    previous: bool = False
    timestamps: bool = False
    tail_lines: int | None = None
    since_seconds: int | None = None
    since_time: str | None = None  # RFC 3339, as given
    limit_bytes: int | None = None

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> LogOptions:
        """Parse; QueryError for a value of the wrong type (``validate`` checks the ranges)."""
        since_time = query.get("sinceTime")
        if since_time is not None:
            _time("sinceTime", since_time)
        return cls(
            container=query.get("container") or None,
            follow=_bool(query["follow"]) if "follow" in query else False,
            previous=_bool(query["previous"]) if "previous" in query else False,
            timestamps=_bool(query["timestamps"]) if "timestamps" in query else False,
            tail_lines=_int("tailLines", query["tailLines"]) if "tailLines" in query else None,
            since_seconds=_int("sinceSeconds", query["sinceSeconds"]) if "sinceSeconds" in query else None,
            since_time=since_time.strip() if since_time is not None else None,
            limit_bytes=_int("limitBytes", query["limitBytes"]) if "limitBytes" in query else None,
        )

    def validate(self) -> list[FieldError]:
        """kube-apiserver's ValidatePodLogOptions (the server answers 422 Invalid with these)."""
        errs: list[FieldError] = []
        if self.tail_lines is not None and self.tail_lines < 0:
            errs.append(invalid("tailLines", self.tail_lines, "must be greater than or equal to 0"))
        if self.limit_bytes is not None and self.limit_bytes < 1:
            errs.append(invalid("limitBytes", self.limit_bytes, "must be greater than 0"))
        if self.since_seconds is not None and self.since_time is not None:
            errs.append(forbidden("", "at most one of `sinceTime` or `sinceSeconds` may be specified"))
        elif self.since_seconds is not None and self.since_seconds < 1:
            errs.append(invalid("sinceSeconds", self.since_seconds, "must be greater than 0"))
        return errs

    def to_query(self) -> dict[str, str]:
        q: dict[str, str] = {}
        if self.container:
            q["container"] = self.container
        for name, flag in (
            ("follow", self.follow),
            ("previous", self.previous),
            ("timestamps", self.timestamps),
        ):
            if flag:
                q[name] = "true"
        for name, number in (
            ("tailLines", self.tail_lines),
            ("sinceSeconds", self.since_seconds),
            ("limitBytes", self.limit_bytes),
        ):
            if number is not None:
                q[name] = str(number)
        if self.since_time is not None:
            q["sinceTime"] = self.since_time
        return q

    def since(self, now: dt.datetime | None = None) -> dt.datetime | None:
        """The earliest log time wanted, from sinceSeconds (before ``now``) or sinceTime."""
        if self.since_time is not None:
            return _time("sinceTime", self.since_time)
        if self.since_seconds is not None:
            return (now or dt.datetime.now(dt.UTC)) - dt.timedelta(seconds=self.since_seconds)
        return None


def since_seconds_for(duration: str) -> int:
    """``--since 5m`` as ``sinceSeconds`` (rounded up: kubectl asks for at least what was said)."""
    seconds = parse_duration(duration)
    if seconds <= 0:
        raise ValueError(f'--since must be greater than 0, got "{duration}"')
    return math.ceil(seconds)


# --- exec ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExecOptions:
    """``PodExecOptions``: the command and which streams to attach."""

    command: list[str] = field(default_factory=list)
    container: str | None = None
    stdin: bool = False
    stdout: bool = True
    stderr: bool = True
    tty: bool = False

    @classmethod
    def from_query(cls, pairs: Iterable[tuple[str, str]]) -> ExecOptions:
        """From the query's (key, value) pairs; ``command`` repeats. A tty has no separate stderr (the
        kubelet drops it rather than refusing). QueryError when the request cannot run anything."""
        command: list[str] = []
        single: dict[str, str] = {}
        for key, value in pairs:
            if key == "command":
                command.append(value)
            else:
                single.setdefault(key, value)
        flags = {k: _bool(single[k]) for k in ("stdin", "stdout", "stderr", "tty") if k in single}
        tty = flags.get("tty", False)
        opts = cls(
            command=command,
            container=single.get("container") or None,
            stdin=flags.get("stdin", False),
            stdout=flags.get("stdout", False),
            stderr=flags.get("stderr", False) and not tty,
            tty=tty,
        )
        if not command:
            raise QueryError("you must specify at least one command for the container")
        if not (opts.stdin or opts.stdout or opts.stderr):
            raise QueryError("you must specify at least 1 of stdin, stdout, stderr")
        return opts

    def to_query(self) -> list[tuple[str, str]]:
        pairs = [("command", c) for c in self.command]
        if self.container:
            pairs.append(("container", self.container))
        for name in ("stdin", "stdout", "stderr", "tty"):
            if getattr(self, name):
                pairs.append((name, "true"))
        return pairs


# --- channel framing -----------------------------------------------------------------------------


def choose_protocol(offered: Iterable[str]) -> str | None:
    """The subprotocol to accept: v5 if the client offers it, else v4; None if neither."""
    wanted = {p.strip() for p in offered}
    return next((p for p in PROTOCOLS if p in wanted), None)


def frame(channel: int, data: bytes = b"") -> bytes:
    return bytes((channel,)) + data


def parse_frame(message: bytes | bytearray | memoryview) -> tuple[int, bytes]:
    """(channel, payload); ValueError for an empty message (there is no channel to read)."""
    raw = bytes(message)
    if not raw:
        raise ValueError("empty channel message")
    return raw[0], raw[1:]


def close_frame(channel: int) -> bytes:
    """v5: tell the other side that ``channel`` is closed (stdin EOF)."""
    return bytes((CLOSE, channel))


class _Size(msgspec.Struct):
    Width: int = 0
    Height: int = 0


def resize_frame(width: int, height: int) -> bytes:
    return frame(RESIZE, msgspec.json.encode(_Size(Width=width, Height=height)))


def parse_resize(payload: bytes) -> tuple[int, int]:
    """(width, height) from a resize payload; ValueError when it is not the expected JSON."""
    try:
        size = msgspec.json.decode(payload, type=_Size)
    except msgspec.DecodeError as exc:
        raise ValueError(f"invalid resize message: {exc}") from None
    if size.Width < 0 or size.Height < 0 or size.Width > 0xFFFF or size.Height > 0xFFFF:
        raise ValueError(f"invalid terminal size {size.Width}x{size.Height}")
    return size.Width, size.Height


def exit_status(code: int, command: Sequence[str] = ()) -> Status:
    """What the error channel carries when the command ended with ``code``."""
    if code == 0:
        return Status(metadata=ListMeta(), status="Success", code=0)
    return Status(
        status="Failure",
        message=f"command terminated with non-zero exit code: error executing command "
        f"[{shlex.join(command) if command else ''}], exit code {code}",
        reason="NonZeroExitCode",
        details=StatusDetails(causes=[StatusCause(reason="ExitCode", message=str(code))]),
        code=0,
    )


def failure_status(message: str, reason: str = "InternalError", code: int = 500) -> Status:
    """The command could not run at all (e.g. the container stopped): a Failure on the error channel."""
    return Status(status="Failure", message=message, reason=reason, code=code)


class ExecFailure(Exception):
    """The error channel reported a failure other than an exit code."""


def exit_code_of(payload: bytes) -> int:
    """The exit code an error-channel Status reports; ExecFailure for any other failure."""
    try:
        status = msgspec.json.decode(payload, type=Status)
    except (msgspec.DecodeError, msgspec.ValidationError):
        raise ExecFailure(f"error stream protocol error: {payload[:200]!r}") from None
    if status.status == "Success":
        return 0
    if status.reason == "NonZeroExitCode":
        for cause in (status.details.causes if status.details else None) or []:
            if cause.reason == "ExitCode":
                try:
                    return int(cause.message or "")
                except ValueError:
                    break
        raise ExecFailure(f"error stream protocol error: invalid exit code in {status.message!r}")
    raise ExecFailure(status.message or status.reason or "the command failed")


# --- the credential between the API server and the agents ----------------------------------------

# The control plane creates this Secret (a random ``data.token``) at start; the API server sends it as
# ``Authorization: Bearer <token>`` to agents that have no node token of their own (no token file, or an
# agent running as another user), and such agents serve logs, exec and images to no one else. Node
# identities may not read it (NodeRestriction): their agents accept their own token instead.
PROXY_SECRET_NAMESPACE = "kube-system"
PROXY_SECRET_NAME = "peapod-agent-proxy"


def secret_token(data: Mapping[str, str] | None) -> str | None:
    """The token in a Secret's ``data`` (base64, as Secrets store values), or None."""
    value = (data or {}).get("token")
    if not value:
        return None
    try:
        token = base64.b64decode(value, validate=True).decode().strip()
    except (ValueError, UnicodeDecodeError):
        return None
    return token or None
