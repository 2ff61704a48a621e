"""``pods/{name}/log`` and ``pods/{name}/exec``: checked here against the API pod, served by its node.

The API server does what kube-apiserver and the kubelet check before any byte flows, with their words:
the container (required when the pod has several), the pod scheduled, and the container's state in the
pod's status (waiting, running, terminated, the previous attempt) — which also names the exact container
(``containerID``) the agent is to read. Then it proxies to the agent of the pod's node (the Node's
``peapod.io/agent-address`` annotation; its InternalIP and ``daemonEndpoints`` port when the agent
listens on every address), with a credential that node's agent accepts and no other node holds: the
node's own token from the token file (user ``system:node:<name>``; the agent knows its own token, so
there is no shared secret a compromised node could use on the others), else — no token file, or an agent
running with another identity — the token of the Secret ``kube-system/peapod-agent-proxy`` (which nodes
may not read under NodeRestriction). A node with a token of its own is never sent the Secret's, not even
when its agent refuses: a node publishes its agent address itself, and could otherwise collect it.

* logs: one streamed HTTP request (httpx, read timeout off) answered as a Starlette StreamingResponse,
  chunk by chunk, nothing buffered beyond a chunk; the client going away closes the agent's request.
* exec: a websocket (``v5``/``v4.channel.k8s.io``) to the agent first, with the client's subprotocol;
  only when the agent has accepted is the client's websocket accepted, so every refusal (the agent's
  too) reaches the client as an HTTP error with a ``Status`` body, the way kubectl expects a failed
  upgrade. Then two tasks copy messages both ways until one side closes, and the close code is passed on.
  A request without a websocket upgrade (kubectl's SPDY fallback) gets the same checks and then a 400.

Errors are ``APIError`` with the Kubernetes wording, e.g. ``a container name must be specified for pod
p, choose one of: [a b]`` or ``container "c" in pod "p" is waiting to start: ContainerCreating``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from urllib.parse import quote, urlencode

import httpx
import msgspec
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.websockets import WebSocket, WebSocketDisconnect
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from controlplane.api.core import ContainerStatus, Node, Pod
from controlplane.api.meta import Status
from controlplane.api.registry import for_type
from controlplane.client.streams import ExecOptions, LogOptions, QueryError, choose_protocol
from controlplane.status import internal_ip

from . import errors
from .handlers import API

__all__ = [
    "AGENT_ADDRESS",
    "PodProxy",
    "agent_endpoint",
    "exec_container_id",
    "log_container_id",
    "pick_container",
]

log = logging.getLogger(__name__)

# The annotation the agent publishes on its Node (agent.node.AGENT_ADDRESS; the control plane does not
# import the agent package).
AGENT_ADDRESS = "peapod.io/agent-address"
_UNSPECIFIED = ("", "0.0.0.0", "::")
MAX_MESSAGE = 16 * 1024 * 1024


# --- the checks (pure) ---------------------------------------------------------------------------


def pick_container(pod: Pod, requested: str | None) -> str:
    """kube-apiserver's validateContainer: the named container, or the only one."""
    name = pod.metadata.name or ""
    containers = [c.name for c in pod.spec.containers or []]
    init = [c.name for c in pod.spec.init_containers or []]
    if requested:
        if requested not in containers and requested not in init:
            raise errors.bad_request(f"container {requested} is not valid for pod {name}")
        return requested
    if len(containers) == 1:
        return containers[0]
    if not containers:
        raise errors.bad_request(f"a container name must be specified for pod {name}")
    message = f"a container name must be specified for pod {name}, choose one of: [{' '.join(containers)}]"
    if init:
        message += f" or one of the init containers: [{' '.join(init)}]"
    raise errors.bad_request(message)


def _status_of(pod: Pod, container: str) -> ContainerStatus | None:
    for statuses in (pod.status.container_statuses, pod.status.init_container_statuses):
        for s in statuses or []:
            if s.name == container:
                return s
    return None


