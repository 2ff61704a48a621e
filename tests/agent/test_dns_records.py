"""The cluster's DNS answers (agent/dns/records.py): pure, from Service and Endpoints objects."""

from __future__ import annotations

import pytest
from dnslib import QTYPE, RCODE

from agent.dns.records import ClusterIndex
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

D = "cluster.local"


def service(name: str, ns: str = "default", **spec: object) -> Service:
    return Service(metadata=ObjectMeta(name=name, namespace=ns), spec=ServiceSpec(**spec))  # type: ignore[arg-type]


def endpoints(
    name: str, ns: str = "default", *, ready: list[EndpointAddress], ports: list[EndpointPort]
) -> Endpoints:
    subset = EndpointSubset(
        addresses=ready, not_ready_addresses=[EndpointAddress(ip="10.244.9.9")], ports=ports
    )
    return Endpoints(metadata=ObjectMeta(name=name, namespace=ns), subsets=[subset])


@pytest.fixture
def index() -> ClusterIndex:
    eps = {
        "default/db": endpoints(
            "db",
            ready=[EndpointAddress(ip="10.244.1.5", hostname="db-0"), EndpointAddress(ip="10.244.2.6")],
            ports=[EndpointPort(port=5432, name="pg", protocol="TCP")],
        ),
        "default/web": endpoints(
            "web", ready=[EndpointAddress(ip="10.244.3.7")], ports=[EndpointPort(port=8080, name="http")]
        ),
    }
    idx = ClusterIndex(eps, cluster_domain=D, ttl=5)
    idx.add(
        service(
            "web",
            cluster_ip="10.254.0.10",
            ports=[
                ServicePort(port=80, name="http", protocol="TCP"),
                ServicePort(port=53, name="dns", protocol="UDP"),
            ],
        )
    )
    idx.add(service("db", cluster_ip="None", ports=[ServicePort(port=5432, name="pg")]))
    idx.add(service("ext", type="ExternalName", external_name="example.org"))
    idx.add(service("alias", type="ExternalName", external_name=f"web.default.svc.{D}"))
    idx.add(service("lonely", ns="other", cluster_ip="None"))
    return idx


def ask(
    idx: ClusterIndex, name: str, qtype: str
) -> tuple[int, list[tuple[str, str, str]], list[str], list[str]]:
    """(rcode, answer rows (name without the root dot, type, rdata), authority types, additional
    rdata); fails when the name is not the cluster's."""
    a = idx.answer(name, getattr(QTYPE, qtype))
    assert a is not None, f"{name} should be the cluster's"
    rows = [(str(r.rname).rstrip("."), QTYPE[r.rtype], str(r.rdata)) for r in a.answer]
    assert all(r.ttl == 5 for r in a.answer)
    return a.rcode, rows, [QTYPE[r.rtype] for r in a.authority], [str(r.rdata) for r in a.additional]


def test_clusterip_service_a() -> None:
    idx = ClusterIndex({}, cluster_domain=D)
    idx.add(service("web", cluster_ip="10.254.0.10"))
    rcode, rows, _, _ = ask(idx, f"web.default.svc.{D}.", "A")
    assert (rcode, rows) == (RCODE.NOERROR, [(f"web.default.svc.{D}", "A", "10.254.0.10")])


def test_names_are_case_insensitive_and_echo_the_question(index: ClusterIndex) -> None:
    rcode, rows, _, _ = ask(index, "WEB.Default.SVC.Cluster.Local.", "A")
    assert (rcode, rows) == (RCODE.NOERROR, [("WEB.Default.SVC.Cluster.Local", "A", "10.254.0.10")])


def test_headless_service_answers_ready_endpoints(index: ClusterIndex) -> None:
    rcode, rows, _, _ = ask(index, f"db.default.svc.{D}", "A")
    assert rcode == RCODE.NOERROR
    assert sorted(r[2] for r in rows) == ["10.244.1.5", "10.244.2.6"]  # not the not-ready 10.244.9.9


def test_headless_without_endpoints_is_nodata(index: ClusterIndex) -> None:
    rcode, rows, auth, _ = ask(index, f"lonely.other.svc.{D}", "A")
    assert (rcode, rows, auth) == (RCODE.NOERROR, [], ["SOA"])


def test_external_name_outside_the_cluster_is_just_a_cname(index: ClusterIndex) -> None:
    a = index.answer(f"ext.default.svc.{D}", QTYPE.A)
    assert a is not None and a.cname_target == "example.org."
    rcode, rows, _, _ = ask(index, f"ext.default.svc.{D}", "A")
    assert (rcode, rows) == (RCODE.NOERROR, [(f"ext.default.svc.{D}", "CNAME", "example.org.")])


def test_external_name_inside_the_cluster_is_followed(index: ClusterIndex) -> None:
    rcode, rows, _, _ = ask(index, f"alias.default.svc.{D}", "A")
    assert rcode == RCODE.NOERROR
    assert rows == [
        (f"alias.default.svc.{D}", "CNAME", f"web.default.svc.{D}."),
        (f"web.default.svc.{D}", "A", "10.254.0.10"),
    ]
    assert index.answer(f"alias.default.svc.{D}", QTYPE.A).cname_target is None  # type: ignore[union-attr]


