"""Per-user request rate limits: the token bucket on a fake clock, and on the wire a 429
``TooManyRequests`` Status with ``Retry-After`` for a user over a tiny limit, before anything is done,
while the admin and the health endpoints are exempt and a watch counts once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import msgspec
import pytest

from agent.agent import Agent
from agent.hollow import HOLLOW_MACHINE
from agent.runtime.hollow import HollowRuntime
from controlplane.api import Node, Pod
from controlplane.client import Client
from controlplane.server import errors
from controlplane.server.auth import ADMIN, User
from controlplane.server.controlplane import ControlPlane, Settings
from controlplane.server.ratelimit import RateLimiter
from tests.agent.test_agent_hollow import settings as agent_settings
from tests.support import busybox_pod, eventually, serving

ALICE = User("alice", "1", ("system:authenticated",))
NODE = User("system:node:n1", "2", ("system:nodes", "system:authenticated"))
CM = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def over_limit(limiter: RateLimiter, user: User, path: str = "/api/v1/pods") -> errors.APIError:
    with pytest.raises(errors.APIError) as err:
        limiter.admit(user, path)
    return err.value


# --- the bucket ---------------------------------------------------------------------------------------


def test_burst_then_the_sustained_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(2.0, 4, clock=clock)
    for _ in range(4):
        limiter.admit(ALICE)
    err = over_limit(limiter, ALICE)
    status = err.status
    assert (status.code, status.reason) == (429, "TooManyRequests")
    assert status.message == "Too many requests, please try again later."
    assert status.details is not None and status.details.retry_after_seconds == 1
    limiter.admit(NODE)  # buckets are per user
    clock.now += 0.5  # one token back at 2/s
    limiter.admit(ALICE)
    over_limit(limiter, ALICE)
    clock.now += 100  # refills to the burst, no more
    for _ in range(4):
        limiter.admit(ALICE)
    over_limit(limiter, ALICE)
    assert limiter.rejected == 3


def test_retry_after_is_when_a_token_is_back() -> None:
    clock = Clock()
    limiter = RateLimiter(0.1, 1, clock=clock)  # one request every 10 s
    limiter.admit(ALICE)
    err = over_limit(limiter, ALICE)
    assert err.status.details is not None and err.status.details.retry_after_seconds == 10
    clock.now += 7
    err = over_limit(limiter, ALICE)
    assert err.status.details is not None and err.status.details.retry_after_seconds == 3


def test_admin_and_probes_are_exempt_and_zero_is_off() -> None:
    limiter = RateLimiter(1.0, 1, clock=Clock())
    for _ in range(100):
        limiter.admit(ADMIN)
        limiter.admit(ALICE, "/healthz")
        limiter.admit(ALICE, "/readyz")
    limiter.admit(ALICE)
    over_limit(limiter, ALICE)
    assert set(limiter.buckets) == {"alice"}
    off = RateLimiter(0, 0)
    for _ in range(1000):
        off.admit(ALICE)
    with pytest.raises(ValueError):
        RateLimiter(-1, 10)


def test_idle_buckets_are_dropped() -> None:
    clock = Clock()
    limiter = RateLimiter(10.0, 20, clock=clock)  # full again after 2 s
    for i in range(1000):
        limiter.admit(User(f"user-{i}"))
    assert len(limiter.buckets) == 1000
    clock.now += 2.5
    limiter.admit(ALICE)
    assert set(limiter.buckets) == {"alice"}
    print(f"buckets after the sweep: {len(limiter.buckets)} (from 1001)")


# --- on the wire --------------------------------------------------------------------------------------


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[ControlPlane]:
    tokens = tmp_path / "tokens.csv"
    tokens.write_text(
        'admin-token,admin,0,"system:masters"\n'
        "alice-token,alice,1\n"
        'node-token,system:node:n1,2,"system:nodes"\n'
    )
    tokens.chmod(0o600)
    settings = Settings(
        data_dir=tmp_path / "cp",
        listen="127.0.0.1:0",
        token_file=tokens,
        scheduler=False,
        controllers=False,
        max_requests_per_second=0.2,  # one token every 5 s: nothing refills during the test
        max_request_burst=3,
    )
    async with serving(settings) as cp:
        yield cp


def http(cp: ControlPlane, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=cp.url, headers={"Authorization": f"Bearer {token}"}, timeout=60)


async def test_over_the_limit_is_a_429_with_retry_after(server: ControlPlane) -> None:
    async with http(server, "alice-token") as alice, http(server, "admin-token") as admin:
        codes = [(await alice.get("/api/v1/namespaces/default/configmaps")).status_code for _ in range(3)]
        assert codes == [200, 200, 200]
        resp = await alice.post("/api/v1/namespaces/default/configmaps", json=CM)
        assert resp.status_code == 429
        retry_after = int(resp.headers["retry-after"])
        assert 1 <= retry_after <= 5
        status = resp.json()
        assert status["kind"] == "Status" and status["reason"] == "TooManyRequests"
        assert status["details"]["retryAfterSeconds"] == retry_after
        # Refused before anything was done: the ConfigMap does not exist.
        assert (await admin.get("/api/v1/namespaces/default/configmaps/x")).status_code == 404
        # The admin is exempt; so are the probes; an unknown token is still a 401, not a 429.
        answers = await asyncio.gather(*(admin.get("/api/v1/namespaces") for _ in range(30)))
        assert {r.status_code for r in answers} == {200}
        assert (await alice.get("/healthz")).status_code == 200
        assert (await alice.get("/api/v1/pods", headers={"Authorization": "Bearer nope"})).status_code == 401
        # Another user has a bucket of their own.
        async with http(server, "node-token") as node:
            assert (await node.get("/api/v1/pods")).status_code == 200
    assert server.server.rate_limiter.rejected == 1
    limiter = server.server.rate_limiter
    print(f"rejected: {limiter.rejected}, buckets: {sorted(limiter.buckets)}")


async def test_a_watch_counts_once(server: ControlPlane) -> None:
    async with http(server, "alice-token") as alice, http(server, "admin-token") as admin:
        assert (await alice.get("/api/v1/pods")).status_code == 200
        async with alice.stream(
            "GET", "/api/v1/namespaces/default/configmaps", params={"watch": "true"}
        ) as w:
            assert w.status_code == 200
            lines = w.aiter_lines()
            for i in range(5):  # events keep coming on the one request that was counted
                await admin.post(
                    "/api/v1/namespaces/default/configmaps", json={**CM, "metadata": {"name": f"c{i}"}}
                )
                event = msgspec.json.decode(await asyncio.wait_for(anext(lines), 60))
                assert event["type"] == "ADDED" and event["object"]["metadata"]["name"] == f"c{i}"
        assert (await alice.get("/api/v1/pods")).status_code == 200  # the third token
        assert (await alice.get("/api/v1/pods")).status_code == 429


async def test_an_agent_starting_a_full_node_stays_under_the_defaults(tmp_path: Path) -> None:
    """A node agent (its own token, so not exempt) starting 110 pods (the kubelet's maxPods) at once,
    with test-short heartbeat and status intervals, is never throttled by the default limits."""
    tokens = tmp_path / "tokens.csv"
    tokens.write_text(
        'admin-token,admin,0,"system:masters"\nnode-token,system:node:node-1,1,"system:nodes"\n'
    )
    tokens.chmod(0o600)
    settings = Settings(
        data_dir=tmp_path / "cp", listen="127.0.0.1:0", token_file=tokens, controllers=False, scheduler=False
    )
    assert (settings.max_requests_per_second, settings.max_request_burst) == (100.0, 400)
    cp = ControlPlane(settings)
    await cp.start()
    sent: list[float] = []

    async def count(request: httpx.Request) -> None:
        sent.append(time.monotonic())

    try:
        async with Client(cp.url, "admin-token") as admin, Client(cp.url, "node-token") as node_client:
            node_client._http.event_hooks["request"].append(count)
            agent = Agent(node_client, HollowRuntime("node-1"), agent_settings(), machine=HOLLOW_MACHINE)
            await agent.start()
            try:

                async def registered() -> bool:
                    return any(n.metadata.name == "node-1" for n in (await admin.list(Node)).items)

                await eventually(registered, "node-1 registered", 60)
                n = 110
                for i in range(0, n, 10):
                    await asyncio.gather(
                        *(admin.create(busybox_pod(f"p{j}", "node-1")) for j in range(i, i + 10))
                    )

                async def all_running() -> bool:
                    pods = (await admin.list(Pod, "default")).items
                    return sum(p.status.phase == "Running" for p in pods) == n

                await eventually(all_running, f"{n} pods running", 120)
            finally:
                await agent.stop()
        peak = max(sum(1 for t in sent if s <= t < s + 1.0) for s in sent)
        print(
            f"agent: {len(sent)} requests, peak {peak} in one second, 429s: {cp.server.rate_limiter.rejected}"
        )
        assert cp.server.rate_limiter.rejected == 0
        assert "system:node:node-1" in cp.server.rate_limiter.buckets  # it was limited, not exempt
    finally:
        await cp.stop()