def _scheduled(pod: Pod) -> str:
    if not pod.spec.node_name:
        raise errors.bad_request(f"pod {pod.metadata.name} does not have a host assigned")
    return pod.spec.node_name


def _waiting(container: str, pod: str, reason: str | None) -> errors.APIError:
    if reason == "ErrImagePull":
        why = "image can't be pulled"
    elif reason == "ImagePullBackOff":
        why = "trying and failing to pull image"
    else:
        why = reason or "ContainerCreating"
    return errors.bad_request(f'container "{container}" in pod "{pod}" is waiting to start: {why}')


def log_container_id(pod: Pod, container: str, previous: bool) -> str:
    """The kubelet's validateContainerLogStatus over the pod's status: which container's log to read."""
    name = pod.metadata.name or ""
    s = _status_of(pod, container)
    if s is None:  # scheduled, but the agent has not reported this container yet
        raise _waiting(container, name, None)
    state = s.state
    last = s.last_state.terminated if s.last_state is not None else None
    waiting = state.waiting if state else None
    running = state.running if state else None
    terminated = state.terminated if state else None
    if previous:
        if last is None or not last.container_id:
            raise errors.bad_request(f'previous terminated container "{container}" in pod "{name}" not found')
        return last.container_id
    if running is not None and s.container_id:
        return s.container_id
    if terminated is not None:
        cid = terminated.container_id or (last.container_id if last is not None else None)
        if not cid:
            raise errors.bad_request(f'container "{container}" in pod "{name}" is terminated')
        return cid
    if last is not None:
        if not last.container_id:
            raise errors.bad_request(f'container "{container}" in pod "{name}" is terminated')
        return last.container_id
    if waiting is not None:
        raise _waiting(container, name, waiting.reason)
    raise errors.bad_request(f'container "{container}" in pod "{name}" is waiting to start - no logs yet')


def exec_container_id(pod: Pod, container: str) -> str:
    """Exec needs the container running; its ID, or the reason it is not."""
    name = pod.metadata.name or ""
    s = _status_of(pod, container)
    state = s.state if s is not None else None
    if s is None or state is None:
        raise _waiting(container, name, None)
    if state.running is not None and s.container_id:
        return s.container_id
    if state.waiting is not None:
        raise _waiting(container, name, state.waiting.reason)
    raise errors.bad_request(f'container "{container}" in pod "{name}" is terminated')


def agent_endpoint(node: Node) -> str | None:
    """``host:port`` of the node's agent: its published address, with the node's InternalIP when that
    address is a wildcard; the kubelet endpoint port alone also works. None: not published."""
    published = (node.metadata.annotations or {}).get(AGENT_ADDRESS, "")
    endpoint = node.status.daemon_endpoints.kubelet_endpoint if node.status.daemon_endpoints else None
    host, _, port = published.rpartition(":")
    host = host.strip("[]")
    if not port.isdigit():
        host, port = "", str(endpoint.port if endpoint and endpoint.port else "")
    if not port or port == "0":
        return None
    if host in _UNSPECIFIED:
        addresses = node.status.addresses or []
        host = internal_ip(node) or next((a.address for a in addresses), "")
        if not host:
            return None
    try:
        if ipaddress.ip_address(host).version == 6:
            host = f"[{host}]"
    except ValueError:
        pass
    return f"{host}:{port}"


# --- the proxy -----------------------------------------------------------------------------------


