"""Following one container's log with nothing dropped and nothing doubled: whole lines out of chunks,
timestamps, resuming after a break. No widgets here: :class:`LogFollower` runs in the log screen's
worker and reports through ``post``, like ``streams.TableStream`` does for tables.

Resume. When the stream breaks (transport error, 5xx, or an early end while the container runs) the
follower reconnects with exponential back-off, asking for ``sinceTime`` one second before the last
timestamp shown (so however the server rounds or compares, nothing after it is missed). The replayed
lines are skipped while they are older than that timestamp; of those sharing it exactly, as many are
skipped as were already shown with it (several lines can share one timestamp), and the first line past
that is shown. The half line a broken stream left behind is dropped: the replay sends it whole.

The end. A stream that ends normally is followed by a look at the container's state; when it has
terminated, one more (short) replay catches whatever a cut-short stream missed, the last unterminated
line is shown, and a notice says how the container ended. "Waiting to start" (and a pod not yet on a
node) is retried with back-off; a pod or container that does not exist stops the follower with a notice.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from textual.message import Message

from controlplane.api.core import ContainerStatus, Pod
from controlplane.client import ApiError, Client, NotFound, TransportError
from tui.logs import choose_container

from .widgets.log_view import Entry

__all__ = [
    "LineSplitter",
    "LogFollower",
    "LogLines",
    "LogNotice",
    "LogState",
    "PodContainers",
    "ResumeCursor",
    "split_stamp",
]

BACKOFF_INITIAL = 0.25
BACKOFF_MAX = 8.0

_STAMP = re.compile(rb"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?Z(?: |$)")
_WAITING = ("is waiting to start", "does not have a host assigned")


# --- lines and timestamps -------------------------------------------------------------------------


class LineSplitter:
    """Whole lines out of arbitrary chunks: the bytes after the last newline wait for the next chunk."""

    def __init__(self) -> None:
        self._tail = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        """The lines completed by ``chunk``, without their newlines."""
        if b"\n" not in chunk:
            self._tail += chunk
            return []
        lines = (self._tail + chunk).split(b"\n")
        self._tail = lines.pop()
        return lines

    def rest(self) -> bytes:
        """The unterminated tail (the stream's last line had no newline), taken out."""
        tail, self._tail = self._tail, b""
        return tail


class StampKey(NamedTuple):
    """A log timestamp made comparable: ``YYYY-MM-DDTHH:MM:SS`` compares as text, then nanoseconds."""

    seconds: str
    nanos: int


def split_stamp(line: bytes) -> tuple[StampKey | None, Entry]:
    """``2026-01-02T03:04:05.123456Z text`` → its key and the entry; a line without one keeps its text."""
    m = _STAMP.match(line)
    if m is None:
        return None, Entry("", line.decode("utf-8", "replace"))
    seconds, fraction = m.group(1).decode(), (m.group(2) or b"").decode()
    stamp = line[: m.end()].rstrip(b" ").decode()
    key = StampKey(seconds, int(fraction.ljust(9, "0")))
    return key, Entry(stamp, line[m.end() :].decode("utf-8", "replace"))


class ResumeCursor:
    """Where the view is in the log: the last timestamp shown and how many lines were shown with it.

    ``replay()`` arms it for a reconnected stream: lines older than the last timestamp are skipped, and
    so are the first ``count`` lines carrying exactly that timestamp; the first line past them ends the
    replay. Outside a replay every line is admitted (a live stream is never second-guessed).
    """

    def __init__(self) -> None:
        self.last: StampKey | None = None
        self.count = 0
        self._replaying = False
        self._to_skip = 0

    def since_time(self) -> str | None:
        """The ``sinceTime`` to reconnect with: a second before the last timestamp, in whole seconds."""
        if self.last is None:
            return None
        when = dt.datetime.fromisoformat(self.last.seconds).replace(tzinfo=dt.UTC) - dt.timedelta(seconds=1)
        return when.strftime("%Y-%m-%dT%H:%M:%SZ")

    def replay(self) -> None:
        self._replaying = self.last is not None
        self._to_skip = self.count

    def admit(self, key: StampKey | None) -> bool:
        """Whether the line with this timestamp is new to the view (and if so, remember it)."""
        if key is None:
            return not self._replaying
        if self._replaying and self.last is not None:
            if key < self.last:
                return False
            if key == self.last and self._to_skip > 0:
                self._to_skip -= 1
                return False
            self._replaying = False
        if key == self.last:
            self.count += 1
        else:
            self.last, self.count = key, 1
        return True


def _status(pod: Pod, container: str) -> ContainerStatus | None:
    statuses = [*(pod.status.init_container_statuses or []), *(pod.status.container_statuses or [])]
    return next((s for s in statuses if s.name == container), None)


def _ended(status: ContainerStatus | None) -> str | None:
    """How the container ended ("Completed, exit code 0"), or None while it has not."""
    done = status.state.terminated if status and status.state else None
    if done is None:
        return None
    return f"{done.reason or 'terminated'}, exit code {done.exit_code}"


# --- what the follower tells the screen -------------------------------------------------------------


@dataclass
class PodContainers(Message):
    """The pod's containers (init ones first, flagged) and the one being followed."""

    stream: int
    containers: list[tuple[str, bool]]
    container: str


@dataclass
class LogLines(Message):
    stream: int
    entries: list[Entry]


@dataclass
class LogNotice(Message):
    """A line of our own for the view (``error``: also a notification)."""

    stream: int
    text: str
    error: bool = False


@dataclass
class LogState(Message):
    """What the stream is doing, for the status line: following, reconnecting, waiting, ended."""

    stream: int
    state: str


# --- the follower ---------------------------------------------------------------------------------------


class LogFollower:
    """Follows one container's log until it ends (see the module docstring); posts messages only."""

    def __init__(
        self,
        client: Client,
        pod: str,
        namespace: str,
        container: str | None,
        post: Callable[[Message], object],
        stream: int,
    ) -> None:
        self.client, self.pod, self.namespace = client, pod, namespace
        self.container = container
        self.post, self.stream = post, stream
        self.cursor = ResumeCursor()

    def _state(self, text: str) -> None:
        self.post(LogState(self.stream, text))

    def _notice(self, text: str, error: bool = False) -> None:
        self.post(LogNotice(self.stream, text, error))

    async def run(self) -> None:
        pod = await self._get_pod()
        if pod is None:
            return
        container = self.container or choose_container(pod)
        init = [(c.name, True) for c in pod.spec.init_containers or []]
        main = [(c.name, False) for c in pod.spec.containers or []]
        if container is None or container not in [n for n, _ in init + main]:
            self._notice(f"container {container} is not valid for pod {self.pod}", error=True)
            self._state("stopped")
            return
        self.container = container
        self.post(PodContainers(self.stream, init + main, container))
        await self._follow(container)

    async def _get_pod(self) -> Pod | None:
        """The pod, retrying while the API server is unreachable; None (and a notice) when it is gone."""
        delay = BACKOFF_INITIAL
        while True:
            try:
                return await self.client.get(Pod, self.pod, self.namespace)
            except NotFound:
                self._notice(f'pods "{self.pod}" not found in namespace {self.namespace}', error=True)
                self._state("stopped")
                return None
            except ApiError as err:
                if err.code < 500 and err.code != 429:  # e.g. forbidden: asking again will not help
                    self._notice(err.status.message or str(err), error=True)
                    self._state("stopped")
                    return None
                self._state(f"retrying in {delay:g}s: {err}")
            except TransportError as err:
                self._state(f"retrying in {delay:g}s: {err}")
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX)

    async def _follow(self, container: str) -> None:
        delay = BACKOFF_INITIAL
        final = False  # the container had terminated before this stream began: its end is the end
        while True:
            splitter = LineSplitter()
            self.cursor.replay()
            try:
                self._state("following")
                async for chunk in self.client.logs(
                    self.pod,
                    self.namespace,
                    container=container,
                    follow=True,
                    timestamps=True,
                    since_time=self.cursor.since_time(),
                ):
                    entries = self._admit(splitter.feed(chunk))
                    if entries:
                        self.post(LogLines(self.stream, entries))
                        delay = BACKOFF_INITIAL
            except NotFound:
                self._notice(f'pods "{self.pod}" not found in namespace {self.namespace}', error=True)
                self._state("stopped")
                return
            except ApiError as err:
                message = err.status.message or str(err)
                if err.code == 400 and any(w in message for w in _WAITING):
                    self._state(f"waiting: {message}")
                elif err.code >= 500 or err.code == 429:
                    self._state(f"reconnecting in {delay:g}s: {message}")
                else:
                    self._notice(message, error=True)
                    self._state("stopped")
                    return
            except TransportError as err:
                self._state(f"reconnecting in {delay:g}s: {err}")
            else:
                if final:
                    rest = splitter.rest()
                    entries = self._admit([rest]) if rest else []
                    if entries:
                        self.post(LogLines(self.stream, entries))
                    ended = await self._ended(container)
                    self._notice(f"container {container} ended: {ended or 'terminated'}")
                    self._state("ended")
                    return
                ended = await self._ended(container)
                if ended is not None:
                    final = True  # replay once more, right away, to catch a stream cut short
                    continue
                self._state(f"reconnecting in {delay:g}s: the stream ended while the container runs")
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX)

    async def _ended(self, container: str) -> str | None:
        try:
            pod = await self.client.get(Pod, self.pod, self.namespace)
        except (TransportError, ApiError):
            return None
        return _ended(_status(pod, container))

    def _admit(self, lines: list[bytes]) -> list[Entry]:
        entries = []
        for line in lines:
            key, entry = split_stamp(line)
            if self.cursor.admit(key):
                entries.append(entry)
        return entries
