"""Node-local DNS benchmark: how many questions per second the agent's DNS server answers, and how soon
a new Service is answered, against a real control plane (real SQLite, real HTTP on 127.0.0.1,
scheduler and controllers off) started in a fresh temporary data directory.

Run ``.venv/bin/python bench/bench_dns.py --help`` for the knobs. Everything shares one event loop (and
so one core): the control plane, the informers, the DNS server, a test upstream resolver and the
clients; the query figures are therefore a floor for the server alone.

setup
    ``--services`` ClusterIP Services created in namespace ``bench`` (the API server allocates the IPs);
    Services and Endpoints informers synced; a :class:`DNSServer` on 127.0.0.1 (port picked) fed by them,
    forwarding to an in-process dnslib resolver on 127.0.0.1 that answers ``fN.example.`` (TTL 300).
qps
    ``--clients`` concurrent UDP clients, each with its own socket, send ``--queries`` questions in all,
    one at a time each (send, wait for the answer), pre-packed; an answer counts when its id matches and
    its rcode is NOERROR with an answer. "cluster": A for random Service names; "forwarded": A for
    ``--forwarded`` distinct outside names, each asked once beforehand so the cache is warm. Both run
    twice: as the server runs (a repeated question is answered from the reply stored for its exact
    bytes, see ``agent/dns/wirecache.py``), then with those stores off (each question parsed, answered
    from the index or the forwarder's cache, packed).
changes
    ``--changes`` times: create one new Service through the API and query its name over UDP until it
    is answered (NOERROR with an A record); the figure is create request sent -> first answer. The time
    the informer handler indexed it is reported too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shlex
import struct
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# bench_api.py sits next to this file (this directory is sys.path[0] when run as a script).
from bench_api import cpu_model, percentile
from dnslib import QTYPE, RCODE, RR, A, DNSRecord
from summary import Figure, emit

from agent.dns import DNSServer
from agent.dns.server import bind_pair
from controlplane.api.core import Endpoints, Namespace, Service, ServicePort, ServiceSpec
from controlplane.api.meta import ObjectMeta
from controlplane.client import Client, Informer
from controlplane.server.controlplane import ControlPlane, Settings

NS = "bench"
DOMAIN = "cluster.local"
PHASE_TIMEOUT = 300.0  # seconds; no phase may take longer, whatever the arguments
ANSWER_TIMEOUT = 2.0  # seconds a client waits for one answer before counting it lost


def machine() -> dict[str, Any]:
    import dnslib

    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": cpu_model(),
        "kernel": platform.release(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "dnslib": dnslib.version,
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


class Upstream(asyncio.DatagramProtocol):
    """An in-process resolver answering every ``*.example.`` A question with one record, TTL 300."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.queries = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        self.queries += 1
        q = DNSRecord.parse(data)
        r = q.reply()
        if str(q.q.qname).endswith(".example.") and q.q.qtype == QTYPE.A:
            r.add_answer(RR(q.q.qname, QTYPE.A, ttl=300, rdata=A("192.0.2.1")))
        else:
            r.header.rcode = RCODE.NXDOMAIN
        self.transport.sendto(r.pack(), addr)


class _Answers(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.waiting: asyncio.Future[bytes] | None = None

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.waiting is not None and not self.waiting.done():
            self.waiting.set_result(data)


def packed(name: str, qid: int) -> bytes:
    q = DNSRecord.question(name, "A")
    q.header.id = qid
    return bytes(q.pack())


def answered(data: bytes, qid: int) -> bool:
    """Id matches, NOERROR, at least one answer record (header fields only: no parse)."""
    rid, flags, _, ancount = struct.unpack_from("!HHHH", data)
    return rid == qid and flags & 0xF == 0 and ancount > 0


async def ask(port: int, wire: bytes, qid: int) -> bool:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(_Answers, remote_addr=("127.0.0.1", port))
    try:
        proto.waiting = loop.create_future()
        transport.sendto(wire)
        return answered(await asyncio.wait_for(proto.waiting, ANSWER_TIMEOUT), qid)
    finally:
        transport.close()


async def qps(port: int, names: Sequence[str], queries: int, clients: int) -> dict[str, Any]:
    """``queries`` questions for random ``names`` by ``clients`` concurrent sequential UDP clients."""
    loop = asyncio.get_running_loop()
    rng = random.Random(1)
    per = [queries // clients + (1 if i < queries % clients else 0) for i in range(clients)]
    batches = [[(qid, packed(rng.choice(names), qid)) for qid in rng.sample(range(65536), n)] for n in per]
    ok = lost = wrong = 0

    async def client(batch: list[tuple[int, bytes]]) -> None:
        nonlocal ok, lost, wrong
        transport, proto = await loop.create_datagram_endpoint(_Answers, remote_addr=("127.0.0.1", port))
        try:
            for qid, wire in batch:
                proto.waiting = loop.create_future()
                transport.sendto(wire)
                try:
                    data = await asyncio.wait_for(proto.waiting, ANSWER_TIMEOUT)
                except TimeoutError:
                    lost += 1
                    continue
                if answered(data, qid):
                    ok += 1
                else:
                    wrong += 1
        finally:
            transport.close()

    started = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(client(b) for b in batches)), PHASE_TIMEOUT)
    wall = time.perf_counter() - started
    return {"queries": queries, "clients": clients, "ok": ok, "lost": lost, "wrong": wrong,
            "seconds": round(wall, 3), "qps": round(queries / wall)}  # fmt: skip


