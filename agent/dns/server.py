"""``DNSServer``: the node's cluster DNS, answering on UDP and TCP from the cluster index or upstream.

Concurrency model: all on the event loop. The listening sockets are created by a short-lived thread
inside the node's network namespace (``run_in_netns``) and then served by asyncio endpoints on the main
loop. Informer handlers (run inline on the informers' tasks) update the :class:`ClusterIndex` in place,
so the next query sees a change with no sync step in between. A UDP question about the cluster is
answered synchronously inside ``datagram_received`` (no task, no await) -- from the stored replies
(``wirecache``; cluster ones dropped on every Service or Endpoints event) when the same bytes were asked
before; only forwarded names (and ExternalName targets outside the cluster) cost a task. TCP
connections are read sequentially (length-prefixed messages, several per connection) and closed after
``tcp_idle_timeout`` of silence.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import struct
import time
from collections.abc import Coroutine, Sequence
from typing import Any

from dnslib import EDNS0, OPCODE, QTYPE, RCODE, DNSHeader, DNSQuestion, DNSRecord

from controlplane.api.core import Endpoints, Service
from controlplane.client import Informer

from ..network.netns import run_in_netns
from .forward import Forwarder, family_of, upstreams_from_resolv_conf
from .records import ClusterIndex
from .wirecache import FOREVER, WireCache

log = logging.getLogger(__name__)

__all__ = ["DNSServer", "upstreams_from_resolv_conf"]

CLASS_IN = 1
UDP_MIN = 512  # the classic limit, for clients without EDNS0
UDP_MAX = 1232  # the EDNS0 size we announce and never exceed over UDP


class DNSServer:
    def __init__(
        self,
        services: Informer[Service],
        endpoints: Informer[Endpoints],
        *,
        cluster_domain: str = "cluster.local",
        upstreams: Sequence[tuple[str, int]] = (),
        listen: Sequence[tuple[str, int]] = (("127.0.0.1", 53),),
        netns: str | None = None,
        ttl: int = 5,
        cache_size: int = 10_000,
    ) -> None:
        self.listen = list(listen)
        self.netns = netns
        self.tcp_idle_timeout = 10.0
        self.index = ClusterIndex(endpoints.cache, cluster_domain=cluster_domain, ttl=ttl)
        own = {(host, port) for host, port in self.listen if port}
        if any(tuple(u) in own for u in upstreams):  # e.g. resolv.conf already names this server
            log.warning("dns: not forwarding to ourselves: %s dropped from the upstreams", sorted(own))
        upstreams = [u for u in upstreams if tuple(u) not in own]
        self.forwarder = Forwarder(upstreams, cache_size=cache_size, socket_factory=self._socket)
        self.ports: list[int] = []
        self.queries = 0
        self._udp: list[asyncio.DatagramTransport] = []
        self._tcp: list[asyncio.Server] = []
        self._tasks: set[asyncio.Task[None]] = set()
        # Follow the Services informer from now on; what it already holds is indexed at once (both in
        # this synchronous step, so no change can slip between them).
        services.on_add(self._added)
        services.on_update(self._updated)
        services.on_delete(self._deleted)
        for svc in services.items():
            self.index.add(svc)
        # Replies as sent (see ``wirecache``): cluster ones until the next change, forwarded ones while
        # their TTLs read the same.
        self.local_wire = WireCache(cache_size)
        self.forward_wire = WireCache(cache_size)
        endpoints.on_add(lambda _ep: self.local_wire.clear())
        endpoints.on_update(lambda _old, _new: self.local_wire.clear())
        endpoints.on_delete(lambda _ep: self.local_wire.clear())

    def _added(self, svc: Service) -> None:
        self.index.add(svc)
        self.local_wire.clear()

    def _updated(self, old: Service, new: Service) -> None:
        self.index.remove(old)
        self.index.add(new)
        self.local_wire.clear()

    def _deleted(self, svc: Service) -> None:
        self.index.remove(svc)
        self.local_wire.clear()

    async def start(self) -> None:
        """Bind UDP and TCP on every listen address (inside ``netns`` when given) and serve."""
        loop = asyncio.get_running_loop()
        try:
            for host, port in self.listen:
                udp, tcp = await run_in_netns(self.netns, bind_pair, host, port)
                transport, _ = await loop.create_datagram_endpoint(lambda: _UDP(self), sock=udp)
                self._udp.append(transport)
                self._tcp.append(await asyncio.start_server(self._tcp_client, sock=tcp))
                self.ports.append(udp.getsockname()[1])
        except BaseException:
            await self.stop()
            raise
        log.info("dns: serving %s on %s", self.index.domain, list(zip(self.listen, self.ports, strict=False)))

    async def stop(self) -> None:
        for transport in self._udp:
            transport.close()
        for server in self._tcp:
            server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        for server in self._tcp:
            await server.wait_closed()
        self._udp.clear()
        self._tcp.clear()
        self.ports.clear()
        await self.forwarder.close()

    # --- answering --------------------------------------------------------------------------------

    def answer_local(self, request: DNSRecord) -> tuple[DNSRecord, str | None] | None:
        """The cluster's reply to ``request`` and, when it ends in a CNAME out of the cluster, that
        target; None when the name is not the cluster's (forward it)."""
        q = request.q
        if q.qclass != CLASS_IN:
            return None
        answer = self.index.answer(str(q.qname), q.qtype)
        if answer is None:
            return None
        reply = DNSRecord(
            DNSHeader(id=request.header.id, qr=1, aa=1, rd=request.header.rd, ra=1, rcode=answer.rcode),
            q=q,
            rr=answer.answer,
            auth=answer.authority,
            ar=answer.additional,
        )
        chase = answer.cname_target if q.qtype not in (QTYPE.CNAME, QTYPE.ANY) else None
        return reply, chase

    async def resolve(self, request: DNSRecord) -> DNSRecord:
        """The reply to a well-formed query: the cluster's, or upstream's."""
        local = self.answer_local(request)
        if local is None:
            return await self.forwarder.resolve(request)
        reply, chase = local
        if chase is not None:
            await self._follow(reply, chase)
        return reply

    async def _follow(self, reply: DNSRecord, target: str) -> None:
        """Append upstream's answer for an ExternalName's target to ``reply`` (its CNAME stays if that
        fails: the client's resolver can follow it)."""
        sub = DNSRecord(DNSHeader(id=reply.header.id, rd=1), q=DNSQuestion(target, reply.q.qtype))
        upstream = await self.forwarder.resolve(sub)
        if upstream.header.rcode == RCODE.NOERROR:
            reply.rr.extend(upstream.rr)
        elif upstream.header.rcode == RCODE.NXDOMAIN:
            reply.rr.extend(upstream.rr)
            reply.header.rcode = RCODE.NXDOMAIN  # RFC 6604: the rcode of the chain's last name

    def handle_sync(self, data: bytes) -> tuple[DNSRecord | None, bytes] | DNSRecord | None:
        """A wire query answered now: (the query, or None if it did not parse, and the wire reply); the
        parsed query when it must be resolved (``finish``); None to drop it."""
        request = parse_query(data)
        if request is None:
            return None
        self.queries += 1
        if isinstance(request, bytes):
            return None, request  # an error reply
        local = self.answer_local(request)
        if local is None or local[1] is not None:
            return request
        add_edns(request, local[0])
        return request, local[0].pack()

    async def finish(self, request: DNSRecord) -> bytes:
        try:
            reply = await self.resolve(request)
        except Exception:
            log.exception("dns: resolving %s failed", request.q.qname)
            reply = error_reply(request, RCODE.SERVFAIL)
        add_edns(request, reply)
        return reply.pack()

    # --- transports ------------------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _udp_forward(
        self, transport: asyncio.DatagramTransport, query: bytes, request: DNSRecord, addr: tuple[str, int]
    ) -> None:
        # Keep only what depends on upstream alone: not an ExternalName chase (index + upstream), nor a
        # reverse name a new ClusterIP may take over (the index answers those first).
        forwarded = self.answer_local(request) is None and not request.q.qname.matchSuffix("in-addr.arpa")
        data = fit_udp(request, await self.finish(request))
        if not transport.is_closing():
            transport.sendto(data, addr)
        until = self.forwarder.fresh_until(request) if forwarded else None
        if until is not None:
            self.forward_wire.put(query, data, until)

    def udp_query(self, transport: asyncio.DatagramTransport, data: bytes, addr: tuple[str, int]) -> None:
        """Answer one datagram: from the wire caches, synchronously from the index, or in a task."""
        now = time.monotonic()
        wire = self.local_wire.get(data, now) or self.forward_wire.get(data, now)
        if wire is not None:
            self.queries += 1
            transport.sendto(wire, addr)
            return
        out = self.handle_sync(data)
        if isinstance(out, DNSRecord):
            self._spawn(self._udp_forward(transport, data, out, addr))
        elif out is not None:
            request, wire = out
            if request is not None:
                wire = fit_udp(request, wire)
                self.local_wire.put(data, wire, FOREVER)
            transport.sendto(wire, addr)

    async def _tcp_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            while True:
                try:
                    header = await asyncio.wait_for(reader.readexactly(2), self.tcp_idle_timeout)
                    (length,) = struct.unpack("!H", header)
                    data = await asyncio.wait_for(reader.readexactly(length), self.tcp_idle_timeout)
                except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                    return
                out = self.handle_sync(data)
                if out is None:
                    return  # not a query: end the conversation
                wire = await self.finish(out) if isinstance(out, DNSRecord) else out[1]
                writer.write(struct.pack("!H", len(wire)) + wire)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            if task is not None:
                self._tasks.discard(task)
            writer.close()

    async def _socket(self, family: int, type_: int) -> socket.socket:
        """A socket for talking upstream, in the node's namespace."""
        if self.netns is None:
            return socket.socket(family, type_)
        return await run_in_netns(self.netns, socket.socket, family, type_)


