"""Request bodies over 3 MiB are refused with 413 ``RequestEntityTooLarge``, whether the client says
how long the body is (Content-Length) or streams it (chunked, no length), and nothing is stored; a body
just under the limit is read as usual."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import msgspec
import pytest

from controlplane.server.controlplane import ControlPlane
from controlplane.server.request import MAX_BODY

CONFIGMAPS = "/api/v1/namespaces/default/configmaps"


def configmap(name: str, size: int) -> bytes:
    """A valid ConfigMap document padded with whitespace to ``size`` bytes."""
    doc = msgspec.json.encode({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}})
    return doc + b" " * (size - len(doc))


async def chunks(body: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


async def post(http: httpx.AsyncClient, content: bytes | AsyncIterator[bytes], method: str = "POST") -> int:
    path = CONFIGMAPS if method == "POST" else f"{CONFIGMAPS}/big"
    ctype = "application/json" if method != "PATCH" else "application/merge-patch+json"
    try:
        resp = await http.request(method, path, content=content, headers={"Content-Type": ctype})
    except httpx.WriteError:  # the server answered and closed before the client finished sending
        return 413
    if resp.status_code == 413:
        status = resp.json()
        assert status["kind"] == "Status" and status["reason"] == "RequestEntityTooLarge", status
        assert str(MAX_BODY) in status["message"]
    return resp.status_code


async def names(http: httpx.AsyncClient) -> list[str]:
    resp = await http.get(CONFIGMAPS)
    return [item["metadata"]["name"] for item in resp.json()["items"]]


@pytest.fixture
async def http(controlplane: ControlPlane) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=controlplane.url, timeout=60) as client:
        yield client


async def test_content_length_over_the_limit(http: httpx.AsyncClient) -> None:
    before = await names(http)
    assert await post(http, configmap("big", MAX_BODY + 1)) == 413
    assert await names(http) == before


async def test_streamed_body_over_the_limit(http: httpx.AsyncClient) -> None:
    before = await names(http)
    body = configmap("big", MAX_BODY + 64 * 1024)
    assert await post(http, chunks(body)) == 413  # chunked: the server counts as it reads
    assert await names(http) == before
    # Updates and patches too.
    assert await post(http, configmap("small", 100)) == 201
    assert await post(http, chunks(configmap("big", 2 * MAX_BODY)), "PUT") == 413
    patch = b'{"data": {"k": "v"}}' + b" " * MAX_BODY
    assert await post(http, chunks(patch), "PATCH") == 413
    assert "big" not in await names(http)


async def test_just_under_the_limit_is_read(http: httpx.AsyncClient) -> None:
    assert await post(http, chunks(configmap("streamed", MAX_BODY))) == 201
    assert await post(http, configmap("whole", MAX_BODY)) == 201
    assert {"streamed", "whole"} <= set(await names(http))
