"""Forwarding names outside the cluster to the node's resolvers, with a TTL-respecting cache.

Concurrency model: everything runs on the event loop. Each upstream gets one connected UDP socket
(created lazily through ``socket_factory``, so inside the node's network namespace) wrapped in a
datagram endpoint; queries on it are multiplexed by a random 16-bit id and matched on id *and* question,
so a stray or spoofed datagram resolves nothing. A truncated UDP answer is asked again over a fresh TCP
connection. Upstreams are tried in order, each once, until one answers (SERVFAIL/REFUSED count as no
answer); none answering gives SERVFAIL, which is not cached.

The cache is keyed by (name lowercased, type, class) and bounded (LRU). Positive answers live for the
smallest TTL in them (capped at ``max_ttl``), negative ones (NXDOMAIN, NODATA) for the SOA's negative TTL
(RFC 2308, capped at ``max_negative_ttl``; without a SOA they are not cached). A hit hands the records out
with their TTLs reduced by their age, so downstream caches never keep a name longer than upstream said.
Concurrent questions for the same key share one upstream query.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
import random
import socket
import struct
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence

from dnslib import EDNS0, QTYPE, RCODE, RR, DNSHeader, DNSRecord

log = logging.getLogger(__name__)

SocketFactory = Callable[[int, int], Awaitable[socket.socket]]  # (family, type) -> a new socket
OPT = QTYPE.OPT
UPSTREAM_UDP_SIZE = 1232  # the EDNS0 buffer we announce upstream (the DNS flag day 2020 value)

CacheKey = tuple[str, int, int]


async def plain_socket(family: int, type_: int) -> socket.socket:
    """A socket in the current namespace (the default factory)."""
    return socket.socket(family, type_)


def family_of(host: str) -> int:
    return socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET


def upstreams_from_resolv_conf(path: str = "/etc/resolv.conf") -> list[tuple[str, int]]:
    """The node's nameservers, (address, 53) each, in order; [] when the file is missing. Zone indexes
    (``fe80::1%eth0``) are dropped with the address: a link-local upstream is not worth the trouble."""
    out: list[tuple[str, int]] = []
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError:
        return out
    for line in lines:
        fields = line.split("#", 1)[0].split(";", 1)[0].split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            try:
                out.append((str(ipaddress.ip_address(fields[1])), 53))
            except ValueError:
                log.warning("dns: %s: nameserver %r is not an address; skipped", path, fields[1])
    return out


class _Upstream(asyncio.DatagramProtocol):
    """One upstream resolver's UDP socket: queries in flight by id, answers delivered to their futures."""

    def __init__(self, addr: tuple[str, int]) -> None:
        self.addr = addr
        self.transport: asyncio.DatagramTransport | None = None
        self.pending: dict[int, tuple[DNSRecord, asyncio.Future[DNSRecord]]] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) < 12:
            return
        entry = self.pending.get(struct.unpack_from("!H", data)[0])
        if entry is None:
            return
        query, future = entry
        try:
            reply = DNSRecord.parse(data)
        except Exception:
            return
        if reply.header.qr and reply.q.qtype == query.q.qtype and reply.q.qname == query.q.qname:
            if not future.done():
                future.set_result(reply)

    def error_received(self, exc: Exception) -> None:
        # On a connected socket: ICMP unreachable. Nothing there answers; fail what waits on it now.
        for _, future in list(self.pending.values()):
            if not future.done():
                future.set_exception(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.error_received(exc or ConnectionError("upstream socket closed"))


class Forwarder:
    def __init__(
        self,
        upstreams: Sequence[tuple[str, int]],
        *,
        cache_size: int = 10_000,
        timeout: float = 2.0,
        max_ttl: int = 3600,
        max_negative_ttl: int = 30,
        socket_factory: SocketFactory = plain_socket,
    ) -> None:
        self.upstreams = list(upstreams)
        self.cache_size = cache_size
        self.timeout = timeout  # seconds per upstream attempt
        self.max_ttl = max_ttl
        self.max_negative_ttl = max_negative_ttl
        self.socket_factory = socket_factory
        self.cache: OrderedDict[CacheKey, tuple[float, float, DNSRecord]] = OrderedDict()
        self.hits = 0
        self.misses = 0
        self.upstream_queries = 0  # UDP and TCP queries sent upstream
        self._udp: dict[tuple[str, int], _Upstream] = {}
        self._inflight: dict[CacheKey, asyncio.Future[tuple[float, DNSRecord]]] = {}

    async def resolve(self, request: DNSRecord) -> DNSRecord:
        """The reply to ``request`` (its id, RD and question; RA set), from the cache or upstream."""
        key = (str(request.q.qname).lower(), request.q.qtype, request.q.qclass)
        now = time.monotonic()
        entry = self.cache.get(key)
        if entry is not None:
            expires, stored, cached = entry
            if expires > now:
                self.cache.move_to_end(key)
                self.hits += 1
                return adapt(request, cached, int(now - stored))
            del self.cache[key]
        self.misses += 1
        future = self._inflight.get(key)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self._inflight[key] = future
            try:
                reply = await self._ask(request)
                stored = time.monotonic()
                self._store(key, reply, stored)
                future.set_result((stored, reply))
            except asyncio.CancelledError:
                future.cancel()  # those sharing it see a cancellation and answer nothing
                raise
            except Exception as e:
                future.set_exception(e)
                future.exception()  # retrieved: no "never retrieved" warning when nobody shares it
                raise
            finally:
                del self._inflight[key]
        else:
            stored, reply = await asyncio.shield(future)
        return adapt(request, reply, int(time.monotonic() - stored))

    def fresh_until(self, request: DNSRecord) -> float | None:
        """Until when (monotonic) ``resolve(request)`` would give the very same reply as now -- the cache
        entry's expiry or its age ticking one more second, whichever is first; None when not cached."""
        entry = self.cache.get((str(request.q.qname).lower(), request.q.qtype, request.q.qclass))
        if entry is None:
            return None
        expires, stored, _ = entry
        return min(expires, stored + math.floor(time.monotonic() - stored) + 1)

    async def close(self) -> None:
        for upstream in self._udp.values():
            if upstream.transport is not None:
                upstream.transport.close()
        self._udp.clear()

    # --- upstream ---------------------------------------------------------------------------------

    async def _ask(self, request: DNSRecord) -> DNSRecord:
        """The first real answer from the upstreams, in order; a SERVFAIL of our own when none gives one."""
        for addr in self.upstreams:
            try:
                reply = await asyncio.wait_for(self._ask_one(addr, request), self.timeout)
            except (OSError, TimeoutError, ValueError) as e:
                log.debug("dns: upstream %s:%d failed for %s: %r", *addr, request.q.qname, e)
                continue
            if reply.header.rcode in (RCODE.SERVFAIL, RCODE.REFUSED):
                continue
            return reply
        reply = DNSRecord(DNSHeader(id=request.header.id, qr=1, rd=request.header.rd, ra=1), q=request.q)
        reply.header.rcode = RCODE.SERVFAIL
        return reply

    async def _ask_one(self, addr: tuple[str, int], request: DNSRecord) -> DNSRecord:
        upstream = await self._upstream(addr)
        qid = random.randrange(65536)
        while qid in upstream.pending:
            qid = random.randrange(65536)
        query = DNSRecord(DNSHeader(id=qid, rd=request.header.rd), q=request.q)
        query.add_ar(EDNS0(udp_len=UPSTREAM_UDP_SIZE))
        future: asyncio.Future[DNSRecord] = asyncio.get_running_loop().create_future()
        upstream.pending[qid] = (query, future)
        try:
            assert upstream.transport is not None
            upstream.transport.sendto(query.pack())
            self.upstream_queries += 1
            reply = await future
        finally:
            del upstream.pending[qid]
        if reply.header.tc:
            try:
                return await self._ask_tcp(addr, query)
            except (OSError, asyncio.IncompleteReadError, ValueError) as e:
                log.debug("dns: TCP retry to %s:%d failed: %r; passing on the truncated answer", *addr, e)
        return reply

    async def _upstream(self, addr: tuple[str, int]) -> _Upstream:
        upstream = self._udp.get(addr)
        if upstream is not None and upstream.transport is not None:
            return upstream
        sock = await self.socket_factory(family_of(addr[0]), socket.SOCK_DGRAM)
        sock.setblocking(False)
        sock.connect(addr)  # connected: ICMP errors come back, and only this peer's datagrams get in
        upstream = self._udp.get(addr)
        if upstream is not None and upstream.transport is not None:  # another query raced us here
            sock.close()
            return upstream
        upstream = _Upstream(addr)
        await asyncio.get_running_loop().create_datagram_endpoint(lambda: upstream, sock=sock)
        self._udp[addr] = upstream
        return upstream

    async def _ask_tcp(self, addr: tuple[str, int], query: DNSRecord) -> DNSRecord:
        sock = await self.socket_factory(family_of(addr[0]), socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await asyncio.get_running_loop().sock_connect(sock, addr)
        except BaseException:
            sock.close()
            raise
        reader, writer = await asyncio.open_connection(sock=sock)
        try:
            data = query.pack()
            writer.write(struct.pack("!H", len(data)) + data)
            self.upstream_queries += 1
            (length,) = struct.unpack("!H", await reader.readexactly(2))
            reply = DNSRecord.parse(await reader.readexactly(length))
        finally:
            writer.close()
        if reply.header.id != query.header.id or reply.q.qname != query.q.qname:
            raise ValueError("TCP answer does not match the question")
        return reply

    # --- cache ------------------------------------------------------------------------------------

    def _store(self, key: CacheKey, reply: DNSRecord, now: float) -> None:
        ttl = self.cache_ttl(reply)
        if ttl <= 0 or self.cache_size <= 0:
            return
        self.cache[key] = (now + ttl, now, reply)
        self.cache.move_to_end(key)
        while len(self.cache) > self.cache_size:
            self.cache.popitem(last=False)

    def cache_ttl(self, reply: DNSRecord) -> int:
        """How long ``reply`` may be cached: 0 for never."""
        rcode = reply.header.rcode
        if reply.header.tc or rcode not in (RCODE.NOERROR, RCODE.NXDOMAIN):
            return 0
        if rcode == RCODE.NOERROR and reply.rr:
            ttls = [r.ttl for r in (*reply.rr, *reply.auth, *reply.ar) if r.rtype != OPT]
            return min(min(ttls), self.max_ttl)
        soas = [r for r in reply.auth if r.rtype == QTYPE.SOA]
        if not soas:
            return 0
        return min(soas[0].ttl, soas[0].rdata.times[4], self.max_negative_ttl)


def adapt(request: DNSRecord, reply: DNSRecord, age: int) -> DNSRecord:
    """``reply`` as the answer to ``request``: its id, RD and question as asked, RA set, TTLs reduced by
    ``age`` seconds, no OPT record (the server adds its own)."""
    header = DNSHeader(
        id=request.header.id,
        qr=1,
        rd=request.header.rd,
        ra=1,
        tc=reply.header.tc,
        ad=reply.header.ad,
        rcode=reply.header.rcode,
    )
    return DNSRecord(
        header,
        q=request.q,
        rr=[_aged(r, age) for r in reply.rr],
        auth=[_aged(r, age) for r in reply.auth],
        ar=[_aged(r, age) for r in reply.ar if r.rtype != OPT],
    )


def _aged(r: RR, age: int) -> RR:
    return r if age <= 0 else RR(r.rname, r.rtype, r.rclass, max(0, r.ttl - age), r.rdata)
