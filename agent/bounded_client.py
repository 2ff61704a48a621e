"""A client that keeps few requests in flight, for many agents sharing one connection pool (hollow nodes).

A thousand nodes' pod workers and registrations can each have a request pending at once. httpx queues
what its pool cannot serve, and every request that completes rescans the whole queue against every
connection (with a readability check of each socket), so the client's cost grows with the square of the
requests waiting; connections above the pool's keep-alive limit are also closed and reopened. Waiting on
a semaphore in front of the pool costs O(1) instead, and the API server sees the same requests.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from controlplane.client import Client


class BoundedClient(Client):
    """A view of ``base`` (its connection pool, server and credentials) with at most ``limit`` requests
    in flight. Watches are not requests and are not bounded; informers should use ``base`` anyway."""

    def __init__(self, base: Client, limit: int = 32) -> None:
        # Deliberately no Client.__init__: this shares the base's state (above all its httpx pool).
        self.__dict__.update(vars(base))
        self.base = base
        self._slots = asyncio.Semaphore(limit)

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        accept: str | None = None,
    ) -> httpx.Response:
        async with self._slots:
            return await super().request(
                method, path, params=params, body=body, content_type=content_type, accept=accept
            )

    async def close(self) -> None:
        """Nothing: the pool is the base client's, closed by its owner."""
