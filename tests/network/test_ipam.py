"""The address book: pod IPs from the podCIDR, never two holders at once, kept across restarts."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

import pytest

from agent.network.ipam import AddressBook, PortMapping, RangeExhausted


def test_addresses_come_from_the_cidr_after_the_gateway(tmp_path: Path) -> None:
    book = AddressBook(tmp_path, "10.244.3.0/24")
    assert str(book.gateway) == "10.244.3.1"
    first = book.allocate("sandbox-a", "uid-a", "default", "a")
    second = book.allocate("sandbox-b", "uid-b", "default", "b")
    assert (first.ip, second.ip) == ("10.244.3.2", "10.244.3.3")
    assert book.allocate("sandbox-a", "uid-a", "default", "a") == first  # idempotent per sandbox


def test_released_addresses_are_reused_only_after_the_rest_of_the_range(tmp_path: Path) -> None:
    book = AddressBook(tmp_path, "10.244.0.0/29")  # hosts .1-.6: gateway .1, pods .2-.6
    held: dict[str, str] = {}
    seen = []
    for i in range(40):
        allocation = book.allocate(f"s{i}", f"u{i}", "ns", f"p{i}")
        assert allocation.ip not in held.values(), "an address was handed out twice at once"
        held[allocation.sandbox] = allocation.ip
        seen.append(allocation.ip)
        if len(held) == 3:
            oldest = next(iter(held))
            assert book.release(oldest) is not None
            del held[oldest]
    network = ipaddress.ip_network("10.244.0.0/29")
    assert all(ipaddress.ip_address(ip) in network for ip in seen)
    assert "10.244.0.1" not in seen and "10.244.0.7" not in seen  # gateway and broadcast
    assert seen[:5] == ["10.244.0.2", "10.244.0.3", "10.244.0.4", "10.244.0.5", "10.244.0.6"]


def test_the_range_can_run_out(tmp_path: Path) -> None:
    book = AddressBook(tmp_path, "10.244.0.0/29")
    for i in range(5):
        book.allocate(f"s{i}", f"u{i}", "ns", f"p{i}")
    with pytest.raises(RangeExhausted, match=re.escape("10.244.0.0/29")):
        book.allocate("one-too-many", "u", "ns", "p")
    book.release("s2")
    assert book.allocate("fits-again", "u", "ns", "p").ip == "10.244.0.4"


def test_a_restarted_agent_reads_back_who_holds_what(tmp_path: Path) -> None:
    ports = (PortMapping("TCP", 8080, 80, ""),)
    before = AddressBook(tmp_path, "10.244.1.0/24")
    a = before.allocate("sandbox-a", "uid-a", "web", "a", ports)
    before.allocate("sandbox-b", "uid-b", "web", "b")
    before.release("sandbox-b")
    after = AddressBook(tmp_path, "10.244.1.0/24")
    assert after.allocations() == [a]
    assert after.get("sandbox-a") is not None and after.get("sandbox-a").host_ports == ports  # type: ignore[union-attr]
    # Round-robin continues where the last agent stopped: .3 was the last one handed out.
    assert after.allocate("sandbox-c", "uid-c", "web", "c").ip == "10.244.1.4"


def test_two_books_on_one_directory_never_share_an_address(tmp_path: Path) -> None:
    one = AddressBook(tmp_path, "10.244.0.0/24")
    two = AddressBook(tmp_path, "10.244.0.0/24")  # e.g. an old agent still shutting down
    a = one.allocate("s1", "u1", "ns", "a")
    b = two.allocate("s2", "u2", "ns", "b")
    assert a.ip != b.ip
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(("last", "."))) == sorted(
        [a.ip, b.ip]
    )


def test_a_damaged_record_is_ignored_not_fatal(tmp_path: Path) -> None:
    (tmp_path / "10.244.0.9").write_text("{not json")
    book = AddressBook(tmp_path, "10.244.0.0/24")
    assert book.allocations() == []
    assert book.allocate("s", "u", "ns", "p").ip == "10.244.0.2"


def test_a_cidr_too_small_for_pods_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="too small"):
        AddressBook(tmp_path, "10.244.0.0/31")
