"""Issue 11's guestbook, end to end: ``examples/guestbook/`` applied as it is to a one-node cluster with a
real pod network (``multinode.testbed``: the node in a network namespace of its own, its agent's bridge
network and service proxy writing real nftables rules), the redis image built offline into the node's
Podman.

One scenario, in order, as a user would drive it through NodePort 30001 (``127.0.0.1:30001`` inside the
node's namespace, so no traffic leaves the test's namespaces): a message posted to the frontend is
written to the master, replicated to both slaves and read back through the slaves' ClusterIP; the
redis-master pod is deleted, its RC replaces it, the slaves re-sync to the new master through the
unchanged ClusterIP and a new message round-trips; the frontend is scaled to 5 and back to 3. Every wait
is bounded; each step prints how long it took (``pytest -s`` shows them).
"""

from __future__ import annotations

import functools
import socket
import time
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from agent.network.netns import run_in_netns
from agent.runtime.images import ImageSourceUnavailable, build_redis_image
from controlplane.api import Node, Pod
from controlplane.api.core import Endpoints, ReplicationController, Service
from controlplane.client import Client
from controlplane.client.apply import ApplyOptions, apply_one
from controlplane.client.manifests import load, sort_for_apply

from . import multinode
from .cluster import eventually
from .conftest import podman_missing_reason
from .multinode import Lab, LabNode

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
GUESTBOOK = EXAMPLES / "guestbook"
BASICS = EXAMPLES / "basics"
FRONTEND = "http://127.0.0.1:30001"
API = f"{FRONTEND}/cgi-bin/guestbook"
REPLICAS = {"redis-master": 1, "redis-slave": 2, "frontend": 3}
PODS_UP = 180.0  # first start: three images' worth of containers, probes every 2s


def _http(method: str, url: str, body: bytes, timeout: float) -> tuple[int, str]:
    """One HTTP/1.0 request (run inside a namespace by ``run_in_netns``): status code and body."""
    parts = urllib.parse.urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    head = f"{method} {target} HTTP/1.0\r\nHost: {parts.hostname}\r\n"
    if method == "POST":
        head += f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(body)}\r\n"
    with socket.create_connection((parts.hostname or "", parts.port or 80), timeout=timeout) as s:
        s.sendall(head.encode() + b"\r\n" + body)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    text = b"".join(chunks).decode(errors="replace")
    status, _, rest = text.partition("\r\n")
    return int(status.split()[1]), rest.partition("\r\n\r\n")[2]


