"""Cluster records: answer one question about the cluster domain from Services and Endpoints.

Pure and synchronous (no sockets, no awaits): :class:`ClusterIndex` is fed Services by the informer
handlers (``add``/``remove``), keeps the two lookups a query needs (``(ns, name)`` -> Service, ClusterIP
-> Service) and reads Endpoints from the informer's cache by ``ns/name``. ``answer`` maps a question to
an :class:`Answer` (records, or NXDOMAIN/NODATA) as CoreDNS's kubernetes plugin would, or to ``None``
when the name is not ours (the server forwards it).

Names under ``DOMAIN`` (labels compared lowercased; answers echo the name as asked)::

    DOMAIN                                   SOA (apex); anything else NODATA
    svc.DOMAIN, pod.DOMAIN                   NODATA (empty non-terminals)
    NS.svc.DOMAIN                            NODATA if a Service lives in NS, else NXDOMAIN
    SVC.NS.svc.DOMAIN                        A/AAAA ClusterIP(s); headless: ready endpoint addresses;
                                             ExternalName: CNAME (+ the target's records if in-cluster)
    ENDPOINT.SVC.NS.svc.DOMAIN               A of the ready address whose hostname (or dashed IP) it is
    _PORT._PROTO.SVC.NS.svc.DOMAIN           SRV (ClusterIP: the service; headless: each ready endpoint)
    A-B-C-D.NS.pod.DOMAIN                    A A.B.C.D ("pods insecure": no lookup)
    D.C.B.A.in-addr.arpa                     PTR SVC.NS.svc.DOMAIN for a ClusterIP (else forwarded)
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field

from dnslib import AAAA, CNAME, PTR, QTYPE, RCODE, RR, SOA, SRV, A, DNSLabel

from controlplane.api.core import EndpointAddress, Endpoints, Service

NOERROR, NXDOMAIN = RCODE.NOERROR, RCODE.NXDOMAIN
CNAME_DEPTH = 8  # ExternalName -> ExternalName chains followed inside the cluster before giving up


@dataclass
class Answer:
    """The cluster's answer to one question: authoritative, rcode plus the three record sections."""

    rcode: int = NOERROR
    answer: list[RR] = field(default_factory=list)
    authority: list[RR] = field(default_factory=list)
    additional: list[RR] = field(default_factory=list)

    @property
    def cname_target(self) -> str | None:
        """The last CNAME target when the answer ends in a CNAME (an ExternalName outside the cluster):
        the server may resolve it upstream and append the chain."""
        if self.answer and self.answer[-1].rtype == QTYPE.CNAME:
            return str(self.answer[-1].rdata.label)
        return None


def is_headless(svc: Service) -> bool:
    return svc.spec.cluster_ip == "None"


def dashed(ip: str) -> str:
    """The DNS label of an address: 10.244.1.5 -> 10-244-1-5 (IPv6: colons become dashes)."""
    return ip.replace(".", "-").replace(":", "-")


