"""``d``: one object as ``pea describe`` prints it, with its events, kept live.

The text is :func:`tui.describe.describe`'s, unchanged. Besides the object itself (the base screen's
watch) the screen watches the events that name it, so a new event shows up without ``r``.
"""

from __future__ import annotations

from controlplane.api.core import Event
from controlplane.client import Client
from tui.describe import describe

from .text_view import DetailScreen, Followed

__all__ = ["DescribeScreen"]


class DescribeScreen(DetailScreen):
    VERB = "Describe"

    async def fetch(self, client: Client) -> str:
        return await describe(client, self.info, self.object_name, self.namespace)

    def followed(self) -> list[Followed]:
        watches = super().followed()
        if self.info.kind != "Event":
            selector = f"involvedObject.kind={self.info.kind},involvedObject.name={self.object_name}"
            # Events about a cluster-scoped object live in some namespace (usually default): watch all.
            watches.append(Followed(Event, self.namespace, selector))
        return watches