class Guestbook:
    """The node, the client, and the requests a user sends to the frontend through the NodePort."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.client: Client = lab.client
        self.node: LabNode = lab.nodes[0]
        self.started = time.monotonic()

    def step(self, what: str, since: float) -> None:
        now = time.monotonic()
        print(f"[guestbook] {what}: {now - since:.1f}s (at {now - self.started:.1f}s)")

    async def request(self, method: str, url: str, body: bytes = b"") -> tuple[int, str]:
        return await run_in_netns(self.node.netns, _http, method, url, body, 5.0)

    async def post(self, message: str) -> bool:
        """For ``eventually``: True once the frontend stored ``message`` (a form POST)."""
        try:
            status, text = await self.request(
                "POST", API, urllib.parse.urlencode({"message": message}).encode()
            )
        except OSError:
            return False
        return status == 200 and text.strip() == "OK"

    async def messages(self) -> list[str] | None:
        """The list the frontend reads (from a slave), or None while it answers no 200."""
        try:
            status, text = await self.request("GET", f"{API}?cmd=get")
        except OSError:
            return None
        return text.splitlines() if status == 200 else None

    async def shows(self, message: str) -> list[str] | None:
        got = await self.messages()
        return got if got is not None and message in got else None

    async def pods(self, name: str) -> list[Pod]:
        """The live (not terminating) pods of one RC."""
        pods = (await self.client.list(Pod, "default", label_selector=f"name={name}")).items
        return [p for p in pods if p.metadata.deletion_timestamp is None]

    async def labelled_ready(self, label: str, count: int) -> list[Pod] | None:
        """Exactly ``count`` live pods labelled ``name=label``, all Ready."""
        pods = await self.pods(label)
        ok = [
            p
            for p in pods
            if any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or ())
        ]
        return ok if len(pods) == count and len(ok) == count else None

    async def ready(self, name: str, count: int) -> list[Pod] | None:
        """``count`` Ready pods of RC ``name`` and none more, exactly those in Service ``name``'s
        Endpoints (the guestbook names each RC, its pods' label and its Service alike)."""
        ok = await self.labelled_ready(name, count)
        if ok is None:
            return None
        ep = await self.client.get(Endpoints, name, "default")
        ips = {a.ip for s in ep.subsets or () for a in s.addresses or ()}
        return ok if ips == {p.status.pod_ip for p in ok} else None

    async def body(self, url: str) -> str | None:
        """For ``eventually``: the body of a 200 answer, None while there is none."""
        try:
            status, text = await self.request("GET", url)
        except OSError:
            return None
        return text if status == 200 else None

    async def all_ready(self, replicas: dict[str, int]) -> bool:
        return all([await self.ready(name, count) is not None for name, count in replicas.items()])

    async def redis(self, pod: Pod, *args: str) -> str:
        """``redis-cli`` in a redis pod, against its own server."""
        out = await self.client.exec_output(pod.metadata.name or "", ["redis-cli", "-p", "6379", *args])
        assert out.exit_code == 0, out
        return out.stdout.decode()

    async def replicas_have(self, message: str) -> bool:
        slaves = await self.ready("redis-slave", 2)
        if slaves is None:
            return False
        lists = [(await self.redis(p, "LRANGE", "messages", "0", "-1")).splitlines() for p in slaves]
        return all(message in got for got in lists)

    async def cluster_ip(self, name: str) -> str:
        return (await self.client.get(Service, name, "default")).spec.cluster_ip or ""


async def _node_ready(client: Client) -> bool:
    nodes = (await client.list(Node)).items
    return any(
        any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or ()) for n in nodes
    )


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def guestbook(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Guestbook]:
    reason = podman_missing_reason()
    if reason is not None:
        pytest.skip(reason)
    async with multinode.testbed(1, tmp_path_factory.mktemp("guestbook")) as lab:
        book = Guestbook(lab)
        t = time.monotonic()
        try:
            await build_redis_image(book.node.podman_socket, timeout=600)
        except ImageSourceUnavailable as exc:
            pytest.skip(f"cannot build localhost/redis:latest, the Debian archive is unreachable: {exc}")
        book.step("redis image built", t)
        await eventually(lambda: _node_ready(lab.client), "the node Ready")
        yield book


