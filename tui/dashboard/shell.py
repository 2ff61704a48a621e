"""``s`` on a pod: a shell in one of its containers, in the real terminal, with the dashboard suspended.

Like k9s, the command is ``sh -c "command -v bash >/dev/null && exec bash || exec sh"`` (bash where the
image has it). The interactive part is ``pea exec -it``'s own (:func:`tui.exec.run_exec`): raw mode,
the window size at the start and on every SIGWINCH, our stdin to the session, the terminal restored
however the session ends.

Sequence: read the pod and choose the container *before* suspending, so that a pod that is not running
or a container that does not exist is a notification without the screen flickering. Then
``App.suspend()``: Textual stops its input thread (nothing else reads stdin), leaves the alternate
screen, restores the terminal's modes and resets SIGWINCH, which the exec code then handles; on the way
out it re-enters application mode and repaints.

Two things ``App.suspend()`` does not do for a coroutine, handled here:

* It is written for blocking code (``os.system``); while we await, the event loop runs on and the
  watch streams keep changing the table. A repaint would write to the stopped driver's bounded output
  queue and, once it is full, block the event loop (and the shell) for good. ``App.batch_update()``
  around the suspension holds every repaint until the app is back.
* It has no ``try/finally``: an exception escaping its block leaves the app suspended. Nothing escapes
  here: errors become the returned message, and a cancellation is re-raised only after the app is back.
"""

from __future__ import annotations

import argparse
import io
import sys
from typing import Any, TextIO

from textual.app import App, SuspendNotSupported

from controlplane.api.core import Pod
from controlplane.client import Client, ClientError, NotFound

from ..exec import run_exec
from ..logs import choose_container
from ..terminal import is_terminal

__all__ = ["SHELL", "ShellRefused", "open_shell", "pick_container"]

#: k9s's shell: bash if the image has one, else sh.
SHELL = ["sh", "-c", "command -v bash >/dev/null && exec bash || exec sh"]
CLEAR = "\x1b[H\x1b[2J"  # cursor home, erase the screen


class ShellRefused(Exception):
    """Why there is no shell to open; its text is the notification."""


def pick_container(pod: Pod, container: str | None) -> str:
    """The container named, else the pod's default-container annotation, else its first container."""
    names = [c.name for c in pod.spec.containers or []]
    name = pod.metadata.name
    if not names:
        raise ShellRefused(f"shell: pod {name} has no containers")
    if container is not None:
        if container not in names:
            choices = ", ".join(names)
            raise ShellRefused(f"shell: pod {name} has no container {container} (one of: {choices})")
        return container
    return choose_container(pod) or names[0]


def _check_running(pod: Pod, container: str) -> None:
    """The server would refuse an exec into a pod or container that is not running; say why first."""
    where = f"{pod.metadata.name}/{container}"
    phase = pod.status.phase or "Unknown"
    if phase != "Running":
        raise ShellRefused(f"shell in {where}: the pod is {phase}, not Running")
    statuses = pod.status.container_statuses or []
    status = next((s for s in statuses if s.name == container), None)
    state = status.state if status else None
    if state is None or state.running is not None:
        return  # no status yet: let the server decide
    if state.waiting is not None:
        reason = state.waiting.reason or "no reason given"
        raise ShellRefused(f"shell in {where}: the container is waiting ({reason})")
    if state.terminated is not None:
        reason = state.terminated.reason or f"exit code {state.terminated.exit_code}"
        raise ShellRefused(f"shell in {where}: the container has terminated ({reason})")


def _terminal() -> tuple[TextIO, TextIO]:
    """The terminal Textual was drawing on: our stdin, and stdout (else stderr, which Textual writes to)."""
    stdin = sys.__stdin__
    if stdin is None or not is_terminal(stdin):
        raise ShellRefused("shell: stdin is not a terminal")
    for out in (sys.__stdout__, sys.__stderr__):
        if out is not None and is_terminal(out):
            return stdin, out
    raise ShellRefused("shell: neither stdout nor stderr is a terminal")


async def _exec_shell(
    client: Client, pod: str, namespace: str, container: str, stdin: TextIO, out: TextIO
) -> str:
    """The session itself, in the suspended terminal; any error becomes the message."""
    where = f"{pod}/{container}"
    # A clean screen, as k9s does: what an earlier shell left there is not this one's.
    out.write(f"{CLEAR}pea: shell in {where} (namespace {namespace}); exit it to return to the dashboard\n")
    out.flush()
    args = argparse.Namespace(pod=pod, command=SHELL, container=container, stdin=True, tty=True)
    notes = io.StringIO()  # run_exec's own lines ("error: ...", "command terminated with ...")
    try:
        code = await run_exec(args, out, notes, stdin, client, namespace)
    except ClientError as exc:
        return f"shell in {where}: {exc}"
    except Exception as exc:  # the app must come back whatever happened
        return f"shell in {where}: {type(exc).__name__}: {exc}"
    error = next((line for line in notes.getvalue().splitlines() if line.startswith("error: ")), None)
    if error is not None:
        return f"shell in {where}: {error.removeprefix('error: ')}"
    return f"shell in {where} exited {code}"


async def open_shell(
    app: App[Any], client: Client, pod: str, namespace: str, container: str | None = None
) -> str:
    """Suspend ``app``, run an interactive shell in the pod's container in the real terminal, bring the
    app back; the one-line outcome ("shell in web-1/app exited 0", or why there was no shell)."""
    try:
        obj = await client.get(Pod, pod, namespace)
        chosen = pick_container(obj, container)
        _check_running(obj, chosen)
        if app.is_headless:
            raise ShellRefused("shell: needs a real terminal (the dashboard is running headless)")
        stdin, out = _terminal()
    except ShellRefused as exc:
        return str(exc)
    except NotFound:
        return f"shell: pod {pod} not found in namespace {namespace}"
    except ClientError as exc:
        return f"shell in {pod}: {exc}"

    message = ""
    interrupted: BaseException | None = None
    try:
        # batch_update outside: repaints stay held until suspend() has restarted the driver.
        with app.batch_update(), app.suspend():
            try:
                message = await _exec_shell(client, pod, namespace, chosen, stdin, out)
            except BaseException as exc:  # cancelled: bring the app back first, then re-raise
                interrupted = exc
    except SuspendNotSupported:
        return "shell: this terminal cannot be handed over (suspend is not supported here)"
    except RuntimeError:  # suspend() without a driver (the app is not running) yields nothing
        return "shell: the dashboard is not running"
    if interrupted is not None:
        raise interrupted
    return message
