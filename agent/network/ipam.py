"""Pod addresses from the node's podCIDR, one file per address in the agent's data directory.

Like CNI's host-local plugin: an address is taken by creating ``<dir>/<ip>`` exclusively (a fully written
temporary file hard-linked into place, so a reader never sees half a record and two claims of one address
cannot both succeed), and released by removing the file. The files are the truth, so an agent that
restarts knows which sandbox holds which address and which host ports point at it. Allocation walks the
range round-robin from the last address handed out, so a released address is not reused at once (a late
packet for the old pod does not reach the new one).

The directory is plain files written without fsync: the addresses only matter while the pods' network
namespaces exist, and those do not survive a machine crash either.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
from pathlib import Path

import msgspec


class PortMapping(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    """One ``hostPort`` of a pod: traffic to the node's ``host_port`` goes to the pod's ``container_port``."""

    protocol: str
    host_port: int
    container_port: int
    host_ip: str = ""


class Allocation(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    """Who holds an address: the sandbox (Podman pod ID) and the API pod it realises."""

    ip: str
    sandbox: str
    uid: str
    namespace: str
    name: str
    host_ports: tuple[PortMapping, ...] = ()


class RangeExhausted(Exception):
    """Every address of the podCIDR is taken."""


_LAST = "last_reserved_ip"


class AddressBook:
    """The addresses of one podCIDR (the first host address is the bridge's gateway)."""

    def __init__(self, directory: Path, cidr: str) -> None:
        self.directory = directory
        self.network = ipaddress.IPv4Network(cidr, strict=False)
        if self.network.num_addresses < 4:
            raise ValueError(f"podCIDR {cidr} is too small for a gateway and pods")
        self.gateway = self.network.network_address + 1
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._held: dict[str, Allocation] = {}  # by sandbox ID
        for path in directory.iterdir():
            if path.name.startswith(".") or path.name == _LAST:
                continue
            try:
                allocation = msgspec.json.decode(path.read_bytes(), type=Allocation)
            except (OSError, msgspec.DecodeError):
                continue
            self._held[allocation.sandbox] = allocation

    @property
    def prefixlen(self) -> int:
        return self.network.prefixlen

    def allocations(self) -> list[Allocation]:
        return list(self._held.values())

    def get(self, sandbox: str) -> Allocation | None:
        return self._held.get(sandbox)

    def allocate(
        self, sandbox: str, uid: str, namespace: str, name: str, host_ports: tuple[PortMapping, ...] = ()
    ) -> Allocation:
        """A free address for ``sandbox`` (the one it already holds, if any)."""
        held = self._held.get(sandbox)
        if held is not None:
            return held
        first = int(self.gateway) + 1
        last = int(self.network.broadcast_address) - 1
        size = last - first + 1
        start = self._last_reserved()
        offset = (start - first + 1) % size if first <= start <= last else 0
        for step in range(size):
            ip = str(ipaddress.IPv4Address(first + (offset + step) % size))
            allocation = Allocation(ip, sandbox, uid, namespace, name, host_ports)
            if self._claim(allocation):
                self._held[sandbox] = allocation
                self._write_last(ip)
                return allocation
        raise RangeExhausted(f"no free address left in {self.network}")

    def release(self, sandbox: str) -> Allocation | None:
        """Give back the address ``sandbox`` holds; None if it held none."""
        allocation = self._held.pop(sandbox, None)
        if allocation is not None:
            with contextlib.suppress(FileNotFoundError):
                (self.directory / allocation.ip).unlink()
        return allocation

    def _claim(self, allocation: Allocation) -> bool:
        final = self.directory / allocation.ip
        tmp = self.directory / f".{allocation.ip}.{os.getpid()}.tmp"
        tmp.write_bytes(msgspec.json.encode(allocation))
        try:
            os.link(tmp, final)
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)
        return True

    def _last_reserved(self) -> int:
        try:
            return int(ipaddress.IPv4Address((self.directory / _LAST).read_text().strip()))
        except (OSError, ValueError):
            return 0

    def _write_last(self, ip: str) -> None:
        tmp = self.directory / f".{_LAST}.tmp"
        tmp.write_text(ip)
        tmp.replace(self.directory / _LAST)
