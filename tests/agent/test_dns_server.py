"""The node-local DNS server (agent/dns/server.py) on real sockets on 127.0.0.1, fed by informers on a
real control plane, forwarding to a test resolver (dnslib, on 127.0.0.1) that counts what it is asked."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import socket
import struct
import subprocess
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from dnslib import EDNS0, QTYPE, RCODE, RR, SOA, A, DNSHeader, DNSRecord

from agent.dns import DNSServer, upstreams_from_resolv_conf
from agent.dns.server import bind_pair
from agent.network.netns import run_in_netns
from controlplane.api.core import (
    EndpointAddress,
    EndpointPort,
    Endpoints,
    EndpointSubset,
    Service,
    ServicePort,
    ServiceSpec,
)
from controlplane.api.meta import ObjectMeta
from controlplane.client import Client, Informer
from controlplane.server.controlplane import Settings
from tests.support import eventually

D = "cluster.local"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    settings.scheduler = False
    settings.controllers = False  # the Endpoints here are written by the tests
    return settings


# --- a test upstream resolver ---------------------------------------------------------------------


class Upstream(asyncio.DatagramProtocol):
    """A tiny authoritative server for ``example.``: counts questions by (name, type, transport);
    ``big.example.`` is too large for 512-byte UDP (answered truncated unless asked over TCP)."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str, str]] = Counter()
        self.transport: asyncio.DatagramTransport | None = None
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self, netns: str | None = None) -> None:
        udp, tcp = await run_in_netns(netns, bind_pair, "127.0.0.1", 0)
        self.port = udp.getsockname()[1]
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: self, sock=udp)
        self.server = await asyncio.start_server(self._tcp, sock=tcp)

    async def stop(self) -> None:
        assert self.transport is not None and self.server is not None
        self.transport.close()
        self.server.close()
        await self.server.wait_closed()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        self.transport.sendto(self.reply(data, "udp"), addr)

    async def _tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        (n,) = struct.unpack("!H", await reader.readexactly(2))
        out = self.reply(await reader.readexactly(n), "tcp")
        writer.write(struct.pack("!H", len(out)) + out)
        await writer.drain()
        writer.close()

    def reply(self, data: bytes, transport: str) -> bytes:
        q = DNSRecord.parse(data)
        name, qtype = str(q.q.qname).lower(), QTYPE[q.q.qtype]
        self.counts[(name, qtype, transport)] += 1
        r = q.reply()
        soa = RR("example.", QTYPE.SOA, ttl=60, rdata=SOA("ns.example.", "h.example.", (1, 60, 60, 60, 60)))
        if name == "www.example." and qtype == "A":
            r.add_answer(RR(q.q.qname, QTYPE.A, ttl=60, rdata=A("192.0.2.1")))
        elif name == "short.example." and qtype == "A":
            r.add_answer(RR(q.q.qname, QTYPE.A, ttl=1, rdata=A("192.0.2.2")))
        elif name == "big.example." and qtype == "A":
            for i in range(60):
                r.add_answer(RR(q.q.qname, QTYPE.A, ttl=60, rdata=A(f"192.0.2.{i + 10}")))
        elif name in ("www.example.", "short.example.", "big.example."):
            r.add_auth(soa)  # NODATA
        else:
            r.header.rcode = RCODE.NXDOMAIN
            r.add_auth(soa)
        out = r.pack()
        if transport == "udp" and len(out) > 512:
            t = q.reply()
            t.header.tc = 1
            out = t.pack()
        return out

    def asked(self, name: str, qtype: str = "A", transport: str = "udp") -> int:
        return self.counts[(name, qtype, transport)]


# --- clients --------------------------------------------------------------------------------------


