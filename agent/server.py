"""The agent's own HTTP endpoint (the kubelet's port): health, and images sent to this node.

There is no registry, so images travel to nodes through their agents: ``pea image load FILE --node N``
posts an image archive here and the runtime loads it. Logs and exec join this endpoint in part 3.
Without a token it listens on loopback only, like the API server.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import socket

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from .runtime.base import Runtime, RuntimeFailure

MAX_IMAGE = 2 * 1024**3


class AgentServer:
    def __init__(self, runtime: Runtime, host: str, port: int, token: str | None = None) -> None:
        self.runtime = runtime
        self.host = host
        self.port = port
        self.token = token
        self.app = Starlette(
            routes=[
                Route("/healthz", self._health),
                Route("/images/load", self._load, methods=["POST"]),
            ]
        )
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    def _allowed(self, request: Request) -> bool:
        if self.token is None:
            return True
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        return hmac.compare_digest(given, self.token)

    async def _health(self, request: Request) -> Response:
        return PlainTextResponse("ok")

    async def _load(self, request: Request) -> Response:
        if not self._allowed(request):
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_IMAGE:
                return JSONResponse(
                    {"error": f"image archive larger than {MAX_IMAGE} bytes"}, status_code=413
                )
            chunks.append(chunk)
        try:
            names = await self.runtime.load_image(b"".join(chunks))
        except RuntimeFailure as exc:
            return JSONResponse({"error": exc.message}, status_code=400)
        return JSONResponse({"images": names})

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
            ws="none",
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
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._task, 5)
