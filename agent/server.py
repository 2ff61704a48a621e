"""The agent's own HTTP endpoint (the kubelet's port): health, images sent to this node, and container
logs and exec for the API server.

There is no registry, so images travel to nodes through their agents: ``pea image load FILE --node N``
posts an image archive to the API server's ``nodes/N/proxy/images/load``, which authorizes the user
(admins and users, never a node) and streams it here; the runtime loads it.

Logs and exec follow the kubelet's paths, ``GET /containerLogs/{namespace}/{pod}/{container}`` and the
websocket ``/exec/{namespace}/{pod}/{container}`` (query: the pod's ``podUID`` and the ``containerID``
the API server read in its status, plus Kubernetes' own log or exec parameters).

Everything but ``/healthz`` is served to the API server only, which sends ``Authorization: Bearer
<token>`` with one of two credentials the agent accepts:

* the agent's own token (the one its client uses): with a token file the API server shows node N's agent
  N's node token. No credential is shared between nodes, so a compromised node learns nothing that
  another node's agent accepts.
* the token of the Secret ``kube-system/peapod-agent-proxy`` (no token file, or an agent running with an
  identity that is not a node): read through the agent's client at start (and again, at most every few
  seconds, when a request brings a token it does not know: the Secret may have been re-created). A node
  identity may not read it (NodeRestriction); a 403 there ends the reading, the own token suffices.

No token: 401; a wrong one: 403. Refusals are Kubernetes ``Status`` objects, which the API server passes
on. See ``streams.py`` for how the streams are served.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import socket
from collections.abc import AsyncIterator

import msgspec
import uvicorn
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from controlplane.api.core import Secret
from controlplane.api.meta import Status
from controlplane.client import ApiError, Client, ClientError, NotFound
from controlplane.client.streams import (
    PROXY_SECRET_NAME,
    PROXY_SECRET_NAMESPACE,
    ExecOptions,
    LogOptions,
    QueryError,
    choose_protocol,
    secret_token,
)

from .runtime.base import Runtime, RuntimeFailure
from .streams import StreamError, StreamingRuntime, bridge_exec, find_container, limit_bytes

log = logging.getLogger(__name__)

MAX_IMAGE = 2 * 1024**3
TOKEN_RETRY = 1.0  # seconds between reads of the credential Secret while it does not exist
TOKEN_REFRESH = 5.0  # at most one re-read per this many seconds when an unknown token arrives
_encoder = msgspec.json.Encoder()


def status_response(err: StreamError) -> Response:
    status = Status(status="Failure", message=err.message, reason=err.reason, code=err.code)
    return Response(_encoder.encode(status), status_code=err.code, media_type="application/json")


class AgentServer:
    """``token``: the agent's own token (default: the one ``client`` sends). ``client``: where to read the
    Secret's credential; ``proxy_token`` gives it directly instead."""

    def __init__(
        self,
        runtime: Runtime,
        host: str,
        port: int,
        token: str | None = None,
        *,
        client: Client | None = None,
        proxy_token: str | None = None,
    ) -> None:
        self.runtime = runtime
        self.host = host
        self.port = port
        self.client = client
        self.token = token if token is not None or client is None else client.token
        self.proxy_token = proxy_token
        self._secret_forbidden = False
        self.app = Starlette(
            routes=[
                Route("/healthz", self._health),
                Route("/images/load", self._load, methods=["POST"]),
                Route("/containerLogs/{namespace}/{pod}/{container}", self._logs),
                WebSocketRoute("/exec/{namespace}/{pod}/{container}", self._exec),
                Route(
                    "/exec/{namespace}/{pod}/{container}", self._exec_without_upgrade, methods=["GET", "POST"]
                ),
            ]
        )
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None
        self._token_task: asyncio.Task[None] | None = None
        self._token_read_at = 0.0

    async def _health(self, request: Request) -> Response:
        return PlainTextResponse("ok")

    async def _load(self, request: Request) -> Response:
        denied = await self._authorize(request.headers)
        if denied is not None:
            return status_response(denied)
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_IMAGE:
                message = f"the image archive is larger than {MAX_IMAGE} bytes"
                return status_response(StreamError(413, "RequestEntityTooLarge", message))
            chunks.append(chunk)
        try:
            names = await self.runtime.load_image(b"".join(chunks))
        except RuntimeFailure as exc:
            return status_response(StreamError(400, "BadRequest", exc.message))
        return JSONResponse({"images": names})

    # --- the API server's credential ------------------------------------------------------------

    async def _read_proxy_token(self) -> bool:
        """Read the Secret once; True when a token was found, or when this agent may not read it (a node
        identity: its own token is its credential)."""
        if self.client is None or self._secret_forbidden:
            return self._secret_forbidden
        self._token_read_at = asyncio.get_running_loop().time()
        try:
            secret = await self.client.get(Secret, PROXY_SECRET_NAME, PROXY_SECRET_NAMESPACE)
        except NotFound:
            return False
        except ApiError as exc:
            if exc.code != 403 or self.token is None:
                log.warning("cannot read %s/%s: %s", PROXY_SECRET_NAMESPACE, PROXY_SECRET_NAME, exc)
                return False
            log.info("node identity: the API server is recognised by this agent's own token")
            self._secret_forbidden = True
            return True
        except ClientError as exc:
            log.warning("cannot read %s/%s: %s", PROXY_SECRET_NAMESPACE, PROXY_SECRET_NAME, exc)
            return False
        token = secret_token(secret.data if isinstance(secret.data, dict) else None)
        if token is not None:
            self.proxy_token = token
        return token is not None

    async def _keep_reading_token(self) -> None:
        warned = False
        while not await self._read_proxy_token():
            if not warned:
                log.warning(
                    "the Secret %s/%s does not exist yet; logs and exec are refused until it does",
                    PROXY_SECRET_NAMESPACE,
                    PROXY_SECRET_NAME,
                )
                warned = True
            await asyncio.sleep(TOKEN_RETRY)

    async def _authorize(self, headers: Headers) -> StreamError | None:
        scheme, _, given = headers.get("authorization", "").partition(" ")
        given = given.strip()
        if scheme.lower() != "bearer" or not given or not given.isascii():
            return StreamError(401, "Unauthorized", "Unauthorized")
        if self._known(given):
            return None
        now = asyncio.get_running_loop().time()
        if self.client is not None and now - self._token_read_at >= TOKEN_REFRESH:
            await self._read_proxy_token()
            if self._known(given):
                return None
        if self.proxy_token is None and self.token is None:
            return StreamError(
                503,
                "ServiceUnavailable",
                f"the agent has not read its credential ({PROXY_SECRET_NAMESPACE}/{PROXY_SECRET_NAME}) yet",
            )
        return StreamError(403, "Forbidden", "this endpoint serves the API server only")

    def _known(self, given: str) -> bool:
        """``given`` is one of the API server's credentials (each compared, in constant time)."""
        own = self.token is not None and hmac.compare_digest(given, self.token)
        shared = self.proxy_token is not None and hmac.compare_digest(given, self.proxy_token)
        return own or shared

    # --- logs and exec --------------------------------------------------------------------------

    def _streaming_runtime(self) -> StreamingRuntime:
        if not isinstance(self.runtime, StreamingRuntime):
            raise StreamError(400, "BadRequest", "this node's runtime has no container logs or exec")
        return self.runtime

    async def _find(self, params: dict[str, str], query: dict[str, str], **kw: bool) -> str:
        try:
            sandboxes = await self.runtime.list_sandboxes()
        except RuntimeFailure as exc:
            raise StreamError(503, "ServiceUnavailable", exc.message) from None
        info = find_container(
            sandboxes,
            namespace=params["namespace"],
            pod=params["pod"],
            uid=query.get("podUID"),
            container=params["container"],
            container_id=query.get("containerID"),
            **kw,
        )
        return info.id

    async def _logs(self, request: Request) -> Response:
        try:
            denied = await self._authorize(request.headers)
            if denied is not None:
                return status_response(denied)
            runtime = self._streaming_runtime()
            query = dict(request.query_params)
            try:
                options = LogOptions.from_query(query)
            except QueryError as exc:
                raise StreamError(400, "BadRequest", str(exc)) from None
            problems = options.validate()
            if problems:
                raise StreamError(400, "BadRequest", "; ".join(p.message() for p in problems))
            cid = await self._find(dict(request.path_params), query, previous=options.previous)
        except StreamError as err:
            return status_response(err)
        chunks = limit_bytes(runtime.stream_logs(cid, options), options.limit_bytes)
        return StreamingResponse(_logged(chunks, cid), media_type="text/plain")

    async def _exec(self, websocket: WebSocket) -> None:
        try:
            denied = await self._authorize(websocket.headers)
            if denied is not None:
                raise denied
            runtime = self._streaming_runtime()
            protocol = choose_protocol(websocket.scope.get("subprotocols") or ())
            if protocol is None:
                raise StreamError(
                    400,
                    "BadRequest",
                    "unable to upgrade: use subprotocol v5.channel.k8s.io or v4.channel.k8s.io",
                )
            try:
                options = ExecOptions.from_query(websocket.query_params.multi_items())
            except QueryError as exc:
                raise StreamError(400, "BadRequest", str(exc)) from None
            cid = await self._find(dict(websocket.path_params), dict(websocket.query_params), running=True)
            try:
                stream = await runtime.open_exec(cid, options)
            except RuntimeFailure as exc:
                raise StreamError(500, "InternalError", exc.message) from None
        except StreamError as err:
            await websocket.send_denial_response(status_response(err))
            return
        try:
            await websocket.accept(subprotocol=protocol)
        except Exception:
            await stream.close()
            raise
        await bridge_exec(websocket, stream, options, protocol)

    async def _exec_without_upgrade(self, request: Request) -> Response:
        denied = await self._authorize(request.headers)
        return status_response(
            denied or StreamError(400, "BadRequest", "Upgrade request required: exec speaks websockets only")
        )

    async def start(self) -> int:
        """Serve; returns the port (useful with port 0)."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.create_server((self.host, self.port), family=family)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # inherited by accepted connections
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            lifespan="off",
            access_log=False,
            ws="websockets-sansio",
            ws_per_message_deflate=False,
            timeout_graceful_shutdown=2,
            # Longer than clients keep idle connections (httpx: 5 s), so the server never closes one
            # just as a client reuses it.
            timeout_keep_alive=75,
        )
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]), name="agent-server")
        while not self._server.started:  # uvicorn offers a flag, not an event
            if self._task.done():
                raise OSError(f"the agent endpoint on {self.host}:{self.port} stopped while starting")
            await asyncio.sleep(0.01)
        self.port = int(sock.getsockname()[1])
        if self.proxy_token is None and self.client is not None and not await self._read_proxy_token():
            self._token_task = asyncio.create_task(self._keep_reading_token(), name="agent-proxy-token")
        return self.port

    async def stop(self) -> None:
        if self._token_task is not None:
            self._token_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._token_task
        if self._server is not None:
            self._server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._task, 5)


async def _logged(chunks: AsyncIterator[bytes], cid: str) -> AsyncIterator[bytes]:
    """The answer has started, so a runtime failure can only end it (and be logged)."""
    try:
        async for chunk in chunks:
            yield chunk
    except RuntimeFailure as exc:
        log.warning("log stream of container %s ended: %s", cid[:12], exc.message)
