"""pods/log and pods/exec on a real API server with no agent behind it: the checks made before any
proxying, the errors as Status objects, the websocket refusals, and the agents' credential Secret."""

from __future__ import annotations

from pathlib import Path

import httpx
import msgspec
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from controlplane.api.core import Node, Pod, Secret
from controlplane.client import ApiError, Client, NotFound
from controlplane.client.streams import PROXY_SECRET_NAME, PROXY_SECRET_NAMESPACE, V5, secret_token
from controlplane.server.controlplane import ControlPlane, Settings
from controlplane.server.podproxy import AGENT_ADDRESS

RUNNING = {"running": {"startedAt": "2024-05-01T10:00:00Z"}}


async def make_pod(client: Client, name: str, *containers: str, node: str | None = None) -> Pod:
    body = {
        "metadata": {"name": name},
        "spec": {"containers": [{"name": c, "image": "i"} for c in containers]},
    }
    pod = await client.create(msgspec.convert(body, Pod), "default")
    if node is not None:
        await client.bind(name, "default", node)
    return pod


async def set_running(client: Client, name: str, container: str) -> None:
    pod = await client.get(Pod, name, "default")
    pod.status = msgspec.convert(
        {
            "phase": "Running",
            "containerStatuses": [{"name": container, "state": RUNNING, "containerID": "podman://c1"}],
        },
        type(pod.status),
    )
    await client.replace_status(pod)


async def make_node(client: Client, name: str, address: str | None) -> None:
    annotations = {AGENT_ADDRESS: address} if address else None
    await client.create(msgspec.convert({"metadata": {"name": name, "annotations": annotations}}, Node))


async def log_error(client: Client, name: str, **options: object) -> ApiError:
    with pytest.raises(ApiError) as caught:
        async for _ in client.logs(name, "default", **options):  # type: ignore[arg-type]
            pass
    return caught.value


async def test_the_credential_secret_is_made_once(settings: Settings) -> None:
    first = ControlPlane(settings)
    await first.start()
    try:
        async with Client(first.url) as client:
            secret = await client.get(Secret, PROXY_SECRET_NAME, PROXY_SECRET_NAMESPACE)
        token = secret_token(secret.data if isinstance(secret.data, dict) else None)
        assert token and len(token) >= 32 and first.server.proxy.token == token
    finally:
        await first.stop()
    again = ControlPlane(settings)  # a restart on the same store keeps it
    await again.start()
    try:
        assert again.server.proxy.token == token
    finally:
        await again.stop()


async def test_log_requests_are_checked_before_any_node_is_asked(client: Client) -> None:
    err = await log_error(client, "missing")
    assert isinstance(err, NotFound) and err.status.message == 'pods "missing" not found'
    await make_pod(client, "two", "a", "b")
    err = await log_error(client, "two")
    assert (err.code, err.reason) == (400, "BadRequest")
    assert err.status.message == "a container name must be specified for pod two, choose one of: [a b]"
    err = await log_error(client, "two", container="a")
    assert (err.code, err.status.message) == (400, "pod two does not have a host assigned")
    err = await log_error(client, "two", container="a", tail_lines=-1, limit_bytes=0)
    assert (err.code, err.reason) == (422, "Invalid")
    assert err.status.message == (
        'PodLogOptions "two" is invalid: [tailLines: Invalid value: -1: must be greater than or equal to 0, '
        "limitBytes: Invalid value: 0: must be greater than 0]"
    )
    await make_node(client, "n1", None)
    await make_pod(client, "one", "app", node="n1")
    err = await log_error(client, "one")
    assert err.status.message == 'container "app" in pod "one" is waiting to start: ContainerCreating'
    await set_running(client, "one", "app")
    err = await log_error(client, "one")
    assert (err.code, err.reason) == (503, "ServiceUnavailable")
    assert err.status.message == 'node "n1" publishes no agent address to reach its pods through'