async def changes(client: Client, services: Informer[Service], port: int, count: int) -> dict[str, Any]:
    """Create ``count`` Services one at a time; per create, ms to the handler and to the first answer."""
    indexed_at: dict[str, float] = {}
    services.on_add(lambda s: indexed_at.setdefault(s.metadata.name or "", time.perf_counter()))
    to_answer: list[float] = []
    to_index: list[float] = []
    deadline = time.perf_counter() + PHASE_TIMEOUT
    for i in range(count):
        name = f"chg-{i}"
        qid = i
        wire = packed(f"{name}.{NS}.svc.{DOMAIN}", qid)
        started = time.perf_counter()
        await client.create(_service(name))
        while not await ask(port, wire, qid):
            if time.perf_counter() > deadline:
                raise TimeoutError(f"{name} never answered")
            await asyncio.sleep(0.0005)
        to_answer.append((time.perf_counter() - started) * 1e3)
        to_index.append((indexed_at[name] - started) * 1e3)
    a, ix = sorted(to_answer), sorted(to_index)
    return {"changes": count, "answer_p50_ms": round(percentile(a, 50), 2),
            "answer_p99_ms": round(percentile(a, 99), 2), "index_p50_ms": round(percentile(ix, 50), 2),
            "index_p99_ms": round(percentile(ix, 99), 2)}  # fmt: skip


def _service(name: str) -> Service:
    return Service(
        metadata=ObjectMeta(name=name, namespace=NS),
        spec=ServiceSpec(ports=[ServicePort(port=80, name="http")]),
    )


async def create_services(client: Client, count: int, concurrency: int = 1) -> float:
    """Create the Services one at a time: concurrent creates can fail in the cluster IP allocator
    ("range is full", really contention on its one key)."""
    queue = list(range(count))
    started = time.perf_counter()

    async def worker() -> None:
        while queue:
            i = queue.pop()
            await client.create(_service(f"s{i:05}"))

    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(concurrency))), PHASE_TIMEOUT)
    return time.perf_counter() - started


async def run(args: argparse.Namespace, data_dir: Path) -> dict[str, Any]:
    settings = Settings(data_dir=data_dir, listen="127.0.0.1:0", scheduler=False, controllers=False)
    cp = ControlPlane(settings)
    await cp.start()
    loop = asyncio.get_running_loop()
    upstream = Upstream()
    udp, tcp = bind_pair("127.0.0.1", 0)
    tcp.close()
    up_transport, _ = await loop.create_datagram_endpoint(lambda: upstream, sock=udp)
    try:
        async with Client(cp.url, cp.admin_token) as client:
            await client.create(Namespace(metadata=ObjectMeta(name=NS)))
            create_s = await create_services(client, args.services)
            services, endpoints = Informer(client, Service), Informer(client, Endpoints)
            services.start()
            endpoints.start()
            await services.wait_synced(PHASE_TIMEOUT)
            await endpoints.wait_synced(PHASE_TIMEOUT)
            dns = DNSServer(
                services,
                endpoints,
                upstreams=[("127.0.0.1", udp.getsockname()[1])],
                listen=[("127.0.0.1", 0)],
            )
            await dns.start()
            try:
                port = dns.ports[0]
                cluster_names = [f"s{i:05}.{NS}.svc.{DOMAIN}" for i in range(args.services)]
                outside = [f"f{i}.example" for i in range(args.forwarded)]
                for name in outside:  # warm the cache
                    assert await ask(port, packed(name, 1), 1), name
                warm_upstream = upstream.queries
                result: dict[str, Any] = {"services": args.services, "create_services_s": round(create_s, 2)}
                for kind, names in (("cluster", cluster_names), ("forwarded", outside)):
                    result[kind] = await qps(port, names, args.queries, args.clients)
                # The same without the stored replies: every question parsed, answered and packed.
                sizes = dns.local_wire.size, dns.forward_wire.size
                dns.local_wire.size = dns.forward_wire.size = 0
                dns.local_wire.clear()
                dns.forward_wire.clear()
                for kind, names in (("cluster", cluster_names), ("forwarded", outside)):
                    result[f"{kind}_unstored"] = await qps(port, names, args.queries, args.clients)
                dns.local_wire.size, dns.forward_wire.size = sizes
                result["upstream_queries_during_qps"] = upstream.queries - warm_upstream
                result["changes"] = await changes(client, services, port, args.changes)
            finally:
                await dns.stop()
                await services.stop()
                await endpoints.stop()
    finally:
        up_transport.close()
        await cp.stop()
    return result


