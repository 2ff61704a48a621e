"""The node agent: kubelet plus kube-proxy.

It registers its Node and heartbeats through a Lease (``node``), realises the pods bound to it as
Podman pods with their infra container (``pods``, ``runtime/``), reports their status and events
(``status``), runs the pods of its own folder even with no control plane (``static_pods``, with mirror
pods in the API), and programs the pod network, nftables NAT for Services and the routes to other
nodes' pods through pyroute2 (``network/``, ``proxy``), with a node-local DNS server (``dns/``) — talking
to the control plane only through ``controlplane.client``. The process wiring is ``agent.Agent``.
"""
