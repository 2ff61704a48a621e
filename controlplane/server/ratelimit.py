"""Per-client request rate limits: a token bucket per authenticated user, answered with 429.

kube-apiserver protects itself with API Priority and Fairness; peapod's smaller version gives every
authenticated user (the key is the user name, so every node agent has its own bucket) ``rate`` requests a
second sustained and ``burst`` at once. A request over the limit is refused before anything is done with
a 429 ``TooManyRequests`` Status, ``details.retryAfterSeconds`` and a ``Retry-After`` header saying when
the bucket has a token again; clients wait that long and send the request again (``client.py``). A watch
or a log stream counts once, when it starts.

Exempt, like APF's ``exempt`` priority level and its ``probes`` flow schema: ``system:masters`` (the
admin, and the loopback-trust admin of a server without a token file — the in-process scheduler and
controllers, ``pea up``, hollow nodes and the benchmarks) and the health endpoints.

The defaults (100/s, burst 400) are twice the kubelet's own client limits (``--kube-api-qps`` 50,
``--kube-api-burst`` 100) with room to spare: an agent starting 110 pods (the kubelet's default
``maxPods``) sends about four requests a pod at once (status, events, a mirror pod or a ConfigMap), and
about one a second per few pods after that. So agents never meet the limit; a runaway script does.

Memory is bounded: a bucket that has refilled is the same as a new one, so buckets idle for
``burst / rate`` seconds are dropped in a sweep at most once per that interval; what remains is one small
object per user active in the last few seconds, and users come from the token file. Everything runs on
the event loop with no awaits, so no locking is needed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from . import errors
from .auth import MASTERS_GROUP, OPEN_PATHS, User

#: The defaults: requests a second sustained, and how many at once, per user.
DEFAULT_RATE = 100.0
DEFAULT_BURST = 400


@dataclass(slots=True)
class _Bucket:
    tokens: float
    stamp: float


class RateLimiter:
    """Token buckets keyed by user name; ``rate`` or ``burst`` 0 turns limiting off."""

    def __init__(
        self,
        rate: float = DEFAULT_RATE,
        burst: int = DEFAULT_BURST,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate < 0 or burst < 0:
            raise ValueError("request rate and burst must not be negative (0 turns limiting off)")
        self.rate = float(rate)
        self.burst = int(burst)
        self.clock = clock
        self.buckets: dict[str, _Bucket] = {}
        #: Requests refused with 429 since the server started.
        self.rejected = 0
        self._last_sweep = clock()

    @property
    def enabled(self) -> bool:
        return self.rate > 0 and self.burst > 0

    def admit(self, user: User, path: str = "") -> None:
        """Take one token for ``user``'s request, or raise 429 with how long until one is there."""
        if not self.enabled or MASTERS_GROUP in user.groups or path in OPEN_PATHS:
            return
        now = self.clock()
        if now - self._last_sweep >= self.burst / self.rate:
            self._sweep(now)
        bucket = self.buckets.get(user.name)
        if bucket is None:
            bucket = self.buckets[user.name] = _Bucket(float(self.burst), now)
        else:
            bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.stamp) * self.rate)
            bucket.stamp = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return
        self.rejected += 1
        raise errors.too_many_requests(math.ceil((1.0 - bucket.tokens) / self.rate))

    def _sweep(self, now: float) -> None:
        """Drop the buckets that would be full by now: a fresh one is the same."""
        refill = self.burst / self.rate
        self.buckets = {name: b for name, b in self.buckets.items() if now - b.stamp < refill}
        self._last_sweep = now
