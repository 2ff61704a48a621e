"""API object types: msgspec Structs with Kubernetes v1 field names and JSON shapes.

``meta`` holds metadata and the meta.k8s.io envelopes (Status, Table, WatchEvent), ``core`` the core/v1
kinds, ``coordination`` the Lease, and ``registry`` the one table from kind to REST resource to type.
"""

from . import core
from .coordination import Lease, LeaseList, LeaseSpec
from .core import *  # noqa: F403 - the core/v1 kinds are this package's surface
from .meta import (
    DeleteOptions,
    LabelSelector,
    LabelSelectorRequirement,
    ListMeta,
    ObjectMeta,
    OwnerReference,
    PartialObjectMetadata,
    Status,
    StatusCause,
    StatusDetails,
    Table,
    TableColumnDefinition,
    TableRow,
    WatchEvent,
    now,
    now_micro,
    parse_time,
)
from .registry import RESOURCES, ResourceInfo, by_kind, by_resource, for_object, for_type, resolve

__all__ = [
    "RESOURCES",
    "DeleteOptions",
    "LabelSelector",
    "LabelSelectorRequirement",
    "Lease",
    "LeaseList",
    "LeaseSpec",
    "ListMeta",
    "ObjectMeta",
    "OwnerReference",
    "PartialObjectMetadata",
    "ResourceInfo",
    "Status",
    "StatusCause",
    "StatusDetails",
    "Table",
    "TableColumnDefinition",
    "TableRow",
    "WatchEvent",
    "by_kind",
    "by_resource",
    "for_object",
    "for_type",
    "now",
    "now_micro",
    "parse_time",
    "resolve",
]
__all__ += core.__all__
