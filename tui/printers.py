"""Output the way kubectl writes it: server-side Tables as aligned text, objects as YAML, JSON or
``kind/name``, and errors as one line.

The server decides the columns and cells (``controlplane.tables``); this module only lays them out:
upper-cased headers, cells left aligned in columns as wide as their widest cell plus three spaces (Go's
``text/tabwriter`` with kubectl's settings, minimum width 6), priority-1 columns only with ``-o wide``,
a ``NAMESPACE`` column first with ``-A`` and a ``LABELS`` column last with ``--show-labels``.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import yaml

from controlplane.api.meta import Table
from controlplane.api.registry import ResourceInfo
from controlplane.client import ApiError, TransportError

__all__ = [
    "TableOptions",
    "TableWriter",
    "align",
    "as_list",
    "error_line",
    "resource_name",
    "table_rows",
    "to_json",
    "to_yaml",
]

# kubectl's get: tabwriter.NewWriter(out, 6, 4, 3, ' ', 0). Its describe uses (0, 8, 2, ' ', 0).
GET_MIN_WIDTH, GET_PADDING = 6, 3


# --- column alignment --------------------------------------------------------------------------


def align(lines: Sequence[Sequence[str]], *, padding: int, min_width: int = 0) -> list[str]:
    """Lay out lines of cells like Go's ``text/tabwriter``.

    Every cell but a line's last belongs to a column; a column's block is a run of consecutive lines
    that have a cell there, and the block is as wide as its widest cell plus ``padding`` (at least
    ``min_width``). A line with a single cell is plain text and ends the blocks it interrupts, which is
    what lets ``describe`` align each section on its own.
    """
    widths = _column_widths(lines, padding, min_width, {})
    return [_join(cells, widths[i]) for i, cells in enumerate(lines)]


def _column_widths(
    lines: Sequence[Sequence[str]], padding: int, min_width: int, remembered: dict[int, int]
) -> list[list[int]]:
    out: list[list[int]] = [[] for _ in lines]
    column = 0
    while True:
        found = False
        i = 0
        while i < len(lines):
            if len(lines[i]) - 1 <= column:
                i += 1
                continue
            found = True
            start = i
            width = max(min_width, remembered.get(column, 0))
            while i < len(lines) and len(lines[i]) - 1 > column:
                width = max(width, len(lines[i][column]) + padding)
                i += 1
            for j in range(start, i):
                out[j].append(width)
        if not found:
            return out
        column += 1


def _join(cells: Sequence[str], widths: Sequence[int]) -> str:
    parts = [cell.ljust(widths[k]) for k, cell in enumerate(cells[:-1])]
    parts.append(cells[-1] if cells else "")
    return "".join(parts)


# --- tables --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TableOptions:
    wide: bool = False
    all_namespaces: bool = False
    show_labels: bool = False
    # With several kinds in one listing, names print as ``pod/web`` (kubectl does this for ``get all``).
    kind_prefix: str | None = None


def cell_text(value: Any) -> str:
    """A server-side Table cell as kubectl prints it (integral floats without ``.0``, JSON for objects)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _row_metadata(obj: Any) -> dict[str, Any]:
    if isinstance(obj, dict):
        meta = obj.get("metadata")
        if isinstance(meta, dict):
            return meta
    return {}


def format_labels(labels: dict[str, str] | None) -> str:
    """``k=v,k2=v2`` in key order, ``<none>`` when there are none (kubectl's labels.FormatLabels)."""
    if not labels:
        return "<none>"
    return ",".join(f"{k}={labels[k]}" for k in sorted(labels))


def table_rows(table: Table, options: TableOptions, *, header: bool = True) -> list[list[str]]:
    """The header (unless ``header`` is false) and rows of a Table as text cells, ready to align."""
    shown = [i for i, c in enumerate(table.column_definitions) if options.wide or c.priority == 0]
    name_col = next(
        (i for i, c in enumerate(table.column_definitions) if c.format == "name" or c.name == "Name"), None
    )
    rows: list[list[str]] = []
    if header:
        names = [table.column_definitions[i].name.upper() for i in shown]
        if options.all_namespaces:
            names.insert(0, "NAMESPACE")
        if options.show_labels:
            names.append("LABELS")
        rows.append(names)
    for row in table.rows:
        meta = _row_metadata(row.object)
        cells = []
        for i in shown:
            text = cell_text(row.cells[i]) if i < len(row.cells) else ""
            if i == name_col and options.kind_prefix:
                text = f"{options.kind_prefix}/{text}"
            cells.append(text)
        if options.all_namespaces:
            cells.insert(0, str(meta.get("namespace") or ""))
        if options.show_labels:
            cells.append(format_labels(meta.get("labels")))
        rows.append(cells)
    return rows


