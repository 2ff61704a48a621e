"""Mutating admission on create, as kube-apiserver's admission plugins do it.

DefaultTolerationSeconds: every new pod that does not already say how it treats an unreachable or
not-ready node gets ``tolerationSeconds`` (300 by default) for the ``node.kubernetes.io/not-ready`` and
``node.kubernetes.io/unreachable`` NoExecute taints. So a pod rides out a short node outage instead of
being evicted the moment the node lifecycle controller taints the node, yet is evicted (and replaced by
its controller elsewhere) when the outage lasts. Only creates are mutated: tolerations on an update are
the user's (validation only lets them be added to).

Runs synchronously inside the create path (pure, no I/O), after decoding and before defaulting and
validation, so what it adds is validated like anything the user wrote.
"""

from __future__ import annotations

from dataclasses import dataclass

from controlplane.api.core import Pod, Toleration
from controlplane.taints import NOT_READY, UNREACHABLE


@dataclass(frozen=True)
class DefaultTolerationSeconds:
    not_ready_seconds: int = 300
    unreachable_seconds: int = 300

    def admit(self, pod: Pod) -> None:
        """Add the two default tolerations unless the pod already tolerates the taint (a toleration
        with that key, or no key, and NoExecute or no effect: Kubernetes' test)."""
        tolerations = list(pod.spec.tolerations or ())
        added = False
        for key, seconds in ((NOT_READY, self.not_ready_seconds), (UNREACHABLE, self.unreachable_seconds)):
            if any(_covers(t, key) for t in tolerations):
                continue
            tolerations.append(
                Toleration(key=key, operator="Exists", effect="NoExecute", toleration_seconds=seconds)
            )
            added = True
        if added:
            pod.spec.tolerations = tolerations


def _covers(toleration: Toleration, key: str) -> bool:
    return (toleration.key in (key, None, "")) and (toleration.effect in ("NoExecute", None, ""))
