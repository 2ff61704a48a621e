"""coordination.k8s.io/v1 Lease: the node heartbeat that is cheap to renew every 10 seconds."""

from __future__ import annotations

import msgspec

from .meta import ListMeta, Model, ObjectMeta, TopLevel


class LeaseSpec(Model):
    holder_identity: str | None = None
    lease_duration_seconds: int | None = None
    acquire_time: str | None = None
    renew_time: str | None = None
    lease_transitions: int | None = None
    strategy: str | None = None
    preferred_holder: str | None = None


class Lease(TopLevel):
    api_version: str = "coordination.k8s.io/v1"
    kind: str = "Lease"
    metadata: ObjectMeta = msgspec.field(default_factory=ObjectMeta)
    spec: LeaseSpec = msgspec.field(default_factory=LeaseSpec)


class LeaseList(TopLevel):
    api_version: str = "coordination.k8s.io/v1"
    kind: str = "LeaseList"
    metadata: ListMeta = msgspec.field(default_factory=ListMeta)
    items: list[Lease] = msgspec.field(default_factory=list)
