"""Recording events the way Kubernetes' EventRecorder does: a repeat of the same event is merged into
the existing object (count, lastTimestamp) instead of creating another one.

Events are keyed by (involved object, type, reason, message, source). The recorder remembers the
events it wrote; a repeat is a merge patch of ``count`` and ``lastTimestamp``. If the remembered event is
gone (expired by the server's TTL), a new one is created.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict

import msgspec

from controlplane.api.core import Event, EventSource, ObjectReference
from controlplane.api.meta import ObjectMeta, TopLevel, now
from controlplane.api.registry import for_object

from .client import Client
from .errors import ClientError, NotFound

log = logging.getLogger(__name__)


def reference(obj: TopLevel) -> ObjectReference:
    info = for_object(obj)
    m = obj.metadata  # type: ignore[attr-defined]
    return ObjectReference(
        kind=info.kind,
        namespace=m.namespace,
        name=m.name,
        uid=m.uid,
        api_version=info.api_version,
        resource_version=m.resource_version,
    )


class EventRecorder:
    def __init__(
        self, client: Client, component: str, host: str | None = None, *, cache_size: int = 4096
    ) -> None:
        self.client = client
        self.source = EventSource(component=component, host=host)
        self._seen: OrderedDict[tuple[str, ...], tuple[str, str, int]] = OrderedDict()
        self.cache_size = cache_size

    async def record(
        self,
        obj: TopLevel | ObjectReference,
        type_: str,
        reason: str,
        message: str,
        *,
        field_path: str | None = None,
    ) -> None:
        """Record an event about ``obj`` (or a part of it: ``spec.containers{web}``); failures are
        logged, never raised (events are best effort)."""
        ref = obj if isinstance(obj, ObjectReference) else reference(obj)
        if field_path is not None:
            ref = msgspec.structs.replace(ref, field_path=field_path)
        namespace = ref.namespace or "default"
        key = (
            ref.kind or "",
            namespace,
            ref.name or "",
            ref.uid or "",
            ref.field_path or "",
            type_,
            reason,
            message,
        )
        stamp = now()
        try:
            seen = self._seen.get(key)
            if seen is not None:
                name, ns, count = seen
                try:
                    await self.client.patch(Event, name, {"count": count + 1, "lastTimestamp": stamp}, ns)
                    self._remember(key, (name, ns, count + 1))
                    return
                except NotFound:
                    pass
            event = Event(
                metadata=ObjectMeta(name=f"{ref.name}.{time.time_ns():x}", namespace=namespace),
                involved_object=ref,
                reason=reason,
                message=message,
                source=self.source,
                first_timestamp=stamp,
                last_timestamp=stamp,
                count=1,
                type=type_,
                reporting_component=self.source.component or "",
                reporting_instance=self.source.host or "",
            )
            created = await self.client.create(event)
            self._remember(key, (created.metadata.name or "", namespace, 1))
        except ClientError as exc:
            log.warning("could not record event %s %s for %s: %s", type_, reason, ref.name, exc)

    def _remember(self, key: tuple[str, ...], value: tuple[str, str, int]) -> None:
        self._seen[key] = value
        self._seen.move_to_end(key)
        while len(self._seen) > self.cache_size:
            self._seen.popitem(last=False)