class _Client(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if not self.answer.done():
            self.answer.set_result(data)


def query(
    name: str, qtype: str = "A", *, edns: int | None = None, qid: int = 4242, rd: bool = True
) -> DNSRecord:
    q = DNSRecord.question(name, qtype)
    q.header.id = qid
    q.header.rd = int(rd)
    if edns is not None:
        q.add_ar(EDNS0(udp_len=edns))
    return q


async def udp(port: int, q: DNSRecord) -> DNSRecord:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(_Client, remote_addr=("127.0.0.1", port))
    try:
        transport.sendto(q.pack())
        return DNSRecord.parse(await asyncio.wait_for(proto.answer, 10))
    finally:
        transport.close()


async def tcp(port: int, *qs: DNSRecord) -> list[DNSRecord]:
    """Several questions on one TCP connection, answered in turn."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        out = []
        for q in qs:
            data = q.pack()
            writer.write(struct.pack("!H", len(data)) + data)
            (n,) = struct.unpack("!H", await asyncio.wait_for(reader.readexactly(2), 10))
            out.append(DNSRecord.parse(await reader.readexactly(n)))
        return out
    finally:
        writer.close()


def rdata(reply: DNSRecord, qtype: str | None = None) -> list[str]:
    return [str(r.rdata) for r in reply.rr if qtype is None or QTYPE[r.rtype] == qtype]


# --- fixtures -------------------------------------------------------------------------------------


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    u = Upstream()
    await u.start()
    yield u
    await u.stop()


@pytest.fixture
async def informers(client: Client) -> AsyncIterator[tuple[Informer[Service], Informer[Endpoints]]]:
    services, endpoints = Informer(client, Service), Informer(client, Endpoints)
    services.start()
    endpoints.start()
    await services.wait_synced()
    await endpoints.wait_synced()
    yield services, endpoints
    await services.stop()
    await endpoints.stop()


@pytest.fixture
async def dns(
    informers: tuple[Informer[Service], Informer[Endpoints]], upstream: Upstream
) -> AsyncIterator[DNSServer]:
    server = DNSServer(*informers, upstreams=[("127.0.0.1", upstream.port)], listen=[("127.0.0.1", 0)])
    await server.start()
    yield server
    await server.stop()


def svc(name: str, **spec: object) -> Service:
    if spec.get("type") != "ExternalName":
        spec.setdefault("ports", [ServicePort(port=80, name="http")])
    return Service(metadata=ObjectMeta(name=name, namespace="default"), spec=ServiceSpec(**spec))  # type: ignore[arg-type]


def eps(name: str, addresses: list[EndpointAddress], port: int = 5432) -> Endpoints:
    subset = EndpointSubset(addresses=addresses, ports=[EndpointPort(port=port, name="pg", protocol="TCP")])
    return Endpoints(metadata=ObjectMeta(name=name, namespace="default"), subsets=[subset])


async def served(dns: DNSServer, name: str, qtype: str = "A") -> DNSRecord:
    """Wait (bounded) until the server has a non-NXDOMAIN answer for ``name``: the informers caught up."""

    async def check() -> DNSRecord | None:
        r = await udp(dns.ports[0], query(name, qtype))
        return r if r.header.rcode == RCODE.NOERROR and r.rr else None

    return await eventually(check, f"{name} {qtype} answered")


# --- tests ----------------------------------------------------------------------------------------


async def test_cluster_records_over_udp_and_tcp(dns: DNSServer, client: Client) -> None:
    await client.create(svc("web", cluster_ip="10.254.7.10", ports=[ServicePort(port=80, name="http")]))
    await client.create(svc("db", cluster_ip="None", ports=[ServicePort(port=5432, name="pg")]))
    await client.create(
        eps("db", [EndpointAddress(ip="10.244.1.5", hostname="db-0"), EndpointAddress(ip="10.244.2.6")])
    )
    reply = await served(dns, f"web.default.svc.{D}")
    assert rdata(reply) == ["10.254.7.10"]
    assert (reply.header.id, reply.header.rd, reply.header.ra, reply.header.aa) == (4242, 1, 1, 1)
    assert rdata(await udp(dns.ports[0], query(f"WEB.DEFAULT.svc.{D}", qid=7, rd=False))) == ["10.254.7.10"]
    norecurse = await udp(dns.ports[0], query(f"web.default.svc.{D}", qid=7, rd=False))
    assert (norecurse.header.id, norecurse.header.rd) == (7, 0)

    await served(dns, f"db-0.db.default.svc.{D}")
    srv, headless, host, dashed, pod = await tcp(
        dns.ports[0],
        query(f"_http._tcp.web.default.svc.{D}", "SRV"),
        query(f"db.default.svc.{D}"),
        query(f"db-0.db.default.svc.{D}"),
        query(f"10-244-2-6.db.default.svc.{D}"),
        query(f"10-244-7-7.default.pod.{D}"),
    )
    assert rdata(srv) == [f"0 100 80 web.default.svc.{D}."] and [str(r.rdata) for r in srv.ar] == [
        "10.254.7.10"
    ]
    assert sorted(rdata(headless)) == ["10.244.1.5", "10.244.2.6"]
    assert rdata(host) == ["10.244.1.5"] and rdata(dashed) == ["10.244.2.6"] and rdata(pod) == ["10.244.7.7"]
    (db_srv,) = await tcp(dns.ports[0], query(f"_pg._tcp.db.default.svc.{D}", "SRV"))
    assert sorted(rdata(db_srv)) == [
        f"0 50 5432 10-244-2-6.db.default.svc.{D}.",
        f"0 50 5432 db-0.db.default.svc.{D}.",
    ]
    (ptr,) = await tcp(dns.ports[0], query("10.7.254.10.in-addr.arpa", "PTR"))
    assert rdata(ptr) == [f"web.default.svc.{D}."]


async def test_nxdomain_and_nodata(dns: DNSServer, client: Client) -> None:
    await client.create(svc("web", cluster_ip="10.254.7.11"))
    await served(dns, f"web.default.svc.{D}")
    missing = await udp(dns.ports[0], query(f"nope.default.svc.{D}"))
    assert (missing.header.rcode, missing.header.aa, missing.rr) == (RCODE.NXDOMAIN, 1, [])
    assert [QTYPE[r.rtype] for r in missing.auth] == ["SOA"]
    nodata = await udp(dns.ports[0], query(f"web.default.svc.{D}", "AAAA"))
    assert (nodata.header.rcode, nodata.rr, [QTYPE[r.rtype] for r in nodata.auth]) == (
        RCODE.NOERROR,
        [],
        ["SOA"],
    )


async def test_large_answers_are_truncated_over_udp_and_whole_over_tcp(
    dns: DNSServer, client: Client
) -> None:
    await client.create(svc("many", cluster_ip="None"))
    await client.create(eps("many", [EndpointAddress(ip=f"10.244.3.{i}") for i in range(1, 61)]))

    async def all_there() -> bool:
        (r,) = await tcp(dns.ports[0], query(f"many.default.svc.{D}"))
        return len(r.rr) == 60

    await eventually(all_there, "60 endpoints served")
    small = await udp(dns.ports[0], query(f"many.default.svc.{D}"))
    assert (small.header.tc, small.rr, small.header.id) == (1, [], 4242)
    edns = await udp(dns.ports[0], query(f"many.default.svc.{D}", edns=4096))  # 60 A fit in 1232 bytes
    assert edns.header.tc == 0 and len(edns.rr) == 60
    assert any(r.rtype == QTYPE.OPT for r in edns.ar)
    whole, again = await tcp(
        dns.ports[0], query(f"many.default.svc.{D}"), query(f"many.default.svc.{D}", qid=9)
    )
    assert len(whole.rr) == len(again.rr) == 60 and again.header.id == 9


async def test_forwarding_is_cached_positive_and_negative(dns: DNSServer, upstream: Upstream) -> None:
    for qid in (1, 2, 3):
        reply = await udp(dns.ports[0], query("www.example", qid=qid))
        assert (reply.header.id, reply.header.ra, reply.header.aa, rdata(reply)) == (qid, 1, 0, ["192.0.2.1"])
        assert 0 < reply.rr[0].ttl <= 60
    assert upstream.asked("www.example.") == 1
    for _ in range(2):
        nx = await udp(dns.ports[0], query("missing.example"))
        assert nx.header.rcode == RCODE.NXDOMAIN
    assert upstream.asked("missing.example.") == 1
    assert dns.forwarder.hits + dns.forward_wire.hits >= 3  # the repeats came from a cache


async def test_cached_answers_expire_with_their_ttl(dns: DNSServer, upstream: Upstream) -> None:
    reply = await udp(dns.ports[0], query("short.example"))
    assert rdata(reply) == ["192.0.2.2"] and upstream.asked("short.example.") == 1

    async def asked_again() -> bool:
        await udp(dns.ports[0], query("short.example"))
        return upstream.asked("short.example.") >= 2

    await eventually(asked_again, "the 1-second answer asked upstream again")


async def test_truncated_upstream_answers_are_asked_again_over_tcp(
    dns: DNSServer, upstream: Upstream
) -> None:
    reply = await udp(dns.ports[0], query("big.example", edns=1232))
    assert reply.header.tc == 0 and len(reply.rr) == 60
    assert upstream.asked("big.example.", transport="tcp") == 1
    small = await udp(dns.ports[0], query("big.example"))  # no EDNS: 512 bytes, so truncated
    assert small.header.tc == 1
    (whole,) = await tcp(dns.ports[0], query("big.example"))
    assert len(whole.rr) == 60 and upstream.asked("big.example.", transport="tcp") == 1  # from the cache


async def test_external_name_is_followed_upstream(dns: DNSServer, client: Client) -> None:
    await client.create(svc("ext", type="ExternalName", external_name="www.example"))
    reply = await served(dns, f"ext.default.svc.{D}")
    assert [(QTYPE[r.rtype], str(r.rdata)) for r in reply.rr] == [
        ("CNAME", "www.example."),
        ("A", "192.0.2.1"),
    ]


async def test_servfail_when_no_upstream_answers(
    informers: tuple[Informer[Service], Informer[Endpoints]],
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]  # nothing listens there once closed
    server = DNSServer(*informers, upstreams=[("127.0.0.1", dead)], listen=[("127.0.0.1", 0)])
    server.forwarder.timeout = 1.0
    await server.start()
    try:
        reply = await udp(server.ports[0], query("www.example", qid=99))
        assert (reply.header.rcode, reply.header.id) == (RCODE.SERVFAIL, 99)
        assert not server.forwarder.cache  # a failure is not remembered
        # the cluster's own names do not need an upstream
        assert (await udp(server.ports[0], query(f"nope.default.svc.{D}"))).header.rcode == RCODE.NXDOMAIN
    finally:
        await server.stop()


async def test_services_appear_and_disappear_with_the_api(dns: DNSServer, client: Client) -> None:
    name = f"fresh.default.svc.{D}"
    assert (await udp(dns.ports[0], query(name))).header.rcode == RCODE.NXDOMAIN
    created = await client.create(svc("fresh", ports=[ServicePort(port=80)]))  # the server allocates the IP
    assert created.spec.cluster_ip
    assert rdata(await served(dns, name)) == [created.spec.cluster_ip]
    await client.delete(Service, "fresh", "default")

    async def gone() -> bool:
        return (await udp(dns.ports[0], query(name))).header.rcode == RCODE.NXDOMAIN

    await eventually(gone, "the deleted service answered NXDOMAIN")


async def test_malformed_and_unsupported_queries(dns: DNSServer) -> None:
    notify = DNSRecord(DNSHeader(id=5, opcode=4), q=query("x.example").q)
    assert (await udp(dns.ports[0], notify)).header.rcode == RCODE.NOTIMP
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(_Client, remote_addr=("127.0.0.1", dns.ports[0]))
    try:
        transport.sendto(b"\x00\x06\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xff")  # a question cut short
        assert DNSRecord.parse(await asyncio.wait_for(proto.answer, 10)).header.rcode == RCODE.FORMERR
    finally:
        transport.close()


def test_upstreams_from_resolv_conf(tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text(
        "# comment\nsearch example\nnameserver 192.0.2.53\nnameserver  2001:db8::53 # v6\noptions ndots:5\n"
    )
    assert upstreams_from_resolv_conf(str(conf)) == [("192.0.2.53", 53), ("2001:db8::53", 53)]
    assert upstreams_from_resolv_conf(str(tmp_path / "missing")) == []


async def test_endpoint_changes_reach_cached_answers(dns: DNSServer, client: Client) -> None:
    await client.create(svc("pool", cluster_ip="None"))
    await client.create(eps("pool", [EndpointAddress(ip="10.244.4.1")]))
    name = f"pool.default.svc.{D}"
    assert rdata(await served(dns, name)) == ["10.244.4.1"]
    assert rdata(await udp(dns.ports[0], query(name))) == ["10.244.4.1"]  # now a stored reply
    patch = {
        "subsets": [{"addresses": [{"ip": "10.244.4.1"}, {"ip": "10.244.4.2"}], "ports": [{"port": 5432}]}]
    }
    await client.patch(Endpoints, "pool", patch, "default")

    async def both() -> bool:
        return sorted(rdata(await udp(dns.ports[0], query(name)))) == ["10.244.4.1", "10.244.4.2"]

    await eventually(both, "the new endpoint answered")
    assert dns.local_wire.hits >= 1


@pytest.fixture
def netns() -> Iterator[str]:
    """A throwaway network namespace with ``lo`` up (root and ``ip`` only)."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and ip(8) to make a network namespace")
    name = f"peatest-dns-{secrets.token_hex(4)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield f"/run/netns/{name}"
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