class _UDP(asyncio.DatagramProtocol):
    def __init__(self, server: DNSServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        try:
            self.server.udp_query(self.transport, data, addr)
        except Exception:
            log.exception("dns: answering a query from %s failed", addr)

    def error_received(self, exc: Exception) -> None:
        pass  # a client that went away (ICMP unreachable): nothing to do


# --- wire helpers -----------------------------------------------------------------------------------


def parse_query(data: bytes) -> DNSRecord | bytes | None:
    """The query in ``data``; or an error reply (FORMERR, NOTIMP) as bytes; or None to drop it (too short
    to answer, or a response)."""
    if len(data) < 12 or data[2] & 0x80:
        return None
    try:
        request = DNSRecord.parse(data)
    except Exception:
        return bytes(
            DNSRecord(DNSHeader(id=struct.unpack_from("!H", data)[0], qr=1, rcode=RCODE.FORMERR)).pack()
        )
    if request.header.opcode != OPCODE.QUERY:
        return bytes(error_reply(request, RCODE.NOTIMP).pack())
    if len(request.questions) != 1:
        return bytes(error_reply(request, RCODE.FORMERR).pack())
    return request


def error_reply(request: DNSRecord, rcode: int) -> DNSRecord:
    reply = DNSRecord(
        DNSHeader(id=request.header.id, qr=1, rd=request.header.rd, ra=1, opcode=request.header.opcode),
        q=request.q if request.questions else None,
    )
    reply.header.rcode = rcode
    return reply


def client_edns(request: DNSRecord) -> int | None:
    """The UDP size the client announced (EDNS0), or None without an OPT record."""
    for r in request.ar:
        if r.rtype == QTYPE.OPT:
            return int(r.rclass)
    return None


def add_edns(request: DNSRecord, reply: DNSRecord) -> None:
    """Answer EDNS0 with EDNS0: an OPT record announcing our size, when the client sent one."""
    if client_edns(request) is not None:
        reply.add_ar(EDNS0(udp_len=UDP_MAX))


def udp_limit(request: DNSRecord) -> int:
    size = client_edns(request)
    return UDP_MIN if size is None else max(UDP_MIN, min(size, UDP_MAX))


def fit_udp(request: DNSRecord, data: bytes) -> bytes:
    """``data`` if it fits the client's UDP size, else the question alone with TC set (ask again over
    TCP)."""
    if len(data) <= udp_limit(request):
        return data
    reply = DNSRecord.parse(data)
    truncated = DNSRecord(
        DNSHeader(id=reply.header.id, qr=1, aa=reply.header.aa, tc=1, rd=reply.header.rd, ra=1),
        q=request.q,
    )
    truncated.header.rcode = reply.header.rcode
    add_edns(request, truncated)
    return truncated.pack()


def bind_pair(host: str, port: int) -> tuple[socket.socket, socket.socket]:
    """A UDP and a TCP socket bound to (host, port) -- the same port for both, also when ``port`` is 0.
    Blocking: run it in the node's namespace (``run_in_netns``)."""
    family = family_of(host)
    for _ in range(20):
        udp = socket.socket(family, socket.SOCK_DGRAM)
        tcp = socket.socket(family, socket.SOCK_STREAM)
        try:
            udp.bind((host, port))
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            tcp.bind((host, udp.getsockname()[1]))
            tcp.listen(512)
        except OSError as e:
            udp.close()
            tcp.close()
            if port == 0 and e.errno == errno.EADDRINUSE:
                continue  # the UDP port picked is taken for TCP: pick again
            raise
        udp.setblocking(False)
        tcp.setblocking(False)
        return udp, tcp
    raise OSError(errno.EADDRINUSE, f"no free port on {host} for both UDP and TCP")
