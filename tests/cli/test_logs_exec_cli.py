"""``pea logs`` and ``pea exec`` without a cluster: argument handling, one-line errors, and the byte
plumbing between a container's streams and ours (the end-to-end tests run them against real pods)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from tui.cli import _parse, run
from tui.terminal import ByteWriter, read_chunks

OFFLINE = ["-s", "http://127.0.0.1:9"]  # nothing listens there; these commands fail before asking


def test_exec_takes_the_command_after_the_double_dash() -> None:
    parsed = _parse(["exec", "-it", "web", "-c", "app", "-n", "ns", "--", "sh", "-c", "ls -l /", "-n"])
    assert parsed is not None
    args = parsed[1]
    assert (args.pod, args.container, args.namespace, args.stdin, args.tty) == (
        "web",
        "app",
        "ns",
        True,
        True,
    )
    assert args.command == ["sh", "-c", "ls -l /", "-n"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["exec", "web"], "error: you must specify at least one command for the container"),
        (["exec", "rc/web", "--", "true"], 'error: pea exec takes a pod: POD or pod/POD, got "rc/web"'),
        (["logs", "svc/web"], 'error: pea logs takes a pod: POD or pod/POD, got "svc/web"'),
        (["logs", "web", "--since", "5 minutes"], 'error: invalid duration "5 minutes"'),
        (["logs", "web", "--since", "0s"], 'error: --since must be greater than 0, got "0s"'),
        (
            ["logs", "web", "--since", "5m", "--since-time", "2024-05-01T00:00:00Z"],
            "error: at most one of `sinceTime` or `sinceSeconds` may be specified",
        ),
        (["logs", "web", "--tail", "many"], "error: argument --tail: invalid int value: 'many'"),
        (["logs"], "error: the following arguments are required: POD | pod/POD"),
    ],
)
async def test_bad_input_is_one_line(argv: list[str], message: str) -> None:
    out, err = io.StringIO(), io.StringIO()
    assert await run([*argv, *OFFLINE], out, err) == 1
    assert err.getvalue().startswith(message) and err.getvalue().count("\n") == 1
    assert out.getvalue() == ""


async def test_an_unreachable_server_is_one_line() -> None:
    out, err = io.StringIO(), io.StringIO()
    assert await run(["logs", "web", *OFFLINE], out, err) == 1
    assert err.getvalue().startswith("The connection to the server 127.0.0.1:9 was refused")


def test_bytes_reach_a_text_stream_whole() -> None:
    text = io.StringIO()
    writer = ByteWriter(text)
    data = "naïve → 42\n".encode()
    for i in range(len(data)):  # one byte at a time: multi-byte characters are cut in two
        writer.write(data[i : i + 1])
    writer.close()
    assert text.getvalue() == "naïve → 42\n"


def test_bytes_go_to_a_binary_buffer_as_they_are() -> None:
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="utf-8")
    stream.write("before ")
    writer = ByteWriter(stream)
    writer.write(b"\xff\x00bytes")
    writer.close()
    assert raw.getvalue() == b"before \xff\x00bytes"


async def test_stdin_is_read_from_pipes_files_and_text_streams(tmp_path: Path) -> None:
    assert [c async for c in read_chunks(io.StringIO("typed\n"))] == [b"typed\n"]
    assert [c async for c in read_chunks(io.StringIO(""))] == []
    r, w = os.pipe()
    with os.fdopen(r, "rb", buffering=0) as reader:
        os.write(w, b"through a pipe")
        os.close(w)
        assert b"".join([c async for c in read_chunks(reader)]) == b"through a pipe"
    # A regular file cannot be polled (epoll refuses it): it is read in a thread instead.
    big = tmp_path / "input"
    big.write_bytes(b"x" * 200_000)
    with big.open("rb") as f:
        assert b"".join([c async for c in read_chunks(f)]) == b"x" * 200_000
