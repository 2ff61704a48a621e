"""The log view's logic without Podman: line reassembly, timestamps, the resume cursor, and the screen
driven by Pilot against a real control plane on loopback.

A control plane without an agent cannot stream logs, so the Pilot tests that need a log stream replace
``client.logs`` on the real client with a scripted stream (which can break mid-line, on demand); the pod
GETs still go to the real API server. Every wait is bounded; nothing asserts on timing.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Static

from controlplane.api import Pod
from controlplane.api.meta import Status
from controlplane.client import ApiError, Client, TransportError
from tests.support import busybox_pod
from tui.dashboard import PeapodApp
from tui.dashboard.logstream import LineSplitter, ResumeCursor, StampKey, split_stamp
from tui.dashboard.screens.logs import LogScreen
from tui.dashboard.widgets.log_view import NOTICE_PREFIX, Entry, LogView, display_line
from tui.logs import choose_container

from .pilot import SIZE, until


def stamped_log(count: int, per_stamp: int = 3) -> list[bytes]:
    """``count`` lines, ``per_stamp`` of them sharing each timestamp (as fast output does)."""
    start = dt.datetime(2026, 11, 23, 20, 0, tzinfo=dt.UTC)
    lines = []
    for i in range(count):
        when = start + dt.timedelta(microseconds=(i // per_stamp) * 150_000 + 5)
        lines.append(f"{when.strftime('%Y-%m-%dT%H:%M:%S.%f')}Z line {i}".encode())
    return lines


def chunks(data: bytes, rng: random.Random) -> list[bytes]:
    """``data`` cut at random places, chunks of 1 to 40 bytes (lines split anywhere)."""
    out, i = [], 0
    while i < len(data):
        n = rng.randint(1, 40)
        out.append(data[i : i + n])
        i += n
    return out


# --- pure logic -------------------------------------------------------------------------------------


def test_splitter_reassembles_lines_cut_anywhere() -> None:
    lines = [f"line {i} {'é' * (i % 5)}".encode() for i in range(500)] + [b"", b"last"]
    data = b"\n".join(lines) + b"\n"
    for seed in range(20):
        splitter, got = LineSplitter(), []
        for chunk in chunks(data, random.Random(seed)):
            got.extend(splitter.feed(chunk))
        assert got == lines
        assert splitter.rest() == b""
    splitter = LineSplitter()
    assert splitter.feed(b"no newline ") == [] and splitter.feed(b"yet") == []
    assert splitter.rest() == b"no newline yet" and splitter.rest() == b""


def test_split_stamp() -> None:
    key, entry = split_stamp(b"2026-11-23T20:00:01.5Z hello world")
    assert key == StampKey("2026-11-23T20:00:01", 500_000_000)
    assert entry == Entry("2026-11-23T20:00:01.5Z", "hello world")
    # Go's RFC3339Nano trims zeros: "…:01Z" is before "…:01.1Z", though it sorts after as text.
    whole, _ = split_stamp(b"2026-11-23T20:00:01Z x")
    tenth, _ = split_stamp(b"2026-11-23T20:00:01.1Z x")
    assert whole is not None and tenth is not None and whole < tenth
    assert split_stamp(b"2026-11-23T20:00:01.123456789Z ")[1] == Entry("2026-11-23T20:00:01.123456789Z", "")
    assert split_stamp(b"2026-11-23T20:00:01Z")[1] == Entry("2026-11-23T20:00:01Z", "")
    assert split_stamp(b"no stamp \xff") == (None, Entry("", "no stamp \ufffd"))


def test_display_line_keeps_one_line_per_entry() -> None:
    assert display_line(Entry("T", ""), False) == " "
    assert display_line(Entry("T", "crlf\r"), False) == "crlf"
    assert display_line(Entry("T", "a\x0cb\rc"), False) == "a b c"
    assert display_line(Entry("T", "x"), True) == "T x"
    assert display_line(Entry("", "» note"), True) == "» note"


def replay_from(log: list[bytes], since: str | None) -> list[bytes]:
    """What the server sends for ``sinceTime``: every line at or after that second."""
    if since is None:
        return log
    cut = StampKey(since.removesuffix("Z"), 0)
    return [line for line in log if (split_stamp(line)[0] or cut) >= cut]


def test_resume_cursor_never_drops_or_doubles_across_breaks() -> None:
    log = stamped_log(120, per_stamp=3)
    # A break after every possible line: the replay resumes exactly after it.
    for shown_before_break in range(len(log) + 1):
        cursor, shown = ResumeCursor(), []
        for line in log[:shown_before_break]:
            key, entry = split_stamp(line)
            assert cursor.admit(key)
            shown.append(entry.text)
        cursor.replay()
        for line in replay_from(log, cursor.since_time()):
            key, entry = split_stamp(line)
            if cursor.admit(key):
                shown.append(entry.text)
        assert shown == [f"line {i}" for i in range(len(log))], shown_before_break


def test_resume_cursor_admits_everything_live() -> None:
    """Outside a replay nothing is second-guessed: equal and even older timestamps are shown."""
    cursor = ResumeCursor()
    late, _ = split_stamp(b"2026-11-23T20:00:02Z a")
    early, _ = split_stamp(b"2026-11-23T20:00:01Z b")
    assert cursor.admit(late) and cursor.admit(late) and cursor.admit(early) and cursor.admit(None)
    assert cursor.since_time() == "2026-11-23T20:00:00Z"


def test_choose_container() -> None:
    pod = busybox_pod("p", containers=[{"name": "a", "image": "x"}, {"name": "b", "image": "x"}])
    assert choose_container(pod) == "a"
    pod.metadata.annotations = {"kubectl.kubernetes.io/default-container": "b"}
    assert choose_container(pod) == "b"
    pod.metadata.annotations = {"kubectl.kubernetes.io/default-container": "nope"}
    assert choose_container(pod) == "a"


# --- the screen ---------------------------------------------------------------------------------------


def status(screen: LogScreen) -> str:
    return str(screen.query_one("#log-status", Static).render())


async def open_logs(pilot: Pilot[Any], app: PeapodApp, screen: LogScreen) -> LogView:
    await pilot.pause()
    await app.push_screen(screen)
    await until(pilot, lambda: app.screen is screen, "the log screen")
    return screen.query_one(LogView)


async def terminate(client: Client, name: str, container: str = "c") -> None:
    state = {"terminated": {"exitCode": 3, "reason": "Error"}}
    statuses = [{"name": container, "state": state}]
    await client.patch(
        Pod,
        name,
        {"status": {"phase": "Failed", "containerStatuses": statuses}},
        "default",
        subresource="status",
    )


async def test_resumes_a_broken_stream_without_gaps_or_duplicates(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    await client.create(busybox_pod("talker"))
    await terminate(client, "talker")
    log = stamped_log(3_000, per_stamp=4)
    data = b"\n".join(log) + b"\n" + b"2026-11-23T21:00:00Z no newline at the end"
    rng = random.Random(7)
    calls: list[str | None] = []
    waiting = Status(
        code=400, reason="BadRequest", message='container "c" in pod "talker" is waiting to start'
    )

    async def scripted(name: str, namespace: str | None = None, **options: Any) -> AsyncIterator[bytes]:
        assert options["follow"] and options["timestamps"] and options["container"] == "c"
        since = options.get("since_time")
        calls.append(since)
        if len(calls) == 1:
            raise ApiError(waiting)  # not started yet: retried
        part = b"\n".join(replay_from(log, since)) + b"\n" + data.rsplit(b"\n", 1)[1]
        if len(calls) in (2, 3):  # break twice, mid-line, a third of the way further each time
            part = part[: len(part) // 3 + 17]
        for chunk in chunks(part, rng):
            yield chunk
            await asyncio.sleep(0)
        if len(calls) in (2, 3):
            raise TransportError("connection reset")

    monkeypatch.setattr(client, "logs", scripted)
    app = PeapodApp(client)
    async with app.run_test(size=SIZE) as pilot:
        screen = LogScreen("talker", "default")
        view = await open_logs(pilot, app, screen)
        await until(pilot, lambda: view.lines and view.lines[-1].startswith(NOTICE_PREFIX), "the end")
        texts = [f"line {i}" for i in range(len(log))] + ["no newline at the end"]
        assert [line for line in view.lines if not line.startswith(NOTICE_PREFIX)] == texts
        assert view.lines[-1] == f"{NOTICE_PREFIX}container c ended: Error, exit code 3"
        assert view.received == len(texts)
        # waiting, two breaks, the end, the final replay; the reconnections asked for sinceTime
        assert len(calls) == 5 and calls[:2] == [None, None] and None not in calls[2:]
        assert "ended" in status(screen)

        # t shows the timestamps, on every line already shown; t again hides them.
        await pilot.press("t")
        assert view.lines[0] == log[0].decode()
        await pilot.press("t")
        assert view.lines[0] == "line 0"


async def test_pause_buffers_and_resume_appends_in_order(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    await client.create(busybox_pod("steady"))
    log = stamped_log(400)
    release = asyncio.Event()

    async def scripted(name: str, namespace: str | None = None, **options: Any) -> AsyncIterator[bytes]:
        for i, line in enumerate(log):
            if i == 100:
                await release.wait()
            yield line + b"\n"
        await asyncio.Event().wait()  # a container that keeps running quietly

    monkeypatch.setattr(client, "logs", scripted)
    app = PeapodApp(client)
    async with app.run_test(size=SIZE) as pilot:
        screen = LogScreen("steady", "default")
        view = await open_logs(pilot, app, screen)
        await until(pilot, lambda: len(view.lines) == 100, "the first 100 lines")
        await pilot.press("p")
        assert "paused" in status(screen)
        release.set()
        await until(pilot, lambda: len(view.pending) == 300, "300 lines buffered")
        assert len(view.lines) == 100 and view.received == 400
        await until(pilot, lambda: "received 400  buffered 300" in status(screen), "the counts shown")
        await pilot.press("p")
        await until(pilot, lambda: len(view.lines) == 400, "the backlog appended")
        assert list(view.lines) == [f"line {i}" for i in range(400)]
        assert not view.pending
        await until(pilot, lambda: "following  received 400  buffered 0" in status(screen), "resumed")


async def test_missing_pod_says_so(client: Client) -> None:
    app = PeapodApp(client)
    async with app.run_test(size=SIZE) as pilot:
        screen = LogScreen("ghost", "default")
        view = await open_logs(pilot, app, screen)
        await until(pilot, lambda: view.lines, "the notice")
        assert list(view.lines) == [f'{NOTICE_PREFIX}pods "ghost" not found in namespace default']
        assert any("not found" in n.message and n.severity == "error" for n in app._notifications)
        assert "stopped" in status(screen)
        await pilot.press("c")  # no containers known: a warning, no picker
        assert app.screen is screen
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is not screen, "back")


async def test_unknown_container_says_so(client: Client) -> None:
    await client.create(busybox_pod("one"))
    app = PeapodApp(client)
    async with app.run_test(size=SIZE) as pilot:
        view = await open_logs(pilot, app, LogScreen("one", "default", container="nope"))
        await until(pilot, lambda: view.lines, "the notice")
        assert list(view.lines) == [f"{NOTICE_PREFIX}container nope is not valid for pod one"]
