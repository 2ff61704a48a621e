"""The client waits and retries when the server says so (a 429, or a 5xx with ``Retry-After``), as
client-go does: writes and watches too, at most ``max_retries`` times, each wait capped; anything else
is answered at once. Against a real server with a tiny rate limit a burst of calls sees 429s on the wire
and every call succeeds."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import msgspec
import pytest

from controlplane.api import ConfigMap, ObjectMeta
from controlplane.client import ApiError, Client
from controlplane.server.controlplane import ControlPlane, Settings
from tests.support import serving

STATUS_429 = {"kind": "Status", "status": "Failure", "reason": "TooManyRequests", "code": 429}
FORBIDDEN = {"kind": "Status", "status": "Failure", "reason": "Forbidden", "code": 403}
CM_JSON = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "default"}}


def scripted(answers: list[httpx.Response], seen: list[httpx.Request]) -> httpx.MockTransport:
    """A transport giving ``answers`` in turn (the last one from then on), recording the requests."""

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answers[min(len(seen), len(answers)) - 1]

    return httpx.MockTransport(handle)


def throttled(retry_after: str | None = "1", code: int = 429) -> httpx.Response:
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    return httpx.Response(code, json={**STATUS_429, "code": code}, headers=headers)


def fast(transport: httpx.MockTransport, retries: int = 10) -> Client:
    client = Client("http://test", transport=transport)
    client.max_retry_wait = 0.01  # whatever the server asks
    client.max_retries = retries
    return client


async def test_429_then_success_for_reads_and_writes() -> None:
    seen: list[httpx.Request] = []
    ok = httpx.Response(201, json=CM_JSON)
    async with fast(scripted([throttled("3600"), throttled(), ok], seen)) as client:
        created = await client.create(ConfigMap(metadata=ObjectMeta(name="x")))
    assert created.metadata.name == "x"
    assert [r.method for r in seen] == ["POST"] * 3
    assert seen[0].content == seen[2].content  # the same body each time


async def test_5xx_only_with_retry_after_and_other_errors_at_once() -> None:
    seen: list[httpx.Request] = []
    ok = httpx.Response(200, json=CM_JSON)
    async with fast(scripted([throttled("1", 503), ok], seen)) as client:
        await client.get(ConfigMap, "x", "default")
    assert len(seen) == 2
    for answer in (
        throttled(None, 500),
        throttled(None),
        throttled("soon"),
        httpx.Response(403, json=FORBIDDEN),
    ):
        seen.clear()
        async with fast(scripted([answer, ok], seen)) as client:
            with pytest.raises(ApiError) as err:
                await client.get(ConfigMap, "x", "default")
        assert err.value.code == answer.status_code and len(seen) == 1


async def test_gives_up_after_max_retries() -> None:
    seen: list[httpx.Request] = []
    async with fast(scripted([throttled()], seen), retries=3) as client:
        with pytest.raises(ApiError) as err:
            await client.delete(ConfigMap, "x", "default")
    assert err.value.code == 429 and err.value.reason == "TooManyRequests"
    assert len(seen) == 4  # the first try and 3 retries


async def test_the_wait_is_capped_with_jitter() -> None:
    seen: list[httpx.Request] = []
    answers = [throttled("3600"), throttled("1"), httpx.Response(200, json=CM_JSON)]
    async with Client("http://test", transport=scripted(answers, seen)) as client:
        client.max_retry_wait = 0.2
        waits = [client._retry_delay(throttled("3600"), 0) for _ in range(50)]
        assert all(w is not None and 0.2 <= w <= 0.24 for w in waits), waits
        assert len({waits[0], *waits}) > 1  # jittered
        assert client._retry_delay(throttled("1"), client.max_retries) is None
        started = time.monotonic()
        await client.get(ConfigMap, "x", "default")
        print(f"two throttled answers cost {time.monotonic() - started:.2f} s")
    assert len(seen) == 3


async def test_a_watch_retries_while_starting() -> None:
    seen: list[httpx.Request] = []
    event = msgspec.json.encode({"type": "ADDED", "object": CM_JSON}) + b"\n"
    async with fast(scripted([throttled(), throttled(), httpx.Response(200, content=event)], seen)) as client:
        events = [e async for e in client.watch(ConfigMap, "default")]
    assert [e.type for e in events] == ["ADDED"] and len(seen) == 3
    assert all(r.url.params["watch"] == "true" for r in seen)


# --- against a server with a tiny limit -------------------------------------------------------------


@pytest.fixture
async def limited(tmp_path: Path) -> AsyncIterator[ControlPlane]:
    tokens = tmp_path / "tokens.csv"
    tokens.write_text('admin-token,admin,0,"system:masters"\nalice-token,alice,1\n')
    tokens.chmod(0o600)
    settings = Settings(
        data_dir=tmp_path / "cp",
        listen="127.0.0.1:0",
        token_file=tokens,
        scheduler=False,
        controllers=False,
        max_requests_per_second=10,
        max_request_burst=5,
    )
    async with serving(settings) as cp:
        yield cp


def counting(client: Client) -> Callable[[], dict[int, int]]:
    """Count the answers on the wire by status code (an httpx response hook)."""
    codes: dict[int, int] = {}

    async def hook(resp: httpx.Response) -> None:
        codes[resp.status_code] = codes.get(resp.status_code, 0) + 1

    client._http.event_hooks["response"].append(hook)
    return lambda: codes


async def test_a_burst_is_throttled_and_every_call_succeeds(limited: ControlPlane) -> None:
    n = 30
    async with Client(limited.url, "alice-token") as alice, Client(limited.url, "admin-token") as admin:
        wire = counting(alice)
        started = time.monotonic()
        made = await asyncio.wait_for(
            asyncio.gather(*(alice.create(ConfigMap(metadata=ObjectMeta(name=f"cm-{i}"))) for i in range(n))),
            120,
        )
        elapsed = time.monotonic() - started
        assert sorted(c.metadata.name or "" for c in made) == sorted(f"cm-{i}" for i in range(n))
        codes = wire()
        assert codes.get(201) == n and codes.get(429, 0) > 0 and set(codes) == {201, 429}, codes
        assert len((await admin.list(ConfigMap, "default")).items) == n  # each exactly once
        # The admin is exempt: its own burst sees no 429.
        admin_wire = counting(admin)
        await asyncio.gather(*(admin.list(ConfigMap, "default") for _ in range(50)))
        assert admin_wire() == {200: 50}
    rejected = limited.server.rate_limiter.rejected
    print(
        f"{n} creates at 10/s burst 5: {codes.get(429)} answered 429 on the wire ({rejected} by the server)"
    )
    print(f"all {n} done in {elapsed:.1f} s")
    assert limited.server.rate_limiter.rejected == codes[429]