async def test_the_guestbook_round_trips_messages_survives_a_new_master_and_scales(
    guestbook: Guestbook,
) -> None:
    book, client = guestbook, guestbook.client

    # --- up: `pea apply -f examples/guestbook/` --------------------------------------------------
    t = time.monotonic()
    for manifest in sort_for_apply(load([str(GUESTBOOK)])):
        assert await apply_one(client, manifest, ApplyOptions()) == "created"
    await eventually(lambda: book.all_ready(REPLICAS), "every guestbook pod Ready", timeout=PODS_UP)
    book.step("all pods Ready", t)

    t = time.monotonic()
    assert "<h1>Guestbook</h1>" in await eventually(lambda: book.body(f"{FRONTEND}/"), "the page on :30001")
    book.step("page served on :30001", t)

    # The frontend writes to the master's ClusterIP and reads from the slaves'.
    status, info = await book.request("GET", f"{API}?cmd=info")
    assert status == 200, info
    master_ip, slave_ip = await book.cluster_ip("redis-master"), await book.cluster_ip("redis-slave")
    assert info.splitlines() == [f"read={slave_ip}:6379", f"write={master_ip}:6379"], info

    # --- a message round-trips: frontend → master → slaves → frontend ------------------------------
    t = time.monotonic()
    first = "hello from the e2e test & friends: 100% ok"
    await eventually(lambda: book.post(first), "the frontend storing a message")
    assert first in await eventually(lambda: book.shows(first), "the message read back through the slaves")
    await eventually(lambda: book.replicas_have(first), "both slaves holding the message")
    (master,) = await book.pods("redis-master")
    assert (await book.redis(master, "LRANGE", "messages", "0", "-1")).splitlines() == [first]
    for slave in await book.pods("redis-slave"):
        replication = await book.redis(slave, "INFO", "replication")
        assert "role:slave" in replication and f"master_host:{master_ip}" in replication, replication
    book.step("first message round trip", t)

    # Bad input gets a clear 400, not a stored message.
    status, text = await book.request("GET", f"{API}?cmd=set&value=")
    assert status == 400 and "empty message" in text, (status, text)

    # --- the master pod goes; its RC replaces it; slaves follow the new one --------------------------
    t = time.monotonic()
    old_uid = master.metadata.uid
    await client.delete(Pod, master.metadata.name or "", "default")

    async def replaced() -> list[Pod] | None:
        pods = await book.ready("redis-master", 1)
        return pods if pods is not None and pods[0].metadata.uid != old_uid else None

    (new_master,) = await eventually(replaced, "a new Ready redis-master pod", timeout=PODS_UP)
    book.step("redis-master replaced", t)
    t = time.monotonic()
    second = "after the master was replaced"
    await eventually(lambda: book.post(second), "the frontend storing through the new master", timeout=90)
    got = await eventually(lambda: book.shows(second), "the new message through the slaves", timeout=90)
    assert first not in got  # the slaves re-synced to the new, empty master instead of keeping old data
    await eventually(lambda: book.replicas_have(second), "both slaves holding the new message", timeout=90)
    assert second in (await book.redis(new_master, "LRANGE", "messages", "0", "-1")).splitlines()
    book.step("second message round trip", t)

    # --- scale the frontend to 5 and back to 3 ---------------------------------------------------
    for count in (5, 3):
        t = time.monotonic()
        await client.scale(ReplicationController, "frontend", count, "default")
        await eventually(
            functools.partial(book.ready, "frontend", count), f"{count} Ready frontends", PODS_UP
        )
        book.step(f"frontend scaled to {count}", t)
    assert second in await eventually(lambda: book.shows(second), "the guestbook answering after scaling")


async def test_the_basics_examples_run(guestbook: Guestbook) -> None:
    """``examples/basics/``: the env + hostPort pod, the RC behind NodePort 30080, the two-container pod."""
    book, client, node_ip = guestbook, guestbook.client, guestbook.node.ip
    t = time.monotonic()
    for manifest in sort_for_apply(load([str(BASICS)])):
        assert await apply_one(client, manifest, ApplyOptions()) == "created"
    await eventually(lambda: book.labelled_ready("php-test", 1), "php-test Ready", timeout=PODS_UP)
    backends = await eventually(
        lambda: book.labelled_ready("php-test-pod", 2), "2 php pods Ready", timeout=PODS_UP
    )
    book.step("basics Ready", t)

    # 01: the environment, through the hostPort.
    page = await eventually(lambda: book.body(f"http://{node_ip}:8080/"), "php-test on hostPort 8080")
    assert page.strip() == "ENV_TEST_1=env_test_1 ENV_TEST_2=env_test_2"

    # 02 + 03: the RC's two pods both answer through NodePort 30080 (each answers with its own name).
    names = {p.metadata.name for p in backends}
    seen: set[str] = set()

    async def both() -> bool:
        answer = await book.body(f"http://{node_ip}:30080/")
        if answer is not None:
            seen.add(answer.strip())
        return seen == names

    await eventually(both, "both php-controller pods answering on NodePort 30080")

    # 04: the client container reaches the web container on 127.0.0.1.
    log: list[str] = [""]

    async def fetched() -> bool:
        chunks = [c async for c in client.logs("shared-localhost", "default", container="client")]
        log[0] = b"".join(chunks).decode()
        return "got: hello from the web container" in log[0]

    try:
        await eventually(fetched, "the client container fetching from the web container on 127.0.0.1")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; the client's log: {log[0]!r}") from None