def undashed(label: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address a dashed pod label names, or None when it names none."""
    try:
        return ipaddress.IPv4Address(label.replace("-", "."))
    except ValueError:
        pass
    try:
        return ipaddress.IPv6Address(label.replace("-", ":"))
    except ValueError:
        return None


def ready_addresses(endpoints: Endpoints | None) -> list[EndpointAddress]:
    """The ready addresses of every subset, in order, each address once."""
    seen: set[str] = set()
    out: list[EndpointAddress] = []
    for subset in (endpoints.subsets if endpoints else None) or []:
        for addr in subset.addresses or []:
            if addr.ip not in seen:
                seen.add(addr.ip)
                out.append(addr)
    return out


def endpoint_label(addr: EndpointAddress) -> str:
    """An endpoint's name under its service: its hostname, or its dashed IP (CoreDNS's endpointHostname)."""
    return addr.hostname.lower() if addr.hostname else dashed(addr.ip)


class ClusterIndex:
    """Services by name and by ClusterIP, kept current by informer handlers; Endpoints by cache key."""

    def __init__(
        self, endpoints: Mapping[str, Endpoints], *, cluster_domain: str = "cluster.local", ttl: int = 5
    ) -> None:
        self.endpoints = endpoints  # the Endpoints informer's cache, keyed "ns/name"
        self.domain = cluster_domain.strip(".").lower()
        self.domain_labels = tuple(self.domain.split("."))
        self.ttl = ttl
        self.by_name: dict[tuple[str, str], Service] = {}
        self.by_ip: dict[str, Service] = {}
        self.namespaces: dict[str, int] = {}  # services per namespace: NS.svc.DOMAIN exists while > 0
        self.soa = RR(
            self.domain + ".",
            QTYPE.SOA,
            ttl=ttl,
            rdata=SOA(f"ns.dns.{self.domain}.", f"hostmaster.{self.domain}.", (1, 7200, 1800, 86400, ttl)),
        )

    # --- the index, fed by the Services informer -------------------------------------------------

    def add(self, svc: Service) -> None:
        """Index ``svc`` (replacing an earlier version of it)."""
        ns, name = svc.metadata.namespace or "default", svc.metadata.name or ""
        key = (ns.lower(), name.lower())
        old = self.by_name.get(key)
        if old is not None:
            self._unindex_ips(old)
        else:
            self.namespaces[key[0]] = self.namespaces.get(key[0], 0) + 1
        self.by_name[key] = svc
        for ip in self._cluster_ips(svc):
            self.by_ip[ip] = svc

    def remove(self, svc: Service) -> None:
        ns, name = svc.metadata.namespace or "default", svc.metadata.name or ""
        key = (ns.lower(), name.lower())
        old = self.by_name.pop(key, None)
        if old is None:
            return
        self._unindex_ips(old)
        left = self.namespaces.get(key[0], 1) - 1
        if left > 0:
            self.namespaces[key[0]] = left
        else:
            self.namespaces.pop(key[0], None)

    def _unindex_ips(self, svc: Service) -> None:
        for ip in self._cluster_ips(svc):
            if self.by_ip.get(ip) is svc:
                del self.by_ip[ip]

    @staticmethod
    def _cluster_ips(svc: Service) -> list[str]:
        if svc.spec.type == "ExternalName" or is_headless(svc):
            return []
        ips = svc.spec.cluster_ips or ([svc.spec.cluster_ip] if svc.spec.cluster_ip else [])
        return [ip for ip in ips if ip and ip != "None"]

    # --- questions --------------------------------------------------------------------------------

    def answer(self, qname: str, qtype: int) -> Answer | None:
        """The answer to (qname, qtype), or None when the name is outside the cluster's zones."""
        name = qname.rstrip(".")
        labels = name.lower().split(".") if name else []
        n = len(self.domain_labels)
        if len(labels) >= n and tuple(labels[len(labels) - n :]) == self.domain_labels:
            return self._cluster(qname, labels[: len(labels) - n], qtype, 0)
        if len(labels) == 6 and labels[4:] == ["in-addr", "arpa"] and qtype in (QTYPE.PTR, QTYPE.ANY):
            return self._ptr(qname, ".".join(reversed(labels[:4])))
        return None

    def _cluster(self, qname: str, labels: list[str], qtype: int, depth: int) -> Answer:
        if not labels:
            return Answer(answer=[self.soa]) if qtype == QTYPE.SOA else self._nodata()
        if labels == ["svc"] or labels == ["pod"]:
            return self._nodata()
        if labels[-1] == "pod" and len(labels) == 3:
            return self._pod(qname, labels[0], qtype)
        if labels[-1] != "svc":
            return self._nxdomain()
        labels = labels[:-1]  # ..., SVC, NS
        if len(labels) == 1:
            return self._nodata() if labels[0] in self.namespaces else self._nxdomain()
        svc = self.by_name.get((labels[-1], labels[-2]))
        if svc is None:
            return self._nxdomain()
        rest = labels[:-2]
        if not rest:
            return self._service(qname, svc, qtype, depth)
        if len(rest) == 1:
            if rest[0].startswith("_"):  # _PROTO.SVC: an empty non-terminal of the SRV names
                return self._nodata() if self._has_proto(svc, rest[0][1:]) else self._nxdomain()
            return self._endpoint(qname, svc, rest[0], qtype)
        if len(rest) == 2 and rest[0].startswith("_") and rest[1].startswith("_"):
            return self._srv(qname, svc, rest[0][1:], rest[1][1:], qtype)
        return self._nxdomain()

    def _service(self, qname: str, svc: Service, qtype: int, depth: int) -> Answer:
        if svc.spec.type == "ExternalName":
            return self._external(qname, svc, qtype, depth)
        if is_headless(svc):
            ips = [a.ip for a in ready_addresses(self._endpoints_of(svc))]
        else:
            ips = self._cluster_ips(svc)
        records = self._address_records(qname, ips, qtype)
        return Answer(answer=records) if records else self._nodata()

    def _external(self, qname: str, svc: Service, qtype: int, depth: int) -> Answer:
        target = (svc.spec.external_name or "").rstrip(".")
        if not target:
            return self._nodata()
        cname = RR(qname, QTYPE.CNAME, ttl=self.ttl, rdata=CNAME(target + "."))
        if qtype == QTYPE.CNAME:
            return Answer(answer=[cname])
        labels = target.lower().split(".")
        n = len(self.domain_labels)
        if depth >= CNAME_DEPTH or len(labels) < n or tuple(labels[len(labels) - n :]) != self.domain_labels:
            return Answer(answer=[cname])  # outside the cluster: the client (or the server) follows it
        # Inside the cluster domain: follow it here; the chain's end decides the rcode (RFC 6604).
        inner = self._cluster(target, labels[: len(labels) - n], qtype, depth + 1)
        return Answer(inner.rcode, [cname, *inner.answer], inner.authority, inner.additional)

    def _endpoint(self, qname: str, svc: Service, label: str, qtype: int) -> Answer:
        for addr in ready_addresses(self._endpoints_of(svc)):
            if endpoint_label(addr) == label:
                records = self._address_records(qname, [addr.ip], qtype)
                return Answer(answer=records) if records else self._nodata()
        return self._nxdomain()

    def _srv(self, qname: str, svc: Service, port_name: str, proto: str, qtype: int) -> Answer:
        base = f"{svc.metadata.name}.{svc.metadata.namespace or 'default'}.svc.{self.domain}."
        targets: list[tuple[str, int, str]] = []  # (target, port, ip)
        if svc.spec.type == "ExternalName":
            return self._nxdomain()
        if is_headless(svc):
            for subset in (ep.subsets if (ep := self._endpoints_of(svc)) else None) or []:
                ports = [
                    p.port for p in subset.ports or [] if _port_matches(p.name, p.protocol, port_name, proto)
                ]
                for addr in subset.addresses or []:
                    targets += [(f"{endpoint_label(addr)}.{base}", port, addr.ip) for port in ports]
        else:
            ips = self._cluster_ips(svc)
            for p in svc.spec.ports or []:
                if _port_matches(p.name, p.protocol, port_name, proto):
                    targets += [(base, p.port, ip) for ip in ips[:1]]
        if not targets:
            return self._nxdomain()
        if qtype not in (QTYPE.SRV, QTYPE.ANY):
            return self._nodata()
        weight = max(1, 100 // len(targets))
        answer = [
            RR(qname, QTYPE.SRV, ttl=self.ttl, rdata=SRV(0, weight, port, target))
            for target, port, _ in targets
        ]
        additional: list[RR] = []
        seen: set[str] = set()
        for target, _, ip in targets:
            if target not in seen:
                seen.add(target)
                additional += self._address_records(target, [ip], QTYPE.ANY)
        return Answer(answer=answer, additional=additional)

    def _pod(self, qname: str, label: str, qtype: int) -> Answer:
        ip = undashed(label)
        if ip is None:
            return self._nxdomain()
        records = self._address_records(qname, [str(ip)], qtype)
        return Answer(answer=records) if records else self._nodata()

    def _ptr(self, qname: str, ip: str) -> Answer | None:
        svc = self.by_ip.get(ip)
        if svc is None:
            return None
        target = f"{svc.metadata.name}.{svc.metadata.namespace or 'default'}.svc.{self.domain}."
        return Answer(answer=[RR(qname, QTYPE.PTR, ttl=self.ttl, rdata=PTR(target))])

    # --- helpers ----------------------------------------------------------------------------------

    def _endpoints_of(self, svc: Service) -> Endpoints | None:
        return self.endpoints.get(f"{svc.metadata.namespace or 'default'}/{svc.metadata.name}")

    def _has_proto(self, svc: Service, proto: str) -> bool:
        ports = [(p.name, p.protocol) for p in svc.spec.ports or []]
        if is_headless(svc):
            ep = self._endpoints_of(svc)
            ports += [(p.name, p.protocol) for s in (ep.subsets if ep else None) or [] for p in s.ports or []]
        return any((protocol or "TCP").lower() == proto for _, protocol in ports)

    def _address_records(self, qname: str | DNSLabel, ips: list[str], qtype: int) -> list[RR]:
        """A records (A/ANY questions) and AAAA records (AAAA/ANY) for ``ips``."""
        out: list[RR] = []
        for ip in ips:
            v6 = ":" in ip
            if v6 and qtype in (QTYPE.AAAA, QTYPE.ANY):
                out.append(RR(qname, QTYPE.AAAA, ttl=self.ttl, rdata=AAAA(ip)))
            elif not v6 and qtype in (QTYPE.A, QTYPE.ANY):
                out.append(RR(qname, QTYPE.A, ttl=self.ttl, rdata=A(ip)))
        return out

    def _nodata(self) -> Answer:
        return Answer(authority=[self.soa])

    def _nxdomain(self) -> Answer:
        return Answer(NXDOMAIN, authority=[self.soa])


def _port_matches(name: str | None, protocol: str | None, want_name: str, want_proto: str) -> bool:
    return bool(name) and (name or "").lower() == want_name and (protocol or "TCP").lower() == want_proto
