"""The dashboard's widgets, one module per area."""

from __future__ import annotations

from .command_bar import CommandBar
from .header import ClusterHeader
from .log_view import LogView
from .resource_table import ResourceTable

__all__ = ["ClusterHeader", "CommandBar", "LogView", "ResourceTable"]