async def test_a_node_whose_agent_cannot_be_reached(client: Client) -> None:
    await make_node(client, "n2", "127.0.0.1:1")
    await make_pod(client, "p", "app", node="n2")
    await set_running(client, "p", "app")
    err = await log_error(client, "p")
    assert err.code == 503 and err.status.message.startswith(
        'cannot reach the agent of node "n2" at 127.0.0.1:1'
    )
    with pytest.raises(ApiError) as caught:
        await client.exec_output("p", ["true"])
    assert caught.value.code == 503 and "cannot reach the agent" in caught.value.status.message


async def test_bad_query_values_are_bad_requests(controlplane: ControlPlane) -> None:
    async with httpx.AsyncClient(base_url=controlplane.url) as http:
        r = await http.get("/api/v1/namespaces/default/pods/x/log", params={"tailLines": "many"})
        assert r.status_code == 400
        assert r.json()["message"] == 'invalid value "many" for tailLines: must be an integer'
        r = await http.post("/api/v1/namespaces/default/pods/x/exec", params={"stdout": "true"})
        assert (
            r.status_code == 400
            and r.json()["message"] == "you must specify at least one command for the container"
        )


async def test_exec_refusals_come_before_the_upgrade(controlplane: ControlPlane, client: Client) -> None:
    with pytest.raises(NotFound) as caught:
        await client.exec_output("missing", ["true"])
    assert caught.value.status.message == 'pods "missing" not found'
    await make_node(client, "n1", "127.0.0.1:1")
    await make_pod(client, "p", "app", node="n1")
    with pytest.raises(ApiError) as refused:
        await client.exec_output("p", ["true"])
    assert refused.value.status.message == 'container "app" in pod "p" is waiting to start: ContainerCreating'
    await set_running(client, "p", "app")
    ws = (
        controlplane.url.replace("http://", "ws://")
        + "/api/v1/namespaces/default/pods/p/exec?command=true&stdout=1"
    )
    with pytest.raises(InvalidStatus) as no_protocol:
        await connect(ws, subprotocols=["channel.k8s.io"], proxy=None)  # type: ignore[list-item]
    assert no_protocol.value.response.status_code == 400
    assert b"v5.channel.k8s.io" in (no_protocol.value.response.body or b"")
    # Plain HTTP (kubectl's SPDY fallback) gets the same checks, then a 400 saying what is spoken.
    async with httpx.AsyncClient(base_url=controlplane.url) as http:
        r = await http.post(
            "/api/v1/namespaces/default/pods/p/exec", params={"command": "true", "stdout": "1"}
        )
        assert r.status_code == 400 and "websocket" in r.json()["message"] and r.json()["kind"] == "Status"
        r = await http.post(
            "/api/v1/namespaces/default/pods/nope/exec", params={"command": "true", "stdout": "1"}
        )
        assert r.status_code == 404


async def test_streams_need_authentication(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.csv"
    tokens.write_text('sekret,admin,admin,"system:masters"\n')
    cp = ControlPlane(
        Settings(data_dir=tmp_path / "cp", listen="127.0.0.1:0", token_file=tokens, scheduler=False)
    )
    await cp.start()
    try:
        async with Client(cp.url) as anonymous:
            err = await log_error(anonymous, "p")
            assert err.code == 401
            with pytest.raises(ApiError) as caught:
                await anonymous.exec_output("p", ["true"])
            assert caught.value.code == 401
        async with Client(cp.url, "sekret") as admin:
            assert isinstance(await log_error(admin, "p"), NotFound)
            with pytest.raises(NotFound):
                await admin.exec_output("p", ["true"])
        ws = (
            cp.url.replace("http://", "ws://")
            + "/api/v1/namespaces/default/pods/p/exec?command=true&stdout=1"
        )
        with pytest.raises(InvalidStatus) as refused:
            await connect(ws, subprotocols=[V5], proxy=None)  # type: ignore[list-item]
        assert refused.value.response.status_code == 401
    finally:
        await cp.stop()