class PodProxy:
    """One per API server; ``token`` is set by the control plane once it has read the Secret;
    ``node_token`` gives a node's own token (None: that node has none)."""

    def __init__(
        self, api: API, token: str | None = None, node_token: Callable[[str], str | None] | None = None
    ) -> None:
        self.api = api
        self.token = token
        self.node_token = node_token
        # Unbounded: every follower holds one connection to an agent for as long as it follows.
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(30.0, connect=5.0), limits=httpx.Limits(max_connections=None)
        )

    async def close(self) -> None:
        await self._http.aclose()

    def _headers(self, node: str) -> dict[str, str]:
        token = (self.node_token(node) if self.node_token is not None else None) or self.token
        return {"Authorization": f"Bearer {token}"} if token else {}

    async def _pod(self, namespace: str, name: str) -> Pod:
        pod = await self.api.storage.get(for_type(Pod), namespace, name)
        assert isinstance(pod, Pod)
        return pod

    async def _agent(self, node_name: str) -> str:
        node = await self.api.storage.get(for_type(Node), None, node_name)
        assert isinstance(node, Node)
        address = agent_endpoint(node)
        if address is None:
            raise _unavailable(f'node "{node_name}" publishes no agent address to reach its pods through')
        return address

    def _agent_refusal(self, node: str, code: int, body: bytes) -> errors.APIError:
        """The agent's own Status passes through, except a refused credential (a server-side problem)."""
        try:
            status = msgspec.json.decode(body, type=Status)
        except (msgspec.DecodeError, msgspec.ValidationError):
            status = Status(message=body.decode(errors="replace").strip()[:500] or f"HTTP {code}")
        if code in (401, 403) or status.reason == "ServiceUnavailable":
            return _unavailable(f'the agent of node "{node}" refused the request: {status.message}')
        status.code = code
        status.status = "Failure"
        return errors.APIError(status)

    # --- logs -----------------------------------------------------------------------------------

    async def logs(self, request: Request, namespace: str, name: str) -> Response:
        try:
            options = LogOptions.from_query(dict(request.query_params))
        except QueryError as exc:
            raise errors.bad_request(str(exc)) from None
        problems = options.validate()
        if problems:
            raise errors.invalid("PodLogOptions", name, problems)
        pod = await self._pod(namespace, name)
        container = pick_container(pod, options.container)
        node = _scheduled(pod)
        cid = log_container_id(pod, container, options.previous)
        address = await self._agent(node)
        query = {k: v for k, v in options.to_query().items() if k != "container"}
        query.update(podUID=pod.metadata.uid or "", containerID=cid)
        url = f"http://{address}/containerLogs/{quote(namespace)}/{quote(name)}/{quote(container)}"
        upstream = self._http.build_request(
            "GET", url, params=query, headers=self._headers(node), timeout=httpx.Timeout(None, connect=5.0)
        )
        try:
            response = await self._http.send(upstream, stream=True)
        except httpx.HTTPError as exc:
            raise _unavailable(f'cannot reach the agent of node "{node}" at {address}: {exc}') from None
        if response.status_code >= 400:
            body = await response.aread()
            await response.aclose()
            raise self._agent_refusal(node, response.status_code, body)
        return StreamingResponse(_relay(response), media_type="text/plain")

    # --- images ---------------------------------------------------------------------------------

    async def load_image(self, request: Request, node: str) -> Response:
        """``POST nodes/{node}/proxy/images/load``: the archive streamed to the node's agent as it comes
        (the agent caps its size), the agent's answer passed back."""
        address = await self._agent(node)
        upstream = self._http.build_request(
            "POST",
            f"http://{address}/images/load",
            content=request.stream(),
            headers={**self._headers(node), "Content-Type": "application/x-tar"},
            timeout=httpx.Timeout(300.0, connect=5.0),
        )
        try:
            response = await self._http.send(upstream)
        except httpx.HTTPError as exc:
            raise _unavailable(f'cannot reach the agent of node "{node}" at {address}: {exc}') from None
        if response.status_code >= 400:
            raise self._agent_refusal(node, response.status_code, response.content)
        return Response(response.content, media_type="application/json")

    # --- exec -----------------------------------------------------------------------------------

    async def _exec_target(self, namespace: str, name: str, pairs: Iterable[tuple[str, str]]) -> _Target:
        """The checks common to both exec entry points, and where the agent serves the request."""
        try:
            options = ExecOptions.from_query(pairs)
        except QueryError as exc:
            raise errors.bad_request(str(exc)) from None
        pod = await self._pod(namespace, name)
        container = pick_container(pod, options.container)
        node = _scheduled(pod)
        cid = exec_container_id(pod, container)
        address = await self._agent(node)
        query = [(k, v) for k, v in options.to_query() if k != "container"]
        query += [("podUID", pod.metadata.uid or ""), ("containerID", cid)]
        path = f"/exec/{quote(namespace)}/{quote(name)}/{quote(container)}?{urlencode(query)}"
        return _Target(node, address, path)

    async def exec_without_upgrade(self, request: Request, namespace: str, name: str) -> Response:
        await self._exec_target(namespace, name, request.query_params.multi_items())
        raise errors.bad_request(
            "unable to upgrade connection: exec speaks websockets (subprotocol v5.channel.k8s.io or "
            "v4.channel.k8s.io), not SPDY"
        )

    async def exec(self, websocket: WebSocket, namespace: str, name: str) -> None:
        """Connect to the agent, then accept the client; any refusal is an HTTP error with a Status."""
        protocol = choose_protocol(websocket.scope.get("subprotocols") or ())
        if protocol is None:
            raise errors.bad_request(
                "unable to upgrade connection: use the websocket subprotocol "
                "v5.channel.k8s.io or v4.channel.k8s.io"
            )
        target = await self._exec_target(namespace, name, websocket.query_params.multi_items())
        node, address = target.node, target.address
        try:
            agent = await connect(
                f"ws://{address}{target.path}",
                subprotocols=[protocol],  # type: ignore[list-item]
                additional_headers=self._headers(node),
                compression=None,
                proxy=None,
                open_timeout=10,
                max_size=MAX_MESSAGE,
                user_agent_header="peapod-apiserver",
            )
        except InvalidStatus as exc:
            raise self._agent_refusal(
                node, exc.response.status_code, bytes(exc.response.body or b"")
            ) from None
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            raise _unavailable(f'cannot reach the agent of node "{node}" at {address}: {exc}') from None
        try:
            await websocket.accept(subprotocol=agent.subprotocol)
        except BaseException:
            await agent.close()
            raise
        await _splice(websocket, agent)


