"""Taints and tolerations: the node taints Kubernetes itself sets, and its rule for when a toleration
matches a taint. One rule for the scheduler (NoSchedule, PreferNoSchedule), the node lifecycle
controller (NoExecute eviction) and admission (DefaultTolerationSeconds), so they never disagree."""

from __future__ import annotations

from collections.abc import Iterable

from controlplane.api.core import Taint, Toleration

#: The node's Ready condition is False (the agent says so).
NOT_READY = "node.kubernetes.io/not-ready"
#: The node's Ready condition is Unknown (no heartbeat within the grace period).
UNREACHABLE = "node.kubernetes.io/unreachable"
#: The node is cordoned (``spec.unschedulable``).
UNSCHEDULABLE = "node.kubernetes.io/unschedulable"


def tolerates(toleration: Toleration, taint: Taint) -> bool:
    """Kubernetes' ToleratesTaint: empty key with Exists matches any taint, empty effect any effect."""
    if toleration.effect and toleration.effect != taint.effect:
        return False
    if toleration.key and toleration.key != taint.key:
        return False
    operator = toleration.operator or "Equal"
    if operator == "Exists":
        return True
    if operator == "Equal":
        return (toleration.value or "") == (taint.value or "")
    return False


def tolerated(tolerations: Iterable[Toleration] | None, taint: Taint) -> bool:
    return any(tolerates(t, taint) for t in tolerations or ())
