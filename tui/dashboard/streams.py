"""One view's rows: list the server-side Table, then watch it as one-row Tables.

Concurrency model: ``TableStream.run`` is one coroutine, run by one Textual worker; it never touches a
widget and reports through ``post``. The loop is the informer's (``controlplane/client/informer.py``):
list → watch from the list's resourceVersion → a broken stream resumes from the last resourceVersion
seen, after an exponential back-off → 410 Gone re-lists and resets the rows. Cancelling the worker ends
it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from textual.message import Message

from controlplane.api.meta import TableRow, parse_time
from controlplane.api.registry import ResourceInfo
from controlplane.client import ApiError, Client, Gone, TransportError
from tui.printers import cell_text, error_line

from .messages import Connection, RowChanged, RowDeleted, TableReset

log = logging.getLogger(__name__)

__all__ = ["TableStream", "trouble_line"]


def _metadata(row: TableRow) -> dict[str, Any]:
    obj = row.object
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    return meta if isinstance(meta, dict) else {}


def trouble_line(exc: Exception) -> str:
    """One line for a stream that cannot reach or is refused by the API server: the main screen's
    banner and the detail screens' notice say it the same way."""
    if isinstance(exc, TransportError):
        return f"API server unreachable: {exc}"
    if isinstance(exc, ApiError):
        return f"Error from server: {exc}"
    return error_line(exc)


def _created(row: TableRow) -> float | None:
    """The row's creationTimestamp as epoch seconds (None if absent or unreadable)."""
    stamp = _metadata(row).get("creationTimestamp")
    if not isinstance(stamp, str):
        return None
    try:
        return parse_time(stamp).timestamp()
    except ValueError:
        return None


class TableStream:
    def __init__(
        self,
        client: Client,
        info: ResourceInfo,
        namespace: str | None,
        post: Callable[[Message], object],
        serial: int,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        min_delay: float = 0.2,
        max_delay: float = 5.0,
    ) -> None:
        self.client = client
        self.info = info
        self.namespace = namespace if info.namespaced else None
        self.post = post
        self.serial = serial
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.min_delay = min_delay
        self.max_delay = max_delay
        self.resource_version = ""
        self._connected: bool | None = None

    @property
    def all_namespaces(self) -> bool:
        return self.info.namespaced and self.namespace is None

    async def run(self) -> None:
        need_list = True
        delay = self.min_delay
        while True:
            try:
                if need_list:
                    await self._list()
                    need_list = False
                elif self._connected is False:
                    # Resuming after a failure: only say "connected" once the server answers again.
                    await self.client.request("GET", "/readyz")
                self._set_connected(True)
                delay = self.min_delay
                await self._watch()
            except Gone:
                log.info(
                    "%s: resourceVersion %s too old; re-listing", self.info.plural, self.resource_version
                )
                need_list = True
            except (TransportError, ApiError) as exc:
                self._set_connected(False, trouble_line(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_delay)

    def _set_connected(self, connected: bool, error: str = "") -> None:
        if connected != self._connected:
            self._connected = connected
            self.post(Connection(connected, error))

    async def _list(self) -> None:
        table = await self.client.table(
            self.info, self.namespace, label_selector=self.label_selector, field_selector=self.field_selector
        )
        names = [c.name.upper() for c in table.column_definitions]
        wide = [c.priority > 0 for c in table.column_definitions]
        if self.all_namespaces:
            names.insert(0, "NAMESPACE")
            wide.insert(0, False)
        rows = [self._row(row) for row in table.rows]
        created = {
            key: when for row, (key, _) in zip(table.rows, rows, strict=True) if (when := _created(row))
        }
        self.resource_version = table.metadata.resource_version or ""
        self.post(TableReset(self.serial, names, rows, wide, created))

    async def _watch(self) -> None:
        async for event_type, table in self.client.watch_table(
            self.info,
            self.namespace,
            resource_version=self.resource_version,
            label_selector=self.label_selector,
            field_selector=self.field_selector,
        ):
            for row in table.rows:
                rv = _metadata(row).get("resourceVersion")
                if rv:
                    self.resource_version = str(rv)
                key, cells = self._row(row)
                if event_type == "DELETED":
                    self.post(RowDeleted(self.serial, key))
                elif event_type in ("ADDED", "MODIFIED"):
                    self.post(RowChanged(self.serial, key, cells, _created(row)))
                else:
                    log.warning("%s stream: unknown event type %r skipped", self.info.plural, event_type)

    def _row(self, row: TableRow) -> tuple[str, list[str]]:
        meta = _metadata(row)
        namespace = str(meta.get("namespace") or "")
        name = str(meta.get("name") or "")
        cells = [cell_text(cell) for cell in row.cells]
        if self.all_namespaces:
            cells.insert(0, namespace)
        return (f"{namespace}/{name}" if namespace else name), cells