def reproduce(args: argparse.Namespace) -> str:
    argv = [os.path.relpath(sys.executable), os.path.relpath(Path(__file__).resolve())]
    argv += ["--services", str(args.services), "--clients", str(args.clients), "--queries", str(args.queries)]
    argv += ["--forwarded", str(args.forwarded), "--changes", str(args.changes)]
    return shlex.join(argv)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--services", type=int, default=1000, help="Services in the cluster")
    p.add_argument("--clients", type=int, default=16, help="concurrent UDP clients")
    p.add_argument("--queries", type=int, default=20000, help="questions per qps phase, all clients")
    p.add_argument("--forwarded", type=int, default=100, help="distinct outside names (warm cache)")
    p.add_argument("--changes", type=int, default=50, help="Services created and timed to their answer")
    p.add_argument("--json", action="store_true", help="also print every figure as one JSON line")
    p.add_argument("--quick", action="store_true", help="200 Services, 3,000 queries, 10 changes")
    args = p.parse_args(argv)
    if args.quick:
        args.services, args.queries, args.changes, args.forwarded = 200, 3000, 10, 20
    if not (
        0 < args.services <= 20000
        and 0 < args.clients <= 1000
        and 0 < args.queries <= 1_000_000
        and 0 < args.forwarded <= 10000
        and 0 < args.changes <= 1000
    ):
        print(
            "bounds: services <= 20000, clients <= 1000, queries <= 1e6, forwarded <= 10000, changes <= 1000"
        )
        return 2
    m = machine()
    with tempfile.TemporaryDirectory(prefix="peapod-bench-dns-") as tmp:
        result = asyncio.run(run(args, Path(tmp)))
    print(
        f"machine   nproc {m['nproc']}, {m['cpu_model']}, kernel {m['kernel']}, {m['python']}, "
        f"dnslib {m['dnslib']}, load {m['loadavg_at_start']}"
    )
    print(f"command   {reproduce(args)}")
    print("          (one event loop for control plane, informers, DNS server, upstream and clients)")
    print(f"setup     {result['services']} Services created in {result['create_services_s']} s")
    labels = {
        "cluster": "cluster names, stored replies",
        "forwarded": "forwarded (warm), stored replies",
        "cluster_unstored": "cluster names, parse+answer+pack",
        "forwarded_unstored": "forwarded (warm), parse+cache+pack",
    }
    for kind, label in labels.items():
        r = result[kind]
        print(
            f"qps       {label:<35} {r['qps']:>6} q/s  ({r['queries']} queries, {r['clients']} clients, "
            f"{r['seconds']} s; ok {r['ok']}, lost {r['lost']}, wrong {r['wrong']})"
        )
    print(f"          upstream asked {result['upstream_queries_during_qps']} times during the qps phases")
    c = result["changes"]
    print(
        f"changes   create -> answered p50 {c['answer_p50_ms']} ms p99 {c['answer_p99_ms']} ms; "
        f"create -> indexed p50 {c['index_p50_ms']} ms p99 {c['index_p99_ms']} ms (n={c['changes']})"
    )
    if args.json:
        print(json.dumps({"machine": m, "command": reproduce(args), **result}))
    emit(
        "dns",
        [
            Figure("cluster names, stored replies", result["cluster"]["qps"], "q/s"),
            Figure("cluster names, parsed and packed", result["cluster_unstored"]["qps"], "q/s"),
            Figure("Service created -> name answered p99", c["answer_p99_ms"], "ms"),
        ],
        cmd=reproduce(args),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
