"""The node-local cluster DNS server (our NodeLocal DNSCache with CoreDNS's kubernetes plugin built in).

Each agent answers its pods' DNS itself: names in the cluster domain from the Services and Endpoints its
informers already hold (``records``: the Kubernetes DNS spec, as CoreDNS answers it), everything else
forwarded to the node's own resolvers through a TTL-respecting cache (``forward``). ``server`` puts the
two behind UDP and TCP listeners inside the node's network namespace; ``wirecache`` keeps the replies
it sent over UDP so that a question asked again byte for byte costs no parsing or packing.

Concurrency model: one event loop, no threads after start (sockets are created by a short-lived thread
inside the namespace, then served by asyncio). Informer handlers update the index inline, so a Service
change is visible to the very next query; cluster questions are answered synchronously in the datagram
callback, forwarded ones in a task each.
"""

from .forward import Forwarder, upstreams_from_resolv_conf
from .records import Answer, ClusterIndex
from .server import DNSServer

__all__ = ["Answer", "ClusterIndex", "DNSServer", "Forwarder", "upstreams_from_resolv_conf"]
