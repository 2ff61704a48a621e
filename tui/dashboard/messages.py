"""Messages the dashboard's workers post to the UI: small dataclasses, no widgets inside.

``stream`` is the serial number of the view stream that produced a table message; the screen drops
messages from streams it has since replaced. (Textual's Message initialises itself in
``__post_init__``, so a dataclass Message needs no ``__init__`` of its own.)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from textual.message import Message


@dataclass
class TableReset(Message):
    """A fresh listing: every column and row of the view (after the first list or a re-list).
    ``wide`` marks the columns ``pea get`` prints only with ``-o wide`` (shown on wide terminals);
    ``created`` is each row's creationTimestamp (epoch seconds), for an AGE that keeps counting."""

    stream: int
    columns: list[str]
    rows: list[tuple[str, list[str]]]
    wide: list[bool] = field(default_factory=list)
    created: dict[str, float] = field(default_factory=dict)


@dataclass
class RowChanged(Message):
    """A row was added or modified (keyed ``namespace/name``, or ``name`` when cluster-scoped)."""

    stream: int
    key: str
    cells: list[str]
    created: float | None = None


@dataclass
class RowDeleted(Message):
    stream: int
    key: str


@dataclass
class Connection(Message):
    """Whether a stream reaches the API server; ``error`` says why not, in one line for the banner."""

    connected: bool
    error: str = ""


@dataclass
class Health(Message):
    """The API server's answer to ``/readyz``."""

    ready: bool


@dataclass
class ClusterCounts(Message):
    nodes_ready: int
    nodes_total: int
    pod_phases: dict[str, int] = field(default_factory=dict)
