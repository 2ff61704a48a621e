"""The scheduler: assigns pending pods to nodes through ``pods/{name}/binding``, like kube-scheduler.

It is an ordinary API client (informers on pods and nodes, binds through the REST API), so it can run
in the control-plane process or on its own; see :mod:`controlplane.scheduler.scheduler` for the design.
"""

from .scheduler import Scheduler

__all__ = ["Scheduler"]