@dataclass(frozen=True)
class _Target:
    node: str
    address: str
    path: str  # and query


def _unavailable(message: str) -> errors.APIError:
    return errors.APIError(Status(status="Failure", message=message, reason="ServiceUnavailable", code=503))


async def _relay(response: httpx.Response) -> AsyncIterator[bytes]:
    try:
        async for chunk in response.aiter_raw():
            yield chunk
    except httpx.HTTPError as exc:
        log.info("log stream from the agent ended: %s", exc)
    finally:
        await response.aclose()


async def _splice(client: WebSocket, agent: ClientConnection) -> None:
    """Copy messages both ways until either side closes; the agent's close code reaches the client."""

    async def upstream() -> None:
        try:
            while True:
                message = await client.receive()
                if message["type"] == "websocket.disconnect":
                    break
                if message.get("bytes") is not None:
                    await agent.send(message["bytes"])
                elif message.get("text") is not None:
                    await agent.send(message["text"])
        except (WebSocketDisconnect, ConnectionClosed, RuntimeError):
            pass
        await agent.close()

    sender = asyncio.create_task(upstream(), name="exec-upstream")
    code, reason = 1000, ""
    try:
        async for message in agent:
            if isinstance(message, bytes):
                await client.send_bytes(message)
            else:
                await client.send_text(message)
        code, reason = agent.close_code or 1000, agent.close_reason or ""
    except ConnectionClosed as exc:
        code = exc.rcvd.code if exc.rcvd is not None else 1011
        reason = exc.rcvd.reason if exc.rcvd is not None else "the agent went away"
    except (WebSocketDisconnect, RuntimeError, OSError):
        pass  # the client left
    finally:
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await sender
        await agent.close()
    with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
        await client.close(code if code in (1000, 1001) or 3000 <= code < 5000 else 1011, reason)
