"""``pea exec POD [-c C] [-i] [-t] -- COMMAND [ARG...]``: run a command in a container; ``pea`` exits with
the command's exit code.

Concurrency: the output loop (the session's stdout/stderr, in order, to ours) runs in the command's own
task; one more task copies our stdin to the session when ``-i`` is given and, at EOF, closes the
session's stdin. With ``-t`` and a real terminal, the terminal is in raw mode for the session (every key,
Ctrl-C included, goes to the remote side), the window size is sent at the start and on every SIGWINCH,
and the terminal is restored however the session ends.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from typing import TextIO

from controlplane.api.core import Pod
from controlplane.client import Client
from controlplane.client.remotecommand import ExecSession
from controlplane.client.streams import STDOUT, ExecFailure

from .logs import default_container, pod_name
from .terminal import ByteWriter, is_terminal, raw_terminal, read_chunks, terminal_size

__all__ = ["run_exec", "setup_exec"]

NO_TTY = "Unable to use a TTY - input is not a terminal or the right kind of file"


def setup_exec(p: argparse.ArgumentParser) -> None:
    p.add_argument("pod", metavar="POD | pod/POD")
    p.add_argument("command", nargs="*", metavar="-- COMMAND [ARG...]", help="the command and its arguments")
    p.add_argument("-c", "--container", help="the container (default: the pod's default container)")
    p.add_argument("-i", "--stdin", action="store_true", help="pass our stdin to the command")
    p.add_argument("-t", "--tty", action="store_true", help="give the command a terminal (with -i)")


async def run_exec(
    args: argparse.Namespace, out: TextIO, err: TextIO, stdin: TextIO, client: Client, namespace: str
) -> int:
    name = pod_name(args.pod, "exec")
    if not args.command:
        raise ValueError("you must specify at least one command for the container")
    use_tty = bool(args.tty and args.stdin and is_terminal(stdin))
    if args.tty and not use_tty:
        print(NO_TTY, file=err)
    container = args.container
    if container is None:
        container = default_container(await client.get(Pod, name, namespace), err)
    stdout, stderr = ByteWriter(out), ByteWriter(err)
    async with client.exec(
        name,
        list(args.command),
        namespace,
        container=container,
        stdin=args.stdin,
        stdout=True,
        stderr=not use_tty,
        tty=use_tty,
    ) as session:
        with raw_terminal(stdin) if use_tty else contextlib.nullcontext():
            try:
                code = await _run(session, stdin if args.stdin else None, stdout, stderr, use_tty)
            except ExecFailure as exc:
                print(f"error: {exc}", file=err)
                return 1
            finally:
                stdout.close()
                stderr.close()
    if code:
        print(f"command terminated with exit code {code}", file=err)
    return code


async def _run(
    session: ExecSession, stdin: TextIO | None, stdout: ByteWriter, stderr: ByteWriter, tty: bool
) -> int:
    loop = asyncio.get_running_loop()
    tasks: list[asyncio.Task[None]] = []

    async def copy_stdin(source: TextIO) -> None:
        async for chunk in read_chunks(source):
            await session.send_stdin(chunk)
        await session.close_stdin()

    async def send_size() -> None:
        size = terminal_size(stdin)
        if size is not None:
            await session.resize(*size)

    resized = False
    if stdin is not None:
        tasks.append(asyncio.create_task(copy_stdin(stdin), name="exec-stdin"))
    if tty:
        tasks.append(asyncio.create_task(send_size(), name="exec-size"))
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(
                signal.SIGWINCH, lambda: tasks.append(asyncio.create_task(send_size(), name="exec-size"))
            )
            resized = True
    try:
        async for channel, data in session.output():
            (stdout if channel == STDOUT else stderr).write(data)
    finally:
        if resized:
            loop.remove_signal_handler(signal.SIGWINCH)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
    assert session.exit_code is not None
    return session.exit_code
