"""``pea up`` and ``pea down`` as a user runs them: real processes, real Podman, the host's network.

The guestbook test is issue 11's "done when": ``pea up --headless`` in a fresh data directory, a message
posted to the frontend on ``localhost:30001`` and read back (through a redis slave), the redis master's
pod deleted and replaced by its RC with a new message round-tripping, the frontend scaled to 5 and back
to 3, then ``pea down --purge`` leaving no pods, nftables tables, veths, routes or data behind. The
second test checks the data directory's lock and that a second ``pea up`` resumes the same cluster
(served with ``--tls``: the tokens and the CA are kept). Both check that the data directory and its
secrets are owner-only and that no token is in what ``pea up`` prints.

Each ``pea up`` is a subprocess; whatever happens, ``finally`` runs ``pea down --purge`` and kills what
is still alive, so a failing test leaves the machine as it found it.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from controlplane.api.core import ConfigMap, Pod
from controlplane.api.meta import ObjectMeta
from controlplane.client import Client, TransportError, load_config
from controlplane.server.auth import load_token_file
from tests.support import free_port

from .conftest import podman_missing_reason

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

PEA = str(Path(sys.executable).parent / "pea")
GUESTBOOK = "http://localhost:30001/cgi-bin/guestbook"
READY_TIMEOUT = 600.0  # a fresh machine builds the redis image first (apt-get download)
OUR_VETH = re.compile(r"^\d+: pea[0-9a-f]{11}[@:]")


@pytest.fixture(autouse=True)
def _needs_podman() -> None:
    reason = podman_missing_reason()
    if reason is not None:
        pytest.skip(reason)


async def until(check: Callable[[], Awaitable[Any]], what: str, timeout: float = 60.0) -> Any:
    """``check()`` until it returns something truthy; every error meanwhile counts as "not yet"."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last: object = None
    while True:
        try:
            result = await check()
            if result:
                return result
            last = result
        except Exception as exc:
            last = exc
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what} (last: {last!r})")
        await asyncio.sleep(0.5)


@dataclass
class Up:
    """One ``pea up`` process and everything it printed."""

    proc: asyncio.subprocess.Process
    lines: list[str] = field(default_factory=list)
    reader: asyncio.Task[None] | None = None

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    async def wait_for(self, text: str, timeout: float) -> None:
        async def seen() -> bool:
            if any(text in line for line in self.lines):
                return True
            if self.proc.returncode is not None:
                raise AssertionError(
                    f"pea up exited ({self.proc.returncode}) before {text!r}:\n{self.output}"
                )
            return False

        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not await seen():
            if loop.time() > deadline:
                raise AssertionError(f"no {text!r} from pea up within {timeout:g}s:\n{self.output}")
            await asyncio.sleep(0.2)

    async def exit_code(self, timeout: float = 120.0) -> int:
        code = await asyncio.wait_for(self.proc.wait(), timeout)
        if self.reader is not None:
            await asyncio.wait_for(self.reader, 10)
        return code


