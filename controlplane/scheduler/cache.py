"""The scheduler's picture of the cluster: one :class:`NodeInfo` per node, kept up to date incrementally.

Every pod that occupies a node is counted on that node's NodeInfo exactly once, whether it is *bound*
(the watch shows its ``nodeName``) or *assumed* (this scheduler decided and is binding it, the watch has
not shown it yet). Assumed pods count exactly like bound ones, so a lagging watch never over-commits a
node; an assumption ends when the watch shows the pod bound (its bound version replaces it), when the
pod is deleted, or when the bind fails (:meth:`Cache.forget`).

Pods bound to a node the cache does not know (yet, or any more) are kept aside and counted as soon as
the node appears. The node list in name order is rebuilt only when nodes come or go, so a decision
costs no per-node work beyond the filters and scores themselves.
"""

from __future__ import annotations

from collections.abc import Sequence

from controlplane.api.core import Node

from .plugins import (
    DEFAULT_FILTERS,
    DEFAULT_SCORES,
    Decision,
    Filter,
    NodeInfo,
    PodInfo,
    Score,
    schedule,
)

__all__ = ["Cache"]


class Cache:
    """Node infos with their pods, the assumed pods, and the rotating start of the next decision."""

    def __init__(
        self,
        filters: Sequence[Filter] = DEFAULT_FILTERS,
        scores: Sequence[Score] = DEFAULT_SCORES,
        *,
        percentage_of_nodes_to_score: int = 0,
    ) -> None:
        self.filters = tuple(filters)
        self.scores = tuple(scores)
        self.percentage = percentage_of_nodes_to_score
        self._nodes: dict[str, NodeInfo] = {}
        self._order: list[NodeInfo] | None = None
        self._orphans: dict[str, dict[str, PodInfo]] = {}
        self._placed: dict[str, tuple[str, PodInfo]] = {}
        self._assumed: dict[str, tuple[str, PodInfo]] = {}
        self._next_start = 0

    # --- nodes -------------------------------------------------------------------------------------

    def set_node(self, node: Node) -> None:
        """A node was added or changed."""
        name = node.metadata.name or ""
        info = self._nodes.get(name)
        if info is not None:
            info.set_node(node)
            return
        self._nodes[name] = NodeInfo(node, self._orphans.pop(name, {}).values())
        self._order = None

    def remove_node(self, name: str) -> None:
        """A node was deleted: its pods stay counted aside in case it comes back."""
        info = self._nodes.pop(name, None)
        if info is None:
            return
        self._order = None
        if info.pod_count:
            self._orphans[name] = {p.key: p for p in info.pods}

    def node(self, name: str) -> NodeInfo | None:
        return self._nodes.get(name)

    def nodes(self) -> list[NodeInfo]:
        """The node infos in name order (the list is shared: do not change it)."""
        if self._order is None:
            self._order = sorted(self._nodes.values(), key=lambda n: n.name)
        return self._order

    # --- pods --------------------------------------------------------------------------------------

    def place(self, node: str, pod: PodInfo) -> None:
        """Count ``pod`` on ``node`` (moving it if it was counted elsewhere)."""
        self.unplace(pod.key)
        self._placed[pod.key] = (node, pod)
        info = self._nodes.get(node)
        if info is not None:
            info.add(pod)
        else:
            self._orphans.setdefault(node, {})[pod.key] = pod

    def unplace(self, key: str) -> bool:
        """Stop counting a pod anywhere; True if it was counted."""
        placed = self._placed.pop(key, None)
        if placed is None:
            return False
        node, _ = placed
        info = self._nodes.get(node)
        if info is not None:
            info.remove(key)
        else:
            orphans = self._orphans.get(node)
            if orphans is not None:
                orphans.pop(key, None)
                if not orphans:
                    del self._orphans[node]
        return True

    def placed(self, key: str) -> tuple[str, PodInfo] | None:
        return self._placed.get(key)

    # --- assumptions -------------------------------------------------------------------------------

    def assume(self, node: str, pod: PodInfo) -> None:
        """Count a pod we are binding on its node before the watch shows it bound."""
        self._assumed[pod.key] = (node, pod)
        self.place(node, pod)

    def assumed(self, key: str) -> tuple[str, PodInfo] | None:
        return self._assumed.get(key)

    def assumed_pods(self) -> dict[str, str]:
        return {key: node for key, (node, _) in self._assumed.items()}

    def confirm(self, key: str) -> None:
        """The watch caught up (or the assumption no longer applies): drop the assumption, keep what is
        placed (the caller places the bound version or unplaces)."""
        self._assumed.pop(key, None)

    def forget(self, key: str, pod: PodInfo) -> bool:
        """The bind failed: forget the assumption if it is still this one; True if it was."""
        current = self._assumed.get(key)
        if current is None or current[1] is not pod:
            return False
        del self._assumed[key]
        placed = self._placed.get(key)
        if placed is not None and placed[1] is pod:
            self.unplace(key)
        return True

    # --- deciding ----------------------------------------------------------------------------------

    def schedule(self, pod: PodInfo) -> Decision:
        """Decide for one pod against the current picture; the next decision starts after the nodes
        this one examined (kube-scheduler's nextStartNodeIndex)."""
        nodes = self.nodes()
        decision = schedule(
            pod, nodes, self.filters, self.scores, start=self._next_start, percentage=self.percentage
        )
        if nodes:
            self._next_start = (self._next_start + decision.examined) % len(nodes)
        return decision
