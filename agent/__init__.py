"""The node agent: kubelet plus kube-proxy (arrives with the node-agent issues).

It will register its Node, heartbeat through a Lease, realise the pods bound to it as Podman pods,
report their status and events, and program nftables NAT and pod routes through pyroute2 — talking to
the control plane only through ``controlplane.client``.
"""