@dataclass
class TableWriter:
    """Aligns successive batches of rows (``get -w``) without ever narrowing a column, so rows
    printed later line up with the header printed first (tabwriter's RememberWidths)."""

    widths: dict[int, int] = field(default_factory=dict)

    def render(self, rows: Sequence[Sequence[str]]) -> str:
        if not rows:
            return ""
        line_widths = _column_widths(rows, GET_PADDING, GET_MIN_WIDTH, self.widths)
        for widths in line_widths:
            for k, w in enumerate(widths):
                self.widths[k] = max(self.widths.get(k, 0), w)
        return "".join(_join(cells, line_widths[i]) + "\n" for i, cells in enumerate(rows))


# --- names, YAML and JSON ------------------------------------------------------------------------


def resource_name(info: ResourceInfo, name: str) -> str:
    """The ``-o name`` form: ``pod/web``, ``replicationcontroller/php``, ``lease.coordination.k8s.io/x``."""
    kind = info.kind.lower() + (f".{info.group}" if info.group else "")
    return f"{kind}/{name}"


def as_list(items: list[Any]) -> dict[str, Any]:
    """Several objects as one document, the way kubectl prints a listing with ``-o yaml|json``."""
    return {"apiVersion": "v1", "items": items, "kind": "List", "metadata": {"resourceVersion": ""}}


class _Dumper(yaml.SafeDumper):
    """YAML as kubectl (go-yaml) writes it: block style, multi-line strings as literal blocks, no line
    folding; strings that would read back as another type (``"80"``, ``"yes"``, ``""``) in double
    quotes, strings that only need quoting for YAML's syntax (``'a: b'``) in single quotes."""

    def choose_scalar_style(self) -> Any:
        style = super().choose_scalar_style()
        if style == "'" and self.event is not None and not self.event.implicit[0]:  # type: ignore[attr-defined]
            return '"'
        return style


def _represent_str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _represent_str)


def to_yaml(obj: Any) -> str:
    """An object's YAML with its keys in the order the server sent them."""
    text: str = yaml.dump(
        obj, Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True, width=1 << 30
    )
    return text


def to_json(obj: Any) -> str:
    return json.dumps(obj, indent=2, ensure_ascii=False) + "\n"


# --- errors --------------------------------------------------------------------------------------


def error_line(exc: BaseException, context: str | None = None, *, server: str | None = None) -> str:
    """One line for a failure, kubectl style: ``Error from server (NotFound): pods "web" not found``
    for the server's refusals, ``error: ...`` for everything else. ``context`` (``error when
    creating "x.yaml"``) goes between the prefix and the message; ``server`` names the API server
    in connection errors."""
    prefix = f"{context}: " if context else ""
    if isinstance(exc, ApiError):
        status = exc.status
        message = status.message or status.reason or f"HTTP {status.code}"
        reason = f" ({status.reason})" if status.reason else ""
        return _one_line(f"Error from server{reason}: {prefix}{message}")
    if isinstance(exc, TransportError):
        return _one_line(_transport_message(exc, server))
    return _one_line(f"error: {prefix}{exc}")


def _transport_message(exc: TransportError, server: str | None) -> str:
    untrusted = _certificate_error(exc)
    if untrusted is not None:
        return f"Unable to connect to the server: tls: failed to verify certificate: {untrusted}"
    cause = exc.__cause__
    if isinstance(cause, httpx.ConnectError | httpx.ConnectTimeout) and server:
        try:
            url = httpx.URL(server)
            where = f"{url.host}:{url.port}" if url.port else url.host
        except httpx.InvalidURL:
            where = server
        return f"The connection to the server {where} was refused - did you specify the right host or port?"
    return f"error: {exc}"


def _certificate_error(exc: BaseException) -> str | None:
    """Why the server's certificate was not trusted, found anywhere in the exception's chain (httpx
    wraps ssl's error in its own): kubectl names the certificate instead of "connection refused"."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError):
            return current.verify_message or str(current)
        current = current.__cause__ or current.__context__
    return None


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in text.splitlines() if part.strip())
