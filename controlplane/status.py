"""Reading what an object's status says, the same way everywhere: a pod's or a node's Ready condition,
a node's InternalIP. Controllers, the scheduler, the agent's routes and the printers all ask these
questions; one answer keeps them from disagreeing on an edge (a missing condition, an empty address).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, TypeVar

from controlplane.api.core import Node, Pod


class _Condition(Protocol):
    type: str
    status: str


C = TypeVar("C", bound=_Condition)


def condition(conditions: Iterable[C] | None, kind: str) -> C | None:
    """The first condition of that type, or None."""
    return next((c for c in conditions or () if c.type == kind), None)


def pod_ready(pod: Pod) -> bool:
    """The pod's Ready condition is True."""
    ready = condition(pod.status.conditions, "Ready")
    return ready is not None and ready.status == "True"


def node_ready(node: Node) -> bool:
    """The node's Ready condition is True."""
    ready = condition(node.status.conditions, "Ready")
    return ready is not None and ready.status == "True"


def internal_ip(node: Node) -> str | None:
    """The node's first non-empty InternalIP address."""
    return next(
        (a.address for a in node.status.addresses or () if a.type == "InternalIP" and a.address), None
    )