def blocking_udp(port: int, wire: bytes) -> bytes:
    """One UDP question from the calling thread's namespace (run it with ``run_in_netns``)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(10)
        s.sendto(wire, ("127.0.0.1", port))
        return s.recv(65535)


async def test_serves_and_forwards_inside_a_network_namespace(
    netns: str, informers: tuple[Informer[Service], Informer[Endpoints]], client: Client
) -> None:
    upstream = Upstream()
    await upstream.start(netns)  # reachable only from inside the namespace
    server = DNSServer(
        *informers, upstreams=[("127.0.0.1", upstream.port)], listen=[("127.0.0.1", 0)], netns=netns
    )
    await server.start()
    try:
        await client.create(svc("inside", cluster_ip="10.254.7.12"))

        async def answered() -> DNSRecord | None:
            wire = await run_in_netns(
                netns, blocking_udp, server.ports[0], query(f"inside.default.svc.{D}").pack()
            )
            r = DNSRecord.parse(wire)
            return r if r.rr else None

        assert rdata(await eventually(answered, "the service answered inside the namespace")) == [
            "10.254.7.12"
        ]
        wire = await run_in_netns(netns, blocking_udp, server.ports[0], query("www.example").pack())
        assert rdata(DNSRecord.parse(wire)) == ["192.0.2.1"] and upstream.asked("www.example.") == 1
    finally:
        await server.stop()
        await upstream.stop()
