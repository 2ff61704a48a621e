"""The async client library: typed verbs and watches (``client``), informers with a local cache
(``informer``), event recording with merging (``events``) and connection settings (``config``)."""

from .client import Client, ObjectList, WatchEvent, path_for
from .config import ClientConfig, load_config, write_kubeconfig
from .errors import ApiError, ClientError, Conflict, Gone, NotFound, TransportError
from .events import EventRecorder
from .informer import Informer, key_of

__all__ = [
    "ApiError",
    "Client",
    "ClientConfig",
    "ClientError",
    "Conflict",
    "EventRecorder",
    "Gone",
    "Informer",
    "NotFound",
    "ObjectList",
    "TransportError",
    "WatchEvent",
    "key_of",
    "load_config",
    "path_for",
    "write_kubeconfig",
]