async def start_up(*args: str) -> Up:
    proc = await asyncio.create_subprocess_exec(
        PEA, "up", "--headless", *args,
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    up = Up(proc)

    async def read() -> None:
        assert proc.stdout is not None
        async for raw in proc.stdout:
            up.lines.append(raw.decode(errors="replace").rstrip("\n"))

    up.reader = asyncio.create_task(read())
    return up


async def pea(*args: str, timeout: float = 120.0) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        PEA, *args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode or 0, out.decode(errors="replace")


async def command(*args: str) -> str:
    proc = await asyncio.create_subprocess_exec(*args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    return out.decode(errors="replace")


def admin_client(data_dir: Path) -> Client:
    """A client with what ``pea up`` wrote into ``DATA/kubeconfig``: the admin token (and the CA)."""
    config = load_config(kubeconfig=data_dir / "kubeconfig")
    return Client(config.server, config.token, verify=config.verify)


def assert_owner_only_and_unlogged(data_dir: Path, up: Up) -> list[str]:
    """The data directory and its secrets are the owner's alone, and no token is in what pea up said."""
    token_file = data_dir / "controlplane" / "tokens.csv"
    assert data_dir.stat().st_mode & 0o777 == 0o700
    for secret in (token_file, data_dir / "kubeconfig", data_dir / "controlplane" / "state.db"):
        assert secret.stat().st_mode & 0o777 == 0o600, secret
    tokens = list(load_token_file(token_file))
    groups = sorted(g for user in load_token_file(token_file).values() for g in user.groups)
    assert groups.count("system:masters") == 1 and groups.count("system:nodes") == 1
    log = data_dir / "up.log"
    said = up.output + (log.read_text() if log.exists() else "")
    assert not [t for t in tokens if t in said]
    return tokens


@contextlib.asynccontextmanager
async def cleaned_up(data_dir: Path, ups: list[Up]) -> AsyncIterator[None]:
    """Whatever happens inside: ``pea down --purge``, then kill any ``pea up`` still alive."""
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            await pea("down", "--purge", "--data-dir", str(data_dir), timeout=180)
        for up in ups:
            if up.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    up.proc.kill()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(up.proc.wait(), 30)
            if up.reader is not None:
                up.reader.cancel()


async def running_pods(client: Client, name: str) -> list[Pod]:
    pods = (await client.list(Pod, "default", label_selector=f"name={name}")).items
    return [
        p
        for p in pods
        if p.status.phase == "Running"
        and p.metadata.deletion_timestamp is None
        and all(s.ready for s in p.status.container_statuses or [])
        and p.status.container_statuses
    ]


async def all_pods(client: Client, name: str) -> list[Pod]:
    return (await client.list(Pod, "default", label_selector=f"name={name}")).items


async def post(http: httpx.AsyncClient, message: str) -> bool:
    r = await http.post(GUESTBOOK, data={"message": message})
    return r.status_code == 200 and r.text.strip() == "OK"


async def messages(http: httpx.AsyncClient) -> list[str]:
    r = await http.get(GUESTBOOK, params={"cmd": "get"})
    r.raise_for_status()
    return r.text.splitlines()


async def assert_nothing_left(data_dir: Path) -> None:
    assert not await asyncio.to_thread(data_dir.exists)
    assert "peapod" not in await command("nft", "list", "tables")
    links = (await command("ip", "-o", "link")).splitlines()
    assert [line for line in links if OUR_VETH.match(line)] == []
    assert not any(re.match(r"^\d+: pea0[@:]", line) for line in links)
    assert "proto 112" not in await command("ip", "route", "show", "table", "main")
    # No process (Podman service, conmon, container) still refers to the data directory.
    assert str(data_dir) not in await command("ps", "-eo", "args")


async def test_guestbook_end_to_end(tmp_path: Path) -> None:
    data_dir = tmp_path / "d"
    port = free_port()
    ups: list[Up] = []
    async with cleaned_up(data_dir, ups):
        up = await start_up("--data-dir", str(data_dir), "--listen", f"127.0.0.1:{port}")
        ups.append(up)
        await up.wait_for("ready: API at", READY_TIMEOUT)
        assert "guestbook: 6/6 pods Running" in up.output
        assert "http://localhost:30001/" in up.output
        assert (data_dir / "kubeconfig").is_file()
        assert f"listening on http://127.0.0.1:{port}" in up.output
        assert_owner_only_and_unlogged(data_dir, up)
        kubeconfig = ["--kubeconfig", str(data_dir / "kubeconfig")]

        async with admin_client(data_dir) as client, httpx.AsyncClient(timeout=10) as http:
            assert await until(lambda: post(http, "first message"), "the first message accepted")
            await until(
                lambda: _contains(messages(http), "first message"), "the first message read back from a slave"
            )

            (old,) = await all_pods(client, "redis-master")
            await client.delete(Pod, old.metadata.name or "", "default")

            async def replaced() -> list[Pod]:
                pods = await running_pods(client, "redis-master")
                return [p for p in pods if p.metadata.uid != old.metadata.uid]

            (new,) = await until(replaced, "a new redis-master pod running", 120)
            assert new.metadata.name != old.metadata.name
            assert await until(
                lambda: post(http, "second message"), "a message accepted by the new master", 120
            )
            await until(
                lambda: _contains(messages(http), "second message"),
                "the second message read back through the slaves",
                120,
            )

            code, out = await pea("scale", "rc", "frontend", "--replicas=5", *kubeconfig)
            assert code == 0, out
            await until(lambda: _count(running_pods(client, "frontend"), 5), "5 frontends running", 120)
            code, out = await pea("scale", "rc", "frontend", "--replicas=3", *kubeconfig)
            assert code == 0, out
            await until(lambda: _count(all_pods(client, "frontend"), 3), "back to 3 frontends", 120)
            assert await until(lambda: post(http, "third message"), "the frontend still serving")

        code, out = await pea("down", "--purge", "--data-dir", str(data_dir), timeout=180)
        assert code == 0, out
        assert await up.exit_code() == 0, up.output
        assert "stopped" in up.lines[-1]
        await assert_nothing_left(data_dir)


async def _contains(lines: Awaitable[list[str]], text: str) -> bool:
    return text in await lines


async def _count(pods: Awaitable[list[Pod]], n: int) -> bool:
    return len(await pods) == n


async def test_one_up_per_data_dir_and_up_again_resumes(tmp_path: Path) -> None:
    data_dir = tmp_path / "d"
    port = free_port()
    url = f"https://127.0.0.1:{port}"
    listen = ["--data-dir", str(data_dir), "--listen", f"127.0.0.1:{port}", "--example", "none", "--tls"]
    ups: list[Up] = []
    async with cleaned_up(data_dir, ups):
        first = await start_up(*listen)
        ups.append(first)
        await first.wait_for("ready: API at", 120)

        code, out = await pea("up", "--headless", *listen, timeout=60)
        assert code == 1
        assert out.strip().splitlines() == [
            f"error: pea up is already running on {data_dir} (pid {first.proc.pid}); "
            f"stop it with: pea down --data-dir {data_dir}"
        ]

        assert f"listening on {url}" in first.output
        tokens = assert_owner_only_and_unlogged(data_dir, first)
        ca = (data_dir / "controlplane" / "pki" / "ca.crt").read_bytes()
        async with Client(url) as untrusting:  # the system's CAs do not know the cluster's
            with pytest.raises(TransportError):
                await untrusting.get(ConfigMap, "x", "default")
        async with admin_client(data_dir) as client:
            made = await client.create(
                ConfigMap(metadata=ObjectMeta(name="remember-me", namespace="default"), data={"k": "v"})
            )
        code, out = await pea("down", "--data-dir", str(data_dir))
        assert code == 0, out
        assert await first.exit_code() == 0, first.output
        code, out = await pea("down", "--data-dir", str(data_dir))
        assert (code, out.strip()) == (0, f"pea up is not running on {data_dir}")

        second = await start_up(*listen)
        ups.append(second)
        await second.wait_for("ready: API at", 120)
        # Kept across starts: the tokens (the old kubeconfig still works) and the CA.
        assert assert_owner_only_and_unlogged(data_dir, second) == tokens
        assert (data_dir / "controlplane" / "pki" / "ca.crt").read_bytes() == ca
        async with admin_client(data_dir) as client:
            again = await client.get(ConfigMap, "remember-me", "default")
        assert again.metadata.uid == made.metadata.uid and again.data == {"k": "v"}

        code, out = await pea("down", "--purge", "--data-dir", str(data_dir), timeout=180)
        assert code == 0, out
        assert await second.exit_code() == 0, second.output
        await assert_nothing_left(data_dir)