def test_srv_for_a_clusterip_service(index: ClusterIndex) -> None:
    rcode, rows, _, additional = ask(index, f"_http._tcp.web.default.svc.{D}", "SRV")
    assert (rcode, rows) == (
        RCODE.NOERROR,
        [(f"_http._tcp.web.default.svc.{D}", "SRV", f"0 100 80 web.default.svc.{D}.")],
    )
    assert additional == ["10.254.0.10"]
    _, rows, _, _ = ask(index, f"_dns._udp.web.default.svc.{D}", "SRV")
    assert [r[2] for r in rows] == [f"0 100 53 web.default.svc.{D}."]
    assert ask(index, f"_dns._tcp.web.default.svc.{D}", "SRV")[0] == RCODE.NXDOMAIN  # wrong protocol


def test_srv_for_a_headless_service_names_each_endpoint(index: ClusterIndex) -> None:
    rcode, rows, _, additional = ask(index, f"_pg._tcp.db.default.svc.{D}", "SRV")
    assert rcode == RCODE.NOERROR
    assert sorted(r[2] for r in rows) == [
        f"0 50 5432 10-244-2-6.db.default.svc.{D}.",
        f"0 50 5432 db-0.db.default.svc.{D}.",
    ]
    assert sorted(additional) == ["10.244.1.5", "10.244.2.6"]


def test_endpoint_hostnames_and_dashed_ips(index: ClusterIndex) -> None:
    assert ask(index, f"db-0.db.default.svc.{D}", "A")[1] == [(f"db-0.db.default.svc.{D}", "A", "10.244.1.5")]
    assert ask(index, f"10-244-2-6.db.default.svc.{D}", "A")[1][0][2] == "10.244.2.6"
    assert ask(index, f"10-244-1-5.db.default.svc.{D}", "A")[0] == RCODE.NXDOMAIN  # it has a hostname
    assert ask(index, f"db-1.db.default.svc.{D}", "A")[0] == RCODE.NXDOMAIN
    assert ask(index, f"10-244-9-9.db.default.svc.{D}", "A")[0] == RCODE.NXDOMAIN  # not ready


def test_pod_records_need_no_lookup(index: ClusterIndex) -> None:
    assert ask(index, f"10-244-1-5.default.pod.{D}", "A")[1] == [
        (f"10-244-1-5.default.pod.{D}", "A", "10.244.1.5")
    ]
    assert ask(index, f"10-244-1-5.default.pod.{D}", "AAAA")[:2] == (RCODE.NOERROR, [])
    assert ask(index, f"not-an-ip.default.pod.{D}", "A")[0] == RCODE.NXDOMAIN


@pytest.mark.parametrize(
    "name",
    [f"nope.default.svc.{D}", f"web.nons.svc.{D}", f"nons.svc.{D}", f"x.y.z.web.default.svc.{D}", f"foo.{D}"],
)
def test_missing_names_are_nxdomain_with_soa(index: ClusterIndex, name: str) -> None:
    rcode, rows, auth, _ = ask(index, name, "A")
    assert (rcode, rows, auth) == (RCODE.NXDOMAIN, [], ["SOA"])


@pytest.mark.parametrize(
    ("name", "qtype"),
    [
        (f"web.default.svc.{D}", "AAAA"),
        (f"web.default.svc.{D}", "MX"),
        (f"_http._tcp.web.default.svc.{D}", "A"),
        (f"_tcp.web.default.svc.{D}", "SRV"),
        (f"default.svc.{D}", "A"),
        (f"svc.{D}", "A"),
        (D, "A"),
    ],
)
def test_existing_names_without_the_type_are_nodata(index: ClusterIndex, name: str, qtype: str) -> None:
    rcode, rows, auth, _ = ask(index, name, qtype)
    assert (rcode, rows, auth) == (RCODE.NOERROR, [], ["SOA"])


def test_apex_soa(index: ClusterIndex) -> None:
    rcode, rows, _, _ = ask(index, D + ".", "SOA")
    assert rcode == RCODE.NOERROR and rows[0][1] == "SOA"


def test_ptr_for_cluster_ips(index: ClusterIndex) -> None:
    _, rows, _, _ = ask(index, "10.0.254.10.in-addr.arpa.", "PTR")
    assert rows == [("10.0.254.10.in-addr.arpa", "PTR", f"web.default.svc.{D}.")]
    assert index.answer("11.0.254.10.in-addr.arpa.", QTYPE.PTR) is None  # not ours: forwarded


def test_names_outside_the_domain_are_not_ours(index: ClusterIndex) -> None:
    assert index.answer("example.org.", QTYPE.A) is None
    assert index.answer("cluster.local.example.org.", QTYPE.A) is None


def test_index_follows_updates_and_deletes(index: ClusterIndex) -> None:
    web = index.by_name[("default", "web")]
    moved = service("web", cluster_ip="10.254.0.11")
    index.remove(web)
    index.add(moved)
    assert ask(index, f"web.default.svc.{D}", "A")[1][0][2] == "10.254.0.11"
    assert "10.254.0.10" not in index.by_ip and index.by_ip["10.254.0.11"] is moved
    index.remove(moved)
    assert ask(index, f"web.default.svc.{D}", "A")[0] == RCODE.NXDOMAIN
    index.remove(index.by_name[("other", "lonely")])
    assert ask(index, f"other.svc.{D}", "A")[0] == RCODE.NXDOMAIN  # its last service is gone
    index.add(index.by_name[("default", "db")])  # re-adding the same object: idempotent
    assert index.namespaces["default"] == 3
